"""The Celery app the workers run: ``dagster-celery worker start -A imgtrans_pipeline.scaleout.app …``.

It is ``dagster_celery.app`` (the tasks ``execute_job``, ``resume_job`` and ``execute_plan``, by the same names
the run launcher and the celery executor send) configured from the project's variables (``scaleout.celery_config``)
rather than from a ``dagster_celery_config`` module, so launcher and workers cannot disagree about the broker.

It adds what dagster-celery does not record: when a run a worker executed ends, it writes run tags saying which
worker process ran it (``imgtrans/celery_worker``, ``imgtrans/celery_worker_pid``) and how many engines that run
had to load into the process-wide engine cache (``imgtrans/engines_loaded``; 0 means the worker was already warm),
plus an engine event in the run's log. That is how an operator (and ``tests/system/test_scaleout.py``) sees that runs
spread over the workers and that a warm worker does not load its models again.

``IMGTRANS_CELERY_PRELOAD=1`` loads the default engines when a worker process starts, so even a worker's first
run finds them warm (at the cost of the start-up time and memory in every pool process).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery.signals import task_postrun, task_prerun, worker_process_init
from dagster_celery.config import DEFAULT_CONFIG, TASK_EXECUTE_JOB_NAME, TASK_EXECUTE_PLAN_NAME, TASK_RESUME_JOB_NAME
from dagster_celery.make_app import make_app
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task, create_task

from .. import names
from ..core.settings import get_settings
from ..engines.registry import cached_engine_keys
from . import celery_config as settings

log = logging.getLogger(__name__)

PRELOAD_TIMEOUT_S = 300  # a pool process that loads models at start needs longer than Celery's 4 s to report alive


def app_args() -> dict[str, Any]:
    """Celery constructor arguments: the same broker, backend and settings as ``ImgtransCeleryRunLauncher``."""
    config = {**DEFAULT_CONFIG, **settings.celery_settings()}
    if _preload_enabled():
        config["worker_proc_alive_timeout"] = PRELOAD_TIMEOUT_S
    return {
        "broker": settings.broker_url(),
        "backend": settings.backend_url(),
        "include": [],
        "config_source": config,
        "task_default_queue": settings.DEFAULT_QUEUE,
    }


def _preload_enabled() -> bool:
    return get_settings().celery.preload


app = make_app(app_args())
execute_plan = create_task(app)
execute_job = create_execute_job_task(app)
resume_job = create_resume_job_task(app)


# --- observability: which worker ran a run, and whether it was warm -------------------------------------------

_RUN_TASKS = (TASK_EXECUTE_JOB_NAME, TASK_RESUME_JOB_NAME)
_started: dict[str, tuple[float, frozenset[Any]]] = {}
_instance_lock = threading.Lock()
_instance: Any = None


def _dagster_instance() -> Any:
    """The worker's instance (``DAGSTER_HOME``), opened once per pool process — after the fork, never before."""
    global _instance
    with _instance_lock:
        if _instance is None:
            from dagster import DagsterInstance

            _instance = DagsterInstance.get()
        return _instance


def _run_and_steps(task_name: str, kwargs: dict[str, Any]) -> tuple[str | None, list[str]]:
    """The run id (and step keys) a dagster-celery task works on, from its packed arguments."""
    from dagster._serdes import unpack_value

    packed = kwargs.get("execute_job_args_packed") or kwargs.get("resume_job_args_packed")
    if task_name in _RUN_TASKS and packed:
        return unpack_value(packed).run_id, []
    packed = kwargs.get("execute_step_args_packed")
    if task_name == TASK_EXECUTE_PLAN_NAME and packed:
        args = unpack_value(packed)
        return args.run_id, list(args.step_keys_to_execute or [])
    return None, []


def _engine_names(keys: frozenset[Any]) -> list[str]:
    return sorted(str(key[0]) if isinstance(key, tuple) and key else str(key) for key in keys)


@task_prerun.connect
def _record_start(task_id: str | None = None, task: Any = None, kwargs: dict[str, Any] | None = None,
                  **_: Any) -> None:
    try:
        run_id, _steps = _run_and_steps(getattr(task, "name", ""), kwargs or {})
        if run_id is None or task_id is None:
            return
        _started[task_id] = (time.monotonic(), cached_engine_keys())
        # No run tags here: add_run_tags rewrites the run's tags from what it read, and the daemon adds
        # dagster-celery/task_id right after sending the task — measured, a tag write at task start lost it (run
        # monitoring then reads a run without its task id). Tags are written once the run has ended.
    except Exception:  # observability must never fail a run
        log.exception("could not record the start of task %s", task_id)


