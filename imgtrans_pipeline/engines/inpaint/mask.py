"""Build the erase mask from OCR polygons.

OCR polygons hug the glyph bodies; anti-aliased edges, outlines and drop shadows stick out by a few pixels and
would survive as a ghost of the text if only the polygon were erased. So each polygon is dilated in proportion to
its text height (a 12 px caption needs 2 px, a 90 px banner ~14 px).

When the image is given the mask can be refined to the actual text pixels: inside each region the pixels that
differ strongly from the local background (the median of a ring around the polygon) are taken as strokes, weaker
differences connected to them (anti-aliasing, glow, shadow) are added by hysteresis, and the result is dilated.
This keeps more of the real background (an inpainter invents less), and catches descenders or accents that poke
out of a tight OCR box. Whenever the background around a region is too busy to tell text from it, or the
"strokes" look implausible, that region falls back to the dilated polygon: refinement never erases less than
the text it can see, and never runs wild on a photo.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import cv2
import numpy as np

logger = logging.getLogger(__name__)

DILATION_RATIO = 0.15  # of the text height
MIN_DILATION_PX = 2
_SUBPIXEL_SHIFT = 4  # fillPoly fixed-point bits: polygons are float
_MAX_RING_SPREAD = 22.0  # robust std (gray levels) above which the background is "busy": no refinement
_MIN_STRONG_DIFF = 40.0
_MIN_WEAK_DIFF = 14.0


def text_height(polygon: Sequence[tuple[float, float]]) -> float:
    """Height of a text line: the short side of the polygon's minimum-area rectangle (works for rotated and
    vertical lines, where the short side is the character size)."""
    pts = np.asarray(polygon, dtype=np.float32).reshape(-1, 2)
    if len(pts) < 3:
        xs, ys = pts[:, 0], pts[:, 1]
        return float(max(1.0, min(np.ptp(xs) if len(xs) else 1.0, np.ptp(ys) if len(ys) else 1.0)))
    (_cx, _cy), (w, h), _angle = cv2.minAreaRect(pts)
    return float(max(1.0, min(w, h)))


def default_dilation(height: float) -> int:
    return max(MIN_DILATION_PX, round(DILATION_RATIO * height))


def _disk(radius: int) -> np.ndarray:
    size = 2 * radius + 1
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def _fill_polygon(canvas: np.ndarray, polygon: np.ndarray, offset: tuple[int, int]) -> None:
    """Fill a float polygon into ``canvas`` (uint8) whose top-left is ``offset`` in image coordinates."""
    scale = 1 << _SUBPIXEL_SHIFT
    pts = np.round((polygon - np.asarray(offset, dtype=np.float64)) * scale).astype(np.int32)
    if len(pts) >= 3:
        cv2.fillPoly(canvas, [pts], 255, lineType=cv2.LINE_8, shift=_SUBPIXEL_SHIFT)
    # Thin or degenerate polygons may fill nothing: always mark the pixels the outline passes through.
    cv2.polylines(canvas, [pts], True, 255, thickness=1, lineType=cv2.LINE_8, shift=_SUBPIXEL_SHIFT)


def _refine(roi_pixels: np.ndarray, poly: np.ndarray, height: float, dilation: int) -> np.ndarray | None:
    """Text-pixel mask (dilated) for one region inside its ROI, or None when the region can't be refined.

    ``poly`` is the filled polygon in ROI coordinates.
    """
    ring_outer = cv2.dilate(poly, _disk(dilation + max(3, round(0.25 * height))))
    ring = (ring_outer > 0) & (cv2.dilate(poly, _disk(max(1, dilation // 2))) == 0)
    if ring.sum() < 16:
        return None
    pixels = roi_pixels.astype(np.float32)
    ring_px = pixels[ring]
    background = np.median(ring_px, axis=0)
    spread = float(np.max(np.median(np.abs(ring_px - background), axis=0)) * 1.4826)
    if spread > _MAX_RING_SPREAD:
        return None
    diff = np.max(np.abs(pixels - background), axis=-1)
    strong_thr = max(_MIN_STRONG_DIFF, 4.0 * spread)
    weak_thr = max(_MIN_WEAK_DIFF, 2.5 * spread)
    inside = poly > 0
    strong = (diff > strong_thr) & inside
    inside_count = int(inside.sum())
    frac = strong.sum() / max(1, inside_count)
    if not 0.01 <= frac <= 0.85:
        return None
    # Hysteresis: weak pixels (edges, shadows, parts poking out of the box) count when connected to strong ones.
    search = cv2.dilate(poly, _disk(dilation + max(2, round(0.5 * height)))) > 0
    weak = ((diff > weak_thr) & search) | strong
    count, labels = cv2.connectedComponents(weak.astype(np.uint8), connectivity=8)
    if count <= 1:
        return None
    keep = np.zeros(count, dtype=bool)
    keep[np.unique(labels[strong])] = True
    keep[0] = False
    text = keep[labels]
    # A "stroke" component that fills most of the search area is a banner or a photo edge, not text.
    if text.sum() > 0.9 * search.sum():
        return None
    return cv2.dilate(text.astype(np.uint8) * 255, _disk(dilation))


def build_mask(
    shape: tuple[int, int],
    polygons: Sequence[Sequence[tuple[float, float]]],
    *,
    dilation_px: int | None = None,
    image: np.ndarray | None = None,
) -> np.ndarray:
    """Erase mask (HxW uint8, 255 = erase) for text lines given as float (x, y) polygons.

    ``dilation_px`` overrides the per-region dilation (default ~15% of each region's text height, min 2 px).
    With ``image`` (HxWx3 uint8) each region is refined to its text pixels where the background allows.
    """
    height, width = int(shape[0]), int(shape[1])
    mask = np.zeros((height, width), dtype=np.uint8)
    if image is not None and image.shape[:2] != (height, width):
        raise ValueError(f"image shape {image.shape[:2]} does not match mask shape {(height, width)}")
    refined = fallback = 0
    for polygon in polygons:
        pts = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        if len(pts) == 0 or not np.all(np.isfinite(pts)):
            continue
        region_h = text_height(pts)
        dilation = default_dilation(region_h) if dilation_px is None else max(0, int(dilation_px))
        margin = dilation + max(3, math.ceil(0.75 * region_h)) + 2
        x0 = max(0, math.floor(pts[:, 0].min()) - margin)
        y0 = max(0, math.floor(pts[:, 1].min()) - margin)
        x1 = min(width, math.ceil(pts[:, 0].max()) + margin + 1)
        y1 = min(height, math.ceil(pts[:, 1].max()) + margin + 1)
        if x0 >= x1 or y0 >= y1:
            continue  # polygon entirely outside the image
        poly = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        _fill_polygon(poly, pts, (x0, y0))
        region_mask = None
        if image is not None:
            region_mask = _refine(image[y0:y1, x0:x1], poly, region_h, max(dilation, MIN_DILATION_PX))
            if region_mask is None:
                fallback += 1
            else:
                refined += 1
        if region_mask is None:
            region_mask = cv2.dilate(poly, _disk(dilation)) if dilation > 0 else poly
        np.maximum(mask[y0:y1, x0:x1], region_mask, out=mask[y0:y1, x0:x1])
    if image is not None:
        logger.debug("mask: %d region(s) refined to text pixels, %d kept as boxes", refined, fallback)
    return mask
