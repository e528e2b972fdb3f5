"""The inpainting interface: erase the masked pixels of an RGB image."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Inpainter(Protocol):
    name: str

    def version(self) -> str:
        ...

    def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """image: HxWx3 uint8 RGB; mask: HxW uint8 (255 = erase). Returns a new HxWx3 uint8 RGB image."""
        ...
