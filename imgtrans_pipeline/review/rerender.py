"""Re-render one request from its stored artifacts with corrected texts: render + quality + publish only.

The request's work item is rebuilt from ``source.png``, ``ocr.json``, ``translation.json``, ``inpainted.png`` /
``mask.png`` and ``meta.json`` (no download, OCR, translation or inpainting); the edits replace block texts and
set per-block render overrides (font size, colour, keep the original pixels); the stages then run through the one
``StageRunner`` (``run_stage`` in the Dagster op ``rerender``), so a revision is inspected (changed texts, when
content rules are configured: a correction may not bring in a claim the rules reject), drawn, scored and published
exactly like the first one. Everything happens under the request's lock (``state.request_lock``): the revision
is compared with the one the caller saw, the previous revision's files are copied aside (``rev-<n>.*``), and the
new revision becomes the latest.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ..core.request import RequestOptions, TranslationRequest
from ..core.types import InpaintResult, OcrResult, SourceImage, TextBlock, TextRegion, TranslationResult
from ..names import (
    INPAINTED_PNG,
    INSPECT,
    MASK_PNG,
    META_JSON,
    OCR_JSON,
    PUBLISH,
    QUALITY,
    RENDER,
    SOURCE_PNG,
    STATE_NEEDS_REVIEW,
    TRANSLATION_JSON,
    find_result_name,
    revision_name,
)
from ..pipeline import StageRunner, WorkItem
from ..storage import get_json, put_json
from ..storage.base import ArtifactNotFound, ArtifactStore
from . import state as review_state
from .state import ReviewError, RevisionConflict, UnknownBlock, UnknownRequest, WrongState

StageFn = Callable[[str, list[WorkItem]], list[WorkItem]]
OVERRIDE_KEYS = ("font_px", "color", "keep_original")


@dataclass(frozen=True)
class BlockEdit:
    """A reviewer's change to one text block (``block``: 0-based index into ``ocr.json`` ``blocks``).

    ``text``: the corrected translation (None = unchanged); ``font_px``: an exact size in pixels; ``color``:
    ``#rrggbb``; ``keep_original``: put the source pixels back and draw nothing. ``reset``: drop the block's
    earlier size / colour / keep overrides first. Overrides stay in force for later revisions until reset.
    """

    block: int
    text: str | None = None
    font_px: int | None = None
    color: str | None = None
    keep_original: bool | None = None
    reset: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlockEdit:
        return cls(block=int(data["block"]), text=data.get("text"), font_px=data.get("font_px"),
                   color=data.get("color") or None, keep_original=data.get("keep_original"),
                   reset=bool(data.get("reset", False)))


@dataclass
class RerenderResult:
    request_id: str
    revision: int  # the latest revision after the call
    changed: bool  # False: the edits changed nothing, no revision was made
    changes: list[dict[str, Any]] = field(default_factory=list)
    result: str | None = None
    score: float | None = None
    reasons: list[str] = field(default_factory=list)
    state: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --- the work item back from the artifacts ------------------------------------------------------------------------

def _region(data: dict[str, Any]) -> TextRegion:
    return TextRegion(polygon=[(float(x), float(y)) for x, y in data["polygon"]], text=data["text"],
                      score=float(data.get("score", 1.0)))


def _block(data: dict[str, Any]) -> TextBlock:
    return TextBlock(regions=[_region(r) for r in data.get("regions", [])], text=data["text"],
                     bbox=tuple(float(v) for v in data["bbox"]), alignment=data.get("alignment", "left"),  # type: ignore[arg-type]
                     keep_reason=data.get("keep_reason"))


def ocr_from_dict(data: dict[str, Any]) -> OcrResult:
    return OcrResult(regions=[_region(r) for r in data.get("regions", [])],
                     blocks=[_block(b) for b in data.get("blocks", [])], engine=data.get("engine", ""),
                     detected_lang=data.get("detected_lang"),
                     dropped_low_confidence=int(data.get("dropped_low_confidence", 0)),
                     slices=int(data.get("slices", 1)), kept_blocks=[_block(b) for b in data.get("kept_blocks", [])])


def translation_from_dict(data: dict[str, Any]) -> TranslationResult:
    pairs = data.get("pairs", [])
    flags = {i: list(p["flags"]) for i, p in enumerate(pairs) if p.get("flags")}
    sources = [dict(p["via"]) for p in pairs] if all("via" in p for p in pairs) else []
    return TranslationResult(source_texts=[p["source"] for p in pairs], translations=[p["translation"] for p in pairs],
                             source_lang=data.get("source_lang", ""), target_lang=data.get("target_lang", ""),
                             engine=data.get("engine", ""), model=data.get("model", ""),
                             cache_hits=int(data.get("cache_hits", 0)), flags=flags, sources=sources)


def _pixels(data: bytes, mode: str) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert(mode)).copy()


def load_meta(store: ArtifactStore, request_id: str) -> dict[str, Any]:
    try:
        return get_json(store, request_id, META_JSON)
    except ArtifactNotFound:
        raise UnknownRequest(f"unknown request {request_id}: no meta.json in the artifact store") from None


def load_item(store: ArtifactStore, request_id: str, meta: dict[str, Any] | None = None) -> WorkItem:
    """The request's work item as it was after render: everything but the rendered image, from its artifacts."""
    meta = meta if meta is not None else load_meta(store, request_id)
    if meta.get("reused_from"):
        raise ReviewError(f"request {request_id} was answered from {meta['reused_from']}'s result: re-render that "
                          "request instead")
    if meta.get("status") == "failed":
        raise WrongState(f"request {request_id} failed ({(meta.get('error') or {}).get('reason')}): nothing to "
                         "re-render")
    raw = dict(meta["request"])
    options = RequestOptions(**raw.pop("options", {}))
    request = TranslationRequest(options=options, **raw)
    try:
        png = store.get(request_id, SOURCE_PNG)
        image = meta.get("image") or {}
        source = SourceImage(pixels=_pixels(png, "RGB"), content_hash=meta.get("content_hash") or "",
                             source_format=image.get("source_format", "png"), byte_size=int(image.get("bytes", 0)),
                             png_bytes=png)
        ocr = ocr_from_dict(get_json(store, request_id, OCR_JSON))
        translation = translation_from_dict(get_json(store, request_id, TRANSLATION_JSON))
        inpainted = InpaintResult(mask=_pixels(store.get(request_id, MASK_PNG), "L"),
                                  pixels=_pixels(store.get(request_id, INPAINTED_PNG), "RGB"),
                                  engine=(meta.get("engines") or {}).get("inpaint", ""))
    except ArtifactNotFound as error:
        raise ReviewError(f"request {request_id} cannot be re-rendered: {error.reason}") from None
    if len(translation.translations) != len(ocr.blocks):
        raise ReviewError(f"request {request_id}: {len(ocr.blocks)} blocks but {len(translation.translations)} "
                          "translations stored")
    return WorkItem(request=request, source=source, ocr=ocr, source_lang=meta.get("source_lang"),
                    translation=translation, inpainted=inpainted, engines=dict(meta.get("engines") or {}),
                    inspection=meta.get("inspection"),
                    artifacts={k: v for k, v in (meta.get("artifacts") or {}).items() if not k.startswith("result")})


