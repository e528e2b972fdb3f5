"""The OCR interface: an engine turns an RGB image into text lines with polygons and confidences."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ...core.errors import EngineError
from ...core.types import TextRegion


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
