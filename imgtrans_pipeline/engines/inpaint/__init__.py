"""Inpainting: erase OCR'd text from an image before the translation is drawn.

``build_mask`` turns OCR polygons into an erase mask; ``create_inpainter`` picks an engine by name:
``opencv`` (default, ``cv2.inpaint``, no model file) or ``lama`` (TorchScript big-lama, GPU when present).
Importing this package never imports torch; only constructing a ``LamaInpainter`` does.
"""

from __future__ import annotations

import inspect
from typing import Any

from ...core.errors import EngineError
from .base import Inpainter
from .crops import Crop, plan_crops
from .lama_engine import DEFAULT_MODEL_PATH, LamaInpainter, select_device
from .mask import build_mask
from .opencv_engine import OpenCvInpainter

ENGINES = ("opencv", "lama")

__all__ = [
    "DEFAULT_MODEL_PATH",
    "ENGINES",
    "Crop",
    "Inpainter",
    "LamaInpainter",
    "OpenCvInpainter",
    "build_mask",
    "create_inpainter",
    "plan_crops",
    "select_device",
]


def create_inpainter(name: str = "opencv", **options: Any) -> Inpainter:
    """Build an inpainter by name; ``options`` go to its constructor (e.g. ``method``/``radius`` for opencv,
    ``model_path``/``device``/``crop_padding``/``batch_size``/``max_crop_side`` for lama)."""
    key = (name or "opencv").strip().lower()
    engines: dict[str, type] = {"opencv": OpenCvInpainter, "lama": LamaInpainter}
    if key not in engines:
        raise EngineError(f"unknown inpainter '{name}' (known: {', '.join(ENGINES)})", stage="inpaint")
    cls = engines[key]
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:  # an option the engine doesn't take: a configuration error, said plainly
        raise EngineError(f"bad option for inpainter '{key}': {exc}", stage="inpaint") from exc
    return cls(**options)
