"""Step-level scale-out (optional): the same graph with each op a Celery task, OCR and inpaint on the ``gpu`` queue.

``translate_images`` runs a whole run in one worker process (run launcher mode, the default of
``dagster.celery.yaml``). This variant splits a run: its coordinator goes to the ``runs`` queue (job tag), the IO
and CPU ops (download, translate, render, publish) to ``dagster``, OCR and inpaint to ``gpu`` — so GPU hosts do only
GPU work. Every worker still keeps its engines warm (one long-lived pool process per worker, process-wide cache).

Run it with the default run launcher (``dagster.yaml`` / ``dagster.postgres.yaml``): the run's coordinator then
lives in a run process on the daemon's host and waits for its steps. Under ``ImgtransCeleryRunLauncher`` the
coordinator would itself be a Celery task, and Celery forbids a task to wait on other tasks (measured: every run
failed with "Never call result.get() within a task!").

The price, measured in docs/scale-out.md: each step is a broker round trip plus a reload of the run's plan in the
worker, and the items travel between steps through the IO manager, which must then be shared storage (the default
``fs_io_manager`` under ``$DAGSTER_HOME/storage`` works on one host or a shared filesystem only).
"""

from __future__ import annotations

from typing import Any

from dagster import ExecutorDefinition, job
from dagster_celery import celery_executor

from .. import names
from ..orchestration.ops import download, inpaint, ocr, publish, render, translate
from . import celery_config as settings

CELERY_STEPS_JOB = "translate_images_celery_steps"
_GPU = {settings.QUEUE_TAG: settings.GPU_QUEUE}


def _executor_config(_: dict[str, Any]) -> dict[str, Any]:
    # A function, not a dict: the variables are read where the run's config is resolved (the run's coordinator
    # and each worker), not once when some process first imports this module.
    return {
        "broker": settings.broker_url(),
        "backend": settings.backend_url(),
        "config_source": {**settings.celery_settings(), "task_default_queue": settings.DEFAULT_QUEUE},
    }


def step_executor() -> ExecutorDefinition:
    """``celery_executor`` on the project's broker/backend and settings."""
    return celery_executor.configured(_executor_config, name="imgtrans_celery_executor", config_schema={})


@job(
    name=CELERY_STEPS_JOB,
    description="translate_images with every op a Celery task; OCR and inpaint on the gpu queue.",
    tags={names.TAG_PIPELINE: "translate"},
    executor_def=step_executor(),
)
def translate_images_celery_steps() -> None:
    located = ocr.tag(_GPU)(download())
    publish(render(translate(located), inpaint.tag(_GPU)(located)))
