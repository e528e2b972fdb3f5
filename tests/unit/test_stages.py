"""The stage runner over a batch: requests worked on in parallel threads give the same results as one at a time,
a request that fails fails alone and with the stage it failed in, GPU engines get one request at a time."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imgtrans_pipeline.core.errors import StorageError
from imgtrans_pipeline.core.request import parse_request
from imgtrans_pipeline.core.settings import Settings
from imgtrans_pipeline.core.types import OcrResult, SourceImage
from imgtrans_pipeline.engines.ocr import run_ocr
from imgtrans_pipeline.pipeline import Engines, StageRunner, WorkItem, failure_summary
from imgtrans_pipeline.storage import create_artifact_store
from imgtrans_pipeline.storage.base import ArtifactStore
from tests.support.imagegen import text_image

LINES = [["限时特价 买一送一"], ["天然棉麻面料"], ["透气舒适 夏季新款"], ["包邮 七天无理由退换"]]


def _items(count: int) -> list[WorkItem]:
    items = []
    for index in range(count):
        image = text_image(LINES[index % len(LINES)], width=420, height=160, font_size=40, seed=index)
        request = parse_request({"request_id": f"req-{index}", "image_url": f"file:///tmp/{index}.png",
                                 "source_lang": "zh", "target_lang": "en"})
        item = WorkItem(request=request)
        item.source = SourceImage(pixels=image.pixels, content_hash=f"{index:064d}", source_format="png",
                                  byte_size=0, png_bytes=b"")
        items.append(item)
    return items


class CountingOcr:
    """The real OCR engine, recording the threads it is called from; a 1x1 image is "broken"."""

    def __init__(self, engine: Any, gpu: bool = False) -> None:
        self.engine, self.gpu, self.threads = engine, gpu, set[str]()

    def recognize(self, pixels: np.ndarray, lang: str) -> OcrResult:
        self.threads.add(threading.current_thread().name)
        if pixels.shape[0] == 1:
            raise ValueError("a broken image")
        return run_ocr(self.engine, pixels, lang)

    def check_language(self, lang: str) -> None: ...

    def version(self) -> str:
        return self.engine.version()

    def on_gpu(self) -> bool:
        return self.gpu


def _engines(store: ArtifactStore, ocr: Any) -> Engines:
    def unused() -> Any:
        raise AssertionError("this stage must not load this engine")

    return Engines(fetcher=unused, ocr=lambda: ocr, translation=unused, inpainter=unused, renderer=unused,
                   store=lambda: store)


def test_ocr_in_parallel_threads_matches_one_at_a_time(tmp_path: Path, ocr_engine):
    store = create_artifact_store(tmp_path)
    sequential, parallel = _items(4), _items(4)
    for items in (sequential, parallel):
        items[2].source.pixels = np.zeros((1, 1, 3), dtype=np.uint8)  # type: ignore[union-attr]
    one = CountingOcr(ocr_engine)
    StageRunner(_engines(store, one), item_threads=1).run("ocr", sequential)
    two = CountingOcr(ocr_engine)
    StageRunner(_engines(store, two), item_threads=2).run("ocr", parallel)

    assert one.threads == {threading.current_thread().name}
    assert len(two.threads) == 2 and all(name.startswith("imgtrans-ocr") for name in two.threads)
    for seq, par in zip(sequential, parallel, strict=True):
        assert seq.ok == par.ok
        if seq.ok:
            assert [b.text for b in seq.ocr.blocks] == [b.text for b in par.ocr.blocks]  # type: ignore[union-attr]
            assert par.timings["ocr"] > 0 and "ocr.json" in par.artifacts
    # The broken request failed alone, with its stage and reason; the others were read.
    assert parallel[2].failure is not None and parallel[2].failure["stage"] == "ocr"
    assert "a broken image" in parallel[2].failure["reason"]
    assert [item.ok for item in parallel] == [True, True, False, True]
    assert "买一送一" in "".join(b.text for b in parallel[0].ocr.blocks)  # type: ignore[union-attr]
    summary = failure_summary(parallel)
    assert summary is not None and summary.startswith("1 of 4 request(s) failed:") and "req-2: [ocr]" in summary


class OrderedOcr(CountingOcr):
    """The real OCR engine, recording the size of each image in the order the calls start."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.started: list[tuple[int, ...]] = []
        self._lock = threading.Lock()

    def recognize(self, pixels: np.ndarray, lang: str) -> OcrResult:
        with self._lock:
            self.started.append(pixels.shape[:2])
        return super().recognize(pixels, lang)


