"""Turn OCR lines into translation units: drop unreliable lines, group the rest into blocks in reading order.

Why blocks: a paragraph wrapped over two lines must be translated as one sentence, while a badge, headline or
claim next to it is a separate unit; merging separate phrases into one "sentence" ruins their translation, so
when in doubt lines stay apart. A line joins the block of the line above it when all of these hold:

- geometry: vertically close (gap below 0.6 x line height; above 0.4 only at one size), of similar height (ratio
  >= 0.8) and overlapping horizontally (>= 30 % of the narrower line);
- text: both lines of one script class (a Latin brand/model line never joins a Chinese line; a numbers-only line
  joins nothing), the lower line is no bullet item, and the sentence visibly runs on (the upper line ends with a
  comma or a function word like 的/和, a Latin lower line starts in lower case, or the upper line is a long line
  (>= 10 CJK widths) filling at least 70 % of the lower line's width, as wrapped paragraph lines do);
- appearance (when the image is given): one text colour, one background panel, one stroke weight, and no rule
  between the lines.

OCR lines that hold several items divided by "|" bars are cut into one region per item first
(``split_at_separators``).
"""

from __future__ import annotations

import logging
import re
import statistics
from dataclasses import dataclass

import numpy as np

from ...core.keep import letter_script, polygon_tilt
from ...core.types import TextBlock, TextRegion

logger = logging.getLogger(__name__)

DEFAULT_MIN_CONFIDENCE = 0.6
# Vertical gap / line height. Wrapped paragraph lines sit < ~0.55 line heights apart even at 2x line spacing
# (OCR boxes are ~1.3x the font size); separate claims on product images sit about a line apart, and merging
# separate phrases into one "sentence" ruins their translation, so err on the side of splitting.
MAX_GAP_RATIO = 0.6
MIN_HEIGHT_RATIO = 0.8  # a size change marks a different element (title vs body)
# Lines further apart than this (x line height) must also be of one size (height ratio >= SAME_SIZE_RATIO):
# a headline over a smaller caption sits about half a line above it, paragraph lines closer.
WIDE_GAP_RATIO = 0.4
SAME_SIZE_RATIO = 0.9
MIN_X_OVERLAP = 0.3  # of the narrower line
SAME_ROW_OVERLAP = 0.5  # y-overlap / smaller height for two boxes to count as the same row


def filter_regions(regions: list[TextRegion], min_confidence: float = DEFAULT_MIN_CONFIDENCE
                   ) -> tuple[list[TextRegion], int]:
    """Keep regions scoring at least ``min_confidence`` with non-blank text; return (kept, dropped count)."""
    kept = [r for r in regions if r.score >= min_confidence and r.text.strip()]
    dropped = len(regions) - len(kept)
    if dropped:
        logger.info("dropped %d OCR region(s) below confidence %.2f", dropped, min_confidence)
    return kept, dropped


def _height(box: tuple[float, float, float, float]) -> float:
    return max(box[3] - box[1], 1.0)


def _same_row(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    return overlap > SAME_ROW_OVERLAP * min(_height(a), _height(b))


def reading_order(regions: list[TextRegion]) -> list[TextRegion]:
    """Top-to-bottom rows, left-to-right within a row (rows = boxes overlapping vertically by half)."""
    remaining = sorted(regions, key=lambda r: (r.bbox()[1], r.bbox()[0]))
    rows: list[list[TextRegion]] = []
    for region in remaining:
        box = region.bbox()
        for row in rows:
            if _same_row(row[0].bbox(), box):
                row.append(region)
                break
        else:
            rows.append([region])
    ordered: list[TextRegion] = []
    for row in rows:
        ordered.extend(sorted(row, key=lambda r: r.bbox()[0]))
    return ordered


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x3040 <= cp <= 0x30FF  # kana
        or 0x3400 <= cp <= 0x4DBF
        or 0x4E00 <= cp <= 0x9FFF  # Han
        or 0xF900 <= cp <= 0xFAFF
        or 0x3000 <= cp <= 0x303F  # CJK punctuation
        or 0xFF00 <= cp <= 0xFFEF  # full-width forms
    )


