"""What each stage does, for one request (or, for download and publish, for a batch).

Plain functions over ``Engines`` and ``WorkItem``s, with no threading, retrying or failure bookkeeping: the
``StageRunner`` applies those the same way to every stage. Artifacts are written to the store as soon as a stage
produces them, so a failed request still leaves evidence.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from .. import PIPELINE_VERSION, __version__
from ..core.keep import split_translatable
from ..core.languages import AUTO
from ..core.logs import log_event
from ..core.types import InpaintResult, TranslationResult
from ..engines.inpaint.erase import erase_text
from ..engines.render import encode_image
from ..names import (
    INPAINTED_PNG,
    MASK_PNG,
    META_JSON,
    OCR_JSON,
    RESULT_CONTENT_TYPES,
    SOURCE_PNG,
    TRANSLATION_JSON,
    find_result_name,
    result_name,
)
from ..quality import assess_image
from ..storage import put_json
from . import dedupe
from .engines import Engines
from .items import WorkItem

logger = logging.getLogger(__name__)


# --- download (batch: images are fetched concurrently) ---------------------------------------------------------


def check_request(engines: Engines, item: WorkItem) -> None:
    """Fail a request whose language pair no engine handles before anything is downloaded ('auto' sources are
    checked after OCR)."""
    if item.request.source_lang != AUTO:
        engines.ocr.check_language(item.request.source_lang)
        engines.translation.check_pair(item.request.source_lang, item.request.target_lang)


def fetch(engines: Engines, items: list[WorkItem]) -> None:
    """Download and normalise every image concurrently; store ``source.png``; answer repeats from the index."""
    pending = [item for item in items if item.ok]
    if not pending:
        return
    start = time.perf_counter()
    results = engines.fetcher.fetch_images([item.request.image_url for item in pending])
    elapsed = time.perf_counter() - start
    store = engines.store
    for item, result in zip(pending, results, strict=True):
        # Downloads overlap, so each request is charged the batch's wall time divided evenly.
        item.timings["download"] = elapsed / len(pending)
        if isinstance(result, BaseException):
            item.fail(result, "download")
            continue
        item.source = result
        try:
            item.artifacts[SOURCE_PNG] = store.put(item.request_id, SOURCE_PNG, result.png_bytes, "image/png")
        except Exception as error:
            item.fail(error, "download")
            continue
        log_event(logger, logging.INFO, "download.done", request_id=item.request_id, width=result.width,
                  height=result.height, format=result.source_format, hash=result.content_hash[:12])
    dedupe.reuse(items, store, engines.variant)


# --- per request ------------------------------------------------------------------------------------------------


def ocr(engines: Engines, item: WorkItem) -> None:
    """OCR the image (tall images are sliced inside ``recognize``); keep what needs no translation; ``ocr.json``."""
    assert item.source is not None
    result = engines.ocr.recognize(item.source.pixels, item.request.source_lang)
    item.source_lang = item.request.source_lang if item.request.source_lang != AUTO else result.detected_lang
    if item.source_lang is not None:
        # Brand lines, URLs, prices, model numbers... stay in the image untouched (neither erased nor redrawn).
        result.blocks, result.kept_blocks = split_translatable(result.blocks, item.source_lang,
                                                               item.request.target_lang)
    item.ocr = result
    item.engines["ocr"] = result.engine
    item.artifacts[OCR_JSON] = put_json(engines.store, item.request_id, OCR_JSON, result.to_dict())
    log_event(logger, logging.INFO, "ocr.done", request_id=item.request_id, regions=len(result.regions),
              blocks=len(result.blocks), kept=len(result.kept_blocks), dropped=result.dropped_low_confidence,
              lang=item.source_lang)


def translate(engines: Engines, item: WorkItem) -> None:
    """Translate all of the image's text blocks in one batched call; ``translation.json``."""
    assert item.ocr is not None
    texts = [block.text for block in item.ocr.blocks]
    target = item.request.target_lang
    if not texts or item.source_lang is None:
        # No text found: nothing to translate, the result is the source image unchanged.
        result = TranslationResult([], [], item.source_lang or AUTO, target, engine="none", model="")
    else:
        result = engines.translation.translate(texts, item.source_lang, target,
                                               glossary=item.request.options.glossary or None)
    item.translation = result
    item.engines["translate"] = f"{result.engine}:{result.model}" if result.model else result.engine
    item.artifacts[TRANSLATION_JSON] = put_json(engines.store, item.request_id, TRANSLATION_JSON, result.to_dict())
    log_event(logger, logging.INFO, "translate.done", request_id=item.request_id, texts=len(texts),
              cache_hits=result.cache_hits, pair=f"{item.source_lang}->{target}")


