"""Default OCR engine: RapidOCR 3.x on onnxruntime with the PP-OCRv6 small models shipped inside the wheel.

Why this engine is the default: it is the only registry package whose wheel carries its own det/rec models, so
it runs fully offline with no model download. Things we pin down so it never reaches for the network:

* the model files are checked to exist in the wheel before RapidOCR is constructed (a missing file would make
  RapidOCR try to download it, which hangs/fails without a hub);
* ``Global.font_path`` is set to a local CJK font so nothing ever downloads a visualisation font (we also never
  call ``vis()``);
* RapidOCR's own score filter is disabled (``text_score=0``) so confidence filtering happens once, in
  ``blocks.filter_regions``, where drops are counted.

Measured languages (PP-OCRv6 small rec is multilingual): zh, zh-Hant, en, ja and Latin-script fr/de/es/it/pt/id
read at CER 0 on rendered test lines. Korean comes back as garbage CJK (or nothing), Vietnamese loses its
stacked diacritics, Cyrillic/Thai return nothing — so those are NOT claimed.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ...core.types import TextRegion
from .base import OcrError, as_polygon, crop_line

logger = logging.getLogger(__name__)

RAPIDOCR_LANGUAGES = {"zh", "zh-Hant", "en", "ja", "fr", "de", "es", "it", "pt", "id"}
_MODEL_FILES = ("PP-OCRv6_det_small.onnx", "PP-OCRv6_rec_small.onnx", "ch_ppocr_mobile_v2.0_cls_mobile.onnx")
_FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)


def _local_font() -> str | None:
    for path in _FONT_CANDIDATES:
        if Path(path).is_file():
            return path
    return None


class RapidOcrEngine:
    """RapidOCR (onnxruntime, CPU; CUDA provider when asked and available), PP-OCRv6 small det/rec + v2 cls."""

    name = "rapidocr"

    def __init__(
        self,
        *,
        threads: int = 2,
        use_cls: bool = True,
        use_cuda: bool | None = None,
        font_path: str | None = None,
    ) -> None:
        try:
            import rapidocr
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise OcrError("rapidocr OCR engine needs rapidocr==3.10.0 and onnxruntime installed") from exc
        model_dir = Path(rapidocr.__file__).resolve().parent / "models"
        missing = [f for f in _MODEL_FILES if not (model_dir / f).is_file()]
        if missing:
            # RapidOCR would try to download these from its model hub, which cannot work offline.
            raise OcrError(f"rapidocr wheel is missing bundled models {missing} in {model_dir}")
        if use_cuda is None:
            use_cuda = self._cuda_available()
        font = font_path or _local_font()
        # RapidOCR silently ignores a thread count above the CPU count (onnxruntime then uses all cores): clamp.
        threads = max(1, min(int(threads), os.cpu_count() or 1))
        params: dict[str, Any] = {
            "Global.text_score": 0.0,
            "Global.use_cls": use_cls,
            "Global.log_level": "error",  # "detection result is empty" is a normal outcome, not a warning
            "Global.model_root_dir": str(model_dir),
            "EngineConfig.onnxruntime.intra_op_num_threads": int(threads),
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            "EngineConfig.onnxruntime.use_cuda": bool(use_cuda),
        }
        if font:
            params["Global.font_path"] = font
        try:
            self._ocr = RapidOCR(params=params)
        except Exception as exc:  # RapidOCR raises plain Exceptions for config/model problems
            raise OcrError(f"rapidocr failed to initialise: {exc}") from exc
        self.threads = threads
        self.use_cuda = bool(use_cuda)
        self._version = "rapidocr=={} (onnxruntime=={}; PP-OCRv6_det_small+PP-OCRv6_rec_small{}{})".format(
            importlib.metadata.version("rapidocr"),
            self._ort_version(),
            "+ch_ppocr_mobile_v2.0_cls" if use_cls else "",
            "; cuda" if use_cuda else "; cpu",
        )

    @staticmethod
    def _ort_version() -> str:
        for dist in ("onnxruntime", "onnxruntime-gpu"):
            try:
                return importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
        return "unknown"

    @staticmethod
    def _cuda_available() -> bool:
        try:
            import onnxruntime

            return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        except Exception:
            return False

    def languages(self) -> set[str]:
        return set(RAPIDOCR_LANGUAGES)

    def version(self) -> str:
        return self._version

    def recognize(self, image: np.ndarray, lang: str) -> list[TextRegion]:
        """OCR one RGB image. RapidOCR treats ndarray input as BGR, so channels are swapped first."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise OcrError(f"rapidocr expects an HxWx3 RGB image, got shape {image.shape}")
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        try:
            out = self._ocr(bgr)
        except Exception as exc:
            raise OcrError(f"rapidocr failed: {exc}") from exc
        boxes = getattr(out, "boxes", None)
        txts = getattr(out, "txts", None)
        scores = getattr(out, "scores", None)
        if boxes is None or txts is None or scores is None or len(txts) == 0:
            return []
        regions: list[TextRegion] = []
        for box, text, score in zip(np.asarray(boxes, dtype=np.float32), txts, scores, strict=False):
            if not str(text).strip():
                continue
            polygon = [(float(x), float(y)) for x, y in box.reshape(-1, 2)]
            regions.append(TextRegion(polygon=polygon, text=str(text), score=float(score)))
        return regions

    def recognize_lines(self, image: np.ndarray, polygons: list[Any], lang: str) -> list[TextRegion]:
        """Read known line boxes with the recogniser alone: no detection, no direction classifier.

        The crops go to RapidOCR's recogniser in one call (batched by width inside). RapidOCR's own
        ``use_det=False`` switch is not used: it is stored on the shared engine and would turn detection off for
        the other threads' ``recognize`` calls too.
        """
        if image.ndim != 3 or image.shape[2] != 3:
            raise OcrError(f"rapidocr expects an HxWx3 RGB image, got shape {image.shape}")
        if not polygons:
            return []
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        crops = [crop_line(bgr, polygon) for polygon in polygons]
        readable = [i for i, crop in enumerate(crops) if crop is not None]
        texts: dict[int, tuple[str, float]] = {}
        if readable:
            try:
                out = self._ocr.recognize_txt([crops[i] for i in readable])
            except Exception as exc:
                raise OcrError(f"rapidocr recognition failed: {exc}") from exc
            for i, text, score in zip(readable, out.txts or (), out.scores or (), strict=False):
                texts[i] = (str(text).strip(), float(score))
        regions: list[TextRegion] = []
        for i, polygon in enumerate(polygons):
            text, score = texts.get(i, ("", 0.0))
            regions.append(TextRegion(polygon=as_polygon(polygon), text=text, score=score if text else 0.0))
        return regions
