"""Scale-out on Celery: runs go to workers over the project's Redis broker (see docs/scale-out.md).

``launcher.ImgtransCeleryRunLauncher`` is the instance's run launcher (``dagster.celery.yaml``); ``app`` is the
Celery app the workers start (``dagster-celery worker start -A imgtrans_pipeline.scaleout.app``); ``settings``
holds the broker/backend variables both read. Nothing here is imported unless the instance or a worker asks for it,
so dagster-celery is needed only where scale-out is used.
"""
