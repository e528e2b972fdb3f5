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
from ..core.errors import InspectionRejected
from ..core.keep import split_translatable
from ..core.languages import AUTO
from ..core.logs import log_event
from ..core.types import InpaintResult, TranslationResult
from ..engines.inpaint.erase import erase_text
from ..engines.render import encode_image
from ..engines.render.measure import average_advance_em
from ..engines.translate.page import build_page_text
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
        if not item.inspect_only:  # nothing is translated
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
    dedupe.reuse(items, store, engines.variant, memory=engines.translation_memory())


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
    """Translate all of the image's text blocks in one batched call (for LLM engines: one call with the image, the
    blocks' roles and length budgets and the request context); ``translation.json``."""
    assert item.ocr is not None
    texts = [block.text for block in item.ocr.blocks]
    target = item.request.target_lang
    if not texts or item.source_lang is None:
        # No text found: nothing to translate, the result is the source image unchanged.
        result = TranslationResult([], [], item.source_lang or AUTO, target, engine="none", model="")
    else:
        service = engines.translation
        options = item.request.options
        page = None
        if service.page_aware:
            # What an LLM engine needs to translate the page well: roles, sizes, budgets, the image, the context.
            assert item.source is not None
            page = build_page_text(item.ocr.blocks, item.source.pixels, item.source_lang, target,
                                   advance_em=average_advance_em(getattr(engines.renderer, "fonts", None), target),
                                   kept_blocks=item.ocr.kept_blocks, context=options.context,
                                   glossary=options.glossary, send_image=service.wants_image)
        result = service.translate(texts, item.source_lang, target, glossary=options.glossary or None, page=page,
                                   scope=options.glossary_scope)
    item.translation = result
    item.engines["translate"] = f"{result.engine}:{result.model}" if result.model else result.engine
    item.artifacts[TRANSLATION_JSON] = put_json(engines.store, item.request_id, TRANSLATION_JSON, result.to_dict())
    log_event(logger, logging.INFO, "translate.done", request_id=item.request_id, texts=len(texts),
              cache_hits=result.cache_hits, pair=f"{item.source_lang}->{target}", **result.origin_counts())


def inspect(engines: Engines, item: WorkItem) -> None:
    """Content inspection: the OCR text (kept blocks too) the first time, the translation once there is one.
    A ``reject`` hit fails the request (stage ``inspect``, the rule named); an inspect-only request records its
    findings and never fails on them: the findings are its answer."""
    from ..inspection import verdict
    from ..inspection.matcher import TextBlockRef

    assert item.ocr is not None
    inspector = engines.inspector
    previous = item.inspection or {"rules": inspector.rules.summary(), "matches": [], "inspected": []}
    if "source" not in previous["inspected"]:
        side, lang = "source", item.source_lang
        refs = [TextBlockRef(i, b.text, b.bbox) for i, b in enumerate(item.ocr.blocks)]
        refs += [TextBlockRef(i, b.text, b.bbox, kept=True) for i, b in enumerate(item.ocr.kept_blocks)]
    elif item.translation is not None and "translation" not in previous["inspected"]:
        side, lang = "translation", item.request.target_lang
        boxes = [b.bbox for b in item.ocr.blocks]
        refs = [TextBlockRef(i, text, boxes[i] if i < len(boxes) else None)
                for i, text in enumerate(item.translation.translations)]
    else:
        return
    found = [match.to_dict() for match in inspector.inspect(refs, lang, on=side)]
    matches = previous["matches"] + found
    # A new dict: the step's input items (and the other branch's copies) must not change.
    item.inspection = {**previous, "matches": matches, "inspected": [*previous["inspected"], side],
                       "verdict": verdict(matches),
                       "categories": dict(sorted(Counter(m["category"] for m in matches).items()))}
    log_event(logger, logging.INFO if not found else logging.WARNING, "inspect.done", request_id=item.request_id,
              on=side, matches=len(found), verdict=item.inspection["verdict"],
              rules=",".join(sorted({m["rule"] for m in found})) or None)
    rejected = [m for m in found if m["action"] == "reject"]
    if rejected and not item.inspect_only:
        first = rejected[0]
        where = "translation" if side == "translation" else "text"
        raise InspectionRejected(f"rule {first['rule']} ({first['category']}) rejects the {where} "
                                 f"'{first['text']}' in block {first['block']}"
                                 + (f" (+{len(rejected) - 1} more)" if len(rejected) > 1 else ""),
                                 rule=first["rule"], matches=rejected)


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
    extra: dict[str, Any] = {"overrides": item.overrides} if item.overrides is not None else {}  # a re-render's
    rendered = engines.render(item.inpainted.pixels, item.source.pixels, item.ocr.blocks,
                              item.translation.translations, item.request.target_lang,
                              output_format=options.output_format, jpeg_quality=options.jpeg_quality,
                              obstacles=item.ocr.kept_blocks, **extra)  # text left in place is never drawn over
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


