"""The page-level translation input (``PageText``) built from an image's OCR blocks, and the check of a reply.

An LLM translates captions in an image better when it sees what a designer sees: which line is the headline, which
is a price or a badge, how much room each has, what the product is. This module derives that from the layout:

- **role** (``classify_role``): a price when the text holds a currency sign or a number with a price/discount unit;
  a headline when its font is clearly larger than most of the page's text and near its largest; a badge when it
  is short and sits on a coloured patch or is smaller than the page's usual text (a tag); body text otherwise.
- **length budget** (``length_budget``): how many target-language characters fit the block's region at a readable
  size: the source size, shrunk at most to ``READABLE_SHRINK`` of it (never below ``MIN_READABLE_PX``), with the
  target font's average advance (``engines.render.measure.average_advance_em``) and the renderer's line spacing.
  The region (``region_width``) is the block's box widened, the way its alignment lets the renderer widen it,
  into the room beside it up to the next text or the page margin (the renderer's gaps), at most ``MAX_GROWTH``
  times: a translation into a wider script (zh -> en) needs that room, and the renderer uses it.

``check_page_reply`` validates a reply keyed by block id. Hard errors (a missing, unknown or repeated id, an empty
translation, letters of the source script left) make the reply unusable; soft ones (over budget beyond
``BUDGET_SLACK``, a glossary value not used) are sent back with the hard ones for the one retry, and when still
there after it become flags on the block (``over_budget:23/12``, ``glossary_missing:耐克``): the renderer wraps,
shrinks or grows a long translation, so it is usable, and the flag tells a reviewer.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from ...core.keep import CURRENCY_SIGNS, language_scripts, letter_script
from ...core.languages import CHARACTER_WRAPPED, CJK_LANGUAGES, LANGUAGES
from ...core.types import TextBlock
from ..render.layout import LINE_SPACING
from ..render.measure import POLYGON_EM_RATIO, polygon_line_height
from ..render.placement import EDGE_MARGIN_RATIO, GAP_RATIO
from .base import PageBlock, PageText

MAX_IMAGE_SIDE = 1024  # px: enough for a model to see the layout, small enough to keep a request cheap
JPEG_QUALITY = 85
READABLE_SHRINK = 0.75  # a translation may be drawn this much smaller than its source ...
MIN_READABLE_PX = 12.0  # ... but not below this (a source smaller than this keeps its size)
MAX_GROWTH = 2.0  # a block's region reaches at most this many times its width into free room beside it
WORD_WRAP_FILL = 0.85  # lines wrapped at word boundaries are this full on average
BUDGET_SLACK = 0.1  # a translation this much over its budget still counts as within it (models count roughly)
HEADLINE_RATIO = 1.35  # font size over the page's median text size that makes a headline ...
HEADLINE_OF_LARGEST = 0.6  # ... when it is also this close to the page's largest (small print must not count)
LONE_HEADLINE_SHARE = 0.06  # a page's only block is a headline at this share of the page's shorter side
BADGE_MAX_CHARS = {True: 6, False: 16}  # by dense (CJK) source: a badge is a word or two
CONTAINER_DELTA = 60.0  # RGB distance between a block's ground and the page's that makes a coloured patch

_PRICE = re.compile(
    rf"[{re.escape(CURRENCY_SIGNS)}￥]|\d\s*(?:元|块|塊|円|원|折|%|％)|(?:元|块|円|원)\b|[满減减]\s*\d|\d+\s*off\b",
    re.IGNORECASE)

# The target locale's conventions for prices and units, as the prompt states them.
_COMMON = ("Keep every amount and its currency as in the source: never convert currencies (¥ stays ¥). Write "
           "numbers in digits, never as words. Keep metric units as written (cm, kg, ml, mAh).")
CONVENTIONS: dict[str, str] = {
    "en": _COMMON + " Prices: ¥99 (99元 becomes ¥99); discounts: '50% off', '¥50 off orders over ¥300'; "
                    "thousands with commas (1,299).",
    "ko": _COMMON + " Prices: ¥99 or 99위안 (not 원); discounts: '50% 할인', '300위안 이상 구매 시 50위안 할인'; "
                    "thousands with commas (1,299); counters as Korean writes them (2개, 3팩).",
    "ja": _COMMON + " Prices: 99元 or ¥99 as in the source (not 円 for yuan); discounts: '50%オフ'; "
                    "thousands with commas (1,299).",
    "zh": _COMMON + " Prices: ¥99 or 99元; discounts: '5折' or '满300减50' style; thousands without separators.",
    "zh-Hant": _COMMON + " Prices: ¥99 or 99元; discounts: '5折' style.",
    "de": _COMMON + " Prices: 99 ¥ or ¥99; decimal comma (1.299,50); discounts: '50 % Rabatt'.",
    "fr": _COMMON + " Prices: 99 ¥; decimal comma and thin space for thousands (1 299,50); '-50 %'.",
    "es": _COMMON + " Prices: 99 ¥; decimal comma (1.299,50); '50 % de descuento'.",
}


def conventions_for(target_lang: str) -> str:
    return CONVENTIONS.get(target_lang, _COMMON)


def block_size_px(block: TextBlock) -> float:
    """The block's font size (em, px) from its line polygons: the median line height / ``POLYGON_EM_RATIO``."""
    heights = [polygon_line_height(region) for region in block.regions]
    if not heights:
        heights = [block.bbox[3] - block.bbox[1]]
    return max(1.0, float(statistics.median(heights)) / POLYGON_EM_RATIO)


