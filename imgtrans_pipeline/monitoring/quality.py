"""Per-image quality scores as a cumulative Prometheus histogram, read from the Dagster event log.

The render step records each rendered image as an ``AssetMaterialization`` of ``imgtrans/rendered_image``; when
that materialization carries a numeric ``quality_score`` metadata entry, it is observed into
``imgtrans_quality_score`` (buckets 0.1 ... 1.0).

Why a cursor over the event log, and counting from the collector's start:

* Prometheus histograms are cumulative: ``_bucket`` and ``_count`` may only grow (a drop reads as a restart), so
  that ``histogram_quantile(0.5, rate(imgtrans_quality_score_bucket[1h]))`` is meaningful. A histogram recomputed
  from "the last N images" on every scrape would go up and down. Each scrape therefore reads only the
  materializations stored after the last one seen (``after_storage_id``: an indexed query) and adds them.
* The first poll (``Monitor.for_instance`` polls once at start) only sets the cursor to the newest stored
  materialization, so a (re)started server does not count the instance's whole history at once (a large first
  scrape and a false spike in ``rate()``); Prometheus treats the restart as a counter reset.
  ``count_existing=True`` counts what is already stored instead (tests, a fresh instance).
* ``meta.json`` was the alternative source, but finding new files needs a store listing or the run records; the
  event log is ordered and indexed by asset key, and the UI shows the same metadata next to each image.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import Histogram
from prometheus_client.metrics_core import Metric

from ..names import ASSET_PREFIX, RENDERED_IMAGE

logger = logging.getLogger(__name__)


RENDERED_IMAGE_KEY = (ASSET_PREFIX, RENDERED_IMAGE)
QUALITY_METADATA_KEY = "quality_score"
QUALITY_METRIC = "imgtrans_quality_score"
QUALITY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
PAGE = 1000
MAX_EVENTS_PER_SCRAPE = 20_000  # bounds one scrape's work after a burst; the rest is read by the next scrape


def metadata_number(value: Any) -> float | None:
    """A finite number from a metadata entry (``FloatMetadataValue``, ``IntMetadataValue`` or a plain number)."""
    value = getattr(value, "value", value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class QualityScores:
    """A prometheus_client collector: ``imgtrans_quality_score`` fed from new materialization metadata per scrape.

    ``instance`` is a ``DagsterInstance``. Register it in a ``CollectorRegistry`` (``Monitor`` does). Reading
    errors are logged and the histogram keeps its counts: the next scrape resumes from the same cursor.
    """

    def __init__(self, instance: Any, *, asset_key: Iterable[str] = RENDERED_IMAGE_KEY,
                 metadata_key: str = QUALITY_METADATA_KEY, count_existing: bool = False,
                 max_events_per_scrape: int = MAX_EVENTS_PER_SCRAPE) -> None:
        self._instance = instance
        self._asset_key = tuple(asset_key)
        self._metadata_key = metadata_key
        self._max_events = max_events_per_scrape
        self._cursor: int | None = 0 if count_existing else None  # None: not initialised yet
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self.materializations_read = 0  # since start, with or without a score
        # registry=None: this collector owns the histogram and is what gets registered.
        self._histogram = Histogram(QUALITY_METRIC, "Quality score of each rendered image (metadata quality_score "
                                    "of imgtrans/rendered_image materializations), counted since this server "
                                    "started.", buckets=QUALITY_BUCKETS, registry=None)

    def describe(self) -> Iterable[Metric]:
        return self._histogram.describe()

    def collect(self) -> Iterable[Metric]:
        self.poll()
        return self._histogram.collect()

    def poll(self) -> int:
        """Observe the scores of materializations stored since the last poll; returns how many were observed."""
        with self._lock:
            try:
                return self._poll()
            except Exception as exc:  # storage unreachable: keep the counts, retry from the same cursor next time
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("quality scores: reading materializations failed: %s", self.last_error)
                return 0

    def _poll(self) -> int:
        from dagster import AssetKey, AssetRecordsFilter

        key = AssetKey(list(self._asset_key))
        if self._cursor is None:
            newest = self._instance.fetch_materializations(key, limit=1, ascending=False).records
            self._cursor = newest[0].storage_id if newest else 0
            return 0
        observed = 0
        records = self._records_after(AssetRecordsFilter(asset_key=key, after_storage_id=self._cursor))
        for read, record in enumerate(records, 1):
            self._cursor = record.storage_id
            self.materializations_read += 1
            materialization = record.asset_materialization
            score = metadata_number(materialization.metadata.get(self._metadata_key)) if materialization else None
            if score is not None:
                self._histogram.observe(score)
                observed += 1
            if read >= self._max_events:
                break
        self.last_error = None
        return observed

    def _records_after(self, records_filter: Any) -> Iterator[Any]:
        cursor = None
        while True:
            result = self._instance.fetch_materializations(records_filter, limit=PAGE, cursor=cursor,
                                                           ascending=True)
            yield from result.records
            if not result.has_more or not result.records:
                return
            cursor = result.cursor
