"""Is the source text still readable after erasing? Re-read the erased image at the erased lines' boxes.

Why not a full second OCR: detection is most of an OCR pass, and the lines to look at are already known. Only the
recogniser runs, on the erased lines' boxes (``engines.ocr.base.recognize_lines``). Lines whose box kept less than
``BLANK_EDGE_RATIO`` of its edges through erasing (most of them) are not even read: what is left there is too faint
to see, even where a recogniser could still pick it up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ..core.types import Point, TextRegion
from ..engines.ocr.base import recognize_lines
from .text import normalize_text, text_similarity

# A line counts as still readable when the recogniser reads it back this similar to the source text with this
# confidence: half the characters in order, read fairly surely.
READABLE_SIMILARITY = 0.5
READABLE_SCORE = 0.5
# Edge energy of the erased box / the source box below which the box is taken as erased and not read at all.
# The recogniser reads even a 3 % ghost of a line (8 grey levels on white), which no reader sees; what is left
# below this share of the original edges is too faint to count as text left. Most erased lines fall below it.
BLANK_EDGE_RATIO = 0.08
# Mean abs RGB difference between the erased box's median colour and the background the box had (the larger of
# two colour clusters of the source box) above which the erased area visibly differs from what was there: a label
# bar, pill or badge filled with the surroundings' colour, a blob, smeared packaging. On the quality benchmark's
# 466 erased lines (before issue 10) the median was ~1 and the 31 lines above 60 that we looked at were all such.
FILL_MISMATCH = 60.0


@dataclass
class LineRecheck:
    """One erased source line read again in the erased image."""

    source_text: str
    polygon: list[Point]
    read_text: str = ""
    read_score: float = 0.0
    read: bool = True  # False: the box had lost its edges in erasing and was not read (counts as clean)
    edge_ratio: float | None = None  # erased / source edge energy in the box, when the source was given
    fill_distance: float | None = None  # erased fill vs the box's source background (RGB levels), with the source
    similarity: float = field(init=False)

    def __post_init__(self) -> None:
        self.similarity = text_similarity(self.source_text, self.read_text) if self.read_text else 0.0

    @property
    def readable(self) -> bool:
        """The source text (at least half of it) can still be read where it was erased."""
        return (self.read and self.read_score >= READABLE_SCORE and self.similarity >= READABLE_SIMILARITY
                and bool(normalize_text(self.read_text)))

    @property
    def fill_mismatch(self) -> bool:
        """The erased box no longer shows the background it had (a lost label bar or badge, a blob)."""
        return self.fill_distance is not None and self.fill_distance > FILL_MISMATCH

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source_text, "read": self.read_text, "score": round(self.read_score, 3),
                "similarity": round(self.similarity, 3), "was_read": self.read, "readable": self.readable,
                "edge_ratio": None if self.edge_ratio is None else round(self.edge_ratio, 3),
                "fill_distance": None if self.fill_distance is None else round(self.fill_distance, 1)}


def _box(polygon: Sequence[Point], width: int, height: int) -> tuple[int, int, int, int] | None:
    pts = np.asarray(polygon, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] < 3 or pts.shape[1] != 2 or not np.all(np.isfinite(pts)):
        return None
    x0, y0 = max(0, int(np.floor(pts[:, 0].min()))), max(0, int(np.floor(pts[:, 1].min())))
    x1, y1 = min(width, int(np.ceil(pts[:, 0].max()))), min(height, int(np.ceil(pts[:, 1].max())))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return x0, y0, x1, y1


def edge_energy(pixels: np.ndarray) -> float:
    """Mean gradient magnitude (Sobel, grey levels per pixel) of an RGB or grey patch."""
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY) if pixels.ndim == 3 else pixels
    grey = grey.astype(np.float32)
    dx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    dy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return float(np.mean(np.abs(dx)) + np.mean(np.abs(dy)))


def background_color(pixels: np.ndarray) -> np.ndarray:
    """The background colour of a text box: the median of the larger of two colour clusters (2-means started
    from the darkest and the lightest pixel; text strokes rarely cover half a line's box)."""
    px = pixels.reshape(-1, 3).astype(np.float32)
    px = px[:: max(1, len(px) // 1500)]  # a sample is plenty for two medians, and keeps this ~2 ms a line
    lum = px @ np.array([0.299, 0.587, 0.114], np.float32)
    centres = np.stack([px[int(np.argmin(lum))], px[int(np.argmax(lum))]])
    labels = np.zeros(len(px), np.int64)
    for _ in range(6):
        labels = np.argmin(((px[:, None, :] - centres[None]) ** 2).sum(axis=-1), axis=1)
        for k in range(2):
            if np.any(labels == k):
                centres[k] = px[labels == k].mean(axis=0)
    larger = int(np.bincount(labels, minlength=2).argmax())
    return np.median(px[labels == larger], axis=0)


def recheck_erased(
    engine: object,
    erased: np.ndarray,
    regions: Sequence[TextRegion],
    lang: str,
    *,
    source: np.ndarray | None = None,
    blank_edge_ratio: float = BLANK_EDGE_RATIO,
) -> list[LineRecheck]:
    """Read each erased line (``regions``: the OCR lines that were erased) again in ``erased``.

    With ``source`` (the image before erasing), a box whose edge energy fell below ``blank_edge_ratio`` of the
    source's counts as erased without reading it, and each box's erased fill is compared with the background it
    had (``fill_distance``). ``engine`` is an OCR engine (``recognize_lines`` if it has
    one, else crops + ``recognize``). Returns one ``LineRecheck`` per region, in order.
    """
    if erased.ndim != 3 or erased.shape[2] != 3:
        raise ValueError(f"recheck_erased expects an HxWx3 image, got shape {erased.shape}")
    if source is not None and source.shape != erased.shape:
        raise ValueError(f"source {source.shape} and erased {erased.shape} images differ in shape")
    height, width = erased.shape[:2]
    checks: list[LineRecheck] = []
    to_read: list[int] = []
    for region in regions:
        polygon = [(float(x), float(y)) for x, y in region.polygon]
        check = LineRecheck(source_text=region.text, polygon=polygon)
        box = _box(polygon, width, height)
        if box is None:
            check.read = False
        elif source is not None:
            x0, y0, x1, y1 = box
            before = edge_energy(source[y0:y1, x0:x1])
            after = edge_energy(erased[y0:y1, x0:x1])
            check.edge_ratio = after / before if before > 0 else 1.0
            fill = np.median(erased[y0:y1, x0:x1].reshape(-1, 3).astype(np.float32), axis=0)
            check.fill_distance = float(np.abs(fill - background_color(source[y0:y1, x0:x1])).mean())
            # A faint source line (little edge energy to lose) is always read.
            if before >= 2.0 and check.edge_ratio < blank_edge_ratio:
                check.read = False
        checks.append(check)
        if check.read:
            to_read.append(len(checks) - 1)
    if to_read:
        readings = recognize_lines(engine, erased, [checks[i].polygon for i in to_read], lang)
        for i, reading in zip(to_read, readings, strict=True):
            check = checks[i]
            check.read_text, check.read_score = reading.text, float(reading.score)
            check.similarity = text_similarity(check.source_text, check.read_text) if check.read_text else 0.0
    return checks
