"""The engines a pipeline configuration uses, as the stages see them.

Each engine is built on first use through its loader (the Dagster resources pass their cached loaders, the
benchmark passes the same ones), so a step loads only what it needs and a model that cannot load fails the step
that needs it, not an earlier one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from ..core.types import OcrResult, RenderedImage, SourceImage
from ..engines.gpu import GpuMemoryGuard, runs_on_gpu
from ..engines.inpaint.base import Inpainter
from ..engines.render import TextRenderer
from ..engines.translate import TranslationService
from ..engines.translate.memory import TranslationMemory
from ..storage.base import ArtifactStore


class OcrEngines(Protocol):
    """What the OCR stage needs (``engines.ocr.router.OcrRouter``)."""

    def recognize(self, image: np.ndarray, lang: str) -> OcrResult: ...
    def engine_for(self, lang: str) -> Any: ...
    def check_language(self, lang: str) -> None: ...
    def version(self) -> str: ...
    def on_gpu(self) -> bool: ...


class Fetcher(Protocol):
    def fetch_images(self, urls: list[str]) -> list[SourceImage | Exception]: ...


def _starter_inspector() -> Any:
    from ..inspection import BUILTIN, Inspector, load_rules

    return Inspector(load_rules(BUILTIN))


class Engines:
    """Lazily built engines of one configuration, plus what identifies its output (``variant``)."""

    def __init__(self, *, fetcher: Callable[[], Fetcher], ocr: Callable[[], OcrEngines],
                 translation: Callable[[], TranslationService], inpainter: Callable[[], Inpainter],
                 renderer: Callable[[], TextRenderer], store: Callable[[], ArtifactStore],
                 gpu_guard: Callable[[], GpuMemoryGuard | None] = lambda: None,
                 inspector: Callable[[], Any] | None = None, variant: str = "") -> None:
        self._loaders: dict[str, Callable[[], Any]] = {
            "fetcher": fetcher, "ocr": ocr, "translation": translation, "inpainter": inpainter,
            "renderer": renderer, "store": store, "gpu_guard": gpu_guard,
            "inspector": inspector or _starter_inspector}
        self._built: dict[str, Any] = {}
        self._lock = threading.Lock()
        # What about translation changes a result, for dedupe: engine, model, endpoint, glossary file.
        self.variant = variant

    def _get(self, name: str) -> Any:
        with self._lock:
            if name not in self._built:
                self._built[name] = self._loaders[name]()
            return self._built[name]

    @property
    def fetcher(self) -> Fetcher:
        return self._get("fetcher")

    @property
    def ocr(self) -> OcrEngines:
        return self._get("ocr")

    @property
    def translation(self) -> TranslationService:
        return self._get("translation")

    @property
    def inpainter(self) -> Inpainter:
        return self._get("inpainter")

    @property
    def renderer(self) -> TextRenderer:
        return self._get("renderer")

    @property
    def store(self) -> ArtifactStore:
        return self._get("store")

    @property
    def gpu_guard(self) -> GpuMemoryGuard | None:
        return self._get("gpu_guard")

    @property
    def inspector(self) -> Any:
        """The content inspector (``inspection.Inspector``) of the configured rules."""
        return self._get("inspector")

    def translation_memory(self) -> TranslationMemory | None:
        """The translation service's memory (None without one, or when the service cannot be built here: the
        translate stage reports that)."""
        try:
            return self.translation.memory
        except Exception:
            return None

    def render(self, *args: Any, **kwargs: Any) -> RenderedImage:
        return self.renderer.render(*args, **kwargs)

    def inpaint_on_gpu(self) -> bool:
        return runs_on_gpu(self.inpainter)

    def versions(self) -> dict[str, str]:
        """Engine versions for meta.json: OCR, translation and inpainting (each read on its own: one engine
        whose version cannot be read must not cost the others)."""
        versions: dict[str, str] = {}
        for stage, read in (("ocr", lambda: self.ocr.version()), ("translate", lambda: self.translation.version()),
                            ("inpaint", lambda: self.inpainter.version())):
            try:
                versions[stage] = read()
            except Exception as error:  # recorded as unknown; the request itself is fine
                versions[stage] = f"unknown ({type(error).__name__}: {error})"
        return versions