def gate(item: WorkItem, review_below: float | None) -> None:
    """The quality gate: a scored result below ``review_below``, or one an inspection ``review`` rule matched,
    waits for a reviewer instead of being delivered (``item.review``). A verdict already set (a re-render of a
    request under review) is kept: only a reviewer releases a result, never a better score."""
    if item.review is not None or item.revision is not None or not item.needs_work or item.inspect_only:
        return
    inspection = item.inspection or {}
    if inspection.get("verdict") == "review":
        held = [m for m in inspection.get("matches", []) if m["action"] == "review"]
        first = held[0]
        score = (item.quality or {}).get("score")
        reasons = [f"inspection rule {m['rule']} ({m['category']}): '{m['text']}' in "
                   f"{'translation' if m['on'] == 'translation' else 'text'} block {m['block']}" for m in held]
        item.review = {"state": "needs_review", "score": round(float(score), 4) if score is not None else None,
                       "threshold": review_below, "rule": first["rule"],
                       "reasons": reasons + list((item.quality or {}).get("reasons", [])),
                       "why": f"inspection rule {first['rule']} ({first['category']}) matched '{first['text']}'"}
        log_event(logger, logging.INFO, "review.needed", request_id=item.request_id, rule=first["rule"])
        return
    if not review_below or item.quality is None:
        return
    score = float(item.quality.get("score", 1.0))
    if score < review_below:
        item.review = {"state": "needs_review", "score": round(score, 4), "threshold": review_below,
                       "reasons": list(item.quality.get("reasons", [])),
                       "why": f"quality score {score:.2f} is below IMGTRANS_REVIEW_BELOW={review_below}"}
        log_event(logger, logging.INFO, "review.needed", request_id=item.request_id, score=score)


# --- publish (batch: every request ends with a record, failed ones included) -------------------------------------


def build_meta(item: WorkItem, engine_versions: dict[str, str]) -> dict[str, Any]:
    """The per-request record: status, hash, timings per stage, engines and versions, artifacts."""
    meta: dict[str, Any] = {
        "request": item.request.to_dict(),
        "status": item.status,
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
    if item.translation is not None and item.translation.sources:
        # Per block, where its translation came from (memory entry, glossary, cache, engine + model): why it reads so.
        translation = item.translation
        meta["translation_origins"] = translation.origin_counts()
        meta["translation_sources"] = [
            {"block": index, "source": text, "translation": out, **via}
            for index, (text, out, via) in enumerate(zip(translation.source_texts, translation.translations,
                                                         translation.sources, strict=True))]
    if item.inpainted is not None and item.inpainted.stats:
        meta["erase"] = dict(item.inpainted.stats)
    if item.rendered is not None:
        meta["render"] = {"format": item.rendered.format, "font": item.rendered.font,
                          "blocks_drawn": item.rendered.blocks_drawn, **item.rendered.extra}
    if item.quality is not None:
        meta["quality"] = item.quality
    if item.review is not None:
        meta["review"] = item.review
    if item.inspection is not None:
        meta["inspection"] = item.inspection
    if item.inspect_only:
        meta["mode"] = "inspect"
    if item.revision is not None:
        meta["revision"] = item.revision
    return meta


def publish(engines: Engines, items: list[WorkItem], engine_versions: dict[str, str]) -> None:
    """Write ``meta.json`` for every request (failed ones too; one held by the quality gate also enters the review
    queue), then index the fresh successes for dedupe."""
    store = engines.store
    for item in items:
        start = time.perf_counter()
        try:
            item.timings["publish"] = item.timings.get("publish", 0.0)
            item.artifacts[META_JSON] = store.uri(item.request_id, META_JSON)
            meta = build_meta(item, engine_versions)
            put_json(store, item.request_id, META_JSON, meta)
            if item.review is not None and item.revision is None:
                from ..review.state import enter_review  # review imports the pipeline: imported when used

                enter_review(store, item.request_id, meta)  # the review queue without Redis
        except Exception as error:
            if item.ok:
                item.fail(error, "publish")
        finally:
            item.timings["publish"] += time.perf_counter() - start
        log_event(logger, logging.INFO if item.ok else logging.WARNING, "request.finished",
                  request_id=item.request_id, status=item.status, result=item.result_uri)
    dedupe.record(items, store, engines.variant)


def outcome(item: WorkItem, store: Any) -> dict[str, Any]:
    """What a producer hears about a finished request (results list, webhook, CLI)."""
    return {"request_id": item.request_id, "status": item.status, "review": item.review,
            "result": item.result_uri, "result_url": public_url(store, item),
            "meta": item.artifacts.get(META_JSON), "error": item.failure, "reused_from": item.reused_from,
            "callback_url": item.request.callback_url, "request": item.request.to_dict(),
            "inspection": _findings(item.inspection)}


def _findings(inspection: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a producer hears of the inspection: verdict, counts per category, the matches."""
    if inspection is None:
        return None
    return {"verdict": inspection.get("verdict", "pass"), "categories": inspection.get("categories", {}),
            "matches": inspection.get("matches", [])}


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
