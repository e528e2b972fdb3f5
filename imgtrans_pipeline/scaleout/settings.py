"""Where the Celery broker and result backend are, and the Celery settings both sides must share.

The run launcher (in the daemon/webserver) and the workers (``imgtrans_pipeline.scaleout.app``) read the same
variables, so one ``export`` on every host is the whole configuration:

* ``IMGTRANS_CELERY_BROKER`` — the broker; default ``IMGTRANS_REDIS_URL`` (the Redis the intake already uses),
  else ``redis://127.0.0.1:6379/0``. Celery's keys (``dagster``, ``gpu``, ``_kombu.*``, ``unacked*``) do not
  collide with the intake's ``imgtrans:*`` keys, but a separate database number (``…/1``) keeps them apart.
* ``IMGTRANS_CELERY_BACKEND`` — the result backend; default: the broker URL. It must be shared (Redis, not
  Celery's ``rpc://``): the daemon's run monitoring asks it for the state of every run's task, and with
  ``rpc://`` only the process that sent a task can see its state, so monitoring would fail every run.
* ``IMGTRANS_CELERY_QUEUE`` — the queue a run goes to when it has no ``dagster-celery/queue`` tag (``dagster``).
"""

from __future__ import annotations

import os
from typing import Any

DEFAULT_QUEUE = "dagster"
GPU_QUEUE = "gpu"
QUEUE_TAG = "dagster-celery/queue"  # run tag (run launcher) or op tag (celery executor) naming the queue
FALLBACK_REDIS_URL = "redis://127.0.0.1:6379/0"

# Run tags the workers write on every run they execute (see ``scaleout.app``): which worker process ran it and
# whether the engines were already loaded there.
WORKER_TAG = "imgtrans/celery_worker"
WORKER_PID_TAG = "imgtrans/celery_worker_pid"
ENGINES_LOADED_TAG = "imgtrans/engines_loaded"  # engines this run had to load (0 = the worker was warm)
ENGINES_CACHED_TAG = "imgtrans/engines_cached"  # engines cached in that process after the run
TASK_SECONDS_TAG = "imgtrans/celery_task_seconds"


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def broker_url() -> str:
    """The broker: IMGTRANS_CELERY_BROKER, else the intake's IMGTRANS_REDIS_URL, else local Redis."""
    return _env("IMGTRANS_CELERY_BROKER") or _env("IMGTRANS_REDIS_URL") or FALLBACK_REDIS_URL


def backend_url() -> str:
    """The result backend: IMGTRANS_CELERY_BACKEND, else the broker URL (a Redis URL works as both)."""
    return _env("IMGTRANS_CELERY_BACKEND") or broker_url()


def default_queue() -> str:
    return _env("IMGTRANS_CELERY_QUEUE") or DEFAULT_QUEUE


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
    return int(_env("IMGTRANS_WORKER_MAX_MEMORY_MIB") or 1400)
