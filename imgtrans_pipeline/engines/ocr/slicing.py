"""OCR for tall images (long product detail pages): only the bands that can hold text, in slices, merged back.

Why slice at all: RapidOCR shrinks any image whose long side exceeds 2000 px (a 790x6000 page is read at a third
of its resolution, and its 44-px lines become 15-px smudges), and tesseract is poor on very tall inputs.

Why skip blank bands: text detection costs in proportion to the pixels handed to the detector, and a detail page is
mostly flat backdrop between its sections. Reading all of a 790x6000 page took 7 overlapping slices (6.55 Mpx, 10x
an 800x800 image): 81 % of its OCR time was detection, and the page cost 5.3-5.7x an 800x800 image end to end in the
bare benchmark loop. So before any detector runs, ``text_rows`` marks the rows that cross at least 4 separate sharp
horizontal edges (a step >= 24 levels in any channel; ~25 ms per page). Glyph strokes give such rows; flat fills,
gradients, soft textures and the two sides of a picture panel do not. ``plan_segments`` pads each run of text rows
by half its height (32-128 px) so the detector sees background around every line; rows outside these segments
cannot hold legible text and are never read. Segments up to one slice tall are stacked, in page order, into one
image per slice height (padded to a square with flat colour, so the detector reads it at the same scale as a slice)
and read in one engine call each; their borders are background rows, so no line spans two stacked segments.
Measured on the benchmark workload's detail pages (benchmarks/ocr_split.py): one call over 0.62 Mpx instead of 7
over 6.55 Mpx, OCR 4.9 s -> 0.84 s (9.4x -> 1.6x the 800x800 image), the same lines read; end to end (bare loop,
20 images) tall/800 went from 5.3-5.7x to 2.4-2.6x. A page that is busy from top to bottom (a photo) is one segment
and is read in the same slices as before, at the same cost (~10x an 800x800 image's OCR). Trade-off: on a flat
backdrop, a line whose rows each cross fewer than 4 edges (a lone "1") or whose strokes step by less than 24 levels
from the backdrop (~10 % contrast) is skipped.

Slice geometry for segments taller than a slice (defaults):

* slice height = 1.5 x width (at least 480 px). The detector rescales the *short* side to 736 px, so a slice a bit
  taller than wide is read at roughly native scale, and 1.5 keeps the slice count low (7 slices for 790x6000).
* overlap = max(25 % of the slice height, 96 px): ~296 px at 790 wide, several times a product-page line height,
  so every line lies whole inside at least one slice. Slices are spread evenly so the last one ends at the bottom.

Merging: each span's polygons are shifted back to page coordinates. A region whose box touches an inner slice edge
is "cut". Regions from different slices that overlap strongly (intersection / smaller area >= 0.5) are the same
line: we keep the uncut one, then the longer text, then the higher score. A cut region with no partner although
another slice contains its whole extent is a fragment of a line that slice already read (or legitimately missed),
so it is dropped rather than emitted as garbage text.
"""
from __future__ import annotations

import bisect
import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np

from ...core.types import TextRegion
from .base import OcrEngine

logger = logging.getLogger(__name__)

DEFAULT_SLICE_RATIO = 1.5  # slice height / image width
DEFAULT_OVERLAP_RATIO = 0.25  # overlap / slice height
MIN_SLICE_PX = 480
MIN_OVERLAP_PX = 96
EDGE_MARGIN_PX = 2.0  # a box within this many px of an inner slice edge is treated as cut by it
EDGE_THRESHOLD = 24  # a horizontal step this sharp (0-255, any channel) may be a glyph stroke
EDGE_MIN_EDGES = 4  # separate edges a row must cross to count as possibly holding text
MIN_BAND_PAD_PX = 32  # background kept above and below each run of text rows ...
MAX_BAND_PAD_PX = 128  # ... growing with the run (half its height, for big banner type) up to this


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


def text_rows(image: np.ndarray, *, threshold: int = EDGE_THRESHOLD, min_edges: int = EDGE_MIN_EDGES) -> np.ndarray:
    """Boolean per row: could this row hold text? True where the row crosses several separate sharp edges.

    An edge is a run of horizontally adjacent pixel pairs that differ by at least ``threshold`` in some channel (so
    colour-only contrast counts too); a run counts once however wide its anti-aliasing. A line of glyphs crosses
    many strokes on every row it covers; a flat fill, a gradient or a soft texture crosses none, and the sides of a
    picture panel only two, so ``min_edges`` keeps those rows out. Busy photos do cross many edges: they are read as
    before (this only ever skips rows, it never hides a pixel from a read span). ~25 ms for 790x6000.
    """
    height, width = image.shape[:2]
    if width < 2:
        return np.zeros(height, dtype=bool)
    steps = cv2.absdiff(image[:, 1:], image[:, :-1])
    if steps.ndim == 3:
        channels = cv2.split(steps)
        steps = channels[0]
        for channel in channels[1:]:
            steps = cv2.max(steps, channel)
    hits = steps >= threshold
    starts = hits[:, 1:] & ~hits[:, :-1]
    counts = np.count_nonzero(starts, axis=1) + hits[:, 0]
    return counts >= min_edges


