"""Read how the source text looked from its glyph pixels: size, stroke weight, fill colour, outline or shadow.

The background behind the text is known per pixel: it is the erased (inpainted) image, which differs from the
original only where text was. Where the eraser left a block untouched (or the caller passes the same image twice)
the background is the median of a ring around the block instead. Against that background each pixel gets a
coverage ``t`` (0 = background, 1 = fill colour, projected onto the background->fill line) and a residual (how far
it is off that line). Pixels far off the line that wrap around the fill are an outline or a shadow.

Sizes are font sizes (em, in pixels), the same unit the renderer draws with: the ink height of a source line is
divided by the ink height the reference font gives the same text at 1 px, so "国" lines, digit lines and Latin lines
all convert consistently. When the glyph pixels cannot be separated from the background (busy photo, tiny text),
the OCR polygon height is used instead (``POLYGON_EM_RATIO``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ...core.types import TextBlock, TextRegion

RGB = tuple[int, int, int]

# RapidOCR-style line polygons are this many em tall (detector boxes are unclipped around the ink).
POLYGON_EM_RATIO = 1.25
# Stroke width (2 * area / perimeter of the glyph mask, in em) at which a face counts as bold / black. Ideographs have
# thinner strokes than Latin letters of the same weight: Noto Sans CJK Regular / Bold measure ~0.063 / ~0.096 em on
# Chinese text and ~0.073 / ~0.116 em on Latin text, at 12-64 px.
BOLD_STROKE_RATIO = {"cjk": 0.082, "latin": 0.095}
BLACK_STROKE_RATIO = {"cjk": 0.13, "latin": 0.15}
# Anti-aliasing widens a stroke thresholded at half coverage by about this many pixels at any size.
STROKE_BIAS_PX = 0.2
BLUR_ALLOWANCE_PX = 0.1  # extra stroke width (px) a source must show before it counts as heavier
MIN_TEXT_PIXELS = 12
MAX_INK_SHARE = 0.75  # glyphs never fill this much of their line polygons ...
MAX_STROKE_RATIO = 0.3  # ... nor have strokes this wide (em): that is a wiped label, not text
MIN_OUTLINE_PX = 1.0  # thinner rims are anti-aliasing or JPEG halo, not a designed outline

FontAt = Callable[[int], ImageFont.FreeTypeFont]


@dataclass(frozen=True)
class SourceText:
    """What the source text of one block looked like."""

    px: float  # font size (em) in pixels
    measured: bool  # px (and weight/colours) come from glyph pixels, not the polygon fallback
    stroke_ratio: float  # stroke width / em (0 when unknown)
    weight: str  # "regular" | "bold" | "black"
    fill: RGB
    outline: RGB | None  # outline or shadow colour, None when the text has none
    outline_ratio: float  # outline width / em (0 when none)
    background: RGB  # source background around the text
    line_px: tuple[float, ...] = ()  # per-line sizes (em px)
    ink_x: tuple[int, int] | None = None  # left and right edge of the horizontal lines' ink on the page

    @property
    def bold(self) -> bool:
        return self.weight != "regular"


def _rgb(values: np.ndarray) -> RGB:
    return tuple(round(float(v)) for v in values[:3])  # type: ignore[return-value]


def clip_box(bbox: tuple[float, float, float, float], width: int, height: int,
             pad: float = 0.0) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = bbox
    return (max(0, math.floor(x0 - pad)), max(0, math.floor(y0 - pad)),
            min(width, math.ceil(x1 + pad)), min(height, math.ceil(y1 + pad)))


def region_is_vertical(region: TextRegion) -> bool:
    x0, y0, x1, y1 = region.bbox()
    return (y1 - y0) > 2.0 * max(1.0, x1 - x0) and len(region.text) >= 2


def polygon_line_height(region: TextRegion) -> float:
    """Height of a line polygon (its width for a vertical column)."""
    x0, y0, x1, y1 = region.bbox()
    return float(min(y1 - y0, x1 - x0) if region_is_vertical(region) else (y1 - y0))


PROFILE_FRACTION = 0.15  # ink rows below this share of the busiest row do not count towards a line's extent


def profile_extent(mask: np.ndarray, axis: int = 1, fraction: float = PROFILE_FRACTION) -> float:
    """Extent (pixels) of the rows (axis=1) or columns (axis=0) whose ink reaches ``fraction`` of the peak.

    Measuring source lines and reference text the same way keeps the em conversion unbiased, and the fraction
    ignores specks of background glued to a glyph, stray accents and thin descender tails.
    """
    profile = np.asarray(mask, dtype=np.float64).sum(axis=axis)
    if profile.size == 0 or profile.max() <= 0:
        return 0.0
    on = np.nonzero(profile >= max(1e-9, fraction * profile.max()))[0]
    return float(on[-1] - on[0] + 1)


@lru_cache(maxsize=4096)
def _reference_extent(path: str, index: int, text: str) -> float:
    from .fonts import load_font

    font = load_font(path, index, 100)
    left, top, right, bottom = font.getbbox(text, anchor="ls")
    if right <= left or bottom <= top:
        return 0.0
    img = Image.new("L", (int(right - left) + 4, int(bottom - top) + 4), 0)
    ImageDraw.Draw(img).text((2 - left, 2 - top), text, font=font, fill=255, anchor="ls")
    return profile_extent(np.asarray(img) >= 128) / 100.0


def text_ink_ratio(font_at: FontAt, text: str) -> float:
    """Extent of ``text``'s ink across the line, in em (reference face, measured like a source line)."""
    sample = "".join(ch for ch in text if not ch.isspace())[:40] or "国"
    font = font_at(100)
    ratio = _reference_extent(font.path, getattr(font, "index", 0) or 0, sample)
    return ratio if ratio > 0.2 else 0.9


