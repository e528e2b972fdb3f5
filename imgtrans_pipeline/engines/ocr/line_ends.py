"""Widen line boxes that the detector cut short of their first or last character.

DB-style detectors (RapidOCR's, PaddleOCR's) lose thin characters at a line's end: the box of "一机多用" starts
inside 一, while the recogniser, reading the crop with its context, still returns all four characters. Erasing and
drawing follow the box, so the rest of the cut character would stay in the image beside the translation. A line
of CJK text needs about one em per character; where its box is clearly narrower than its text and ink of the text's
tone continues past an end, at the line's height, the box is widened over that ink. Nothing else is touched.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np

from ...core.keep import letter_script, polygon_tilt
from ...core.types import TextRegion
from .blocks import char_ems

logger = logging.getLogger(__name__)

MIN_CJK_SHARE = 0.6  # widths are predictable for CJK text only (Latin advances vary by letter and face)
INK_EM = 0.85  # height of the rows where a CJK line's ink reaches EM_ROWS of its peak, in em
EM_ROWS = 0.3  # (a badge or decoration above the line has less ink per row than the line itself)
MIN_DEFICIT_EM = 0.25  # the text needs at least this much more room than its box before an end is looked at
MAX_GROW_EM = 1.3  # a box grows by at most about one character per end
MAX_TILT = 3.0  # degrees: only boxes that are upright rectangles


def _is_cjk(ch: str) -> bool:
    return letter_script(ch) in ("han", "kana", "hangul")


def _needs_room(text: str) -> float | None:
    """Width the text takes in em (CJK one em, others about half), or None when it is not mostly CJK."""
    letters = [ch for ch in text if not ch.isspace()]
    cjk = sum(1 for ch in letters if _is_cjk(ch))
    if not letters or cjk / len(letters) < MIN_CJK_SHARE:
        return None
    return float(sum(char_ems(ch) for ch in letters))


def _ink(grey: np.ndarray, inside: np.ndarray) -> tuple[np.ndarray, float, float] | None:
    """Pixels of the text's tone (Otsu's split of the box's own pixels, the text being the smaller side), the
    text's mean grey level and its contrast to the rest."""
    values = grey[inside]
    if values.size < 16 or float(values.max()) - float(values.min()) < 40:
        return None
    threshold, _ = cv2.threshold(values.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    bright = values > threshold
    text_bright = bool(bright.mean() < 0.5)
    text_mean = float(values[bright == text_bright].mean())
    ground_mean = float(values[bright != text_bright].mean())
    if abs(text_mean - ground_mean) < 40:
        return None
    # Halfway between the threshold and the text's mean: anti-aliased rims and a background of a near tone are not ink.
    cut = (threshold + text_mean) / 2.0
    return (grey > cut if text_bright else grey < cut), text_mean, abs(text_mean - ground_mean)


def _widen(grey: np.ndarray, region: TextRegion, others: list[tuple[float, float, float, float]]) -> TextRegion | None:
    if len(region.polygon) != 4 or polygon_tilt(region.polygon) > MAX_TILT:
        return None
    needed = _needs_room(region.text)
    if needed is None:
        return None
    height, width = grey.shape
    x0, y0, x1, y1 = region.bbox()
    box_h = y1 - y0
    if box_h < 8 or x1 - x0 < box_h:
        return None
    band = max(2, round(0.25 * box_h))
    top, bottom = max(0, int(y0) - band), min(height, int(np.ceil(y1)) + band)
    # The ink's height gives the em whatever padding the detector put around the line.
    inner = grey[int(y0):int(np.ceil(y1)), max(0, int(x0)):min(width, int(np.ceil(x1)))]
    found = _ink(inner, np.ones(inner.shape, bool))
    if found is None:
        return None
    ink_in = found[0]
    rows = np.nonzero(ink_in.sum(axis=1) >= max(1, EM_ROWS * ink_in.sum(axis=1).max()))[0]
    if len(rows) < 3:
        return None
    em = (rows[-1] - rows[0] + 1) / INK_EM
    # What the box holds is its ink's extent, not its own width: detectors pad a line by a varying margin.
    cols = np.nonzero(ink_in.sum(axis=0) >= 2)[0]
    ink_x0, ink_x1 = max(0, int(x0)) + cols[0], max(0, int(x0)) + cols[-1] + 1
    if needed * em - (ink_x1 - ink_x0) < MIN_DEFICIT_EM * em:
        return None
    reach = MAX_GROW_EM * em
    # Not into another line: stop short of any box sharing these rows.
    left_limit, right_limit = x0 - reach, x1 + reach
    for ox0, oy0, ox1, oy1 in others:
        if min(y1, oy1) - max(y0, oy0) <= 0.3 * box_h:
            continue
        if ox1 <= x0:
            left_limit = max(left_limit, ox1 + 2)
        elif ox0 >= x1:
            right_limit = min(right_limit, ox0 - 2)
    cx0, cx1 = max(0, int(np.floor(left_limit))), min(width, int(np.ceil(right_limit)))
    if cx1 - cx0 < 2:
        return None
    crop = grey[top:bottom, cx0:cx1]
    inside = np.zeros(crop.shape, bool)
    inside[int(y0) - top:int(np.ceil(y1)) - top, max(0, int(x0) - cx0):max(0, int(np.ceil(x1)) - cx0)] = True
    found = _ink(crop, inside)
    if found is None:
        return None
    ink, text_grey, contrast = found
    count, labels, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)

    def cut_glyph(k: int) -> tuple[float, float] | None:
        """Page x extent of component ``k`` when it looks like a piece of a glyph at the line's height."""
        left, t, w, h, area = (int(v) for v in stats[k])
        if left == 0 or left + w >= crop.shape[1] or area < 4:
            return None  # runs on past the searched strip: a shape of the picture, not a character
        if t + top < y0 - 0.1 * box_h or t + h + top > y1 + 0.1 * box_h or h > 1.15 * em:
            return None
        if area > 0.5 * w * h and h > 0.3 * em:
            return None  # a solid patch, not strokes (a stroke as solid as that is a bar: 一, a dash)
        if t + top > mid_y1 or t + h + top < mid_y0:
            return None  # off the middle of the line: an edge of something above or below it
        mean = float(crop[t:t + h, left:left + w][labels[t:t + h, left:left + w] == k].mean())
        if abs(mean - text_grey) > max(20.0, 0.3 * contrast):
            return None  # of the text's side of the split, but not of its tone
        return float(left + cx0), float(left + w + cx0)

    ink_top, ink_bottom = int(y0) + rows[0], int(y0) + rows[-1] + 1
    mid_y0, mid_y1 = ink_top + 0.3 * (ink_bottom - ink_top), ink_bottom - 0.3 * (ink_bottom - ink_top)
    pieces = [(k, extent) for k in range(1, count) if (extent := cut_glyph(k)) is not None]
    # The recogniser read the whole text from the box, so a character the box lost is partly inside it: growth starts
    # from a piece the box edge cuts through, then takes the pieces close to it (one character's strokes).
    lefts = stats[:, cv2.CC_STAT_LEFT] + cx0
    within = [k for k in range(1, count) if lefts[k] >= x0 and lefts[k] + stats[k, cv2.CC_STAT_WIDTH] <= x1]
    new_x0, new_x1 = x0, x1
    gap = 0.25 * em
    for edge, outward in ((x0, -1), (x1, 1)):
        cut_ids = [k for k, e in pieces if e[0] < edge < e[1]]
        cut = [e for k, e in pieces if k in cut_ids]
        if not cut:
            continue
        # ... and it sits next to the rest of the line's ink, at a character's spacing (a shape of the picture
        # that the box merely touches lies apart from the text).
        cols = np.nonzero((inside & np.isin(labels, within)).any(axis=0))[0] + cx0
        if not len(cols):
            continue
        if outward < 0 and cols.min() - max(e[1] for e in cut) > 0.3 * em:
            continue
        if outward > 0 and min(e[0] for e in cut) - cols.max() > 0.3 * em:
            continue
        reach_to = min(e[0] for e in cut) if outward < 0 else max(e[1] for e in cut)
        for lo, hi in sorted((e for _, e in pieces), key=lambda e: -e[1] if outward < 0 else e[0]):
            if outward < 0 and lo < reach_to and hi >= reach_to - gap:
                reach_to = lo
            elif outward > 0 and hi > reach_to and lo <= reach_to + gap:
                reach_to = hi
        if outward < 0:
            new_x0 = reach_to - 0.08 * em
        else:
            new_x1 = reach_to + 0.08 * em
    new_x0, new_x1 = max(min(new_x0, x0), x0 - reach, 0.0), min(max(new_x1, x1), x1 + reach, float(width))
    if new_x0 >= x0 - 1 and new_x1 <= x1 + 1:
        return None
    logger.debug("line %r widened from x %.0f-%.0f to %.0f-%.0f", region.text, x0, x1, new_x0, new_x1)
    dx0, dx1 = min(0.0, new_x0 - x0), max(0.0, new_x1 - x1)
    middle = (x0 + x1) / 2.0  # the left corners move left, the right ones right, in whatever order they come
    polygon = [(float(x + (dx0 if x < middle else dx1)), float(y)) for x, y in region.polygon]
    return TextRegion(polygon=polygon, text=region.text, score=region.score)


def widen_clipped_lines(image: np.ndarray, regions: Sequence[TextRegion]) -> list[TextRegion]:
    """``regions`` with each box that was cut short of its text widened over the ink past its ends (see the module
    docstring); the others unchanged, in the same order. ``image``: the RGB page the regions were read from."""
    if not regions:
        return []
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    boxes = [r.bbox() for r in regions]
    out: list[TextRegion] = []
    for i, region in enumerate(regions):
        others = boxes[:i] + boxes[i + 1:]
        out.append(_widen(grey, region, others) or region)
    return out
