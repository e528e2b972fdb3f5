"""The stage runner: the one way any caller (Dagster ops and assets, the CLI through the job, the benchmark, a
re-render) applies a stage to a batch of requests.

Given a stage name and items it applies what every stage needs the same way:

* **threads**: the requests of a batch are worked on in up to ``item_threads`` threads (the heavy calls in
  onnxruntime, OpenCV, CTranslate2, Pillow and I/O release the GIL: two requests on one engine thread each use two
  cores better than one request on two threads), but one at a time when the stage's engine runs on a GPU
  (parallel requests would only queue on the device and multiply its memory);
* **the GPU wait**: a GPU stage first waits for free device memory (``engines.gpu``), never starting into an OOM;
* **failure attribution**: an error is recorded on its request with the stage it happened in, whatever its class
  says, so the step that can retry it sees it; one bad request never stops the others;
* **timings** per request and stage, **engine versions** for ``meta.json`` (one unreadable version costs nothing
  else), and the **failure summary** a step reports (``items.failure_summary``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from threadpoolctl import threadpool_limits

from ..names import (
    DOWNLOAD,
    GPU_STAGES,
    INPAINT,
    INSPECT,
    INSPECT_ONLY_SKIPS,
    OCR,
    PUBLISH,
    QUALITY,
    RENDER,
    REQUEST,
    RUN_ORDER,
    TRANSLATE,
)
from . import stages
from .engines import Engines
from .items import WorkItem


@dataclass(frozen=True)
class StageSpec:
    name: str
    work: Callable[[Engines, WorkItem], None] | None  # per request; None for the batch stages
    load: Callable[[Engines], object]  # the engine this stage cannot run without (loaded before any item)
    on_gpu: Callable[[Engines], bool] = lambda engines: False

    @property
    def gpu(self) -> bool:
        return self.name in GPU_STAGES


STAGE_SPECS: dict[str, StageSpec] = {
    DOWNLOAD: StageSpec(DOWNLOAD, None, lambda e: e.fetcher),
    OCR: StageSpec(OCR, stages.ocr, lambda e: e.ocr, on_gpu=lambda e: e.ocr.on_gpu()),
    TRANSLATE: StageSpec(TRANSLATE, stages.translate, lambda e: e.translation),
    INPAINT: StageSpec(INPAINT, stages.inpaint, lambda e: e.inpainter, on_gpu=lambda e: e.inpaint_on_gpu()),
    RENDER: StageSpec(RENDER, stages.render, lambda e: e.renderer),
    QUALITY: StageSpec(QUALITY, stages.assess, lambda e: e.ocr),
    INSPECT: StageSpec(INSPECT, stages.inspect, lambda e: e.inspector),
    PUBLISH: StageSpec(PUBLISH, None, lambda e: e.store),
}


@contextmanager
def _timed(item: WorkItem, stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        item.timings[stage] = item.timings.get(stage, 0.0) + time.perf_counter() - start


def _pixels(item: WorkItem) -> int:
    """Pixels of the request's image, the measure of how long a stage takes on it (0 before it is fetched)."""
    shape = getattr(getattr(item.source, "pixels", None), "shape", ())
    return int(shape[0]) * int(shape[1]) if len(shape) >= 2 else 0


@functools.cache
def single_threaded_blas() -> None:
    """Run numpy's BLAS on one thread, for the whole process (once).

    OpenBLAS gives every matrix product one busy-waiting thread per core. The pipeline's products are small (an
    eraser's least squares, k-means distances) and already run in parallel request threads, where those spinning
    threads only burn the cores the other requests need (benchmarks/README.md, "BLAS threads").
    """
    threadpool_limits(limits=1, user_api="blas")


class StageRunner:
    """Runs stages over batches of ``WorkItem``s with one set of ``Engines``."""

    def __init__(self, engines: Engines, *, item_threads: int = 1, quality_score: bool = True,
                 min_quality: float = 0.6, review_below: float | None = None, inspection: bool = False) -> None:
        self.engines = engines
        self.item_threads = max(1, item_threads)
        self.quality_score = quality_score  # off: results are not scored (item.quality stays None)
        self.min_quality = min_quality
        self.review_below = review_below  # the quality gate (None/0: off): below it a result waits for review
        self.inspection = inspection  # content inspection of every request (inspect-only requests always are)
        single_threaded_blas()

    def prepare(self, stage: str, items: list[WorkItem] | None = None) -> None:
        """Load the stage's engine. A failure here is the step's, not a request's: it raises (the Dagster layer
        fails a permanent one at once and retries a transient one). With ``items``, only when one needs it."""
        if items is not None and not self.wanted(stage, items):
            return
        STAGE_SPECS[stage].load(self.engines)

    def applies(self, stage: str, item: WorkItem) -> bool:
        """Whether ``stage`` works on this request: inspect-only requests skip translating and drawing, and the
        inspection runs when rules are configured or the request asks for it."""
        if item.inspect_only:
            return stage not in INSPECT_ONLY_SKIPS
        return stage != INSPECT or self.inspection

    def wanted(self, stage: str, items: list[WorkItem]) -> bool:
        if stage in (DOWNLOAD, PUBLISH):
            return True
        return any(item.needs_work and self.applies(stage, item) for item in items)

    def threads_for(self, stage: str) -> int:
        spec = STAGE_SPECS[stage]
        return 1 if spec.gpu and spec.on_gpu(self.engines) else self.item_threads

    def run(self, stage: str, items: list[WorkItem]) -> list[WorkItem]:
        """Apply ``stage`` to ``items`` in place (and return them); failures are recorded per request."""
        spec = STAGE_SPECS[stage]
        if not self.wanted(stage, items):
            return items
        self.prepare(stage)
        if stage == DOWNLOAD:
            self._each(REQUEST, items, stages.check_request, threads=1)
            stages.fetch(self.engines, items)
            return items
        if stage == PUBLISH:
            for item in items:
                stages.gate(item, self.review_below)
            stages.publish(self.engines, items, self.engines.versions())
            return items
        if stage == QUALITY and not self.quality_score:
            return items
        if spec.gpu and self.engines.gpu_guard is not None:
            self.engines.gpu_guard.wait(stage)
        assert spec.work is not None
        self._each(stage, items, spec.work, threads=self.threads_for(stage))
        return items

    def run_all(self, items: list[WorkItem]) -> list[WorkItem]:
        """Every stage in order in this process (translate before inpaint): the pipeline without Dagster."""
        for stage in RUN_ORDER:
            self.run(stage, items)
        return items

    def _each(self, stage: str, items: list[WorkItem], work: Callable[[Engines, WorkItem], None], *,
              threads: int) -> None:
        todo = [item for item in items if item.needs_work and self.applies(stage, item)]

        def one(item: WorkItem) -> None:
            with _timed(item, stage):
                try:
                    work(self.engines, item)
                except Exception as error:
                    item.fail(error, stage)

        if threads <= 1 or len(todo) <= 1:
            for item in todo:
                one(item)
            return
        # Largest image first: each thread takes the next request when it is done, and a tall detail page started
        # last would leave the other threads idle until it ends (a batch waits for its slowest request).
        todo.sort(key=_pixels, reverse=True)
        with ThreadPoolExecutor(max_workers=min(threads, len(todo)), thread_name_prefix=f"imgtrans-{stage}") as pool:
            list(pool.map(one, todo))  # ``one`` records every exception on its item
