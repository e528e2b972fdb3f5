"""One deployment's monitoring state: cached status snapshots, health checks and the Prometheus registry.

The web app (``imgtrans_pipeline.web``) serves a :class:`Monitor`; ``imgtrans metrics-server`` builds one with
:meth:`Monitor.for_instance` from what it read (Dagster instance, intake settings, artifact store).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from .collect import (
    DEFAULT_MIN_QUALITY,
    DEFAULT_WINDOW_S,
    StatusSnapshot,
    check_health,
    collect_status,
    monitoring_client,
)
from .prometheus import SnapshotCollector
from .quality import QualityScores

Health = tuple[bool, dict[str, str]]


class Monitor:
    """Snapshots at most ``cache_seconds`` old (shared by ``/metrics`` and ``/status``), health, and a registry.

    ``collect`` returns a fresh snapshot and ``health`` the ``(healthy, checks)`` pair. ``collectors`` are more
    prometheus_client collectors for the same registry (e.g. :class:`~.quality.QualityScores`).
    """

    def __init__(self, collect: Callable[[], StatusSnapshot], health: Callable[[], Health], *,
                 cache_seconds: float = 5.0, collectors: tuple[Any, ...] = ()) -> None:
        if cache_seconds < 0:
            raise ValueError("cache_seconds must not be negative")
        self._collect = collect
        self._health = health
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, StatusSnapshot] | None = None
        # A registry of our own, not prometheus_client's global REGISTRY: no process/platform collectors of the
        # host process and no state shared between Monitors (tests build several in one process).
        self.registry = CollectorRegistry()
        self.registry.register(SnapshotCollector(self.snapshot))
        for collector in collectors:
            self.registry.register(collector)

    @classmethod
    def for_instance(cls, instance: Any, intake_settings: Any | None, *, store: Any | None = None,
                     window_s: float = DEFAULT_WINDOW_S, cache_seconds: float = 5.0,
                     quality_scores: bool = True, count_existing_scores: bool = False,
                     min_quality: float = DEFAULT_MIN_QUALITY) -> Monitor:
        """Over a Dagster instance (None: only Redis is reported), the Redis intake (None: not configured) and the
        artifact store holding ``meta.json`` (None: no stage timings). One Redis client is reused across scrapes.
        ``quality_scores`` adds the ``imgtrans_quality_score`` histogram (see :mod:`.quality`)."""
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        client = monitoring_client(intake_settings) if intake_settings is not None else None
        collectors: tuple[Any, ...] = ()
        if quality_scores and instance is not None:
            scores = QualityScores(instance, count_existing=count_existing_scores)
            scores.poll()  # sets the cursor now, so images rendered before the first scrape count too
            collectors = (scores,)
        return cls(
            lambda: collect_status(instance, intake_settings, window_s=window_s, store=store, redis_client=client,
                                   min_quality=min_quality),
            lambda: check_health(instance, intake_settings, redis_client=client),
            cache_seconds=cache_seconds, collectors=collectors)

    def snapshot(self) -> StatusSnapshot:
        """A snapshot at most ``cache_seconds`` old; concurrent requests share one collection."""
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.cache_seconds:
                return self._cached[1]
            snapshot = self._collect()
            self._cached = (time.monotonic(), snapshot)
            return snapshot

    def health(self) -> Health:
        return self._health()
