"""OCR for tall images (long product detail pages): overlapping horizontal slices, merged back without duplicates.

Why slice at all: RapidOCR shrinks any image whose long side exceeds 2000 px (a 790x6000 page is read at a third
of its resolution, and its 44-px lines become 15-px smudges), and tesseract is poor on very tall inputs.

Slice geometry (defaults):

* slice height = 1.5 x width (at least 480 px). The detector rescales the *short* side to 736 px, so a slice a bit
  taller than wide is read at roughly native scale, and 1.5 keeps the slice count low (7 slices for 790x6000).
* overlap = max(25 % of the slice height, 96 px): ~296 px at 790 wide, several times a product-page line height,
  so every line lies whole inside at least one slice. Slices are spread evenly so the last one ends at the bottom.

Merging: each slice's polygons are shifted back to page coordinates. A region whose box touches an inner slice edge
is "cut". Regions from different slices that overlap strongly (intersection / smaller area >= 0.5) are the same
line: we keep the uncut one, then the longer text, then the higher score. A cut region with no partner although
another slice contains its whole extent is a fragment of a line that slice already read (or legitimately missed),
so it is dropped rather than emitted as garbage text.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from ...core.types import TextRegion
from .base import OcrEngine

logger = logging.getLogger(__name__)

DEFAULT_SLICE_RATIO = 1.5  # slice height / image width
DEFAULT_OVERLAP_RATIO = 0.25  # overlap / slice height
MIN_SLICE_PX = 480
MIN_OVERLAP_PX = 96
EDGE_MARGIN_PX = 2.0  # a box within this many px of an inner slice edge is treated as cut by it


def is_tall(height: int, width: int, tall_ratio: float) -> bool:
    return width > 0 and height / width > tall_ratio


def plan_slices(
    height: int,
    width: int,
    *,
    slice_ratio: float = DEFAULT_SLICE_RATIO,
    overlap_ratio: float = DEFAULT_OVERLAP_RATIO,
) -> list[tuple[int, int]]:
    """Return ``[(y0, y1), ...]`` row spans covering ``height`` with at least the configured overlap.

    Public so tests (and callers that want to know where seams fall) can compute the exact seam positions.
    """
    if height <= 0 or width <= 0:
        return []
    slice_h = max(round(width * slice_ratio), MIN_SLICE_PX)
    if slice_h >= height:
        return [(0, height)]
    overlap = max(round(slice_h * overlap_ratio), MIN_OVERLAP_PX)
    overlap = min(overlap, slice_h // 2)
    step = slice_h - overlap
    count = math.ceil((height - overlap) / step)
    count = max(count, 2)
    # Spread the starts evenly between 0 and height - slice_h: overlap only grows, the last slice ends at the bottom.
    starts = [round(i * (height - slice_h) / (count - 1)) for i in range(count)]
    return [(s, s + slice_h) for s in starts]


@dataclass
class _Candidate:
    region: TextRegion
    slice_index: int
    cut: bool
    box: tuple[float, float, float, float]

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)


def _overlap_of_smaller(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    smaller = min(area_a, area_b)
    return (ix * iy) / smaller if smaller > 0 else 0.0


def _better(a: _Candidate, b: _Candidate) -> _Candidate:
    """Prefer the copy not cut by a slice edge, then the longer text, then the higher score."""
    key_a = (not a.cut, len(a.region.text.strip()), a.region.score)
    key_b = (not b.cut, len(b.region.text.strip()), b.region.score)
    return a if key_a >= key_b else b


def merge_slice_regions(
    per_slice: list[list[TextRegion]],
    spans: list[tuple[int, int]],
    *,
    height: int,
    dedupe_overlap: float = 0.5,
) -> list[TextRegion]:
    """Merge regions already shifted to page coordinates; ``per_slice[i]`` came from ``spans[i]``."""
    candidates: list[_Candidate] = []
    for index, (regions, (y0, y1)) in enumerate(zip(per_slice, spans, strict=True)):
        for region in regions:
            box = region.bbox()
            cut_top = y0 > 0 and box[1] <= y0 + EDGE_MARGIN_PX
            cut_bottom = y1 < height and box[3] >= y1 - EDGE_MARGIN_PX
            candidates.append(_Candidate(region, index, cut_top or cut_bottom, box))

    # Greedy clustering across slices: each candidate joins the first kept candidate from another slice it
    # overlaps strongly with.
    kept: list[_Candidate] = []
    for cand in sorted(candidates, key=lambda c: (c.box[1], c.box[0])):
        match_at = None
        for i, other in enumerate(kept):
            if other.slice_index == cand.slice_index:
                continue
            if _overlap_of_smaller(cand.box, other.box) >= dedupe_overlap:
                match_at = i
                break
        if match_at is None:
            kept.append(cand)
        else:
            kept[match_at] = _better(kept[match_at], cand)

    result: list[TextRegion] = []
    for cand in kept:
        if cand.cut:
            _, by0, _, by1 = cand.box
            whole_elsewhere = any(
                i != cand.slice_index and s0 < by0 - EDGE_MARGIN_PX and by1 + EDGE_MARGIN_PX < s1
                for i, (s0, s1) in enumerate(spans)
            )
            if whole_elsewhere:
                logger.debug("dropping seam fragment %r at y=%.0f..%.0f", cand.region.text, by0, by1)
                continue
        result.append(cand.region)
    return result


def recognize_sliced(
    engine: OcrEngine,
    image: np.ndarray,
    lang: str,
    *,
    slice_ratio: float = DEFAULT_SLICE_RATIO,
    overlap_ratio: float = DEFAULT_OVERLAP_RATIO,
) -> tuple[list[TextRegion], int]:
    """OCR a tall image slice by slice; returns page-coordinate regions (deduplicated) and the slice count."""
    height, width = image.shape[:2]
    spans = plan_slices(height, width, slice_ratio=slice_ratio, overlap_ratio=overlap_ratio)
    per_slice: list[list[TextRegion]] = []
    for y0, y1 in spans:
        found = engine.recognize(np.ascontiguousarray(image[y0:y1]), lang)
        per_slice.append([
            TextRegion(polygon=[(x, y + y0) for x, y in r.polygon], text=r.text, score=r.score) for r in found
        ])
    merged = merge_slice_regions(per_slice, spans, height=height)
    logger.info("sliced %dx%d image into %d slices: %d regions (%d before merge)", width, height, len(spans),
                len(merged), sum(len(s) for s in per_slice))
    return merged, len(spans)