def test_parallel_threads_start_the_largest_image_first_and_keep_the_batch_order(tmp_path: Path, ocr_engine):
    items = _items(4)
    big = text_image(["限时特价 买一送一", "天然棉麻面料", "透气舒适 夏季新款"], width=420, height=900, font_size=40)
    items[3].source.pixels = big.pixels  # type: ignore[union-attr]  # the batch's tall page comes last
    ocr = OrderedOcr(ocr_engine)
    StageRunner(_engines(create_artifact_store(tmp_path), ocr), item_threads=2).run("ocr", items)

    assert ocr.started[0] == big.pixels.shape[:2]  # not left until a thread frees up at the end
    assert sorted(ocr.started) == sorted(item.source.pixels.shape[:2] for item in items)  # type: ignore[union-attr]
    assert [item.request_id for item in items] == ["req-0", "req-1", "req-2", "req-3"]
    assert all(item.ok for item in items)
    assert "夏季新款" in "".join(b.text for b in items[3].ocr.blocks)  # type: ignore[union-attr]


def test_a_gpu_engine_gets_one_request_at_a_time(tmp_path: Path, ocr_engine):
    gpu = CountingOcr(ocr_engine, gpu=True)
    runner = StageRunner(_engines(create_artifact_store(tmp_path), gpu), item_threads=4)
    assert runner.threads_for("ocr") == 1 and runner.threads_for("translate") == 4
    runner.run("ocr", _items(3))
    assert gpu.threads == {threading.current_thread().name}


def test_failed_or_reused_items_are_skipped(tmp_path: Path):
    items = _items(3)
    items[0].failure = {"stage": "download", "reason": "404", "transient": False}
    items[1].reused_from = "earlier-request"
    calls: list[str] = []

    class Empty(CountingOcr):
        def recognize(self, pixels: np.ndarray, lang: str) -> OcrResult:
            calls.append(lang)
            return OcrResult(regions=[], blocks=[], engine="test")

    StageRunner(_engines(create_artifact_store(tmp_path), Empty(None)), item_threads=4).run("ocr", items)
    assert len(calls) == 1 and items[2].ocr is not None and items[0].ocr is None and items[1].ocr is None


class FlakyStore:
    """A real local store whose writes of one artifact fail like a full disk / throttled S3 (transient)."""

    def __init__(self, root: Path, failing: str) -> None:
        self.inner, self.failing = create_artifact_store(root), failing

    def put(self, request_id: str, name: str, data: bytes, content_type: str | None = None) -> str:
        if name == self.failing:
            raise StorageError(f"cannot write {request_id}/{name}: No space left on device", transient=True)
        return self.inner.put(request_id, name, data, content_type)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_storage_error_is_the_failure_of_the_stage_it_happened_in(tmp_path: Path, ocr_engine):
    """StorageError's class says "publish"; written while OCR ran, it is OCR's failure, so the OCR step's retry
    sees it (and a transient one stays transient)."""
    items = _items(1)
    StageRunner(_engines(FlakyStore(tmp_path, "ocr.json"), CountingOcr(ocr_engine))).run("ocr", items)
    failure = items[0].failure
    assert failure is not None
    assert (failure["stage"], failure["error"], failure["transient"]) == ("ocr", "StorageError", True)
    assert "No space left" in failure["reason"]


def test_versions_survive_an_engine_whose_version_cannot_be_read(tmp_path: Path, ocr_engine):
    def broken() -> Any:
        raise RuntimeError("model file vanished")

    engines = Engines(fetcher=broken, ocr=lambda: CountingOcr(ocr_engine), translation=broken, inpainter=broken,
                      renderer=broken, store=lambda: create_artifact_store(tmp_path))
    versions = engines.versions()
    assert versions["ocr"].startswith("rapidocr")
    assert versions["translate"].startswith("unknown (RuntimeError: model file vanished")


@pytest.mark.parametrize(("env", "item_threads", "ocr_threads"), [
    ({}, None, None),
    ({"IMGTRANS_ITEM_THREADS": "1"}, 1, None),
    ({"IMGTRANS_ITEM_THREADS": "2", "IMGTRANS_OCR_THREADS": "3"}, 2, 3),
])
def test_thread_settings_default_to_about_one_thread_per_core(monkeypatch, env, item_threads, ocr_threads):
    for name in ("IMGTRANS_ITEM_THREADS", "IMGTRANS_OCR_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    cores = os.cpu_count() or 1
    expected_items = item_threads if item_threads is not None else min(cores, 4)
    assert settings.runtime.item_threads == expected_items
    assert settings.ocr.threads == (ocr_threads if ocr_threads is not None else max(1, cores // expected_items))


def test_a_stage_runner_puts_numpy_blas_on_one_thread(tmp_path: Path) -> None:
    """OpenBLAS's spinning threads burned the cores the parallel requests need: once a runner exists, every BLAS
    library loaded in the process runs on one thread."""
    from threadpoolctl import threadpool_info

    StageRunner(_engines(create_artifact_store(tmp_path), None), item_threads=2)
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == 1 for pool in blas)