def join_lines(lines: list[str]) -> str:
    """Join wrapped lines: no separator where either side is Chinese/Japanese, a space otherwise (Latin, Hangul)."""
    out = ""
    for line in (s.strip() for s in lines):
        if not line:
            continue
        if not out:
            out = line
        elif _is_cjk(out[-1]) or _is_cjk(line[0]):
            out += line
        elif out.endswith("-") and len(out) > 1 and out[-2].isalpha() and line[0].islower():
            out = out[:-1] + line  # de-hyphenate a word wrapped across lines
        else:
            out += " " + line
    return out


def estimate_alignment(boxes: list[tuple[float, float, float, float]], image_width: float | None = None) -> str:
    """left / center / right from how line edges line up (several lines) or position in the image (one line)."""
    if not boxes:
        return "left"
    if len(boxes) == 1:
        x0, _, x1, _ = boxes[0]
        if image_width:
            centre_offset = abs((x0 + x1) / 2 - image_width / 2)
            left_margin, right_margin = x0, image_width - x1
            if centre_offset <= 0.04 * image_width and left_margin > 0.05 * image_width:
                return "center"
            if right_margin < 0.5 * left_margin:
                return "right"
        return "left"
    lefts = [b[0] for b in boxes]
    rights = [b[2] for b in boxes]
    centres = [(b[0] + b[2]) / 2 for b in boxes]
    spread = {
        "left": statistics.pstdev(lefts),
        "center": statistics.pstdev(centres),
        "right": statistics.pstdev(rights),
    }
    # Lines of equal width line up on all three: prefer left, the common default, unless another is clearly better.
    best = min(spread, key=lambda k: spread[k])
    if spread["left"] <= spread[best] + 2.0:
        return "left"
    return best


# --- line appearance (from the image) ------------------------------------------------------------------------


@dataclass(frozen=True)
class LineStyle:
    """How a line is printed: text colour, the colour around it, and stroke width (font weight) in pixels."""

    color: tuple[float, float, float]
    background: tuple[float, float, float]
    stroke: float


def _clip(box: tuple[float, float, float, float], width: int, height: int, pad: int = 0) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    return (max(0, int(np.floor(x0)) - pad), max(0, int(np.floor(y0)) - pad),
            min(width, int(np.ceil(x1)) + pad), min(height, int(np.ceil(y1)) + pad))


def line_style(image: np.ndarray, box: tuple[float, float, float, float]) -> LineStyle | None:
    """The line's text colour, background colour and stroke width, or None when no text stands out of the box.

    The background is the median colour of a ring just outside the box; text pixels are those far from it (Otsu
    split of the colour distance); the colour is the median of the text pixels farthest from the background (the
    solid stroke cores, not anti-aliased rims); the stroke width is twice the text pixels' area over their edge
    length.
    """
    import cv2

    height, width = image.shape[:2]
    x0, y0, x1, y1 = _clip(box, width, height)
    if x1 - x0 < 4 or y1 - y0 < 6:
        return None
    pad = max(2, round((y1 - y0) * 0.15))
    ox0, oy0, ox1, oy1 = _clip(box, width, height, pad)
    outer = image[oy0:oy1, ox0:ox1].astype(np.float32)
    ring = np.ones(outer.shape[:2], dtype=bool)
    ring[y0 - oy0:y1 - oy0, x0 - ox0:x1 - ox0] = False
    crop = image[y0:y1, x0:x1].astype(np.float32)
    ring_px = outer[ring] if ring.sum() >= 8 else np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]])
    background = np.median(ring_px, axis=0)
    dist = np.sqrt(((crop - background) ** 2).sum(axis=2))
    if float(dist.max()) < 30.0:
        return None
    scaled = np.clip(dist * (255.0 / float(dist.max())), 0, 255).astype(np.uint8)
    threshold, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = scaled > max(threshold, 255.0 * 30.0 / float(dist.max()))
    share = float(mask.mean())
    if share < 0.02 or share > 0.75:
        return None
    text_dist = dist[mask]
    core = crop[mask][text_dist >= np.quantile(text_dist, 0.5)]
    color = np.median(core, axis=0)
    # A stroke of width w and length L covers w*L pixels with 2*L edge pixels: w = 2 * area / edge.
    ink = mask.astype(np.uint8)
    edge = int((ink & ~cv2.erode(ink, np.ones((3, 3), np.uint8)).astype(bool)).sum())
    stroke = 2.0 * float(ink.sum()) / edge if edge else 0.0
    return LineStyle(tuple(float(v) for v in color), tuple(float(v) for v in background),  # type: ignore[arg-type]
                     stroke)


