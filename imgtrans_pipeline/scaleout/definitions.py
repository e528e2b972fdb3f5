"""A code location for step-level scale-out: the project's definitions plus ``translate_images_celery_steps``.

Point a workspace at it (``module_name: imgtrans_pipeline.scaleout.definitions``) on the webserver/daemon host
and on every worker, with the default run launcher (``dagster.postgres.yaml``). Kept apart from
``orchestration.definitions`` so that the main code location does not need dagster-celery.
"""

from __future__ import annotations

from dagster import Definitions

from ..orchestration.definitions import build_definitions
from .jobs import translate_images_celery_steps

defs = Definitions.merge(build_definitions(), Definitions(jobs=[translate_images_celery_steps]))