def stroke_width(coverage: np.ndarray) -> float:
    """Mean stroke width in pixels of glyphs given as soft coverage (0..1): 2 * area / perimeter."""
    mask = (coverage > 0.5).astype(np.uint8)
    if int(mask.sum()) < 4:
        return 0.0
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    if perimeter <= 0:
        return 0.0
    return float(2.0 * float(np.clip(coverage, 0, 1).sum()) / perimeter)


def weight_from_stroke(ratio: float, px: float = 100.0, text: str = "") -> str:
    """Face weight for a stroke width of ``ratio`` em at ``px`` for ``text`` (thresholds mix by its share of CJK
    characters). Small text needs a clearer margin: a fraction of a pixel of blur (JPEG, resampling) is a large
    share of a thin stroke."""
    px = max(1.0, px)
    letters = [ch for ch in text if ch.isalnum()]
    cjk = sum(1 for ch in letters if ord(ch) >= 0x2E80) / len(letters) if letters else 1.0

    def threshold(table: dict[str, float]) -> float:
        return cjk * table["cjk"] + (1.0 - cjk) * table["latin"]

    if ratio >= threshold(BLACK_STROKE_RATIO) + BLUR_ALLOWANCE_PX * 2 / px:
        return "black"
    if ratio >= threshold(BOLD_STROKE_RATIO) + BLUR_ALLOWANCE_PX / px:
        return "bold"
    return "regular"


def _ring_median(image: np.ndarray, box: tuple[int, int, int, int], ring: int) -> np.ndarray:
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    ox0, oy0, ox1, oy1 = max(0, x0 - ring), max(0, y0 - ring), min(w, x1 + ring), min(h, y1 + ring)
    outer = image[oy0:oy1, ox0:ox1].astype(np.float32)
    inside = np.zeros(outer.shape[:2], dtype=bool)
    inside[y0 - oy0:y1 - oy0, x0 - ox0:x1 - ox0] = True
    ring_px = outer[~inside]
    if len(ring_px) < 8:
        ring_px = outer.reshape(-1, 3)
    return np.median(ring_px, axis=0) if len(ring_px) else np.array([255.0, 255.0, 255.0])


