"""Dagster resources: configuration of each engine, and the engine itself loaded once per process.

A ``ConfigurableResource`` is instantiated for every run, but models must not be: the engines are kept in a
process-wide cache keyed by their configuration, so the CLI (many runs in one process), in-process tests and a
warm run worker all load each model exactly once.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from dagster import ConfigurableResource

from ..core.errors import EngineError, UnsupportedLanguagePair
from ..core.types import OcrResult, RenderedImage, SourceImage, TranslationResult
from ..engines.fetch import Downloader, FetchSettings
from ..engines.gpu import runs_on_gpu
from ..engines.inpaint import create_inpainter
from ..engines.ocr import create_ocr_engine, run_ocr
from ..engines.render import TextRenderer, encode_image
from ..engines.translate import TranslationCache, TranslationService, create_translator
from ..storage import create_artifact_store
from ..storage.base import ArtifactStore

T = TypeVar("T")
_cache: dict[tuple[Any, ...], Any] = {}
_cache_lock = threading.Lock()


def process_cached(key: tuple[Any, ...], factory: Callable[[], T]) -> T:
    """Build an engine once per process per configuration (thread-safe)."""
    with _cache_lock:
        if key not in _cache:
            _cache[key] = factory()
        return _cache[key]


def cached_keys() -> frozenset[tuple[Any, ...]]:
    """What this process has loaded (the Celery workers report warm vs cold runs from it)."""
    with _cache_lock:
        return frozenset(_cache)


class FetchResource(ConfigurableResource):
    """Downloads (http/https, file, s3) with retries, limits and the private-address guard."""

    allow_private_urls: bool = False
    max_bytes: int = 30 * 1024 * 1024
    max_pixels: int = 60_000_000
    concurrency: int = 8
    retries: int = 4  # in-process retries with backoff; the op's RetryPolicy retries what is still failing
    backoff_base_s: float = 0.5
    timeout_s: float = 30.0
    s3_endpoint_url: str = ""

    def downloader(self) -> Downloader:
        settings = FetchSettings(
            allow_private=self.allow_private_urls,
            max_bytes=self.max_bytes,
            max_pixels=self.max_pixels,
            concurrency=self.concurrency,
            retries=self.retries,
            backoff_base=self.backoff_base_s,
            total_timeout=self.timeout_s,
            s3_endpoint_url=self.s3_endpoint_url or None,
        )
        return process_cached(("fetch", repr(settings)), lambda: Downloader(settings))

    def fetch_images(self, urls: list[str]) -> list[SourceImage | Exception]:
        return self.downloader().fetch_images(urls)


class OcrResource(ConfigurableResource):
    """OCR engine per source language: the primary engine, and a fallback for languages it cannot read."""

    engine: str = "rapidocr"
    fallback_engine: str = "tesseract"  # the only offline engine for Korean source text
    min_confidence: float = 0.6
    tall_ratio: float = 3.0
    # onnxruntime threads per OCR call; requests of a batch are also OCR'd in parallel (IMGTRANS_ITEM_THREADS),
    # so the default is cores / item threads (IMGTRANS_OCR_THREADS, core.config).
    threads: int = 1
    models_dir: str = "models"

    def _engine(self, name: str) -> Any:
        options: dict[str, Any] = {}
        if name == "rapidocr":
            options["threads"] = self.threads
        if name == "paddle":
            options["models_dir"] = self.models_dir
        return process_cached(("ocr", name, tuple(sorted(options.items()))),
                              lambda: create_ocr_engine(name, **options))

    def engine_for(self, lang: str) -> Any:
        primary = self._engine(self.engine)
        if lang == "auto" or lang in primary.languages() or not self.fallback_engine:
            return primary
        fallback = self._engine(self.fallback_engine)
        return fallback if lang in fallback.languages() else primary

    def check_language(self, lang: str) -> None:
        engine = self.engine_for(lang)
        if lang != "auto" and lang not in engine.languages():
            raise EngineError(f"no OCR engine reads '{lang}' (tried {self.engine}, {self.fallback_engine})",
                              stage="ocr")

    def recognize(self, image: np.ndarray, lang: str) -> OcrResult:
        return run_ocr(self.engine_for(lang), image, lang, min_confidence=self.min_confidence,
                       tall_ratio=self.tall_ratio)

    def versions(self) -> dict[str, str]:
        return {"ocr": self._engine(self.engine).version()}

    def item_threads(self) -> int | None:
        """Requests OCR'd at once: one on a GPU, else the stage default (``IMGTRANS_ITEM_THREADS``)."""
        return 1 if runs_on_gpu(self._engine(self.engine)) else None