def length_budget(box_w: float, box_h: float, size_px: float, advance_em: float, *,
                  word_wrapped: bool = False) -> int:
    """Target-language characters that fit a ``box_w`` x ``box_h`` box at a readable size.

    The readable size is the source size shrunk to ``READABLE_SHRINK`` of it (not below ``MIN_READABLE_PX``,
    never above the source size); lines are ``LINE_SPACING`` apart and hold ``box_w / (size * advance_em)``
    characters each (fewer when the target wraps between words). At least 1.
    """
    if box_w <= 0 or box_h <= 0 or size_px <= 0 or advance_em <= 0:
        return 1
    size = min(size_px, max(MIN_READABLE_PX, size_px * READABLE_SHRINK))
    pitch = size * LINE_SPACING
    lines = max(1, math.floor((box_h + pitch - size) / pitch + 1e-9))  # n lines take (n - 1) pitches + one em
    per_line = box_w / (size * advance_em)
    if word_wrapped and lines > 1:
        per_line *= WORD_WRAP_FILL
    return max(1, int(lines * math.floor(per_line + 1e-9)))


def region_width(box: Sequence[float], alignment: str, others: Sequence[Sequence[float]], page_w: float,
                 size_px: float) -> float:
    """The width a block can use: its box grown into the free room on its rows (beside it, up to other text less
    the renderer's gap, or the page edge less its margin), to the right for left-aligned text, to the left for
    right-aligned, evenly for centred; never narrower than the box, never over ``MAX_GROWTH`` times it."""
    x0, y0, x1, y1 = box
    width = x1 - x0
    left, right = EDGE_MARGIN_RATIO * size_px, page_w - EDGE_MARGIN_RATIO * size_px
    gap = GAP_RATIO * size_px
    for ox0, oy0, ox1, oy1 in others:
        if oy1 <= y0 or oy0 >= y1:  # not on the block's rows
            continue
        if ox1 <= x0:
            left = max(left, ox1 + gap)
        elif ox0 >= x1:
            right = min(right, ox0 - gap)
    if alignment == "right":
        room = x1 - left
    elif alignment == "center":
        centre = (x0 + x1) / 2
        room = 2 * min(centre - left, right - centre)
    else:
        room = right - x0
    return float(min(max(width, room), MAX_GROWTH * width))


def is_price(text: str) -> bool:
    return bool(_PRICE.search(text))