def _color_distance(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    return float(np.sqrt(sum((p - q) ** 2 for p, q in zip(a, b, strict=True))))


def separator_between(image: np.ndarray, upper: tuple[float, float, float, float],
                      lower: tuple[float, float, float, float]) -> bool:
    """True when a rule (a thin horizontal line across both lines' width) runs between two stacked lines.

    Looked for between the lines' middles: a run of at most a fifth of a line height of rows that differ from
    the colour around them over at least 85 % of the lines' common width, in one colour, with the same colour
    above and below it. Glyph strokes never cover that much of a row (characters have gaps between them), a
    photo behind the text is not one colour along a row, and the edge of a picture has different colours on
    its two sides.
    """
    height, width = image.shape[:2]
    left, right = max(upper[0], lower[0]), min(upper[2], lower[2])
    line_h = min(_height(upper), _height(lower))
    top = (upper[1] + upper[3]) / 2 + line_h * 0.3
    bottom = (lower[1] + lower[3]) / 2 - line_h * 0.3
    if right - left < 8 or bottom - top < 3:
        return False
    x0, y0, x1, y1 = _clip((left, top, right, bottom), width, height)
    band = image[y0:y1, x0:x1].astype(np.float32)
    if band.shape[0] < 3 or band.shape[1] < 8:
        return False
    row_colour = np.median(band, axis=1)  # (rows, 3)
    dominant = np.median(band.reshape(-1, 3), axis=0)
    differs = np.sqrt(((band - dominant) ** 2).sum(axis=2)) > 40.0
    candidate = (differs.mean(axis=1) >= 0.85) & (band.std(axis=1).max(axis=1) < 25.0)
    max_thickness = max(3, round(line_h * 0.2))
    rows = np.flatnonzero(candidate)
    runs = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1) if rows.size else []
    for run in runs:
        start, end = int(run[0]), int(run[-1])
        if end - start + 1 > max_thickness or start < 1 or end > band.shape[0] - 2:
            continue
        above, below = row_colour[max(0, start - 2)], row_colour[min(band.shape[0] - 1, end + 2)]
        if _color_distance(tuple(above), tuple(below)) < 30.0:
            return True
    return False


# --- one OCR line holding several items ----------------------------------------------------------------------

SEPARATORS = "|｜"  # "正品保障 | 极速发货 | 七天退换": one OCR line, three separate claims
MAX_SPLIT_TILT = 5.0  # degrees; tilted lines are not cut (their polygon is not a box to interpolate along)


def char_ems(ch: str) -> float:
    """Advance of ``ch`` in em: one for CJK characters and full-width signs, about half for the rest."""
    return 1.0 if letter_script(ch) in ("han", "kana", "hangul") or ord(ch) >= 0x3000 else 0.55