# --- edits ----------------------------------------------------------------------------------------------------------

def apply_edits(item: WorkItem, edits: Sequence[BlockEdit], overrides: dict[str, dict[str, Any]]
                ) -> list[dict[str, Any]]:
    """Apply ``edits`` to the item's translation and to ``overrides`` (by block, as strings); the changes made."""
    assert item.ocr is not None and item.translation is not None
    count = len(item.ocr.blocks)
    for edit in edits:
        if not 0 <= edit.block < count:
            raise UnknownBlock(f"request {item.request_id} has no block {edit.block} (it has {count}: 0-{count - 1})")
    changes: list[dict[str, Any]] = []
    translations = list(item.translation.translations)
    for edit in edits:
        key = str(edit.block)
        if edit.text is not None and edit.text.strip() != translations[edit.block]:
            changes.append({"block": edit.block, "field": "text", "from": translations[edit.block],
                            "to": edit.text.strip()})
            translations[edit.block] = edit.text.strip()
            if edit.block < len(item.translation.sources):  # provenance: the reviewer's text, not the engine's
                item.translation.sources[edit.block] = {"origin": "reviewer"}
        before = dict(overrides.get(key, {}))
        after = {} if edit.reset else dict(before)
        for name in OVERRIDE_KEYS:
            value = getattr(edit, name)
            if value is not None:
                after[name] = value
        if after.get("keep_original") is False:
            after.pop("keep_original")
        if after != before:
            changes.append({"block": edit.block, "field": "style", "from": before, "to": after})
            if after:
                overrides[key] = after
            else:
                overrides.pop(key, None)
    item.translation.translations = translations
    return changes


# --- the re-render ----------------------------------------------------------------------------------------------

