"""LaMa inpainting through a TorchScript export (``big-lama.pt``), on GPU when there is one.

LaMa fills large masks on busy backgrounds far better than ``cv2.inpaint``, but no package registry ships its
weights and this machine reaches no model hub, so the model file must be provided by the operator (see
``MISSING_MODEL_HELP``); nothing is downloaded at run time.

Model convention (the big-lama TorchScript export used by lama-cleaner and the seed project):
``model(image, mask) -> image`` with image float32 in [0, 1], shape Bx3xHxW, RGB; mask float32 Bx1xHxW in {0, 1}
(1 = fill); output Bx3xHxW in [0, 1]. H and W must be multiples of 8.

Only padded crops around the text go through the model (cost follows the text, and LaMa works best near its
training resolution); crops larger than ``max_crop_side`` are downscaled first. Crops of equal padded size are
batched into one forward pass. Results are pasted back only where the mask is set, so every pixel outside the mask
is exactly the input.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ...core.errors import EngineError
from .crops import Crop, expand_to_multiple, pad_to_multiple, plan_crops
from .opencv_engine import check_inputs

logger = logging.getLogger(__name__)

DEFAULT_MODEL_PATH = "models/inpaint/big-lama.pt"
SIZE_MULTIPLE = 8  # LaMa's downsampling path needs H and W divisible by 8
MISSING_MODEL_HELP = (
    "No registry ships LaMa weights and nothing is downloaded at run time: place a big-lama TorchScript file "
    "(e.g. big-lama.pt as exported for lama-cleaner) at this path, or pass model_path=... to "
    "create_inpainter('lama', ...); otherwise use the 'opencv' inpainter."
)


@dataclass
class _Job:
    """One crop on its way through the model."""

    box: Crop  # region cut from the image (expanded to a multiple of 8 where the image allows)
    own: Crop  # the planned crop: its masked pixels are the ones this job pastes back
    size: tuple[int, int]  # (h, w) of the model input after resizing and padding
    resized: tuple[int, int] | None  # (h, w) the crop was scaled to, None when not scaled
    image: np.ndarray  # model input, HxWx3 uint8
    mask: np.ndarray  # model input, HxW bool


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is installed wherever the lama engine is configured
        raise EngineError(
            "the 'lama' inpainter needs PyTorch (pip install torch); use the 'opencv' inpainter without it",
            stage="inpaint",
        ) from exc
    return torch


def select_device(device: str = "auto") -> str:
    """'auto' → 'cuda' when torch sees a GPU, else 'cpu'; an explicit CUDA device that isn't there is an error."""
    torch = _import_torch()
    device = (device or "auto").strip().lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EngineError(f"device '{device}' requested but torch sees no CUDA GPU", stage="inpaint")
    if not (device == "cpu" or device.startswith("cuda") or device == "mps"):
        raise EngineError(f"unknown torch device '{device}' (use auto, cpu, cuda or cuda:N)", stage="inpaint")
    return device


