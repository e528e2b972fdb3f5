"""One number 0..1 per translated image, with the reasons it is not 1.

Five components, each 0..1 (1 = nothing wrong), multiplied into the score so that any one bad aspect pulls the
whole image down: ``erase`` (source lines still readable after erasing; erased areas that no longer match the
background they had), ``ocr`` (confidence of the lines read), ``translation`` (empty, source script left,
repeated phrase, implausible length), ``layout`` (overflow, minimum font, overlaps, drawn outside the image, drawn
at under half the source size) and ``contrast``. A component whose input is missing is left out (and named in
``details["not_checked"]``), never guessed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.types import OcrResult, RenderedImage, TextBlock, TranslationResult
from .recheck import LineRecheck
from .text import TranslationIssue, shorten, translation_issues

LOW_CONTRAST = 3.0  # WCAG AA for large text
MIN_FONT_PX = 10  # the renderer's floor (engines.render.layout.MIN_FONT_PX) when the record does not say
OVERLAP_SHARE = 0.1  # of the smaller box: drawn boxes overlapping more than this collide
SHRUNK_RATIO = 0.5  # drawn font / source font below this: the block lost its place in the size hierarchy
OCR_BOX_TO_FONT = 0.75  # RapidOCR line boxes are ~1.3x the font size (median on the synthetic pages)
GOOD_CONFIDENCE = 0.9
POOR_CONFIDENCE = 0.5


@dataclass
class QualityInputs:
    """Everything the score looks at, as plain data (no images)."""

    source_lang: str
    target_lang: str
    source_texts: list[str] = field(default_factory=list)  # one per translated block
    translations: list[str] = field(default_factory=list)  # same order
    line_scores: list[float] = field(default_factory=list)  # OCR confidence of every translated line
    source_px: list[float] = field(default_factory=list)  # source font size per translated block (same order)
    dropped_low_confidence: int = 0  # OCR lines below the confidence floor (left as they were)
    layout: dict[str, Any] | None = None  # RenderedImage.extra (with its "layout" record when the renderer has one)
    rechecks: list[LineRecheck] | None = None  # None: erasing was not re-checked
    image_size: tuple[int, int] | None = None  # (width, height), for "drawn outside"
    min_font_px: int = MIN_FONT_PX


@dataclass
class QualityScore:
    score: float
    reasons: list[str]
    components: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"score": round(self.score, 3), "reasons": list(self.reasons),
                "components": {k: round(v, 3) for k, v in self.components.items()}, "details": self.details}


def inputs_from_results(
    ocr: OcrResult,
    translation: TranslationResult | None,
    rendered: RenderedImage | None,
    rechecks: list[LineRecheck] | None,
    *,
    source_lang: str,
    target_lang: str,
    image_size: tuple[int, int] | None = None,
) -> QualityInputs:
    """``QualityInputs`` from the pipeline's own results (``ocr.blocks`` are the translated blocks)."""
    if image_size is None and rendered is not None:
        image_size = (int(rendered.pixels.shape[1]), int(rendered.pixels.shape[0]))
    return QualityInputs(
        source_lang=source_lang,
        target_lang=target_lang,
        source_texts=[block.text for block in ocr.blocks],
        translations=list(translation.translations) if translation is not None else [],
        line_scores=[region.score for region in ocr.translatable_regions()],
        source_px=[source_font_px(block) for block in ocr.blocks],
        dropped_low_confidence=ocr.dropped_low_confidence,
        layout=dict(rendered.extra) if rendered is not None else None,
        rechecks=rechecks,
        image_size=image_size,
    )


def source_font_px(block: TextBlock) -> float:
    """The source font size of a block, estimated from its OCR lines (median box height, or width for vertical
    lines); 0 when unknown."""
    sizes = []
    for region in block.regions:
        x0, y0, x1, y1 = region.bbox()
        sizes.append(min(y1 - y0, x1 - x0) if (y1 - y0) > 2 * (x1 - x0) else (y1 - y0))
    return OCR_BOX_TO_FONT * float(statistics.median(sizes)) if sizes else 0.0


