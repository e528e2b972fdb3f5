"""The pipeline without Dagster: work items, what each stage does, and the one runner that applies stages.

``items`` (the ``WorkItem`` a request is while it moves through the stages), ``engines`` (the engines a stage
calls, built lazily), ``stages`` (what each stage does for one request), ``runner`` (``StageRunner``: threads, the
GPU wait, failure attribution, versions), ``dedupe`` (identical requests answered from stored results). The
Dagster layer (``orchestration``) and the benchmark both go through ``StageRunner``.
"""

from .engines import Engines
from .items import WorkItem, copy_items, failure_summary, merge_branches, new_items
from .runner import STAGE_SPECS, StageRunner

__all__ = ["STAGE_SPECS", "Engines", "StageRunner", "WorkItem", "copy_items", "failure_summary", "merge_branches",
           "new_items"]
