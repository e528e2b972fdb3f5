"""The OCR engine a request's source language needs: the primary engine, or a fallback for what it cannot read
(rapidocr silently drops Korean; Tesseract reads it)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...core.languages import AUTO
from ...core.types import OcrResult
from ..gpu import runs_on_gpu
from . import run_ocr
from .base import OcrEngine, OcrError
from .blocks import DEFAULT_MIN_CONFIDENCE


class OcrRouter:
    """Primary engine + optional fallback, both built lazily by the given loaders (each loads a model once)."""

    def __init__(self, primary: Callable[[], OcrEngine], fallback: Callable[[], OcrEngine] | None = None, *,
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE, tall_ratio: float = 3.0,
                 names: tuple[str, str] = ("primary", "fallback")) -> None:
        self._primary = primary
        self._fallback = fallback
        self.min_confidence = min_confidence
        self.tall_ratio = tall_ratio
        self.names = names

    @property
    def primary(self) -> OcrEngine:
        return self._primary()

    def engine_for(self, lang: str) -> OcrEngine:
        primary = self._primary()
        if lang == AUTO or lang in primary.languages() or self._fallback is None:
            return primary
        fallback = self._fallback()
        return fallback if lang in fallback.languages() else primary

    def check_language(self, lang: str) -> None:
        """Raise a permanent ``OcrError`` when no configured engine reads ``lang``."""
        if lang != AUTO and lang not in self.engine_for(lang).languages():
            raise OcrError(f"no OCR engine reads '{lang}' (tried {', '.join(self.names)})", transient=False)

    def recognize(self, image: np.ndarray, lang: str) -> OcrResult:
        return run_ocr(self.engine_for(lang), image, lang, min_confidence=self.min_confidence,
                       tall_ratio=self.tall_ratio)

    def version(self) -> str:
        return self._primary().version()

    def on_gpu(self) -> bool:
        return runs_on_gpu(self._primary())