def plan_segments(
    rows: np.ndarray, *, min_pad: int = MIN_BAND_PAD_PX, max_pad: int = MAX_BAND_PAD_PX
) -> list[tuple[int, int]]:
    """Row spans ``[(y0, y1), ...]`` around the runs of text rows, padded so the detector sees context.

    Each run of ``True`` rows is padded by half its height, clamped to ``[min_pad, max_pad]``, on both sides (a
    detector needs background around a line to find its box); runs whose padded spans touch are merged. Everything
    outside the returned spans is rows that cross too few sharp edges to hold a line of legible text.
    """
    height = len(rows)
    if height == 0 or not rows.any():
        return []
    padded = np.concatenate([[False], rows, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    spans: list[tuple[int, int]] = []
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        pad = min(max(min_pad, int(end - start) // 2), max_pad)
        y0, y1 = max(0, int(start) - pad), min(height, int(end) + pad)
        if spans and y0 <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], y1))
        else:
            spans.append((y0, y1))
    return spans


def plan_passes(
    image: np.ndarray,
    *,
    slice_ratio: float = DEFAULT_SLICE_RATIO,
    overlap_ratio: float = DEFAULT_OVERLAP_RATIO,
    skip_blank: bool = True,
) -> list[list[tuple[int, int]]]:
    """Which page rows each OCR call reads: a list of passes, each a list of page row spans stacked into one image.

    Text segments (``plan_segments``) taller than a slice are cut into overlapping slices (``plan_slices``); each
    such slice is a pass of its own, exactly as a page without blank bands was read before. Shorter segments are
    packed, in page order, into passes of at most one slice height. ``skip_blank=False`` plans the old way: the
    whole page as one segment.
    """
    height, width = image.shape[:2]
    if height <= 0 or width <= 0:
        return []
    slice_h = max(round(width * slice_ratio), MIN_SLICE_PX)
    segments = plan_segments(text_rows(image)) if skip_blank else [(0, height)]
    passes: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    used = 0
    for y0, y1 in segments:
        if y1 - y0 > slice_h:
            if current:
                passes.append(current)
                current, used = [], 0
            sub = plan_slices(y1 - y0, width, slice_ratio=slice_ratio, overlap_ratio=overlap_ratio)
            passes.extend([[(y0 + a, y0 + b)] for a, b in sub])
            continue
        if current and used + (y1 - y0) > slice_h:
            passes.append(current)
            current, used = [], 0
        current.append((y0, y1))
        used += y1 - y0
    if current:
        passes.append(current)
    return passes


def _stack(image: np.ndarray, spans: list[tuple[int, int]]) -> tuple[np.ndarray, list[int]]:
    """Stack the spans' rows into one image (padded to at least its width tall); returns it and each span's top."""
    width = image.shape[1]
    tops: list[int] = []
    parts: list[np.ndarray] = []
    y = 0
    for y0, y1 in spans:
        tops.append(y)
        parts.append(image[y0:y1])
        y += y1 - y0
    if len(parts) == 1 and y >= width:
        return np.ascontiguousarray(parts[0]), tops
    # Pad short stacks to a square with the flat colour of the last row: RapidOCR scales the *short* side to
    # 736 px, so a 790x300 stack would be read at 2.5x (slow, and not the scale lines were drawn at).
    if y < width:
        fill = np.median(parts[-1][-1], axis=0).astype(image.dtype)
        parts.append(np.broadcast_to(fill, (width - y, width, image.shape[2])))
    return np.ascontiguousarray(np.concatenate(parts, axis=0)), tops


def recognize_sliced(
    engine: OcrEngine,
    image: np.ndarray,
    lang: str,
    *,
    slice_ratio: float = DEFAULT_SLICE_RATIO,
    overlap_ratio: float = DEFAULT_OVERLAP_RATIO,
    skip_blank: bool = True,
) -> tuple[list[TextRegion], int]:
    """OCR a tall image pass by pass; returns page-coordinate regions (deduplicated) and the number of slices.

    The count is of page row spans read (``OcrResult.slices``: how many pieces the page was cut into), not of
    engine calls: several short spans share one call. A page without a single text row reports 0.
    """
    height, width = image.shape[:2]
    passes = plan_passes(image, slice_ratio=slice_ratio, overlap_ratio=overlap_ratio, skip_blank=skip_blank)
    spans: list[tuple[int, int]] = []
    per_span: list[list[TextRegion]] = []
    stacks = [_stack(image, pass_spans) for pass_spans in passes]
    # An engine that can read several images at once (tesseract: one process start for all passes) gets them all.
    batch = getattr(engine, "recognize_batch", None)
    if callable(batch):
        per_pass = batch([stacked for stacked, _ in stacks], lang)
    else:
        per_pass = [engine.recognize(stacked, lang) for stacked, _ in stacks]
    for pass_spans, (_, tops), found in zip(passes, stacks, per_pass, strict=True):
        buckets: list[list[TextRegion]] = [[] for _ in pass_spans]
        for region in found:
            _, ry0, _, ry1 = region.bbox()
            # The span holding the region's vertical centre; stacked spans never share a line (their borders
            # are padding rows without text), so a box's slight overhang into a neighbour is only background.
            index = max(0, bisect.bisect_right(tops, (ry0 + ry1) / 2) - 1)
            shift = pass_spans[index][0] - tops[index]
            polygon = [(x, min(max(y + shift, 0.0), float(height))) for x, y in region.polygon]
            buckets[index].append(TextRegion(polygon=polygon, text=region.text, score=region.score))
        spans.extend(pass_spans)
        per_span.extend(buckets)
    merged = merge_slice_regions(per_span, spans, height=height)
    logger.info("read %dx%d image in %d passes over %d spans (%d of %d rows): %d regions (%d before merge)",
                width, height, len(passes), len(spans), sum(b - a for a, b in spans), height, len(merged),
                sum(len(s) for s in per_span))
    return merged, len(spans)