def classify_role(text: str, size_px: float, page_median_px: float, page_w: int, page_h: int, *,
                  dense_source: bool, on_container: bool = False, lone: bool = False,
                  page_max_px: float = 0.0) -> str:
    """headline / price / badge / body for one block (see the module docstring)."""
    if is_price(text):
        return "price"
    if lone:
        if size_px >= LONE_HEADLINE_SHARE * max(1, min(page_w, page_h)):
            return "headline"
    elif page_median_px > 0 and size_px >= max(HEADLINE_RATIO * page_median_px, HEADLINE_OF_LARGEST * page_max_px):
        return "headline"
    compact = "".join(text.split())
    short = len(compact if dense_source else text.strip()) <= BADGE_MAX_CHARS[dense_source]
    if short and (on_container or size_px < page_median_px) and not lone:
        return "badge"
    return "body"


def on_coloured_patch(pixels: np.ndarray, box: Sequence[float], page_colour: np.ndarray) -> bool:
    """Whether the block's ground (the median colour of its box: text ink is the minority there) differs
    clearly from the page's (a pill, a ribbon, a stamp)."""
    h, w = pixels.shape[:2]
    x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
    x1, y1 = min(w, math.ceil(box[2])), min(h, math.ceil(box[3]))
    if x1 <= x0 or y1 <= y0:
        return False
    ground = np.median(pixels[y0:y1, x0:x1].reshape(-1, pixels.shape[2])[:, :3], axis=0)
    return float(np.linalg.norm(ground.astype(np.float64) - page_colour)) >= CONTAINER_DELTA


