"""Classical inpainting with ``cv2.inpaint``: no model file, fast on CPU, good on flat and softly textured
backgrounds (typical for product-page text). Navier–Stokes is the default: it reproduced flat backgrounds exactly
where Telea left slightly lighter patches (see measured-facts).

``cv2.inpaint`` is local: a pixel's value depends only on known pixels within ``radius`` (Telea also computes a
distance band of ~2·radius outside the mask). Inpainting each padded crop around the mask components therefore
gives the same pixels as inpainting the whole image, at a cost proportional to the text instead of the page.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from ...core.errors import EngineError
from .crops import plan_crops

logger = logging.getLogger(__name__)

_METHODS = {"ns": cv2.INPAINT_NS, "telea": cv2.INPAINT_TELEA}
# Above this share of the image, one whole-image call is cheaper than many crop calls.
_WHOLE_IMAGE_SHARE = 0.6


def check_inputs(image: np.ndarray, mask: np.ndarray, stage: str = "inpaint") -> None:
    """Reject what the engines can't work on, with a message that says what was received."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = getattr(image, "shape", None), getattr(image, "dtype", None)
        raise EngineError(f"image must be an HxWx3 uint8 array, got shape/dtype {got}", stage=stage)
    if not isinstance(mask, np.ndarray) or mask.shape != image.shape[:2]:
        got = getattr(mask, "shape", None)
        raise EngineError(f"mask must be HxW matching image {image.shape[:2]}, got {got}", stage=stage)


class OpenCvInpainter:
    """``cv2.inpaint`` over padded crops around the mask components."""

    name = "opencv"

    def __init__(self, method: str = "ns", radius: int = 5, *, crop_padding: int | None = None) -> None:
        method = method.lower()
        if method not in _METHODS:
            raise EngineError(f"unknown opencv inpaint method '{method}' (use one of {sorted(_METHODS)})",
                              stage="inpaint")
        if radius < 1:
            raise EngineError(f"inpaint radius must be >= 1, got {radius}", stage="inpaint")
        self.method = method
        self.radius = int(radius)
        # Enough context that the crop sees everything cv2.inpaint would look at in the whole image.
        minimum = 2 * self.radius + 3
        self.crop_padding = max(minimum, int(crop_padding)) if crop_padding is not None else minimum

    def version(self) -> str:
        return f"opencv-{cv2.__version__}/{self.method}/r{self.radius}"

    def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Return a copy of ``image`` (HxWx3 uint8 RGB) with the pixels where ``mask`` > 0 filled in."""
        check_inputs(image, mask)
        out = image.copy()
        crops = plan_crops(mask, self.crop_padding)
        if not crops:
            return out
        covered = sum(c.area for c in crops)
        flag = _METHODS[self.method]
        if covered >= _WHOLE_IMAGE_SHARE * mask.size:
            logger.debug("opencv inpaint: whole image (%d crops cover %.0f%%)", len(crops), 100 * covered / mask.size)
            return self._inpaint_region(image, mask, flag)
        for crop in crops:
            rows, cols = crop.slices
            region_mask = mask[rows, cols] > 0
            filled = self._inpaint_region(image[rows, cols], region_mask, flag)
            out[rows, cols][region_mask] = filled[region_mask]
        logger.debug("opencv inpaint: %d crop(s), %.1f%% of the image", len(crops), 100 * covered / mask.size)
        return out

    def _inpaint_region(self, pixels: np.ndarray, mask: np.ndarray, flag: int) -> np.ndarray:
        binary = np.where(mask > 0, 255, 0).astype(np.uint8)  # cv2 wants 8-bit 0/255; callers may pass bool/0-1
        try:
            return cv2.inpaint(np.ascontiguousarray(pixels), binary, self.radius, flag)
        except cv2.error as exc:  # pragma: no cover - cv2 validates what check_inputs already checked
            raise EngineError(f"cv2.inpaint failed: {exc}", stage="inpaint") from exc
