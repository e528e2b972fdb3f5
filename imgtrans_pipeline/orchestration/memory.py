"""Memory between runs executed one after another in one process (the CLI, a warm run worker)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

logger = logging.getLogger(__name__)


def _glibc_malloc_trim() -> object | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return getattr(libc, "malloc_trim", None)
    except OSError:
        return None


_MALLOC_TRIM = _glibc_malloc_trim()


def release_run_memory() -> int:
    """Collect the garbage a finished run left in reference cycles and give freed heap back to the OS; returns the
    number of objects the collector freed.

    Why explicitly: a run's images stay reachable from cycles among Dagster's step contexts and events until the
    run is over, and the generational collector, which counts objects rather than bytes, reaches them late.
    Measured (benchmarks, batched/8, 10 runs of 8 requests in one process): RSS grew run after run to 1.7 GiB
    without, and levelled off at ~1.2 GiB with a collection after each run; one collection costs ~0.1 s. glibc
    keeps freed image buffers in its arenas (RSS still crept to ~1.5 GiB over 25 runs); ``malloc_trim(0)`` hands
    them back (no-op where the C library is not glibc).
    """
    freed = gc.collect()
    if _MALLOC_TRIM is not None:
        try:
            _MALLOC_TRIM(0)  # type: ignore[operator]
        except Exception:  # never let memory housekeeping fail a run
            logger.debug("malloc_trim failed", exc_info=True)
    return freed