class LamaInpainter:
    """Batched LaMa over padded crops; see the module docstring for the model convention."""

    name = "lama"

    def __init__(
        self,
        model_path: str | Path = DEFAULT_MODEL_PATH,
        device: str = "auto",
        crop_padding: int = 128,
        batch_size: int = 4,
        max_crop_side: int = 1024,
    ) -> None:
        if batch_size < 1:
            raise EngineError(f"batch_size must be >= 1, got {batch_size}", stage="inpaint")
        if max_crop_side < SIZE_MULTIPLE:
            raise EngineError(f"max_crop_side must be >= {SIZE_MULTIPLE}, got {max_crop_side}", stage="inpaint")
        self.model_path = Path(model_path).expanduser()
        self.crop_padding = max(0, int(crop_padding))
        self.batch_size = int(batch_size)
        self.max_crop_side = int(max_crop_side)
        self._sha256: str | None = None
        self._lock = threading.Lock()  # one forward pass at a time: bounds GPU memory when threads share us
        if not self.model_path.is_file():
            raise EngineError(f"LaMa model file not found: {self.model_path.resolve()}. {MISSING_MODEL_HELP}",
                              stage="inpaint")
        self._torch = _import_torch()
        self.device = select_device(device)
        try:
            self.model = self._torch.jit.load(str(self.model_path), map_location=self.device)
        except Exception as exc:  # torch raises RuntimeError/ValueError variants for bad archives
            raise EngineError(f"cannot load LaMa TorchScript model {self.model_path}: {exc}", stage="inpaint") from exc
        self.model.eval()
        logger.info("loaded LaMa model %s on %s", self.model_path, self.device)

    def version(self) -> str:
        if self._sha256 is None:
            digest = hashlib.sha256()
            with self.model_path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            self._sha256 = digest.hexdigest()
        return f"lama/{self.model_path.name}/sha256:{self._sha256[:12]}/torch-{self._torch.__version__}"

    # -- planning -------------------------------------------------------------------------------------------

    def _prepare(self, image: np.ndarray, mask: np.ndarray, crop: Crop) -> _Job:
        box = expand_to_multiple(crop, SIZE_MULTIPLE, mask.shape)
        rows, cols = box.slices
        pixels = image[rows, cols]
        region = mask[rows, cols] > 0  # every masked pixel in the box, so neighbours' text isn't used as context
        resized = None
        longest = max(box.height, box.width)
        if longest > self.max_crop_side:
            scale = self.max_crop_side / longest
            h = max(SIZE_MULTIPLE, round(box.height * scale / SIZE_MULTIPLE) * SIZE_MULTIPLE)
            w = max(SIZE_MULTIPLE, round(box.width * scale / SIZE_MULTIPLE) * SIZE_MULTIPLE)
            pixels = cv2.resize(pixels, (w, h), interpolation=cv2.INTER_AREA)
            # Area-averaged then ">0": a downscaled pixel touching any masked pixel stays masked (never shrinks).
            region = cv2.resize(region.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_AREA) > 0
            resized = (h, w)
        pixels = pad_to_multiple(np.ascontiguousarray(pixels), SIZE_MULTIPLE)
        region = pad_to_multiple(region, SIZE_MULTIPLE)
        return _Job(box=box, own=crop, size=(pixels.shape[0], pixels.shape[1]), resized=resized, image=pixels,
                    mask=region)

    # -- inference ------------------------------------------------------------------------------------------

    def _run_batch(self, jobs: list[_Job]) -> list[np.ndarray]:
        torch = self._torch
        images = np.stack([j.image for j in jobs]).astype(np.float32) / 255.0
        masks = np.stack([j.mask for j in jobs]).astype(np.float32)[:, None]
        try:
            with self._lock, torch.inference_mode():
                image_t = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(self.device)
                mask_t = torch.from_numpy(masks).to(self.device)
                out = self.model(image_t, mask_t)
                result = (out.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        except torch.cuda.OutOfMemoryError as exc:  # pragma: no cover - GPU only
            raise EngineError(f"LaMa ran out of GPU memory on a batch of {len(jobs)}: {exc}", stage="inpaint",
                              transient=True) from exc
        except (RuntimeError, torch.jit.Error) as exc:  # jit.Error (raised inside scripted code) isn't a RuntimeError
            raise EngineError(f"LaMa inference failed: {exc}", stage="inpaint") from exc
        expected = (len(jobs), *jobs[0].size, 3)
        if result.shape != expected:
            raise EngineError(f"LaMa model returned shape {result.shape}, expected {expected}", stage="inpaint")
        return list(result)

    def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Return a copy of ``image`` (HxWx3 uint8 RGB) with the pixels where ``mask`` > 0 filled by LaMa."""
        check_inputs(image, mask)
        out = image.copy()
        crops = plan_crops(mask, self.crop_padding)
        if not crops:
            return out
        groups: dict[tuple[int, int], list[_Job]] = defaultdict(list)
        for crop in crops:
            job = self._prepare(image, mask, crop)
            groups[job.size].append(job)
        calls = 0
        for jobs in groups.values():
            for start in range(0, len(jobs), self.batch_size):
                batch = jobs[start:start + self.batch_size]
                for job, filled in zip(batch, self._run_batch(batch), strict=True):
                    self._paste(out, mask, job, filled)
                calls += 1
        logger.debug("lama: %d crop(s) in %d size group(s), %d forward pass(es) on %s", len(crops), len(groups),
                     calls, self.device)
        return out

    @staticmethod
    def _paste(out: np.ndarray, mask: np.ndarray, job: _Job, filled: np.ndarray) -> None:
        if job.resized is not None:
            h, w = job.resized
            filled = cv2.resize(filled[:h, :w], (job.box.width, job.box.height), interpolation=cv2.INTER_CUBIC)
        else:
            filled = filled[: job.box.height, : job.box.width]
        # Paste only this job's own crop: pixels of a neighbouring crop that the 8-px expansion reached are left
        # to that crop's own job.
        rows, cols = job.own.slices
        dy, dx = job.own.y0 - job.box.y0, job.own.x0 - job.box.x0
        local = filled[dy:dy + job.own.height, dx:dx + job.own.width]
        region = mask[rows, cols] > 0
        out[rows, cols][region] = local[region]
