"""Find text lines in an image and prepare each for a line recogniser: for engines that read lines, not pages.

Why: Tesseract reads a product page badly as one uniform block (``--psm 6`` runs table columns, captions under
photos and side-by-side labels together) and its own page layout (``--psm 3``) loses text next to photos. A text
detector built for product images (PP-OCRv6 det, the one the default RapidOCR engine uses; detection is
script-agnostic, so it finds Hangul lines although RapidOCR cannot read them) gives one box per line, and each line
is then read alone at a size the recogniser likes.

``normalize_line`` turns a line crop into dark text on a light background at a fixed glyph height: grey by the
colour axis with most contrast (so red-on-pink or white-on-blue banners keep their contrast), stretched, inverted
when the background is the dark side, scaled so the ink is ``glyph_px`` tall. ``stack_lines`` puts the normalised
lines one under another on a white canvas with a blank gap between them, so a uniform-block reader sees one line per
crop and every recognised word maps back to its crop by its vertical position.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .base import OcrError

logger = logging.getLogger(__name__)

DEFAULT_GLYPH_PX = 32  # ink height lines are scaled to (Hangul syllable ~ cap height; Latin x-height ~ 18 px)
MAX_UPSCALE = 4.0
MIN_DOWNSCALE = 0.35
MIN_LINE_PX = 6  # boxes lower or narrower than this hold no legible text
MAX_LINE_WIDTH_PX = 8000  # tesseract refuses images beyond 32767 px; a line this wide is already absurd


@dataclass
class Line:
    """One detected line: its polygon in image coordinates and its axis-aligned pixel box (x0, y0, x1, y1)."""

    polygon: list[tuple[float, float]]
    box: tuple[int, int, int, int]


class LineDetector:
    """PP-OCRv6 small text detection through RapidOCR (det model only; the models ship inside the rapidocr wheel)."""

    name = "PP-OCRv6_det_small"

    def __init__(self, *, threads: int = 1) -> None:
        try:
            import rapidocr
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise OcrError("line detection needs rapidocr==3.10.0 and onnxruntime installed") from exc
        model_dir = Path(rapidocr.__file__).resolve().parent / "models"
        if not (model_dir / "PP-OCRv6_det_small.onnx").is_file():
            # RapidOCR would try to download it from its model hub, which cannot work offline.
            raise OcrError(f"rapidocr wheel is missing its bundled detection model in {model_dir}")
        threads = max(1, min(int(threads), os.cpu_count() or 1))
        try:
            # Models load lazily on first use: only the detector is ever loaded here.
            self._ocr = RapidOCR(params={
                "Global.use_cls": False,
                "Global.use_rec": False,
                "Global.log_level": "error",
                "Global.model_root_dir": str(model_dir),
                "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            })
        except Exception as exc:  # RapidOCR raises plain Exceptions for config/model problems
            raise OcrError(f"rapidocr text detector failed to initialise: {exc}") from exc

    def detect(self, image: np.ndarray) -> list[Line]:
        """Line boxes of an RGB uint8 image, top to bottom."""
        height, width = image.shape[:2]
        if height < MIN_LINE_PX or width < MIN_LINE_PX:
            return []
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        try:
            out = self._ocr(bgr, use_det=True, use_cls=False, use_rec=False)
        except Exception as exc:
            raise OcrError(f"text detection failed: {exc}") from exc
        boxes = getattr(out, "boxes", None)
        if boxes is None or len(boxes) == 0:
            return []
        lines: list[Line] = []
        for quad in np.asarray(boxes, dtype=np.float32).reshape(-1, 4, 2):
            x0, y0 = np.floor(quad.min(axis=0)).astype(int)
            x1, y1 = np.ceil(quad.max(axis=0)).astype(int)
            x0, y0 = max(int(x0), 0), max(int(y0), 0)
            x1, y1 = min(int(x1), width), min(int(y1), height)
            if x1 - x0 < MIN_LINE_PX or y1 - y0 < MIN_LINE_PX:
                continue
            polygon = [(float(min(max(x, 0), width)), float(min(max(y, 0), height))) for x, y in quad]
            lines.append(Line(polygon=polygon, box=(x0, y0, x1, y1)))
        return merge_touching(lines)


MERGE_GAP = 0.25  # x gap / line height below which two boxes of one row are one line (a word space is ~0.3)


def _one_row(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    ha, hb = a[3] - a[1], b[3] - b[1]
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    if min(ha, hb) <= 0 or min(ha, hb) / max(ha, hb) < 0.7 or overlap < 0.6 * min(ha, hb):
        return False
    gap = max(a[0], b[0]) - min(a[2], b[2])
    return gap <= MERGE_GAP * (ha + hb) / 2


def merge_touching(lines: list[Line]) -> list[Line]:
    """Join boxes the detector cut out of one line: same row, same height, overlapping or almost touching.

    With wide letter spacing the detector may return "[ko]", "한정", "특가" as three boxes that overlap each other;
    read separately, each crop also holds slivers of its neighbours' glyphs, which come back as stray characters.
    Boxes a real gap apart (table cells, columns) stay separate. Returned top to bottom, left to right.
    """
    merged = sorted(lines, key=lambda ln: (ln.box[0], ln.box[1]))
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                a, b = merged[i].box, merged[j].box
                if _one_row(a, b):
                    box = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    polygon = [(float(box[0]), float(box[1])), (float(box[2]), float(box[1])),
                               (float(box[2]), float(box[3])), (float(box[0]), float(box[3]))]
                    merged[i] = Line(polygon=polygon, box=box)
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    merged.sort(key=lambda ln: (ln.box[1], ln.box[0]))
    return merged


def contrast_gray(crop: np.ndarray) -> np.ndarray:
    """Grey image along the colour axis with the most variance (first principal component), stretched to 0..255."""
    pixels = crop.reshape(-1, 3).astype(np.float32)
    centred = pixels - pixels.mean(axis=0)
    cov = centred.T @ centred / max(len(centred), 1)
    _, vectors = np.linalg.eigh(cov)
    axis = vectors[:, -1]
    if axis.sum() < 0:
        axis = -axis  # keep "brighter" pointing the same way as in an ordinary grey conversion
    proj = (centred @ axis).reshape(crop.shape[:2])
    lo, hi = np.percentile(proj, [1, 99])
    if hi - lo < 1e-3:
        return np.full(crop.shape[:2], 255, dtype=np.uint8)
    return np.clip((proj - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def _border(gray: np.ndarray) -> np.ndarray:
    return np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])


def normalize_line(crop: np.ndarray, glyph_px: int = DEFAULT_GLYPH_PX, *, max_width: int = MAX_LINE_WIDTH_PX
                   ) -> tuple[np.ndarray, float]:
    """Dark-on-light grey line image with ink ``glyph_px`` tall (at most ``max_width`` wide); returns it and the
    scale applied. Scaling is clamped to ``MIN_DOWNSCALE..MAX_UPSCALE``: beyond 4x a smudge stays a smudge."""
    if crop.ndim != 3 or crop.shape[0] < 1 or crop.shape[1] < 1:
        raise ValueError(f"expected a non-empty HxWx3 crop, got shape {crop.shape}")
    gray = contrast_gray(crop)
    threshold, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # The background is what the crop's border mostly shows (a detector box has margin around the glyphs).
    if np.median(_border(gray)) < threshold:
        gray = 255 - gray
        threshold = 255 - threshold
    # Ink height: the rows holding the middle 96 % of the dark pixels (a stray dot of a neighbour line is ignored).
    row_weight = (gray < threshold).sum(axis=1).astype(np.float64)
    ink_h = gray.shape[0]
    if row_weight.sum() > 0:
        cumulative = np.cumsum(row_weight) / row_weight.sum()
        ink_h = int(np.searchsorted(cumulative, 0.98)) - int(np.searchsorted(cumulative, 0.02)) + 1
    scale = float(np.clip(glyph_px / max(ink_h, 1), MIN_DOWNSCALE, MAX_UPSCALE))
    scale = min(scale, max_width / gray.shape[1])
    if abs(scale - 1.0) <= 0.05:
        return gray, 1.0
    size = (max(round(gray.shape[1] * scale), 1), max(round(gray.shape[0] * scale), 1))
    return cv2.resize(gray, size, interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA), scale


@dataclass
class Canvas:
    """Normalised lines stacked on white: ``rows[i]`` is the canvas row span of ``lines[i]``."""

    pixels: np.ndarray  # HxW uint8 grey
    indices: list[int]  # which input lines, in canvas order
    rows: list[tuple[int, int]]
    gap: int = DEFAULT_GLYPH_PX  # blank rows between two lines

    def line_at(self, y: float) -> int | None:
        """Input index of the line whose row span is nearest to canvas row ``y`` (None beyond half a gap)."""
        best: tuple[float, int] | None = None
        for index, (y0, y1) in zip(self.indices, self.rows, strict=True):
            distance = max(y0 - y, y - y1, 0.0)
            if best is None or distance < best[0]:
                best = (distance, index)
        if best is None or best[0] > self.gap / 2:
            return None
        return best[1]


def stack_lines(images: list[np.ndarray], *, glyph_px: int = DEFAULT_GLYPH_PX,
                max_height: int = 8000) -> list[Canvas]:
    """Stack grey line images on white canvases (a blank ``glyph_px`` gap between lines), at most ``max_height``."""
    margin = glyph_px
    canvases: list[Canvas] = []
    batch: list[int] = []
    used = margin

    def flush() -> None:
        if not batch:
            return
        width = max(images[i].shape[1] for i in batch) + 2 * margin
        height = used
        canvas = np.full((height, width), 255, dtype=np.uint8)
        rows: list[tuple[int, int]] = []
        y = margin
        for i in batch:
            h, w = images[i].shape
            canvas[y:y + h, margin:margin + w] = images[i]
            rows.append((y, y + h))
            y += h + glyph_px
        canvases.append(Canvas(pixels=canvas, indices=list(batch), rows=rows, gap=glyph_px))

    for index, image in enumerate(images):
        h = image.shape[0]
        if batch and used + h + glyph_px > max_height:
            flush()
            batch, used = [], margin
        batch.append(index)
        used += h + glyph_px
    flush()
    return canvases
