"""The OCR interface: an engine turns an RGB image into text lines with polygons and confidences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from ...core.errors import EngineError
from ...core.types import Point, TextRegion


class OcrError(EngineError):
    """An OCR engine failed to load or run."""

    stage = "ocr"


class UnsupportedOcrLanguage(OcrError):
    """The engine cannot read this source language; permanent (another engine must be configured)."""

    def __init__(self, engine: str, lang: str, supported: set[str]) -> None:
        super().__init__(
            f"OCR engine '{engine}' does not read source language '{lang}' "
            f"(it reads: {', '.join(sorted(supported)) or 'nothing'})",
            transient=False,
        )
        self.engine = engine
        self.lang = lang


@runtime_checkable
class OcrEngine(Protocol):
    name: str

    def languages(self) -> set[str]:
        """Source languages this engine reads (canonical codes, see core.languages)."""
        ...

    def version(self) -> str:
        """Engine + model version string, recorded in meta.json."""
        ...

    def recognize(self, image: np.ndarray, lang: str) -> list[TextRegion]:
        """OCR one RGB uint8 image (not sliced, any size the engine handles); no confidence filtering here.

        ``lang`` is a code from ``languages()`` or ``"auto"`` (the engine then reads with its widest model/set).
        """
        ...


# --- recognition of known line boxes (no detection) ------------------------------------------------------------


def line_corners(polygon: Sequence[Point]) -> np.ndarray | None:
    """The four corners (float32, clockwise from top-left) of a line polygon, or None when it is degenerate.

    Four-point polygons (what the detectors return) are kept as they are, so a slanted line is straightened
    by the crop; any other point count is reduced to its minimum-area rectangle.
    """
    pts = np.asarray(polygon, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] < 3 or pts.shape[1] != 2 or not np.all(np.isfinite(pts)):
        return None
    if pts.shape[0] != 4:
        pts = cv2.boxPoints(cv2.minAreaRect(pts.astype(np.float32))).astype(np.float64)
        # boxPoints has no fixed start: order as top-left, top-right, bottom-right, bottom-left.
        sums, diffs = pts.sum(axis=1), np.diff(pts, axis=1).ravel()
        pts = np.array([pts[np.argmin(sums)], pts[np.argmin(diffs)], pts[np.argmax(sums)], pts[np.argmax(diffs)]])
    width = max(np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[2] - pts[3]))
    height = max(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[1] - pts[2]))
    if width < 2 or height < 2:
        return None
    return pts.astype(np.float32)


def crop_line(image: np.ndarray, polygon: Sequence[Point], *, pad: float = 0.0) -> np.ndarray | None:
    """The line under ``polygon`` cut out and straightened (HxWx3), upright for a horizontal reader.

    ``pad`` widens the crop by that fraction of the line height on every side (a detector needs some margin;
    a recogniser reads the tight box best). Lines at least 1.5x taller than wide are vertical text and are
    turned a quarter, as the detectors' own crops are. None for a degenerate polygon or an empty image.
    """
    if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        return None
    corners = line_corners(polygon)
    if corners is None:
        return None
    width = round(float(max(np.linalg.norm(corners[0] - corners[1]), np.linalg.norm(corners[2] - corners[3]))))
    height = round(float(max(np.linalg.norm(corners[0] - corners[3]), np.linalg.norm(corners[1] - corners[2]))))
    margin = round(pad * min(width, height))
    target = np.array([[margin, margin], [margin + width, margin], [margin + width, margin + height],
                       [margin, margin + height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(corners, target)
    crop = cv2.warpPerspective(image, matrix, (width + 2 * margin, height + 2 * margin),
                               borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    if crop.shape[0] >= 1.5 * crop.shape[1]:
        crop = np.ascontiguousarray(np.rot90(crop))
    return crop


def recognize_lines(engine: object, image: np.ndarray, polygons: Sequence[Sequence[Point]], lang: str
                    ) -> list[TextRegion]:
    """Read the text inside each of ``polygons`` of ``image``, without detecting lines anew.

    One ``TextRegion`` per polygon, in the same order, with the polygon as given; text ``""`` and score 0 where
    nothing was read or the polygon is degenerate. Engines that can run their recogniser alone define
    ``recognize_lines(image, polygons, lang)`` (much cheaper than a full OCR); for the others each line is cut out
    with a margin and read with ``recognize``.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise OcrError(f"recognize_lines expects an HxWx3 image, got shape {image.shape}", transient=False)
    if not polygons:
        return []
    own = getattr(engine, "recognize_lines", None)
    if callable(own):
        return list(own(image, polygons, lang))
    return recognize_lines_by_crops(engine, image, polygons, lang)


def recognize_lines_by_crops(engine: object, image: np.ndarray, polygons: Sequence[Sequence[Point]], lang: str
                             ) -> list[TextRegion]:
    """The generic ``recognize_lines``: the lines are cut out with a margin, stacked into one sheet, and the sheet
    is read with one ``engine.recognize`` call; what is read is given back to the line whose band holds it.

    One call for all lines, because engines pay per call (a process per call for tesseract, an upscaled
    detection pass for small inputs elsewhere).
    """
    crops = [crop_line(image, polygon, pad=0.5) for polygon in polygons]
    present = [(i, crop) for i, crop in enumerate(crops) if crop is not None]
    readings: dict[int, list[TextRegion]] = {}
    if present:
        width = max(crop.shape[1] for _, crop in present)
        bands: list[tuple[int, int, int]] = []  # (line index, first row, end row) in the sheet
        rows: list[np.ndarray] = []
        top = 0
        for i, crop in present:
            # Widen with the crop's own edge pixels so the sheet has no hard edges a detector could take as text.
            row = cv2.copyMakeBorder(crop, 0, 0, 0, width - crop.shape[1], cv2.BORDER_REPLICATE)
            rows.append(row)
            bands.append((i, top, top + row.shape[0]))
            top += row.shape[0]
        sheet = np.ascontiguousarray(np.concatenate(rows, axis=0))
        for region in engine.recognize(sheet, lang):  # type: ignore[attr-defined]
            if not region.text.strip():
                continue
            _, y0, _, y1 = region.bbox()
            middle = (y0 + y1) / 2
            for i, first, end in bands:
                if first <= middle < end:
                    readings.setdefault(i, []).append(region)
                    break
    out: list[TextRegion] = []
    for i, polygon in enumerate(polygons):
        found = sorted(readings.get(i, []), key=lambda r: r.bbox()[0])  # one line, upright: left to right
        text = " ".join(r.text.strip() for r in found)
        score = float(np.mean([r.score for r in found])) if found else 0.0
        out.append(TextRegion(polygon=as_polygon(polygon), text=text, score=score))
    return out


def as_polygon(polygon: Sequence[Point]) -> list[Point]:
    """``polygon`` as a list of float points; empty when it is not a sequence of (x, y) pairs."""
    try:
        return [(float(x), float(y)) for x, y in polygon]
    except (TypeError, ValueError):
        return []