class TranslatorResource(ConfigurableResource):
    """Translation engine + cache + glossary. API engines read their key from the environment."""

    engine: str = "ctranslate2"
    models_dir: str = "models"
    model: str = ""  # API model name (gemini/openai); empty = engine default
    base_url: str = ""  # API base URL (openai-compatible servers, or a Gemini proxy)
    api_key_env: str = ""  # name of the env var holding the key; empty = engine default
    cache_path: str = ""  # SQLite translation cache; empty = no cache
    glossary_file: str = ""  # JSON object {term: translation} applied to every request

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.engine == "ctranslate2":
            options["models_dir"] = self.models_dir
        if self.model:
            options["model"] = self.model
        if self.base_url:
            options["base_url"] = self.base_url
        if self.api_key_env:
            options["api_key_env"] = self.api_key_env
        return options

    def service(self) -> TranslationService:
        options = self._options()

        def build() -> TranslationService:
            translator = create_translator(self.engine, **options)
            cache = TranslationCache(Path(self.cache_path)) if self.cache_path else None
            glossary: dict[str, str] = {}
            if self.glossary_file:
                glossary = json.loads(Path(self.glossary_file).read_text(encoding="utf-8"))
            return TranslationService(translator, cache=cache, glossary=glossary)

        key = ("translate", self.engine, tuple(sorted(options.items())), self.cache_path, self.glossary_file)
        return process_cached(key, build)

    def check_pair(self, source_lang: str, target_lang: str) -> None:
        translator = self.service().translator
        if not translator.supports(source_lang, target_lang):
            raise UnsupportedLanguagePair(source_lang, target_lang, translator.name)

    def translate(self, texts: list[str], source_lang: str, target_lang: str,
                  glossary: dict[str, str]) -> TranslationResult:
        return self.service().translate(texts, source_lang, target_lang, glossary=glossary or None)

    def versions(self) -> dict[str, str]:
        translator = self.service().translator
        return {"translate": f"{translator.name}:{translator.model}"}

    def variant(self) -> str:
        """What about translation changes a result, for dedupe: engine, model, endpoint, glossary file."""
        return f"{self.engine}|{self.model}|{self.base_url}|{self.glossary_file}"


class InpaintResource(ConfigurableResource):
    engine: str = "opencv"
    model_path: str = ""  # LaMa TorchScript file; empty = models/inpaint/big-lama.pt
    device: str = "auto"

    def item_threads(self) -> int | None:
        """Requests inpainted at once: one on a GPU, else the stage default (``IMGTRANS_ITEM_THREADS``)."""
        return 1 if runs_on_gpu(self.inpainter()) else None

    def inpainter(self) -> Any:
        options: dict[str, Any] = {}
        if self.engine == "lama":
            options = {"model_path": self.model_path or "models/inpaint/big-lama.pt", "device": self.device}
        return process_cached(("inpaint", self.engine, tuple(sorted(options.items()))),
                              lambda: create_inpainter(self.engine, **options))

    def versions(self) -> dict[str, str]:
        return {"inpaint": self.inpainter().version()}


class RenderResource(ConfigurableResource):
    fonts_dir: str = ""

    def renderer(self) -> TextRenderer:
        fonts_dir = self.fonts_dir or None
        return process_cached(("render", fonts_dir), lambda: TextRenderer(fonts_dir=fonts_dir))

    def render(self, *args: Any, **kwargs: Any) -> RenderedImage:
        return self.renderer().render(*args, **kwargs)

    @staticmethod
    def encode_png(pixels: np.ndarray) -> bytes:
        return encode_image(pixels, "png")


class ArtifactStoreResource(ConfigurableResource):
    """Where each request's folder of artifacts goes: a local directory or ``s3://bucket/prefix``."""

    url: str = "artifacts"
    s3_endpoint_url: str = ""
    public_base_url: str = ""

    def store(self) -> ArtifactStore:
        options: dict[str, Any] = {}
        if self.s3_endpoint_url:
            options["endpoint_url"] = self.s3_endpoint_url
        if self.public_base_url:
            options["public_base_url"] = self.public_base_url
        return process_cached(("store", self.url, tuple(sorted(options.items()))),
                              lambda: create_artifact_store(self.url, **options))


