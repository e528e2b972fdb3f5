"""One function per pipeline stage, each over a batch of work items.

These are the only place where stage logic lives: the Dagster ops are thin wrappers around them, the CLI runs them
through the Dagster job, and the benchmark's bare loop calls them directly. Each function isolates failures per
request: a bad image marks its own item failed (with stage and reason) and the rest of the batch goes on.
Artifacts are written to the store as soon as a stage produces them, so a failed request still leaves evidence.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import PIPELINE_VERSION, __version__
from .core.config import Settings
from .core.errors import PipelineError
from .core.languages import AUTO, needs_translation
from .core.logs import log_event
from .core.request import TranslationRequest
from .core.types import InpaintResult, OcrResult, RenderedImage, SourceImage, TranslationResult
from .engines.inpaint.mask import build_mask
from .storage import get_json, put_json
from .storage.base import ArtifactStore

logger = logging.getLogger(__name__)

RESULT_CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
RESULT_EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


@dataclass
class WorkItem:
    """Everything known about one request as it moves through the stages."""

    request: TranslationRequest
    source: SourceImage | None = None
    ocr: OcrResult | None = None
    source_lang: str | None = None  # resolved language (request's, or detected by OCR when it said 'auto')
    translation: TranslationResult | None = None
    inpainted: InpaintResult | None = None
    rendered: RenderedImage | None = None
    failure: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    engines: dict[str, str] = field(default_factory=dict)
    result_uri: str | None = None
    reused_from: str | None = None  # request whose stored result answered this one (dedupe)

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def needs_work(self) -> bool:
        """Still to be computed: not failed, and not answered from an earlier identical request."""
        return self.failure is None and self.reused_from is None

    @property
    def failed_transiently(self) -> bool:
        return self.failure is not None and bool(self.failure.get("transient"))

    def fail(self, error: BaseException, stage: str) -> None:
        if isinstance(error, PipelineError):
            info = error.to_dict()
            info["stage"] = error.stage if error.stage != "pipeline" else stage
        else:
            # An unexpected exception is a bug or an engine crash: record it permanently with its type, and log
            # the traceback so it can be fixed; retrying the same input would crash the same way.
            info = {"stage": stage, "error": type(error).__name__, "reason": f"{type(error).__name__}: {error}",
                    "transient": False}
            logger.error("unexpected error in %s for %s:\n%s", stage, self.request_id, traceback.format_exc())
        self.failure = info
        log_event(logger, logging.WARNING, "request.failed", request_id=self.request_id, stage=info["stage"],
                  reason=info["reason"], transient=info["transient"])


def new_items(requests: list[TranslationRequest]) -> list[WorkItem]:
    return [WorkItem(request=r) for r in requests]


@contextmanager
def _timed(item: WorkItem, stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        item.timings[stage] = item.timings.get(stage, 0.0) + time.perf_counter() - start


def default_item_threads() -> int:
    """Requests a stage works on at once inside one batch: ``IMGTRANS_ITEM_THREADS``, default the CPU count
    capped at 4 (see ``core.config``)."""
    return Settings.from_env().item_threads


def _each_ok(items: list[WorkItem], stage: str, work: Callable[[WorkItem], None], threads: int | None = None) -> None:
    """Run ``work`` on every item still to be computed, recording failures per item.

    Items run in up to ``threads`` threads. Why threads pay off: the heavy calls (onnxruntime, OpenCV,
    CTranslate2, Pillow's encoders, file and network I/O) release the GIL, and two requests each on one engine
    thread use two cores better than one request on two engine threads (measured: 1.43x the sequential loop's
    throughput on 2 cores, see README "Performance"). Engines are shared between the threads; each is
    thread-safe or locks what is not (documented on the engine).
    """
    todo = [item for item in items if item.needs_work]
    threads = default_item_threads() if threads is None else threads

    def one(item: WorkItem) -> None:
        with _timed(item, stage):
            try:
                work(item)
            except Exception as error:
                item.fail(error, stage)

    if threads <= 1 or len(todo) <= 1:
        for item in todo:
            one(item)
        return
    with ThreadPoolExecutor(max_workers=min(threads, len(todo)), thread_name_prefix=f"imgtrans-{stage}") as pool:
        # list() re-raises nothing: ``one`` records every exception on its item.
        list(pool.map(one, todo))


# --- stages ---------------------------------------------------------------------------------------------------


def check_languages(items: list[WorkItem], supports: Callable[[str, str], None]) -> None:
    """Fail requests whose language pair no engine handles before anything is downloaded.

    ``supports(source, target)`` raises ``UnsupportedLanguagePair``; 'auto' sources are checked after OCR.
    """

    def check(item: WorkItem) -> None:
        if item.request.source_lang != AUTO:
            supports(item.request.source_lang, item.request.target_lang)

    _each_ok(items, "request", check, threads=1)


def fetch_stage(items: list[WorkItem], fetch_images: Callable[[list[str]], list[Any]], store: ArtifactStore) -> None:
    """Download and normalise every image concurrently; store ``source.png``."""
    pending = [item for item in items if item.ok]
    if not pending:
        return
    start = time.perf_counter()
    results = fetch_images([item.request.image_url for item in pending])
    elapsed = time.perf_counter() - start
    for item, result in zip(pending, results, strict=True):
        # Downloads overlap, so each request is charged the batch's wall time divided evenly.
        item.timings["download"] = elapsed / len(pending)
        if isinstance(result, BaseException):
            item.fail(result, "download")
            continue
        item.source = result
        try:
            item.artifacts["source.png"] = store.put(item.request_id, "source.png", result.png_bytes, "image/png")
        except Exception as error:
            item.fail(error, "publish")
            continue
        log_event(logger, logging.INFO, "download.done", request_id=item.request_id, width=result.width,
                  height=result.height, format=result.source_format, hash=result.content_hash[:12])


def dedupe_key(item: WorkItem, variant: str) -> tuple[str, str]:
    """Where the index entry for this item's (image, languages, pipeline version, output variant) lives.

    ``variant`` covers what else changes the output: the translation engine/model (from the caller), and the
    request's glossary and output options (added here).
    """
    assert item.source is not None
    options = item.request.options
    digest = hashlib.sha256(json.dumps(
        [variant, sorted(options.glossary.items()), options.output_format, options.jpeg_quality],
        ensure_ascii=False).encode()).hexdigest()[:16]
    return index_folder(item.source.content_hash), index_name(item.request.source_lang, item.request.target_lang,
                                                              PIPELINE_VERSION, digest)


def index_folder(content_hash: str) -> str:
    return f"hash-{content_hash}"


def index_name(source_lang: str, target_lang: str, pipeline_version: str, digest: str) -> str:
    """``<source>.<target>.v<version>.<digest>.json``: dots, because language codes may contain dashes."""
    return f"{source_lang}.{target_lang}.v{pipeline_version}.{digest}.json"


def parse_index_name(name: str) -> tuple[str, str, str] | None:
    """(source, target, pipeline version) of an index entry name, or None for anything else."""
    parts = name.split(".")
    if len(parts) != 5 or parts[-1] != "json" or not parts[2].startswith("v"):
        return None
    return parts[0], parts[1], parts[2][1:]


def reuse_stage(items: list[WorkItem], store: ArtifactStore, variant: str) -> None:
    """Answer requests whose identical image + languages + pipeline version already succeeded from the stored
    artifacts, without recomputing (seed 002's dedupe by image hash), unless the request says ``force``."""
    for item in items:
        if not item.needs_work or item.source is None or item.request.options.force:
            continue
        folder, name = dedupe_key(item, variant)
        try:
            if not store.exists(folder, name):
                continue
            prior = get_json(store, folder, name)
            if prior.get("request_id") == item.request_id or not prior.get("result"):
                continue  # re-running the very same request recomputes it
        except Exception as error:  # a broken index entry only costs a recomputation
            logger.warning("dedupe index unreadable for %s: %s", item.request_id, error)
            continue
        item.reused_from = prior["request_id"]
        item.result_uri = prior["result"]
        item.artifacts["result"] = prior["result"]
        item.source_lang = prior.get("source_lang")
        log_event(logger, logging.INFO, "dedupe.hit", request_id=item.request_id, reused_from=item.reused_from)


def record_results(items: list[WorkItem], store: ArtifactStore, variant: str) -> None:
    """Index each freshly computed success by its dedupe key, so identical later requests reuse it."""
    for item in items:
        if not item.needs_work or item.source is None or item.result_uri is None:
            continue
        folder, name = dedupe_key(item, variant)
        try:
            put_json(store, folder, name, {"request_id": item.request_id, "result": item.result_uri,
                                           "meta": item.artifacts.get("meta.json"), "source_lang": item.source_lang,
                                           "target_lang": item.request.target_lang,
                                           "pipeline_version": PIPELINE_VERSION,
                                           "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        except Exception as error:  # the result itself is stored; only reuse is lost
            logger.warning("could not record dedupe entry for %s: %s", item.request_id, error)


def ocr_stage(items: list[WorkItem], recognize: Callable[[np.ndarray, str], OcrResult], store: ArtifactStore,
              threads: int | None = None) -> None:
    """OCR each image (tall images are sliced inside ``recognize``); store ``ocr.json``."""

    def work(item: WorkItem) -> None:
        assert item.source is not None
        result = recognize(item.source.pixels, item.request.source_lang)
        item.source_lang = item.request.source_lang if item.request.source_lang != AUTO else result.detected_lang
        if item.source_lang is not None:
            keep = [b for b in result.blocks if not needs_translation(b.text, item.source_lang)]
            result.blocks = [b for b in result.blocks if needs_translation(b.text, item.source_lang)]
            result.kept_blocks = keep
        item.ocr = result
        item.engines["ocr"] = result.engine
        item.artifacts["ocr.json"] = put_json(store, item.request_id, "ocr.json", result.to_dict())
        log_event(logger, logging.INFO, "ocr.done", request_id=item.request_id, regions=len(result.regions),
                  blocks=len(result.blocks), kept=len(result.kept_blocks), dropped=result.dropped_low_confidence,
                  lang=item.source_lang)

    _each_ok(items, "ocr", work, threads)


def translate_stage(
    items: list[WorkItem],
    translate: Callable[[list[str], str, str, dict[str, str]], TranslationResult],
    store: ArtifactStore,
    threads: int | None = None,
) -> None:
    """Translate all of one image's text blocks in one batched call; store ``translation.json``."""

    def work(item: WorkItem) -> None:
        assert item.ocr is not None
        texts = [block.text for block in item.ocr.blocks]
        target = item.request.target_lang
        if not texts or item.source_lang is None:
            # No text found: nothing to translate, the result is the source image unchanged.
            result = TranslationResult([], [], item.source_lang or AUTO, target, engine="none", model="")
        else:
            result = translate(texts, item.source_lang, target, item.request.options.glossary)
        item.translation = result
        item.engines["translate"] = f"{result.engine}:{result.model}" if result.model else result.engine
        item.artifacts["translation.json"] = put_json(store, item.request_id, "translation.json", result.to_dict())
        log_event(logger, logging.INFO, "translate.done", request_id=item.request_id, texts=len(texts),
                  cache_hits=result.cache_hits, pair=f"{item.source_lang}->{target}")

    _each_ok(items, "translate", work, threads)


def inpaint_stage(
    items: list[WorkItem],
    inpaint: Callable[[np.ndarray, np.ndarray], np.ndarray],
    engine_name: str,
    store: ArtifactStore,
    encode_png: Callable[[np.ndarray], bytes],
    threads: int | None = None,
) -> None:
    """Erase the OCR'd text: mask from the (dilated) polygons, then the inpainting engine; store both images."""

    def work(item: WorkItem) -> None:
        assert item.source is not None and item.ocr is not None
        pixels = item.source.pixels
        polygons = [region.polygon for region in item.ocr.translatable_regions()]
        mask = build_mask(pixels.shape[:2], polygons, image=pixels)
        erased = inpaint(pixels, mask) if mask.any() else pixels.copy()
        item.inpainted = InpaintResult(mask=mask, pixels=erased, engine=engine_name)
        item.engines["inpaint"] = engine_name
        item.artifacts["mask.png"] = store.put(item.request_id, "mask.png", encode_png(mask), "image/png")
        item.artifacts["inpainted.png"] = store.put(item.request_id, "inpainted.png", encode_png(erased), "image/png")

    _each_ok(items, "inpaint", work, threads)


def merge_branches(
    translated: list[WorkItem], inpainted: list[WorkItem]
) -> list[WorkItem]:
    """Join the translate and inpaint branches (which ran on copies of the same items) back into one list."""
    by_id = {item.request_id: item for item in inpainted}
    merged: list[WorkItem] = []
    for item in translated:
        other = by_id[item.request_id]
        item.inpainted = other.inpainted
        item.artifacts.update(other.artifacts)
        item.engines.update(other.engines)
        for stage, seconds in other.timings.items():
            item.timings.setdefault(stage, seconds)
        if item.failure is None and other.failure is not None:
            item.failure = other.failure
        merged.append(item)
    return merged


def render_stage(
    items: list[WorkItem],
    render: Callable[..., RenderedImage],
    store: ArtifactStore,
    threads: int | None = None,
) -> None:
    """Draw each translation into its block; store ``result.<ext>``."""

    def work(item: WorkItem) -> None:
        assert item.source is not None and item.ocr is not None
        assert item.translation is not None and item.inpainted is not None
        options = item.request.options
        rendered = render(
            item.inpainted.pixels,
            item.source.pixels,
            item.ocr.blocks,
            item.translation.translations,
            item.request.target_lang,
            output_format=options.output_format,
            jpeg_quality=options.jpeg_quality,
        )
        item.rendered = rendered
        name = f"result.{RESULT_EXTENSIONS[rendered.format]}"
        item.result_uri = store.put(item.request_id, name, rendered.encoded, RESULT_CONTENT_TYPES[rendered.format])
        item.artifacts[name] = item.result_uri

    _each_ok(items, "render", work, threads)


def build_meta(item: WorkItem, engine_versions: dict[str, str]) -> dict[str, Any]:
    """The per-request record: status, hash, timings per stage, engines and versions, artifacts."""
    meta: dict[str, Any] = {
        "request": item.request.to_dict(),
        "status": "succeeded" if item.ok else "failed",
        "pipeline_version": PIPELINE_VERSION,
        "package_version": __version__,
        "content_hash": item.source.content_hash if item.source else None,
        "source_lang": item.source_lang,
        "timings_s": {k: round(v, 4) for k, v in item.timings.items()},
        "engines": dict(item.engines),
        "engine_versions": dict(engine_versions),
        "artifacts": dict(item.artifacts),
        "result": item.result_uri,
        "reused_from": item.reused_from,
        "error": item.failure,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if item.source is not None:
        meta["image"] = {"width": item.source.width, "height": item.source.height,
                         "source_format": item.source.source_format, "bytes": item.source.byte_size}
    if item.ocr is not None:
        meta["ocr"] = {"regions": len(item.ocr.regions), "blocks": len(item.ocr.blocks),
                       "kept_blocks": len(item.ocr.kept_blocks),
                       "dropped_low_confidence": item.ocr.dropped_low_confidence, "slices": item.ocr.slices}
    if item.rendered is not None:
        meta["render"] = {"format": item.rendered.format, "font": item.rendered.font,
                          "blocks_drawn": item.rendered.blocks_drawn, **item.rendered.extra}
    return meta


def publish_stage(items: list[WorkItem], store: ArtifactStore, engine_versions: dict[str, str]) -> None:
    """Write ``meta.json`` for every request, failed ones included, so each request ends with a record."""
    for item in items:
        start = time.perf_counter()
        try:
            item.timings["publish"] = item.timings.get("publish", 0.0)
            meta = build_meta(item, engine_versions)
            item.artifacts["meta.json"] = store.uri(item.request_id, "meta.json")
            meta["artifacts"] = dict(item.artifacts)
            put_json(store, item.request_id, "meta.json", meta)
        except Exception as error:
            if item.ok:
                item.fail(error, "publish")
        finally:
            item.timings["publish"] += time.perf_counter() - start
        log_event(logger, logging.INFO if item.ok else logging.WARNING, "request.finished",
                  request_id=item.request_id, status="succeeded" if item.ok else "failed", result=item.result_uri)
