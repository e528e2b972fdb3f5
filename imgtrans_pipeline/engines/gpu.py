"""GPU memory guard (seed 003): before a GPU step starts, wait until the device has enough free memory instead of
crashing with an out-of-memory error halfway through a batch.

The Dagster ``gpu`` pool already keeps GPU steps from running concurrently in *our* runs; this guard covers what
the pool cannot see: other processes on the same device (a notebook, another service, a LaMa worker still
releasing memory). With no GPU it returns at once.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..core.errors import EngineError

logger = logging.getLogger(__name__)

MemoryProbe = Callable[[], tuple[int, int] | None]  # (free bytes, total bytes) of the device, None = no GPU


def cuda_memory() -> tuple[int, int] | None:
    """Free/total bytes of the current CUDA device via torch (if installed) or nvidia-smi; None without a GPU."""
    try:
        import torch

        if torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info()
            return int(free), int(total)
    except ImportError:
        pass
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.free,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        free_mib, total_mib = (int(v) for v in out.splitlines()[0].split(","))
        return free_mib * 2**20, total_mib * 2**20
    except (subprocess.SubprocessError, ValueError, IndexError, OSError):
        return None


@dataclass
class GpuMemoryGuard:
    min_free_bytes: int = 2 * 2**30
    timeout_s: float = 300.0
    poll_s: float = 2.0
    probe: MemoryProbe = cuda_memory

    def wait(self, what: str = "gpu step") -> float:
        """Block until enough memory is free; return the seconds waited. Raises a transient ``EngineError`` on
        timeout, so the step is retried later (Dagster RetryPolicy) rather than started into an OOM."""
        start = time.monotonic()
        while True:
            memory = self.probe()
            if memory is None:
                return 0.0  # no GPU: CPU execution, nothing to guard
            free, total = memory
            needed = min(self.min_free_bytes, total)  # a small device can never offer more than it has
            waited = time.monotonic() - start
            if free >= needed:
                if waited > 0.05:
                    logger.info("gpu.memory.available what=%s free_mib=%d waited_s=%.1f", what, free // 2**20,
                                waited)
                return waited
            if waited >= self.timeout_s:
                raise EngineError(f"{what}: only {free // 2**20} MiB of GPU memory free after {waited:.0f} s "
                                  f"(needs {needed // 2**20} MiB)", stage="gpu", transient=True)
            logger.info("gpu.memory.wait what=%s free_mib=%d needed_mib=%d", what, free // 2**20, needed // 2**20)
            time.sleep(self.poll_s)


def runs_on_gpu(engine: object) -> bool:
    """Whether an engine computes on a GPU (RapidOCR's ``use_cuda``, or a torch/CTranslate2/Paddle ``device``).

    A GPU engine gets one request at a time: parallel requests would only queue on the device and multiply its
    memory use, while on CPU they use the cores an engine alone leaves idle.
    """
    if getattr(engine, "use_cuda", False):
        return True
    device = str(getattr(engine, "device", "cpu")).lower()
    return device.startswith(("cuda", "gpu"))