def _separator_column(image: np.ndarray, box: tuple[float, float, float, float], guess: float) -> float:
    """The x of the printed separator bar nearest ``guess`` (within one line height), or ``guess`` when no column
    there is inked over most of the line's height."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = _clip(box, width, height)
    line_h = max(y1 - y0, 1)
    lo, hi = max(x0, int(guess - line_h)), min(x1, int(guess + line_h) + 1)
    if hi - lo < 1 or y1 - y0 < 4:
        return guess
    crop = image[y0:y1, lo:hi].astype(np.float32)
    background = np.median(image[y0:y1, x0:x1].reshape(-1, 3), axis=0)
    inked = np.sqrt(((crop - background) ** 2).sum(axis=2)) > 50.0
    coverage = inked.mean(axis=0)
    best = int(np.argmax(coverage - np.abs(np.arange(hi - lo) + lo - guess) / (4.0 * line_h)))
    return float(lo + best) if coverage[best] >= 0.6 else guess


def split_at_separators(regions: list[TextRegion], image: np.ndarray | None = None) -> list[TextRegion]:
    """Cut OCR lines at separator bars ("|") into one region per item, each with its part of the polygon.

    The cut positions come from the characters' widths (CJK one em, others about half) and, with ``image``, are
    moved onto the printed bar. Lines without a separator, tilted lines and non-box polygons pass unchanged.
    """
    out: list[TextRegion] = []
    for region in regions:
        text = region.text
        pieces = re.split(f"[{re.escape(SEPARATORS)}]", text)
        boxy = len(region.polygon) == 4 and polygon_tilt(region.polygon) <= MAX_SPLIT_TILT
        if sum(1 for p in pieces if p.strip()) < 2 or not boxy:
            out.append(region)
            continue
        x0, y0, x1, y1 = region.bbox()
        total = sum(char_ems(ch) for ch in text) or 1.0
        cuts: list[float] = []  # x of each separator
        pos = 0.0
        for piece in pieces[:-1]:
            pos += sum(char_ems(ch) for ch in piece)
            guess = x0 + (x1 - x0) * (pos + char_ems("|") / 2) / total
            cuts.append(_separator_column(image, (x0, y0, x1, y1), guess) if image is not None else guess)
            pos += char_ems("|")
        bar = max(2.0, (y1 - y0) * 0.1)  # half the room a bar and its spacing take
        edges = [x0] + [c for cut in cuts for c in (cut - bar, cut + bar)] + [x1]
        for index, piece in enumerate(pieces):
            left, right = edges[2 * index], edges[2 * index + 1]
            if not piece.strip() or right - left < 2:
                continue
            polygon = [(left, y0), (right, y0), (right, y1), (left, y1)]
            out.append(TextRegion(polygon, piece.strip(), region.score))
    return out


# --- when two stacked lines are one paragraph -----------------------------------------------------------------

MAX_COLOR_DISTANCE = 80.0  # RGB distance between two lines' text colours: above it, different elements
MAX_BACKGROUND_DISTANCE = 80.0  # lines on differently coloured panels (badges, label bars) are separate
MAX_STROKE_RATIO = 1.3  # bold over regular (font weight): stroke widths of lines of about one size
LONG_LINE_EMS = 10.0  # a line this long (in CJK character widths) can be a wrapped line of a paragraph
_BULLETS = "●•·▪■◆◇○◎★☆▶►▸✓✔√※*-–—"
_BULLET_START = re.compile(rf"^\s*(?:[{re.escape(_BULLETS)}]|[①-⑳]|\d{{1,2}}[.、)）](?!\d)|[（(]\d{{1,2}}[)）])")
# Punctuation after which a sentence goes on, and CJK function words that cannot end a phrase.
_CONTINUES = tuple("，,、：:；;—…") + tuple("的和与及或在把被让给从对向为是将并而且以及之")


def _letter_class(text: str) -> str:
    """"cjk" (any CJK/Hangul letter), "latin" (letters, none CJK) or "none" (no letters: numbers, symbols)."""
    if any(letter_script(ch) in ("han", "kana", "hangul") for ch in text):
        return "cjk"
    return "latin" if any(ch.isalpha() for ch in text) else "none"


def _ems(text: str) -> float:
    """Length of a line in CJK character widths (Latin letters, digits and spaces count about half)."""
    return sum(1.0 if letter_script(ch) in ("han", "kana", "hangul") or ord(ch) >= 0x3000 else 0.5
               for ch in text.strip())


def _continues_text(upper: str, lower: str, upper_box: tuple[float, float, float, float],
                    lower_box: tuple[float, float, float, float]) -> bool:
    """Whether ``lower`` reads as the continuation of ``upper`` (a wrapped paragraph), from the text alone.

    Stacked short lines without a sentence running on are separate phrases on product images (badges,
    headline and subline, parallel claims), while a wrapped paragraph has long lines, the upper one filling the
    width, or breaks where the sentence visibly goes on (a comma, a function word, a lower-case start).
    """
    up, low = upper.strip(), lower.strip()
    if not up or not low or _BULLET_START.match(low):
        return False
    if up.endswith(_CONTINUES):
        return True
    if _letter_class(up) == "latin" and low[0].islower():
        return True
    upper_width = upper_box[2] - upper_box[0]
    lower_width = lower_box[2] - lower_box[0]
    return _ems(up) >= LONG_LINE_EMS and upper_width >= 0.7 * lower_width


def _joins(upper: TextRegion, lower: TextRegion, styles: dict[int, LineStyle | None],
           image: np.ndarray | None) -> bool:
    """Whether ``lower`` continues the block of ``upper`` (lower sits under upper)."""
    a, b = upper.bbox(), lower.bbox()
    h_up, h_low = _height(a), _height(b)
    if min(h_up, h_low) / max(h_up, h_low) < MIN_HEIGHT_RATIO:
        return False
    gap = b[1] - a[3]
    mean_h = (h_up + h_low) / 2
    if gap > MAX_GAP_RATIO * mean_h or gap < -0.5 * mean_h:
        return False
    if gap > WIDE_GAP_RATIO * mean_h and min(h_up, h_low) / max(h_up, h_low) < SAME_SIZE_RATIO:
        return False
    x_overlap = min(a[2], b[2]) - max(a[0], b[0])
    narrower = min(a[2] - a[0], b[2] - b[0])
    if narrower <= 0 or x_overlap < MIN_X_OVERLAP * narrower:
        return False
    # A brand/model line (no CJK) and a Chinese line never form one sentence; numbers alone never join.
    kind = _letter_class(upper.text)
    if kind == "none" or kind != _letter_class(lower.text):
        return False
    if not _continues_text(upper.text, lower.text, a, b):
        return False
    if image is None:
        return True
    style_up, style_low = styles.get(id(upper)), styles.get(id(lower))
    if style_up is not None and style_low is not None:
        if _color_distance(style_up.color, style_low.color) > MAX_COLOR_DISTANCE:
            return False
        if _color_distance(style_up.background, style_low.background) > MAX_BACKGROUND_DISTANCE:
            return False
        # Raw widths: the heights are already within MIN_HEIGHT_RATIO, and OCR box heights vary with descenders.
        w_up, w_low = style_up.stroke, style_low.stroke
        if min(w_up, w_low) > 0 and max(w_up, w_low) / min(w_up, w_low) > MAX_STROKE_RATIO:
            return False
    return not separator_between(image, a, b)


def group_blocks(regions: list[TextRegion], image_width: float | None = None,
                 image: np.ndarray | None = None) -> list[TextBlock]:
    """Group lines into blocks; blocks come out in reading order, the lines within a block top to bottom.

    ``image`` (the RGB uint8 image the regions were read from) lets appearance split blocks too: lines of a
    different text colour, background panel or font weight, or with a rule between them, are separate blocks.
    Without it only geometry and text decide.
    """
    ordered = reading_order(regions)
    if image is not None and (image.ndim != 3 or image.shape[2] != 3 or image.size == 0):
        raise ValueError(f"group_blocks expects an HxWx3 image, got shape {image.shape}")
    if image_width is None and image is not None:
        image_width = float(image.shape[1])
    styles: dict[int, LineStyle | None] = {}
    if image is not None:
        styles = {id(r): line_style(image, r.bbox()) for r in ordered}
    parent = list(range(len(ordered)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    boxes = [r.bbox() for r in ordered]
    # Each line links to the nearest line below that continues it, and each line is continued by at most one line
    # above (the one overlapping it most): two side-by-side items never share the line under them.
    links: dict[int, tuple[int, float]] = {}
    for i in range(len(ordered)):
        candidates = [
            j for j in range(len(ordered))
            if j != i and boxes[j][1] > boxes[i][1] and not _same_row(boxes[i], boxes[j])
            and _joins(ordered[i], ordered[j], styles, image)
        ]
        if not candidates:
            continue
        j = min(candidates, key=lambda k: boxes[k][1])
        overlap = min(boxes[i][2], boxes[j][2]) - max(boxes[i][0], boxes[j][0])
        if j not in links or overlap > links[j][1]:
            links[j] = (i, overlap)
    for j, (i, _overlap) in links.items():
        parent[find(j)] = find(i)

    groups: dict[int, list[int]] = {}
    for i in range(len(ordered)):
        groups.setdefault(find(i), []).append(i)
    blocks: list[tuple[int, TextBlock]] = []
    for members in groups.values():
        first = min(members)  # indices into ``ordered`` are reading order: the block's place among blocks
        members.sort(key=lambda k: (boxes[k][1] + boxes[k][3]) / 2)
        lines = [ordered[k] for k in members]
        member_boxes = [boxes[k] for k in members]
        bbox = (
            min(b[0] for b in member_boxes),
            min(b[1] for b in member_boxes),
            max(b[2] for b in member_boxes),
            max(b[3] for b in member_boxes),
        )
        blocks.append((first, TextBlock(
            regions=lines,
            text=join_lines([r.text for r in lines]),
            bbox=bbox,
            alignment=estimate_alignment(member_boxes, image_width),
        )))
    blocks.sort(key=lambda item: item[0])
    return [block for _, block in blocks]
