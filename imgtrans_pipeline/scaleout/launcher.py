"""dagster-celery's run launcher with the project's defaults: each run becomes one Celery task on Redis.

``dagster_celery.launcher.CeleryRunLauncher`` as it is, except that

* ``broker``/``backend`` default to the project's variables (``scaleout.celery_config``) instead of RabbitMQ on
  localhost and ``rpc://`` (with which the daemon's run monitoring cannot see a task's state and fails the run);
* ``default_queue`` defaults to ``IMGTRANS_CELERY_QUEUE`` (else ``dagster``);
* the Celery settings are the same object the workers load (``scaleout.celery_config.celery_settings``).

A run goes to the queue in its ``dagster-celery/queue`` tag, else to ``default_queue``. The worker that takes it
executes the whole run in its own long-lived process (the job uses the in-process executor), so the engines that
``engines.registry.cached_engine`` keeps stay loaded for the next run on that worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import Field, Noneable, Permissive, StringSource
from dagster._serdes import ConfigurableClassData
from dagster_celery.launcher import CeleryRunLauncher

from . import celery_config as settings


class ImgtransCeleryRunLauncher(CeleryRunLauncher):
    """Launch each run as a Celery task on the project's Redis broker (see module docstring)."""

    def __init__(
        self,
        default_queue: str | None = None,
        broker: str | None = None,
        backend: str | None = None,
        include: list[str] | None = None,
        config_source: dict[str, Any] | None = None,
        inst_data: ConfigurableClassData | None = None,
    ) -> None:
        super().__init__(
            default_queue=default_queue or settings.default_queue(),
            broker=broker or settings.broker_url(),
            backend=backend or settings.backend_url(),
            include=include,
            config_source={**settings.celery_settings(), **(config_source or {})},
            inst_data=inst_data,
        )

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        # The parent's schema, minus its defaults (RabbitMQ broker, rpc:// backend) that do not fit here.
        return {
            "broker": Field(Noneable(StringSource), is_required=False,
                            description="Celery broker URL; default IMGTRANS_CELERY_BROKER, else IMGTRANS_REDIS_URL."),
            "backend": Field(Noneable(StringSource), is_required=False,
                             description="Result backend URL (shared, e.g. Redis); default IMGTRANS_CELERY_BACKEND, "
                                         "else the broker URL."),
            "include": Field([str], is_required=False, description="Modules every worker should import."),
            "default_queue": Field(Noneable(StringSource), is_required=False,
                                   description="Queue for runs without a dagster-celery/queue tag; default "
                                               "IMGTRANS_CELERY_QUEUE, else 'dagster'."),
            "config_source": Field(Noneable(Permissive()), is_required=False,
                                   description="Extra Celery settings laid over the project's."),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData,
                          config_value: Mapping[str, Any]) -> ImgtransCeleryRunLauncher:
        return cls(inst_data=inst_data, **config_value)
