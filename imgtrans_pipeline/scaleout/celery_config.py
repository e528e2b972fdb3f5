"""The Celery settings the run launcher (in the daemon/webserver) and the workers (``scaleout.app``) must share.

Both read the same values from ``core.settings`` (section ``celery``), so one ``export`` on every host is the
whole configuration:

* ``IMGTRANS_CELERY_BROKER`` — the broker; default the intake's Redis (``IMGTRANS_REDIS_URL``, else
  ``redis://127.0.0.1:6379/0``). Celery's keys (``dagster``, ``gpu``, ``_kombu.*``, ``unacked*``) do not collide
  with the intake's ``imgtrans:*`` keys, but a separate database number (``…/1``) keeps them apart.
* ``IMGTRANS_CELERY_BACKEND`` — the result backend; default: the broker URL. It must be shared (Redis, not
  Celery's ``rpc://``): the daemon's run monitoring asks it for the state of every run's task, and with
  ``rpc://`` only the process that sent a task can see its state, so monitoring would fail every run.
* ``IMGTRANS_CELERY_QUEUE`` — the queue a run goes to when it has no ``dagster-celery/queue`` tag (``dagster``).
"""

from __future__ import annotations

from typing import Any

from ..core.settings import CelerySection, default_of, get_settings
from ..names import GPU_POOL, TAG_CELERY_QUEUE

DEFAULT_QUEUE = default_of(CelerySection, "queue")
GPU_QUEUE = GPU_POOL  # OCR and inpaint steps (and runs tagged for a GPU host) go to the queue named like the pool
QUEUE_TAG = TAG_CELERY_QUEUE  # run tag (run launcher) or op tag (celery executor) naming the queue


def broker_url() -> str:
    """The broker: IMGTRANS_CELERY_BROKER, else the intake's IMGTRANS_REDIS_URL, else local Redis."""
    return get_settings().celery_broker


def backend_url() -> str:
    """The result backend: IMGTRANS_CELERY_BACKEND, else the broker URL (a Redis URL works as both)."""
    return get_settings().celery_backend


def default_queue() -> str:
    return get_settings().celery.queue


def celery_settings() -> dict[str, Any]:
    """Celery settings (lowercase names) laid over dagster-celery's defaults, on the launcher and the workers.

    Why each one:
    * ``result_extended`` stores the worker's name with each task state, so ``AsyncResult(task_id).worker``
      (and the run launcher's debug info) says where a run went.
    * ``result_expires`` 7 days: run monitoring polls the backend for the state of a STARTED run's task; a run
      outliving its stored state (Celery's default is 1 day) would read as PENDING and be failed by monitoring.
    * ``task_acks_late`` False (Celery's default, stated on purpose): a message is acknowledged when its run
      starts, so a worker that dies mid-run does not make Redis hand the same run to another worker; Dagster's run
      monitoring marks it failed and ``run_retries`` (when enabled) starts a new run — never two copies of one.
    * ``worker_prefetch_multiplier`` 1: a busy worker does not hoard queued runs an idle worker could take.
    * ``broker_connection_retry_on_startup``: workers started before Redis keep retrying instead of exiting.
    * ``worker_max_memory_per_child`` (``IMGTRANS_WORKER_MAX_MEMORY_MIB``, default 1400): a pool process whose
      resident memory passed this after a run is replaced by a fresh one (which loads the models again), so a
      long-lived worker cannot creep past the 1.5 GiB budget of a run process however many runs it serves.
    """
    return {
        "result_extended": True,
        "result_expires": 7 * 24 * 3600,
        "task_acks_late": False,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "worker_max_memory_per_child": worker_max_memory_mib() * 1024,  # Celery counts KiB
    }


def worker_max_memory_mib() -> int:
    return get_settings().celery.worker_max_memory_mib