class IntakeResource(ConfigurableResource):
    """Redis intake: queue, per-request status hash, dead letters, results list and webhooks.

    Defaults come from ``IMGTRANS_*`` variables (see ``intake.settings``). Runs not started by the Redis
    sensor never touch Redis, so the CLI and Launchpad work without it.
    """

    redis_url: str = ""
    queue_key: str = ""
    queue_kind: str = ""  # "list" | "stream"
    results_key: str = ""
    dead_key: str = ""
    batch_size: int = 8  # requests per run: amortises run start-up and model loading (see benchmarks/)
    max_in_flight: int = 64  # backpressure: requests in queued + running runs before the sensor stops claiming
    max_claim_per_tick: int = 256
    # Long poll: an idle tick blocks this long in Redis for the first request instead of returning at once, so a
    # request is claimed the moment it arrives rather than at the next tick (ticks start at most every 5 s).
    # Kept under the Redis socket timeout; 0 turns it off.
    claim_wait_seconds: float = 4.5
    # After the first request of a quiet period, wait this long for the ones right behind it (one run, not many).
    linger_seconds: float = 0.2
    allow_private_callbacks: bool = False

    @staticmethod
    def configured() -> bool:
        """Whether Redis intake is set up in this environment (turns the sensors on by default)."""
        import os

        return bool(os.environ.get("IMGTRANS_REDIS_URL"))

    def settings(self) -> Any:
        from ..intake import IntakeSettings

        base = IntakeSettings.from_env()
        overrides = {"redis_url": self.redis_url, "queue": self.queue_key, "queue_kind": self.queue_kind,
                     "results": self.results_key, "dead": self.dead_key}
        return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v})

    def claim_wait(self) -> float:
        """Seconds an idle tick blocks for the first request: ``claim_wait_seconds``, kept 0.5 s under the Redis
        socket timeout so the blocking call never times out client-side.

        Why 4.5 s by default: the daemon starts its sensor loop at most every 5 s and sleeps only for what is left
        of those 5 s after the ticks, so an idle tick that blocks ~4.5 s leaves the queue unwatched for well under
        a second per cycle."""
        return max(0.0, min(self.claim_wait_seconds, self.settings().socket_timeout - 0.5))

    def client(self) -> Any:
        settings = self.settings()
        return process_cached(("redis", settings.redis_url), settings.connect)

    def queue(self) -> Any:
        from ..intake import create_queue

        return create_queue(self.client(), self.settings())

    def status(self) -> Any:
        from ..intake import RequestStatus

        return RequestStatus(self.client(), self.settings())

    def dead_letters(self) -> Any:
        from ..intake import DeadLetters

        return DeadLetters(self.client(), self.settings())

    def _webhooks(self) -> Any:
        from ..engines.fetch import UrlPolicy
        from ..intake import WebhookSender

        settings = self.settings()
        return WebhookSender(settings.webhook_secret, url_policy=UrlPolicy(allow_private=self.allow_private_callbacks))

    def mark_running(self, request_ids: list[str], run_id: str) -> None:
        status = self.status()
        for request_id in request_ids:
            status.mark(request_id, "running", run_id=run_id, attempts_increment=True)

    def deliver(self, outcomes: list[dict[str, Any]], run_id: str) -> None:
        """Final state of each request of a run: status hash, dead letter, results list, webhook."""
        from ..intake import push_result

        status, dead, settings = self.status(), self.dead_letters(), self.settings()
        webhooks = self._webhooks()
        for outcome in outcomes:
            request_id = outcome["request_id"]
            succeeded = outcome["status"] == "succeeded"
            error = outcome.get("error") or None
            reason = f"[{error['stage']}] {error['reason']}" if error else None
            state = status.get(request_id) or {}
            if succeeded:
                status.mark(request_id, "succeeded", run_id=run_id, result_url=outcome.get("result_url") or "",
                            meta_url=outcome.get("meta") or "", reused_from=outcome.get("reused_from") or "")
            else:
                status.mark(request_id, "dead", run_id=run_id, error=reason or "failed")
                dead.add(state.get("payload") or json.dumps(outcome.get("request") or {"request_id": request_id}),
                         reason or "failed", request_id=request_id, run_id=run_id,
                         stage=(error or {}).get("stage"))
            message = {"request_id": request_id, "status": "succeeded" if succeeded else "failed",
                       "result_url": outcome.get("result_url"), "meta_url": outcome.get("meta"),
                       "error": reason, "run_id": run_id}
            push_result(self.client(), settings, message)
            callback = outcome.get("callback_url")
            if callback:
                sent = webhooks.send(callback, message)
                status.mark(request_id, "succeeded" if succeeded else "dead",
                            delivery="delivered" if sent.delivered else "failed",
                            delivery_attempts=sent.attempts, delivery_error=sent.error or "")

    def settle_failed_run(self, run_id: str, request_ids: list[str], reason: str, *, will_retry: bool) -> None:
        """A run failed: requests it did not settle itself become dead (or failed, when Dagster retries)."""
        from ..intake import push_result

        status, dead = self.status(), self.dead_letters()
        for request_id in request_ids:
            state = status.get(request_id) or {}
            if state.get("state") in ("succeeded", "dead") and state.get("run_id") == run_id:
                continue  # the run's publish step already settled it
            if state.get("run_id") not in (None, "", run_id) and state.get("state") in ("running", "succeeded"):
                continue  # a newer run (a retry) owns it now
            if will_retry:
                status.mark(request_id, "failed", run_id=run_id, error=f"{reason} (run will be retried)")
                continue
            status.mark(request_id, "dead", run_id=run_id, error=reason)
            dead.add(state.get("payload") or json.dumps({"request_id": request_id}), reason,
                     request_id=request_id, run_id=run_id, stage="run")
            push_result(self.client(), self.settings(), {"request_id": request_id, "status": "failed",
                                                         "error": reason, "run_id": run_id})


class GpuResource(ConfigurableResource):
    """GPU memory guard for GPU-bound steps (OCR, inpaint): wait for free device memory, never start into an OOM."""

    min_free_mb: int = 2048
    timeout_s: float = 300.0

    def wait_for_memory(self, what: str) -> float:
        from ..engines.gpu import GpuMemoryGuard

        return GpuMemoryGuard(min_free_bytes=self.min_free_mb * 2**20, timeout_s=self.timeout_s).wait(what)