def encode_page_image(pixels: np.ndarray, max_side: int = MAX_IMAGE_SIDE, quality: int = JPEG_QUALITY) -> bytes:
    """The page as JPEG bytes, downscaled so its longest side is at most ``max_side`` (RGB input)."""
    h, w = pixels.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        pixels = cv2.resize(pixels, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    rgb = pixels[:, :, :3] if pixels.ndim == 3 else np.dstack([pixels] * 3)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not JPEG-encode the page image")
    return bytes(data)


# Kept blocks whose text the model should copy when it appears inside a translated block.
_DO_NOT_TRANSLATE_REASONS = {"latin_brand", "model_number"}


def build_page_text(blocks: Sequence[TextBlock], pixels: np.ndarray | None, source_lang: str, target_lang: str,
                    *, advance_em: float, kept_blocks: Sequence[TextBlock] = (),
                    context: Mapping[str, str] | None = None, glossary: Mapping[str, str] | None = None,
                    send_image: bool = True, page_size: tuple[int, int] | None = None) -> PageText:
    """The ``PageText`` of one image: block ``i`` gets id ``b{i+1}``, role, size, box and the length budget of
    its region."""
    if pixels is not None:
        page_h, page_w = pixels.shape[:2]
    else:
        page_w, page_h = page_size or (0, 0)
    sizes = [block_size_px(b) for b in blocks]
    all_sizes = sizes + [block_size_px(b) for b in kept_blocks]
    median = float(statistics.median(all_sizes)) if all_sizes else 0.0
    dense = source_lang in CJK_LANGUAGES
    word_wrapped = target_lang not in CHARACTER_WRAPPED
    page_colour = (np.median(pixels.reshape(-1, pixels.shape[2])[:, :3], axis=0).astype(np.float64)
                   if pixels is not None and pixels.ndim == 3 else None)
    lone = len(all_sizes) == 1
    out: list[PageBlock] = []
    boxes = [b.bbox for b in blocks] + [b.bbox for b in kept_blocks]
    for index, (block, size) in enumerate(zip(blocks, sizes, strict=True)):
        x0, y0, x1, y1 = block.bbox
        others = boxes[:index] + boxes[index + 1:]
        width = region_width(block.bbox, block.alignment, others, page_w, size) if page_w else x1 - x0
        patch = page_colour is not None and pixels is not None and on_coloured_patch(pixels, block.bbox, page_colour)
        role = classify_role(block.text, size, median, page_w, page_h, dense_source=dense,
                             on_container=patch, lone=lone, page_max_px=max(all_sizes))
        out.append(PageBlock(id=f"b{index + 1}", text=block.text, role=role, size_px=round(size, 1),
                             box=(int(x0), int(y0), math.ceil(x1), math.ceil(y1)),
                             budget=length_budget(width, y1 - y0, size, advance_em, word_wrapped=word_wrapped)))
    terms = [k for k, v in (glossary or {}).items() if k.strip() and k.strip() == v.strip()]
    terms += [b.text.strip() for b in kept_blocks if b.keep_reason in _DO_NOT_TRANSLATE_REASONS and b.text.strip()]
    image = encode_page_image(pixels) if send_image and pixels is not None else None
    return PageText(blocks=tuple(out), width=int(page_w), height=int(page_h), image_jpeg=image,
                    context=dict(context or {}), glossary=dict(glossary or {}),
                    do_not_translate=tuple(dict.fromkeys(terms)), conventions=conventions_for(target_lang))


# --- reply check ------------------------------------------------------------------------------------------------


@dataclass
class PageCheck:
    """What a reply gave and what is wrong with it (messages written for the model to act on)."""

    translations: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # hard: the reply cannot be used
    soft: dict[str, list[str]] = field(default_factory=dict)  # by block id: flags if still there after the retry
    soft_messages: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return self.errors + self.soft_messages


def source_script_left(translation: str, source_lang: str, target_lang: str, allowed: Sequence[str] = ()) -> str:
    """Letters of the source's own script (not Latin, not shared with the target) left in ``translation``, with
    the allowed terms (glossary values, do-not-translate terms) taken out first."""
    foreign = set(language_scripts(source_lang)) - set(language_scripts(target_lang)) - {"latin"}
    if not foreign:
        return ""
    rest = translation
    for term in sorted((t for t in allowed if t), key=len, reverse=True):
        rest = rest.replace(term, " ")
    return "".join(ch for ch in rest if letter_script(ch) in foreign)


def check_page_reply(page: PageText, pairs: Sequence[tuple[object, object]] | None, source_lang: str,
                     target_lang: str) -> PageCheck:
    """Check a reply given as (id, translation) pairs in reply order (``None``: the reply had none)."""
    check = PageCheck()
    if pairs is None:
        check.errors.append("the reply is not a JSON object mapping every block id to its translation")
        return check
    by_id = {b.id: b for b in page.blocks}
    seen: dict[str, int] = {}
    for key, value in pairs:
        key = str(key).strip()
        if key not in by_id:
            check.errors.append(f"{key}: no such block id (the ids are {', '.join(by_id)})")
            continue
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 2:
            check.errors.append(f"{key}: translated more than once; give each id exactly once")
        if not isinstance(value, str):
            check.errors.append(f"{key}: the translation must be a string, not {type(value).__name__}")
            continue
        check.translations.setdefault(key, value.strip())
    source_name = LANGUAGES.get(source_lang, source_lang)
    allowed = list(page.do_not_translate) + list(page.glossary.values())
    for block in page.blocks:
        if block.id not in seen:
            check.errors.append(f"{block.id}: missing; translate {block.text!r}")
            continue
        text = check.translations.get(block.id)
        if text is None:
            continue
        if not text and block.text.strip():
            check.errors.append(f"{block.id}: empty translation of {block.text!r}")
            continue
        left = source_script_left(text, source_lang, target_lang, allowed)
        if left:
            check.errors.append(f"{block.id}: still contains {source_name} text {left!r}; translate all of it")
        if block.budget and len(text) > block.budget * (1 + BUDGET_SLACK):
            check.soft.setdefault(block.id, []).append(f"over_budget:{len(text)}/{block.budget}")
            check.soft_messages.append(f"{block.id}: {len(text)} characters, over its budget of {block.budget}; "
                                       "say it shorter")
        folded = text.casefold()
        for term, value in page.glossary.items():
            if term.casefold() in block.text.casefold() and value.casefold() not in folded:
                check.soft.setdefault(block.id, []).append(f"glossary_missing:{term}")
                check.soft_messages.append(f"{block.id}: must use {value!r} for {term!r} (glossary)")
    return check
