"""Inpainting: erase OCR'd text from an image before the translation is drawn.

``erase_text`` erases text lines glyph by glyph (background model fill, the inpainter only for textured
backgrounds); ``build_mask`` turns OCR polygons into an erase mask; ``create_inpainter`` picks an engine by name:
``opencv`` (default, ``cv2.inpaint``, no model file) or ``lama`` (TorchScript big-lama, GPU when present).
Importing this package never imports torch; only constructing a ``LamaInpainter`` does.
"""

from __future__ import annotations

from typing import Any

from ..registry import EngineRegistry
from .base import Inpainter
from .crops import Crop, plan_crops
from .erase import EraseResult, erase_text
from .lama_engine import DEFAULT_MODEL_PATH, LamaInpainter, select_device
from .mask import build_mask
from .opencv_engine import OpenCvInpainter

INPAINT_ENGINES: EngineRegistry[Inpainter] = EngineRegistry(
    "inpaint",
    {"opencv": f"{__name__}.opencv_engine:OpenCvInpainter", "lama": f"{__name__}.lama_engine:LamaInpainter"},
    default="opencv",
    label="inpainter",
)

__all__ = [
    "DEFAULT_MODEL_PATH",
    "INPAINT_ENGINES",
    "Crop",
    "EraseResult",
    "Inpainter",
    "LamaInpainter",
    "OpenCvInpainter",
    "build_mask",
    "create_inpainter",
    "erase_text",
    "plan_crops",
    "select_device",
]


def create_inpainter(name: str | None = None, **options: Any) -> Inpainter:
    """Build an inpainter by name; ``options`` go to its constructor (e.g. ``method``/``radius`` for opencv,
    ``model_path``/``device``/``crop_padding``/``batch_size``/``max_crop_side`` for lama)."""
    return INPAINT_ENGINES.create(name, **options)