def inpaint(engines: Engines, item: WorkItem) -> None:
    """Erase the OCR'd text, glyphs only: flat and gradient backgrounds from a fitted background model, textured
    ones by the inpainting engine on the glyph pixels, lines that can't be separated on their box (counted)."""
    assert item.source is not None and item.ocr is not None
    pixels = item.source.pixels
    inpainter = engines.inpainter
    polygons = [region.polygon for region in item.ocr.translatable_regions()]
    kept = [region.polygon for block in item.ocr.kept_blocks for region in block.regions]
    result = erase_text(pixels, polygons, inpainter, protect=kept)
    mask, erased = result.mask, result.pixels
    name = getattr(inpainter, "name", type(inpainter).__name__)
    item.inpainted = InpaintResult(mask=mask, pixels=erased, engine=name, stats=result.stats)
    log_event(logger, logging.INFO, "inpaint.done", request_id=item.request_id,
              **{k: v for k, v in result.stats.items() if k.startswith("lines") and v})
    item.engines["inpaint"] = name
    store = engines.store
    item.artifacts[MASK_PNG] = store.put(item.request_id, MASK_PNG, encode_image(mask, "png"), "image/png")
    item.artifacts[INPAINTED_PNG] = store.put(item.request_id, INPAINTED_PNG, encode_image(erased, "png"),
                                              "image/png")


def render(engines: Engines, item: WorkItem) -> None:
    """Draw each translation into its block; ``result.<ext>``."""
    assert item.source is not None and item.ocr is not None
    assert item.translation is not None and item.inpainted is not None
    options = item.request.options
    rendered = engines.render(item.inpainted.pixels, item.source.pixels, item.ocr.blocks,
                              item.translation.translations, item.request.target_lang,
                              output_format=options.output_format, jpeg_quality=options.jpeg_quality,
                              obstacles=item.ocr.kept_blocks)  # text left in place is never drawn over
    item.rendered = rendered
    name = result_name(rendered.format)
    item.result_uri = engines.store.put(item.request_id, name, rendered.encoded, RESULT_CONTENT_TYPES[rendered.format])
    item.artifacts[name] = item.result_uri


def assess(engines: Engines, item: WorkItem) -> None:
    """Score the result 0..1 with its reasons: the erased lines re-read (recogniser only, on their boxes), OCR
    confidence, translation sanity, layout and contrast (``quality``)."""
    assert item.source is not None and item.ocr is not None and item.inpainted is not None
    lang = item.source_lang or item.request.source_lang
    quality = assess_image(engines.ocr.engine_for(lang), item.source.pixels, item.inpainted.pixels, item.ocr,
                           item.translation, item.rendered, source_lang=lang, target_lang=item.request.target_lang)
    item.quality = quality.to_dict()
    log_event(logger, logging.INFO, "quality.done", request_id=item.request_id, score=quality.score,
              reasons="; ".join(quality.reasons[:3]) or None)


# --- publish (batch: every request ends with a record, failed ones included) -------------------------------------


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
        kept = Counter(block.keep_reason or "unknown" for block in item.ocr.kept_blocks)
        meta["ocr"] = {"regions": len(item.ocr.regions), "blocks": len(item.ocr.blocks),
                       "kept_blocks": len(item.ocr.kept_blocks), "kept_reasons": dict(sorted(kept.items())),
                       "dropped_low_confidence": item.ocr.dropped_low_confidence, "slices": item.ocr.slices}
    if item.translation is not None and item.translation.flags:
        meta["translation_flags"] = {str(index): flags for index, flags in sorted(item.translation.flags.items())}
    if item.inpainted is not None and item.inpainted.stats:
        meta["erase"] = dict(item.inpainted.stats)
    if item.rendered is not None:
        meta["render"] = {"format": item.rendered.format, "font": item.rendered.font,
                          "blocks_drawn": item.rendered.blocks_drawn, **item.rendered.extra}
    if item.quality is not None:
        meta["quality"] = item.quality
    return meta


def publish(engines: Engines, items: list[WorkItem], engine_versions: dict[str, str]) -> None:
    """Write ``meta.json`` for every request (failed ones too), then index the fresh successes for dedupe."""
    store = engines.store
    for item in items:
        start = time.perf_counter()
        try:
            item.timings["publish"] = item.timings.get("publish", 0.0)
            item.artifacts[META_JSON] = store.uri(item.request_id, META_JSON)
            meta = build_meta(item, engine_versions)
            put_json(store, item.request_id, META_JSON, meta)
        except Exception as error:
            if item.ok:
                item.fail(error, "publish")
        finally:
            item.timings["publish"] += time.perf_counter() - start
        log_event(logger, logging.INFO if item.ok else logging.WARNING, "request.finished",
                  request_id=item.request_id, status="succeeded" if item.ok else "failed", result=item.result_uri)
    dedupe.record(items, store, engines.variant)


def outcome(item: WorkItem, store: Any) -> dict[str, Any]:
    """What a producer hears about a finished request (results list, webhook, CLI)."""
    return {"request_id": item.request_id, "status": "succeeded" if item.ok else "failed",
            "result": item.result_uri, "result_url": public_url(store, item),
            "meta": item.artifacts.get(META_JSON), "error": item.failure, "reused_from": item.reused_from,
            "callback_url": item.request.callback_url, "request": item.request.to_dict()}


def public_url(store: Any, item: WorkItem) -> str | None:
    """A URL a producer can fetch: the S3 public/presigned URL, or the file URI for a local store."""
    if not item.result_uri:
        return None
    if item.reused_from or not hasattr(store, "public_url"):
        return item.result_uri
    name = find_result_name(item.artifacts)
    try:
        return store.public_url(item.request_id, name) if name else item.result_uri
    except Exception:  # a URL we cannot sign still leaves the stored URI
        return item.result_uri