@task_postrun.connect
def _record_end(task_id: str | None = None, task: Any = None, kwargs: dict[str, Any] | None = None,
                state: str | None = None, **_: Any) -> None:
    try:
        run_id, steps = _run_and_steps(getattr(task, "name", ""), kwargs or {})
        if run_id is None or task_id is None or task_id not in _started:
            return
        started, before = _started.pop(task_id)
        seconds = time.monotonic() - started
        after = cached_engine_keys()
        loaded = after - before
        worker = task.request.hostname or ""
        instance = _dagster_instance()
        what = f"steps {', '.join(steps)}" if steps else "this run"
        warmth = (f"loaded {len(loaded)} engine(s): {', '.join(_engine_names(loaded))}" if loaded
                  else f"reused {len(after)} warm engine(s), loaded none")
        message = f"Celery worker {worker} (pid {os.getpid()}) ran {what} in {seconds:.2f} s; {warmth}."
        run = instance.get_run_by_id(run_id)
        if run is not None:
            from dagster._core.events import EngineEventData

            instance.report_engine_event(message, run, EngineEventData({
                "Celery worker": worker, "pid": str(os.getpid()), "task state": str(state),
                "engines loaded": str(len(loaded)), "engines cached": str(len(after)),
            }), step_key=steps[0] if len(steps) == 1 else None)
        if not steps:
            instance.add_run_tags(run_id, {
                DAGSTER_CELERY_TASK_ID_TAG: task_id,  # the launcher's value, written again in case we raced it
                names.TAG_WORKER: worker, names.TAG_WORKER_PID: str(os.getpid()),
                names.TAG_ENGINES_LOADED: str(len(loaded)), names.TAG_ENGINES_CACHED: str(len(after)),
                names.TAG_TASK_SECONDS: f"{seconds:.3f}",
            })
        log.info(message)
    except Exception:
        log.exception("could not record the end of task %s", task_id)


@task_postrun.connect
def _release_memory(**_: Any) -> None:
    """A pool process runs run after run: free what the finished run left in reference cycles (see
    ``orchestration.memory``), before Celery compares its RSS with ``worker_max_memory_per_child``."""
    from ..orchestration.memory import release_run_memory

    release_run_memory()


# --- optional warm-up -----------------------------------------------------------------------------------------

def preload_engines() -> list[str]:
    """Load the engines the default resources use, into this process's cache; returns what got loaded.

    The same resource objects as the code location builds (``build_resources`` from the environment), so the
    cache keys are the ones a run with default resource config looks up.
    """
    from ..orchestration.definitions import build_resources

    before = cached_engine_keys()
    resources: dict[str, Any] = build_resources()
    router = resources["ocr_engine"].router()
    router.engine_for("auto")
    _warm_up_ocr(router)
    resources["translator"].service()
    resources["inpainting"].inpainter()
    resources["renderer"].renderer()
    resources["artifacts"].store()
    resources["fetcher"].downloader()
    if get_settings().intake.enabled:
        resources["intake"].client()
        resources["fetcher"].downloader(queued=True)  # queued requests' downloader: the trust boundary's policy
    if get_settings().runtime.inspection_rules:
        resources["runtime"].inspector()
    return _engine_names(cached_engine_keys() - before)


def _warm_up_ocr(ocr_engine: Any) -> None:
    """One OCR call on a line of drawn text: onnxruntime's first call on each model (detection, angle,
    recognition) costs ~1.5 s more than the next ones (measured), which would land on the worker's first request."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (480, 160), "white")
    ImageDraw.Draw(image).text((20, 50), "Warm up 2026", fill="black", font=ImageFont.load_default(size=48))
    ocr_engine.recognize(np.asarray(image), "en")


@worker_process_init.connect
def _preload(**_: Any) -> None:
    if not _preload_enabled():
        return
    started = time.monotonic()
    try:
        loaded = preload_engines()
        log.info("pool process %s preloaded %s in %.1f s", os.getpid(), ", ".join(loaded), time.monotonic() - started)
    except Exception:  # a run will load (and report) what failed here
        log.exception("pool process %s could not preload the engines", os.getpid())