def _inspect_again(runner: StageRunner, run: StageFn, item: WorkItem) -> None:
    """Inspect the edited translation as the engine's was (the source too, if it never was): its old findings go,
    the new ones are recorded; a ``reject`` hit fails the item (stage inspect). Without content rules, nothing."""
    if not runner.applies(INSPECT, item):
        return
    if item.inspection is not None:
        previous = item.inspection
        item.inspection = {**previous,
                           "matches": [m for m in previous.get("matches", []) if m.get("on") != "translation"],
                           "inspected": [s for s in previous.get("inspected", []) if s != "translation"]}
    for _side in ("source", "translation"):  # one side per pass; a side already inspected is left as it is
        run(INSPECT, [item])


def _archive(store: ArtifactStore, request_id: str, revision: int) -> None:
    """Copy the latest revision's files aside as ``rev-<n>.<name>`` (once: a retry finds them there)."""
    names = store.list(request_id)
    for name in [find_result_name(names), META_JSON, TRANSLATION_JSON]:
        if name and name in names and not store.exists(request_id, revision_name(revision, name)):
            store.put(request_id, revision_name(revision, name), store.get(request_id, name))


def rerender(runner: StageRunner, request_id: str, edits: Sequence[BlockEdit], *,
             expected_revision: int | None = None, by: str = "reviewer", note: str = "",
             stage: StageFn | None = None, run_id: str | None = None) -> RerenderResult:
    """Make revision n+1 of ``request_id`` from revision n's artifacts and ``edits``; raise a ``ReviewError``
    (nothing changed) for an unknown request or block, a rejected request, or a revision other than
    ``expected_revision`` (when given). Edits that change nothing make no revision."""
    store = runner.engines.store
    run = stage or (lambda name, items: runner.run(name, items))
    with review_state.request_lock(store, request_id):
        meta = load_meta(store, request_id)
        record = review_state.load(store, request_id) or review_state.new_record(
            request_id, meta, review_state.SUCCEEDED)
        current = int(record["revision"])
        if expected_revision is not None and expected_revision != current:
            raise RevisionConflict(f"request {request_id} is at revision {current}, not {expected_revision} "
                                   f"(changed since by {record['history'][-1].get('by')})")
        if record["state"] == review_state.REJECTED:
            raise WrongState(f"request {request_id} was rejected: it is not re-rendered")
        item = load_item(store, request_id, meta)
        overrides = {k: dict(v) for k, v in (record.get("overrides") or {}).items()}
        changes = apply_edits(item, edits, overrides)
        if not changes:
            return RerenderResult(request_id, current, False, state=record["state"],
                                  score=record.get("score"), result=meta.get("result"))
        if any(change["field"] == "text" for change in changes):
            _inspect_again(runner, run, item)
            if not item.ok:
                raise ReviewError(f"the corrected text of {request_id} is not re-rendered: "  # type: ignore[index]
                                  f"[{item.failure['stage']}] {item.failure['reason']}")
        revision = current + 1
        assert item.ocr is not None and item.translation is not None
        item.overrides = [overrides.get(str(i)) for i in range(len(item.ocr.blocks))] if overrides else None
        item.revision = {"number": revision, "previous": current, "by": by, "note": note, "at": review_state.now(),
                         "changes": changes, "run_id": run_id}
        if record["state"] == STATE_NEEDS_REVIEW:
            item.review = dict(meta.get("review") or {"state": STATE_NEEDS_REVIEW})
        _archive(store, request_id, current)
        previous_result = find_result_name(store.list(request_id))
        items = run(RENDER, [item])
        items = run(QUALITY, items)
        item = items[0]
        if not item.ok:
            if previous_result:  # the latest revision stays what it was
                store.put(request_id, previous_result, store.get(request_id, revision_name(current, previous_result)))
            raise ReviewError(f"re-render of {request_id} failed: [{item.failure['stage']}] "  # type: ignore[index]
                              f"{item.failure['reason']}")  # type: ignore[index]
        quality = item.quality or {}
        if item.review is not None:
            item.review = {**item.review, "score": quality.get("score"), "reasons": list(quality.get("reasons", []))}
        put_json(store, request_id, TRANSLATION_JSON, item.translation.to_dict())
        item = run(PUBLISH, [item])[0]
        if not item.ok:
            raise ReviewError(f"re-render of {request_id} was drawn but not published: "
                              f"{item.failure['reason']}")  # type: ignore[index]
        record.update(revision=revision, overrides=overrides, score=quality.get("score"),
                      reasons=list(quality.get("reasons", [])))
        record["history"].append({"revision": revision, "at": item.revision["at"], "by": by, "note": note,  # type: ignore[index]
                                  "changes": changes, "run_id": run_id})
        review_state.save(store, record)
        return RerenderResult(request_id, revision, True, changes, item.result_uri, quality.get("score"),
                              list(quality.get("reasons", [])), record["state"])