def _clamp(value: float) -> float:
    return 0.0 if math.isnan(value) else max(0.0, min(1.0, value))


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def _examples(texts: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(shorten(t) for t in texts[:limit])
    return shown + (f" (+{len(texts) - limit})" if len(texts) > limit else "")


# --- components ----------------------------------------------------------------------------------------------


def _erase(rechecks: list[LineRecheck]) -> tuple[float, list[tuple[float, str]], dict[str, Any]]:
    left = [c for c in rechecks if c.readable]
    blotched = [c for c in rechecks if c.fill_mismatch and not c.readable]
    n = len(rechecks)
    details = {"lines_checked": n, "lines_read": sum(1 for c in rechecks if c.read), "lines_left": len(left),
               "left": [c.source_text for c in left], "fill_mismatch": [c.source_text for c in blotched]}
    reasons: list[tuple[float, str]] = []
    value = 1.0
    if left:
        # Each readable line is visible damage: the share of lines left, and a fixed toll per line on top.
        factor = _clamp((1 - len(left) / max(n, 1)) * 0.8 ** len(left))
        value *= factor
        reasons.append((1 - factor, f"{_plural(len(left), 'source line')} still readable after erasing: "
                                    f"{_examples([c.source_text for c in left])}"))
    if blotched:
        factor = _clamp((1 - 0.5 * len(blotched) / max(n, 1)) * 0.9 ** len(blotched))
        value *= factor
        reasons.append((1 - factor, f"erased area of {_plural(len(blotched), 'line')} no longer matches its "
                                    f"background (label bar or badge lost?): "
                                    f"{_examples([c.source_text for c in blotched])}"))
    return _clamp(value), reasons, details


def _ocr(scores: list[float], dropped: int) -> tuple[float, list[tuple[float, str]], dict[str, Any]]:
    details: dict[str, Any] = {"lines": len(scores), "dropped_low_confidence": dropped}
    reasons: list[tuple[float, str]] = []
    value = 1.0
    if scores:
        mean = sum(scores) / len(scores)
        details["mean_confidence"] = round(mean, 3)
        value = _clamp((mean - POOR_CONFIDENCE) / (GOOD_CONFIDENCE - POOR_CONFIDENCE))
        if value < 1.0:
            reasons.append((1 - value, f"OCR confidence low (mean {mean:.2f} over {_plural(len(scores), 'line')})"))
    if dropped:
        # Most dropped detections are texture, not text, so each costs little; many of them mean text was missed.
        factor = max(0.7, 0.98 ** dropped)
        value *= factor
        if dropped >= 3:
            reasons.append((1 - factor, f"{_plural(dropped, 'line')} below OCR confidence left untranslated"))
    return _clamp(value), reasons, details


OFFENSIVE_CAP = 0.3  # the translation component (so the score) with an offensive word in it
_ISSUE_LABELS = {
    "empty": "empty translation",
    "source_script": "source script left in translation",
    "repeated": "repeated phrase in translation",
    "length_ratio": "implausible length ratio in translation",
    "offensive": "offensive word in translation",
}


def _translation(inputs: QualityInputs) -> tuple[float, list[tuple[float, str]], dict[str, Any]]:
    per_block: list[list[TranslationIssue]] = []
    for i, source in enumerate(inputs.source_texts):
        text = inputs.translations[i] if i < len(inputs.translations) else ""
        per_block.append(translation_issues(source, text, inputs.source_lang, inputs.target_lang))
    n = len(per_block)
    severity = [min(1.0, sum(issue.severity for issue in issues)) for issues in per_block]
    value = _clamp(1 - sum(severity) / n) if n else 1.0
    by_kind: dict[str, list[str]] = {}
    for i, issues in enumerate(per_block):
        for issue in issues:
            source = inputs.source_texts[i]
            target = inputs.translations[i] if i < len(inputs.translations) else ""
            shown = shorten(source) if issue.kind == "empty" else f"{shorten(source)} -> '{shorten(target, 24)}'"
            if issue.kind == "length_ratio":
                shown += f" ({issue.detail})"
            by_kind.setdefault(issue.kind, []).append(shown)
    if "offensive" in by_kind:
        # One such word makes the image unpublishable however many blocks are fine: below any sensible gate.
        value = min(value, OFFENSIVE_CAP)
    reasons = []
    for kind, shown in by_kind.items():
        weight = (1 - value) * len(shown) / max(1, sum(len(v) for v in by_kind.values()))
        reasons.append((weight, f"{_ISSUE_LABELS[kind]} ({_plural(len(shown), 'block')}): {_examples(shown, 2)}"))
    details = {"blocks": n, "issues": {kind: len(v) for kind, v in by_kind.items()}}
    return value, reasons, details


def _count(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, list | tuple | set | dict):
        return len(value)
    return 0


def _as_box(value: Any) -> tuple[float, float, float, float] | None:
    try:
        x0, y0, x1, y1 = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _overlapping_pairs(boxes: list[tuple[float, float, float, float]]) -> int:
    pairs = 0
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            w = min(a[2], b[2]) - max(a[0], b[0])
            h = min(a[3], b[3]) - max(a[1], b[1])
            if w <= 0 or h <= 0:
                continue
            smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
            if w * h > OVERLAP_SHARE * smaller:
                pairs += 1
    return pairs


def layout_summary(extra: dict[str, Any], image_size: tuple[int, int] | None = None,
                   min_font_px: int = MIN_FONT_PX, source_px: Sequence[float] = ()) -> dict[str, Any]:
    """Counts of layout faults from a ``RenderedImage.extra``: its ``layout`` record when the renderer writes one,
    else the per-block records (``blocks``: ``drawn_box``, ``overflow``, ``font_px``, ``contrast``).

    ``source_px`` (per block index) is the fallback source font size for blocks whose record has no
    ``source_px``: a block drawn below ``SHRUNK_RATIO`` of it counts as shrunk."""
    record = extra.get("layout") if isinstance(extra.get("layout"), dict) else None
    blocks = [b for b in ((record or {}).get("blocks") if record else extra.get("blocks")) or []
              if isinstance(b, dict)]
    boxes: list[tuple[float, float, float, float]] = []
    overflow = min_font = outside = shrunk = 0
    contrasts: list[tuple[int, float]] = []
    for i, block in enumerate(blocks):
        box = _as_box(block.get("box") if record else block.get("drawn_box", block.get("box")))
        if box is not None:
            boxes.append(box)
        fits = block.get("fits")
        if fits is False or (fits is None and block.get("overflow")):
            overflow += 1
        font_px = block.get("font_px")
        if isinstance(font_px, int | float) and font_px <= min_font_px:
            min_font += 1
        index = int(block.get("index", i))
        source = block.get("source_px")
        if not isinstance(source, int | float) and 0 <= index < len(source_px):
            source = source_px[index]
        if isinstance(font_px, int | float) and isinstance(source, int | float) and source > 0 \
                and font_px < SHRUNK_RATIO * source:
            shrunk += 1
        if image_size is not None and box is not None:
            width, height = image_size
            if box[0] < -1 or box[1] < -1 or box[2] > width + 1 or box[3] > height + 1:
                outside += 1
        contrast = block.get("contrast")
        if isinstance(contrast, int | float) and not block.get("outline"):
            contrasts.append((index, float(contrast)))
    summary = {"blocks": len(blocks), "overflow": overflow, "min_font": min_font, "shrunk": shrunk,
               "overlaps": _overlapping_pairs(boxes), "outside": outside, "contrasts": contrasts,
               "from": "layout" if record else "blocks"}
    if record:
        # The renderer's own counts win where it gives them (it knows the drawn ink, not just the boxes).
        for ours, theirs in (("overflow", "overflow_blocks"), ("min_font", "min_font_blocks"),
                             ("overlaps", "overlaps"), ("outside", "outside")):
            if theirs in record:
                summary[ours] = _count(record[theirs])
    return summary


def _layout(summary: dict[str, Any]) -> tuple[float, list[tuple[float, str]], dict[str, Any]]:
    n = summary["blocks"]
    if not n:
        return 1.0, [], {k: v for k, v in summary.items() if k != "contrasts"}
    # (count, weight of the share of blocks, toll per block, reason for one, reason for many)
    penalties = [
        (summary["overflow"], 0.5, 0.05, "drawn block overflows its box", "drawn blocks overflow their boxes"),
        (summary["outside"], 0.5, 0.05, "block drawn outside the image", "blocks drawn outside the image"),
        (summary["overlaps"], 0.5, 0.05, "pair of drawn blocks overlaps", "pairs of drawn blocks overlap"),
        (summary["min_font"], 0.25, 0.02, "block at the minimum font size", "blocks at the minimum font size"),
        (summary["shrunk"], 0.2, 0.0, "block drawn at under half its source size",
         "blocks drawn at under half their source size"),
    ]
    value = 1.0
    reasons: list[tuple[float, str]] = []
    for count, weight, toll, one, many in penalties:
        if count:
            factor = _clamp(1 - weight * min(1.0, count / n) - toll * count)
            value *= factor
            reasons.append((1 - factor, f"{count} {one if count == 1 else many}"))
    details = {k: v for k, v in summary.items() if k != "contrasts"}
    return _clamp(value), reasons, details


def _contrast(summary: dict[str, Any]) -> tuple[float, list[tuple[float, str]], dict[str, Any]]:
    contrasts = summary["contrasts"]
    low = [(i, c) for i, c in contrasts if c < LOW_CONTRAST]
    details = {"blocks": len(contrasts), "low": len(low)}
    if not contrasts or not low:
        return 1.0, [], details
    severity = sum(min(1.0, (LOW_CONTRAST - c) / 2.0) for _, c in low) / len(contrasts)
    value = _clamp(1 - severity)
    worst = min(c for _, c in low)
    return value, [(1 - value, f"low contrast in {_plural(len(low), 'block')} (worst {worst:.1f}:1)")], details


# --- the score -------------------------------------------------------------------------------------------------


def score_image(inputs: QualityInputs) -> QualityScore:
    """The quality score of one translated image: product of the components, reasons worst first."""
    components: dict[str, float] = {}
    weighted: list[tuple[float, str]] = []
    details: dict[str, Any] = {"not_checked": []}

    def add(name: str, result: tuple[float, list[tuple[float, str]], dict[str, Any]]) -> None:
        value, reasons, info = result
        components[name] = round(value, 4)
        weighted.extend(reasons)
        details[name] = info

    if inputs.rechecks is not None:
        add("erase", _erase(inputs.rechecks))
    else:
        details["not_checked"].append("erase")
    add("ocr", _ocr(list(inputs.line_scores), inputs.dropped_low_confidence))
    add("translation", _translation(inputs))
    if inputs.layout is not None:
        summary = layout_summary(inputs.layout, inputs.image_size, inputs.min_font_px, inputs.source_px)
        add("layout", _layout(summary))
        add("contrast", _contrast(summary))
    else:
        details["not_checked"].extend(["layout", "contrast"])
    score = 1.0
    for value in components.values():
        score *= value
    reasons = [text for _, text in sorted(weighted, key=lambda item: -item[0])]
    if not inputs.source_texts:
        reasons.append("no text to translate was found")
    return QualityScore(score=_clamp(score), reasons=reasons, components=components, details=details)
