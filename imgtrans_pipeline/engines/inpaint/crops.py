"""Crop planning shared by the inpainters: work on padded boxes around the text, never on the whole page.

Product detail pages are often 790×6000 with a few lines of text; inpainting only the neighbourhood of each mask
component keeps the cost proportional to the text, not to the page. Boxes whose padded extents overlap are merged,
so every mask component lies wholly inside exactly one crop and every crop has ``padding`` pixels of real context
around each of its components (up to the image border). That is what makes crop-wise inpainting give the same
result as whole-image inpainting for local methods such as ``cv2.inpaint``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Crop:
    """A half-open box ``[x0, x1) × [y0, y1)`` in image coordinates."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def area(self) -> int:
        return self.width * self.height

    @property
    def slices(self) -> tuple[slice, slice]:
        """Row and column slices, for ``array[crop.slices]``."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def overlaps(self, other: Crop, gap: int = 0) -> bool:
        """True when the boxes intersect or are at most ``gap`` pixels apart."""
        return not (
            self.x1 + gap <= other.x0
            or other.x1 + gap <= self.x0
            or self.y1 + gap <= other.y0
            or other.y1 + gap <= self.y0
        )

    def union(self, other: Crop) -> Crop:
        return Crop(min(self.x0, other.x0), min(self.y0, other.y0), max(self.x1, other.x1), max(self.y1, other.y1))


def _row_bands(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs ``[start, stop)`` of consecutive rows that contain masked pixels."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) > 1)
    starts = np.concatenate(([rows[0]], rows[breaks + 1]))
    stops = np.concatenate((rows[breaks], [rows[-1]])) + 1
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def mask_components(mask: np.ndarray) -> list[Crop]:
    """Tight boxes of the 8-connected components of ``mask > 0``.

    Labels only the bands of rows that hold masked pixels, so a tall page with a few lines of text costs one
    cheap row scan plus work proportional to the text bands.
    """
    boxes = []
    for start, stop in _row_bands(mask):
        band = (mask[start:stop] > 0).astype(np.uint8)
        count, _labels, stats, _centroids = cv2.connectedComponentsWithStats(band, connectivity=8)
        for i in range(1, count):  # label 0 is the unmasked background
            x, y, w, h = (int(v) for v in stats[i, :4])
            boxes.append(Crop(x, start + y, x + w, start + y + h))
    return boxes


def merge_crops(crops: list[Crop], gap: int = 0) -> list[Crop]:
    """Merge boxes that overlap (or are within ``gap`` px) until no two do; order: top to bottom, left to right.

    Repeats until stable because a union can grow into boxes that neither part touched.
    """
    merged = list(crops)
    changed = True
    while changed and len(merged) > 1:
        changed = False
        merged.sort(key=lambda c: (c.y0, c.x0))
        out: list[Crop] = []
        for crop in merged:
            for i, existing in enumerate(out):
                if existing.overlaps(crop, gap):
                    out[i] = existing.union(crop)
                    changed = True
                    break
            else:
                out.append(crop)
        merged = out
    merged.sort(key=lambda c: (c.y0, c.x0))
    return merged


def plan_crops(mask: np.ndarray, padding: int, *, merge_gap: int = 0) -> list[Crop]:
    """Padded, merged crops covering every masked pixel of ``mask`` (HxW), clipped to the image.

    ``padding`` is the context kept around each component; ``merge_gap`` additionally merges crops that come
    closer than that many pixels (fewer, larger crops: less per-call overhead for tiny, dense text).
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {mask.shape}")
    height, width = mask.shape
    padded = [
        Crop(max(0, c.x0 - padding), max(0, c.y0 - padding), min(width, c.x1 + padding), min(height, c.y1 + padding))
        for c in mask_components(mask)
    ]
    crops = merge_crops(padded, merge_gap)
    logger.debug("planned %d crop(s) from %d component(s)", len(crops), len(padded))
    return crops


def expand_to_multiple(crop: Crop, multiple: int, image_shape: tuple[int, int]) -> Crop:
    """Grow ``crop`` so each side is a multiple of ``multiple``, staying inside the image when it can.

    Extra pixels are real context rather than mirrored padding. When the image itself is smaller than the
    rounded size the crop is clipped to the image and the caller pads the rest (see ``pad_to_multiple``).
    """
    height, width = image_shape

    def grow(lo: int, hi: int, limit: int) -> tuple[int, int]:
        size = hi - lo
        target = -(-size // multiple) * multiple
        extra = target - size
        lo2 = lo - extra // 2
        hi2 = hi + (extra - extra // 2)
        if lo2 < 0:
            hi2 -= lo2
            lo2 = 0
        if hi2 > limit:
            lo2 -= hi2 - limit
            hi2 = limit
        return max(0, lo2), hi2

    x0, x1 = grow(crop.x0, crop.x1, width)
    y0, y1 = grow(crop.y0, crop.y1, height)
    return Crop(x0, y0, x1, y1)


def pad_to_multiple(array: np.ndarray, multiple: int) -> np.ndarray:
    """Pad the bottom/right of an HxW[xC] array to multiples of ``multiple`` by mirroring (as LaMa's tools do)."""
    height, width = array.shape[:2]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if not pad_h and not pad_w:
        return array
    pad = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (array.ndim - 2)
    # "symmetric" works for any pad size; "reflect" fails when the pad exceeds the array size.
    return np.pad(array, pad, mode="symmetric")
