"""OCR stage: pick an engine, read an image (slicing tall pages), filter unreliable lines, group them into blocks.

Engines: ``rapidocr`` (default; offline PP-OCRv6 small, zh/zh-Hant/en/ja + Latin fr/de/es/it/pt/id),
``tesseract`` (Debian CLI; the only offline engine that reads Korean) and ``paddle`` (PaddleOCR 3.x over local
PP-OCRv4 zh models; GPU when available). Engine modules import their heavy libraries lazily, so importing this
package costs nothing and works without paddle installed.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ...core.languages import AUTO, detect_script_language
from ...core.types import OcrResult, TextRegion
from ..registry import EngineRegistry
from .base import OcrEngine, OcrError, UnsupportedOcrLanguage
from .blocks import DEFAULT_MIN_CONFIDENCE, filter_regions, group_blocks, reading_order, split_at_separators
from .line_ends import widen_clipped_lines
from .slicing import is_tall, plan_slices, recognize_sliced

logger = logging.getLogger(__name__)

OCR_ENGINES: EngineRegistry[OcrEngine] = EngineRegistry(
    "ocr",
    {"rapidocr": f"{__name__}.rapidocr_engine:RapidOcrEngine",
     "tesseract": f"{__name__}.tesseract_engine:TesseractEngine",
     "paddle": f"{__name__}.paddle_engine:PaddleOcrEngine"},
    aliases={"paddleocr": "paddle"},
    default="rapidocr",
    label="OCR engine",
    error=OcrError,
)

__all__ = [
    "OCR_ENGINES",
    "OcrEngine",
    "OcrError",
    "UnsupportedOcrLanguage",
    "create_ocr_engine",
    "plan_slices",
    "run_ocr",
]


def create_ocr_engine(name: str | None = None, **options: Any) -> OcrEngine:
    """Build an engine by name; ``options`` go to its constructor (e.g. ``threads=2``, ``psm=6``, ``device``).

    Loading is the expensive part (models into memory), so callers should build one engine per process and reuse
    it (``engines.registry.cached_engine``). Raises ``OcrError`` (permanent) for an unknown name or option, or an
    engine that cannot load offline.
    """
    return OCR_ENGINES.create(name, **options)


def _recognize(engine: OcrEngine, image: np.ndarray, lang: str, tall_ratio: float) -> tuple[list[TextRegion], int]:
    height, width = image.shape[:2]
    if is_tall(height, width, tall_ratio):
        return recognize_sliced(engine, image, lang)
    return engine.recognize(image, lang), 1


def run_ocr(
    engine: OcrEngine,
    image: np.ndarray,
    lang: str,
    *,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    tall_ratio: float = 3.0,
) -> OcrResult:
    """OCR an RGB uint8 image in source language ``lang`` (a canonical code or ``"auto"``).

    Tall images (height / width > ``tall_ratio``) are read band by band: only rows that can hold text, in
    overlapping slices where a band is taller than a slice (``slicing``). Lines scoring below
    ``min_confidence`` are dropped (counted in ``dropped_low_confidence``); boxes the detector cut short of their
    text are widened over the cut character (``line_ends``); the lines are grouped into blocks.
    With ``lang == "auto"`` the language is guessed from the recognised text's script (``detected_lang``);
    engines whose models are per-language (tesseract) then re-read the image with the detected language.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        raise OcrError(f"OCR expects an HxWx3 uint8 RGB image, got {type(image).__name__} {shape}", transient=False)
    supported = engine.languages()
    if lang != AUTO and lang not in supported:
        raise UnsupportedOcrLanguage(engine.name, lang, supported)

    regions, slices = _recognize(engine, image, lang, tall_ratio)
    detected: str | None = None
    if lang == AUTO:
        confident = [r for r in regions if r.score >= min_confidence]
        detected = detect_script_language("".join(r.text for r in confident))
        logger.info("auto-detected OCR source language: %s", detected)
        if detected is not None and getattr(engine, "per_language_models", False) and detected in supported:
            regions, slices = _recognize(engine, image, detected, tall_ratio)

    kept, dropped = filter_regions(regions, min_confidence)
    kept = reading_order(split_at_separators(widen_clipped_lines(image, kept), image))
    blocks = group_blocks(kept, image_width=float(image.shape[1]), image=image)
    return OcrResult(
        regions=kept,
        blocks=blocks,
        engine=engine.version(),
        detected_lang=detected,
        dropped_low_confidence=dropped,
        slices=slices,
    )