def _polygon_mask(regions: list[TextRegion], offset: tuple[int, int], shape: tuple[int, int],
                  grow: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    for r in regions:
        pts = np.asarray(r.polygon, dtype=np.float64).reshape(-1, 2)
        if len(pts) < 3 or not np.all(np.isfinite(pts)):
            continue
        pts = np.round((pts - np.asarray(offset, dtype=np.float64)) * 16).astype(np.int32)
        cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_8, shift=4)
    if grow > 0:
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    return mask > 0


def fallback_source(block: TextBlock, original: np.ndarray) -> SourceText:
    """Polygon-height size and ring/k-means colours: for text whose pixels cannot be told from the background."""
    from .color import sample_text_color

    heights = [polygon_line_height(r) for r in block.regions] or [block.bbox[3] - block.bbox[1]]
    px = max(1.0, statistics.median(heights) / POLYGON_EM_RATIO)
    fill, bg = sample_text_color(original, block.bbox)
    return SourceText(px=px, measured=False, stroke_ratio=0.0, weight="regular", fill=fill, outline=None,
                      outline_ratio=0.0, background=bg, line_px=tuple(h / POLYGON_EM_RATIO for h in heights))


def analyse_block(original: np.ndarray, inpainted: np.ndarray, block: TextBlock, font_at: FontAt) -> SourceText:
    """Size, weight and colours of one block's source text (see the module docstring)."""
    height, width = original.shape[:2]
    if not block.regions:
        return fallback_source(block, original)
    line_h = statistics.median(polygon_line_height(r) for r in block.regions)
    pad = max(2, round(0.3 * line_h))
    box = clip_box(block.bbox, width, height, pad=pad)
    x0, y0, x1, y1 = box
    if x1 - x0 < 3 or y1 - y0 < 3:
        return fallback_source(block, original)
    orig = original[y0:y1, x0:x1].astype(np.float32)
    erased = inpainted[y0:y1, x0:x1].astype(np.float32)
    text_area = _polygon_mask(block.regions, (x0, y0), orig.shape[:2], grow=max(1, round(0.15 * line_h)))
    if not text_area.any():
        return fallback_source(block, original)
    ring_color = _ring_median(original, clip_box(block.bbox, width, height), ring=max(3, pad)).astype(np.float32)
    ring = np.broadcast_to(ring_color, orig.shape).astype(np.float32)
    # Background per pixel: the erased image where the eraser worked on this block, or the median of a ring around
    # it. The erased image follows gradients, but where the eraser smeared in something else (a dark edge above a
    # label) or wiped the label the text sat on, the ring explains the pixels better: the estimate that leaves
    # fewer pixels half-way between background and fill wins.
    grounds = [(erased, None), (ring, ring_color)]
    if float(np.abs(orig - erased)[text_area].mean()) <= 2.0:
        grounds = grounds[1:]
    found = [r for r in (_analyse_against(orig, bg, text_area, block, (x0, y0), font_at, flat)
                         for bg, flat in grounds) if r]
    if not found:
        return fallback_source(block, original)
    return min(found, key=lambda r: r[1])[0]


