"""Memory between runs executed one after another in one process (the CLI, a warm run worker)."""

from __future__ import annotations

import gc


def release_run_memory() -> int:
    """Collect the garbage a finished run left in reference cycles; returns the number of objects freed.

    Why explicitly: a run's images stay reachable from cycles among Dagster's step contexts and events until the
    run is over, and the generational collector, which counts objects rather than bytes, reaches them late.
    Measured (benchmarks, batched/8, 10 runs of 8 requests in one process): RSS grew run after run to 1.7 GiB
    without, and levelled off at ~1.2 GiB with a collection after each run; one collection costs ~0.1 s.
    """
    return gc.collect()
