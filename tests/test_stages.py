"""The stage functions over a batch: requests worked on in parallel threads give the same results as one at a time,
and a request that fails in one thread fails alone."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from imgtrans_pipeline import stages
from imgtrans_pipeline.core.config import Settings
from imgtrans_pipeline.core.request import parse_request
from imgtrans_pipeline.core.types import OcrResult, SourceImage
from imgtrans_pipeline.engines.ocr import run_ocr
from imgtrans_pipeline.storage import create_artifact_store
from tests.imagegen import text_image

LINES = [["限时特价 买一送一"], ["天然棉麻面料"], ["透气舒适 夏季新款"], ["包邮 七天无理由退换"]]


def _items(count: int) -> list[stages.WorkItem]:
    items = []
    for index in range(count):
        image = text_image(LINES[index % len(LINES)], width=420, height=160, font_size=40, seed=index)
        request = parse_request({"request_id": f"req-{index}", "image_url": f"file:///tmp/{index}.png",
                                 "source_lang": "zh", "target_lang": "en"})
        item = stages.WorkItem(request=request)
        item.source = SourceImage(pixels=image.pixels, content_hash=f"{index:064d}", source_format="png",
                                  byte_size=0, png_bytes=b"")
        items.append(item)
    return items


def test_ocr_stage_in_parallel_threads_matches_one_at_a_time(tmp_path: Path, ocr_engine):
    store = create_artifact_store(tmp_path)
    threads_seen: set[str] = set()

    def recognize(pixels: np.ndarray, lang: str) -> OcrResult:
        threads_seen.add(threading.current_thread().name)
        if pixels.shape[0] == 1:
            raise ValueError("a broken image")
        return run_ocr(ocr_engine, pixels, lang)

    sequential, parallel = _items(4), _items(4)
    parallel[2].source.pixels = np.zeros((1, 1, 3), dtype=np.uint8)  # type: ignore[union-attr]
    sequential[2].source.pixels = np.zeros((1, 1, 3), dtype=np.uint8)  # type: ignore[union-attr]

    stages.ocr_stage(sequential, recognize, store, threads=1)
    one_thread = set(threads_seen)
    threads_seen.clear()
    stages.ocr_stage(parallel, recognize, store, threads=2)

    assert one_thread == {threading.current_thread().name}
    assert len(threads_seen) == 2 and all(name.startswith("imgtrans-ocr") for name in threads_seen)
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


def test_failed_or_reused_items_are_skipped_by_every_thread(tmp_path: Path):
    store = create_artifact_store(tmp_path)
    items = _items(3)
    items[0].failure = {"stage": "download", "reason": "404", "transient": False}
    items[1].reused_from = "earlier-request"
    calls: list[str] = []

    def recognize(pixels: np.ndarray, lang: str) -> OcrResult:
        calls.append(lang)
        return OcrResult(regions=[], blocks=[], engine="test")

    stages.ocr_stage(items, recognize, store, threads=4)
    assert len(calls) == 1 and items[2].ocr is not None and items[0].ocr is None and items[1].ocr is None


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
    settings = Settings.from_env()
    cores = __import__("os").cpu_count() or 1
    expected_items = item_threads if item_threads is not None else min(cores, 4)
    assert settings.item_threads == expected_items
    assert settings.ocr_threads == (ocr_threads if ocr_threads is not None else max(1, cores // expected_items))
    assert stages.default_item_threads() == expected_items