def _analyse_against(orig: np.ndarray, bg: np.ndarray, text_area: np.ndarray, block: TextBlock,
                     offset: tuple[int, int], font_at: FontAt,
                     flat: np.ndarray | None = None) -> tuple[SourceText, float] | None:
    """The block's text against one background estimate, and the share of the text area left half-way between
    background and fill (lower = the estimate explains the pixels better); None when no plausible glyphs stand
    out from it. ``flat``: the one colour ``bg`` holds everywhere, when it is flat."""
    delta = orig - bg
    diff = np.sqrt(_channel_sum(delta * delta))
    inside = diff[text_area]
    threshold = max(30.0, 0.35 * float(np.percentile(inside, 97)))
    textish = (diff > threshold) & text_area
    if int(textish.sum()) < MIN_TEXT_PIXELS or textish.sum() > MAX_INK_SHARE * text_area.sum():
        return None
    # Fill colour: the stroke centres (deepest pixels of the text mask), which are neither rim nor outline.
    depth = cv2.distanceTransform(textish.astype(np.uint8), cv2.DIST_L2, 3)
    deep = textish & (depth >= max(1.0, float(np.quantile(depth[textish], 0.75))))
    fill = np.median(orig[deep], axis=0)
    bg_med = flat if flat is not None else np.median(bg[text_area], axis=0)
    # Coverage along the background->fill line, and the residual off that line.
    span = fill[None, None, :] - bg
    span_sq = np.maximum(_channel_sum(span * span), 1.0)
    t = _channel_sum(delta * span) / span_sq
    tc = np.clip(t, 0.0, 1.0)
    off = orig - (bg + tc[..., None] * span)
    residual = np.sqrt(_channel_sum(off * off))
    contrast = float(np.sqrt(((fill - bg_med) ** 2).sum()))
    off_line = textish & (residual > max(45.0, 0.3 * contrast))
    fill_cov = np.where(text_area & ~off_line, tc, 0.0)
    fill_mask = fill_cov > 0.5
    if int(fill_mask.sum()) < MIN_TEXT_PIXELS:
        return None

    outline: RGB | None = None
    outline_w = 0.0
    if int(off_line.sum()) >= max(MIN_TEXT_PIXELS, 0.15 * int(fill_mask.sum())):
        # An outline or shadow hugs the fill: most of the fill's rim touches it (multi-coloured text does not).
        rim = cv2.dilate(fill_mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~fill_mask
        near = cv2.dilate(off_line.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        rim_len = max(1.0, float(rim.sum()))
        width_px = float(off_line.sum()) / rim_len
        if float((rim & near).sum()) / rim_len >= 0.35 and width_px >= MIN_OUTLINE_PX:
            outline = _rgb(np.median(orig[off_line], axis=0))
            outline_w = width_px

    # Line sizes: the extent of the glyph pieces (connected components) that belong to each line.
    ink = fill_mask | off_line if outline is not None else fill_mask
    line_px, ink_x = _line_sizes(block.regions, ink, offset, font_at)
    if not line_px:
        return None
    px = float(statistics.median(line_px))
    stroke = stroke_width(fill_cov)
    ratio = max(0.0, stroke - STROKE_BIAS_PX) / px if stroke > 0 else 0.0
    if ratio > MAX_STROKE_RATIO:
        return None  # slabs, not strokes
    halfway = float(((tc > 0.2) & (tc < 0.8) & ~off_line)[text_area].mean())
    return SourceText(px=px, measured=True, stroke_ratio=round(ratio, 4),
                      weight=weight_from_stroke(ratio, px, block.text), fill=_rgb(fill), outline=outline,
                      outline_ratio=round(outline_w / px, 4) if outline else 0.0, background=_rgb(bg_med),
                      line_px=tuple(round(v, 2) for v in line_px), ink_x=ink_x), halfway


def _channel_sum(values: np.ndarray) -> np.ndarray:
    """``values.sum(axis=2)`` of an HxWx3 array, channel by channel (the same additions, in the same order, without
    numpy's slow reduction over a 3-long axis)."""
    return values[:, :, 0] + values[:, :, 1] + values[:, :, 2]


def _line_sizes(regions: list[TextRegion], ink: np.ndarray, offset: tuple[int, int],
                font_at: FontAt) -> tuple[list[float], tuple[int, int] | None]:
    """Font size of each line from the extent of its ink across the line (rows; columns for a vertical line), and
    the left and right edge (page x) of the ink of the horizontal lines (None without any).

    Each ink component goes to the line whose centre line is nearest to the component's centre (and inside the
    line's polygon band), so tightly set lines and a neighbouring block's ink do not bleed into a line's extent;
    the extent is taken where the line's ink profile reaches a few percent of its peak, which ignores specks of
    background glued to a glyph.
    """
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    ox, oy = offset
    lines = []
    for region in regions:
        rx0, ry0, rx1, ry1 = region.bbox()
        lines.append((rx0 - ox, ry0 - oy, rx1 - ox, ry1 - oy, region_is_vertical(region), polygon_line_height(region)))
    owner = np.full(count, -1, dtype=np.int64)
    for k in range(1, count):
        cx, cy = centroids[k]
        _left, _top, w, h, area = (int(v) for v in stats[k])
        if area < 3:
            continue
        best, best_d = -1, math.inf
        for i, (lx0, ly0, lx1, ly1, vertical, size) in enumerate(lines):
            if vertical:
                inside = ly0 - 0.1 * size <= cy <= ly1 + 0.1 * size and lx0 <= cx <= lx1
                dist = abs(cx - (lx0 + lx1) / 2)
                across = w
            else:
                inside = lx0 - 0.1 * size <= cx <= lx1 + 0.1 * size and ly0 <= cy <= ly1
                dist = abs(cy - (ly0 + ly1) / 2)
                across = h
            if inside and dist < best_d and across <= 1.3 * size:  # taller than the line: a background shape
                best, best_d = i, dist
        owner[k] = best
    # Where the ink starts and ends: the OCR box's padding around it differs by size and detector (~0.1 em).
    horizontal = np.asarray([not line[4] for line in lines] + [False])  # index -1 (no line) is not
    held = np.nonzero((owner >= 0) & horizontal[owner])[0]
    ink_x = None
    if len(held):
        lefts = stats[held, cv2.CC_STAT_LEFT]
        ink_x = (int(lefts.min()) + ox, int((lefts + stats[held, cv2.CC_STAT_WIDTH]).max()) + ox)
    out: list[float] = []
    for i, (region, (_, _, _, _, vertical, size)) in enumerate(zip(regions, lines, strict=True)):
        mine = owner[labels] == i
        if int(mine.sum()) < MIN_TEXT_PIXELS or size < 2:
            continue
        extent = profile_extent(mine, axis=0 if vertical else 1)
        if not 0.3 * size <= extent <= 1.12 * size:
            continue  # neighbouring text or background caught: not a trustworthy size
        ratio = 0.92 if vertical else text_ink_ratio(font_at, region.text)
        if extent / ratio > 1.1 * size:
            continue  # bigger than the line's own polygon: display lettering (3D, extruded), not a plain face
        out.append(extent / ratio)
    return out, ink_x


# Typical shop text per script: the average advance of a language's letters (spaces included) in its font.
ADVANCE_SAMPLES: dict[str, str] = {
    "zh": "全场包邮 新品上市 限时特价", "zh-Hant": "全場包郵 新品上市 限時特價", "ja": "送料無料 新商品 期間限定セール",
    "ko": "무료 배송 신상품 한정 특가", "ru": "Бесплатная доставка, новинка", "th": "ส่งฟรี สินค้าใหม่ ราคาพิเศษ",
}
ADVANCE_SAMPLE_LATIN = "Free shipping on all orders, new arrivals 50% off"
FALLBACK_ADVANCE_EM = {True: 1.0, False: 0.55}  # by CJK: when no font can be loaded


def average_advance_em(fonts: object | None, lang: str) -> float:
    """Average advance width of ``lang``'s characters, in em, in the font the renderer draws ``lang`` with
    (``fonts``: a ``FontSet``; None = the default one). What a length budget divides a box's width by."""
    from .fonts import FontSet, load_font

    sample = ADVANCE_SAMPLES.get(lang, ADVANCE_SAMPLE_LATIN)
    try:
        choice = (fonts if isinstance(fonts, FontSet) else _default_fontset()).resolve(lang)
        font = load_font(choice.path, choice.index, 100)
        return float(font.getlength(sample)) / (100.0 * len(sample))
    except Exception:  # no font for the language: the renderer will fail with the reason; a budget needs a number
        return FALLBACK_ADVANCE_EM[lang in {"zh", "zh-Hant", "ja", "ko"}]


@lru_cache(maxsize=1)
def _default_fontset() -> object:
    from .fonts import FontSet

    return FontSet()
