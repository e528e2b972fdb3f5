"""Dagster resources: thin, configurable clients of the engines, one per stage concern.

Each resource holds only configuration (its values come from ``core.settings`` in ``definitions.build_resources``,
and the Launchpad can override any of them per run) and hands out the plain-Python engine it configures, built
once per process through the engine registry's cache (``engines.registry.cached_engine``): the CLI (many runs in
one process), in-process tests and a warm run worker all load each model exactly once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from .. import names
from ..core.errors import EngineError
from ..core.settings import (
    FetchSection,
    InpaintSection,
    IntakeSection,
    OcrSection,
    RuntimeSection,
    TranslateSection,
    default_of,
    get_settings,
)
from ..core.types import SourceImage
from ..engines.fetch import Downloader, FetchSettings
from ..engines.gpu import GpuMemoryGuard
from ..engines.inpaint import INPAINT_ENGINES
from ..engines.inpaint.base import Inpainter
from ..engines.ocr import OCR_ENGINES
from ..engines.ocr.router import OcrRouter
from ..engines.registry import cached_engine, options_key
from ..engines.render import TextRenderer
from ..engines.translate import TRANSLATE_ENGINES, TranslationCache, TranslationService
from ..engines.translate.glossary import load_glossary_file
from ..engines.translate.memory import TranslationMemory
from ..pipeline import Engines, StageRunner
from ..storage import create_artifact_store
from ..storage.base import ArtifactStore

logger = logging.getLogger(__name__)

# The resource keys a stage needs (ops and assets require all of them: engines load lazily, on first use).
PIPELINE_RESOURCE_KEYS = frozenset({"fetcher", "ocr_engine", "translator", "inpainting", "renderer", "artifacts",
                                    "runtime"})


class FetchResource(ConfigurableResource):
    """Downloads (http/https, file, s3) with retries, limits and the private-address guard."""

    allow_private_urls: bool = default_of(FetchSection, "allow_private_urls")
    max_bytes: int = default_of(FetchSection, "max_download_bytes")
    max_pixels: int = default_of(FetchSection, "max_image_pixels")
    concurrency: int = default_of(FetchSection, "concurrency")
    retries: int = default_of(FetchSection, "retries")  # in-process; the op's RetryPolicy retries what is left
    backoff_base_s: float = 0.5
    timeout_s: float = default_of(FetchSection, "timeout_s")
    s3_endpoint_url: str = ""
    # The trust boundary of queued requests (Redis, Kafka): local files only below these roots, s3:// only from
    # these buckets (IMGTRANS_FILE_ROOTS / IMGTRANS_S3_BUCKETS); requests from the CLI or the Launchpad may read any.
    queued_file_roots: list[str] = Field(default_factory=list)
    queued_s3_buckets: list[str] = Field(default_factory=list)

    def downloader(self, queued: bool = False) -> Downloader:
        """The downloader; ``queued``: for requests that came from a queue, under its file-root/bucket policy."""
        limits: dict[str, Any] = {}
        if queued:
            limits = {"allowed_file_roots": list(self.queued_file_roots),
                      "allowed_s3_buckets": list(self.queued_s3_buckets)}
        settings = FetchSettings(allow_private=self.allow_private_urls, max_bytes=self.max_bytes,
                                 max_pixels=self.max_pixels, concurrency=self.concurrency, retries=self.retries,
                                 backoff_base=self.backoff_base_s, total_timeout=self.timeout_s,
                                 s3_endpoint_url=self.s3_endpoint_url or None, **limits)
        return cached_engine(("fetch", repr(settings)), lambda: Downloader(settings))

    def fetch_images(self, urls: list[str]) -> list[SourceImage | Exception]:
        return self.downloader().fetch_images(urls)


class OcrResource(ConfigurableResource):
    """OCR per source language: the primary engine, and a fallback for languages it cannot read."""

    engine: str = default_of(OcrSection, "engine")
    fallback_engine: str = default_of(OcrSection, "fallback_engine")
    min_confidence: float = default_of(OcrSection, "min_confidence")
    tall_ratio: float = default_of(OcrSection, "tall_ratio")
    threads: int = 1  # onnxruntime threads per OCR call (settings: cores / item threads)
    models_dir: str = "models"

    def _loader(self, name: str) -> Any:
        options: dict[str, Any] = {"threads": self.threads}
        if OCR_ENGINES.canonical(name) == "paddle":
            options["model_root"] = str(Path(self.models_dir) / "paddle")
        OCR_ENGINES.check_options(name, options)
        key = ("ocr", OCR_ENGINES.canonical(name), options_key(options))
        return lambda: cached_engine(key, lambda: OCR_ENGINES.create(name, **options))

    def router(self) -> OcrRouter:
        fallback = self._loader(self.fallback_engine) if self.fallback_engine else None
        return OcrRouter(self._loader(self.engine), fallback, min_confidence=self.min_confidence,
                         tall_ratio=self.tall_ratio, names=(self.engine, self.fallback_engine or "none"))


class TranslatorResource(ConfigurableResource):
    """Translation engine + cache + glossary. API keys come from the settings (never from run config)."""

    engine: str = default_of(TranslateSection, "engine")
    models_dir: str = "models"
    model: str = ""  # API model name (gemini/openai; DeepL's model_type); empty = engine default
    base_url: str = ""  # API base URL (openai-compatible servers, a Gemini proxy, DeepL/Papago endpoints)
    cache_path: str = ""  # SQLite translation cache; empty = no cache
    glossary_file: str = ""  # JSON {term: translation} for every request, or {"*": {...}, "<scope>": {...}}
    memory_path: str = ""  # SQLite translation memory (curated entries used before the engine); empty = none
    send_image: bool = default_of(TranslateSection, "send_image")  # LLM engines see the image (off: text only)

    def _options(self) -> dict[str, Any]:
        engine = TRANSLATE_ENGINES.canonical(self.engine)
        if engine == "ctranslate2":
            return {"models_dir": self.models_dir}
        options: dict[str, Any] = {}
        if engine in ("gemini", "openai"):
            options["send_image"] = self.send_image
        if self.model:
            options["model"] = self.model
        if self.base_url:
            options["base_url"] = self.base_url
        options.update(get_settings().translate.engine_options(engine))
        return options

    def service(self) -> TranslationService:
        options = self._options()

        def build() -> TranslationService:
            translator = TRANSLATE_ENGINES.create(self.engine, **options)
            cache = TranslationCache(Path(self.cache_path)) if self.cache_path else None
            memory = TranslationMemory(Path(self.memory_path)) if self.memory_path else None
            sections: dict[str, dict[str, str]] = {}
            if self.glossary_file:
                try:
                    sections = load_glossary_file(self.glossary_file)
                except ValueError as error:
                    raise EngineError(str(error), stage="translate") from error
            glossary = sections.pop("", {})
            return TranslationService(translator, cache=cache, glossary=glossary, memory=memory,
                                      scoped_glossaries=sections)

        key = ("translate", TRANSLATE_ENGINES.canonical(self.engine), options_key(options), self.cache_path,
               self.glossary_file, self.memory_path)
        return cached_engine(key, build)

    def variant(self) -> str:
        """What about translation changes a result, for dedupe: engine, model, endpoint, glossary file, the
        output options an API engine takes from the settings (DeepL's English variant, Papago's honorific), and
        the image left out of LLM calls."""
        variant = f"{self.engine}|{self.model}|{self.base_url}|{self.glossary_file}"
        try:
            options = get_settings().translate.engine_options(TRANSLATE_ENGINES.canonical(self.engine))
        except EngineError:  # an unknown engine fails where it is built, with its own message
            options = {}
        output = ",".join(f"{k}={v}" for k, v in sorted(options.items()) if k not in ("api_key", "client_id"))
        if output:
            variant = f"{variant}|{output}"
        return variant if self.send_image else f"{variant}|no-image"


class InpaintResource(ConfigurableResource):
    engine: str = default_of(InpaintSection, "engine")
    model_path: str = ""  # LaMa TorchScript file (settings: <models>/inpaint/big-lama.pt)
    device: str = default_of(InpaintSection, "device")

    def inpainter(self) -> Inpainter:
        options: dict[str, Any] = {}
        if INPAINT_ENGINES.canonical(self.engine) == "lama":
            options = {"device": self.device, **({"model_path": self.model_path} if self.model_path else {})}
        key = ("inpaint", INPAINT_ENGINES.canonical(self.engine), options_key(options))
        return cached_engine(key, lambda: INPAINT_ENGINES.create(self.engine, **options))


class RenderResource(ConfigurableResource):
    fonts_dir: str = ""

    def renderer(self) -> TextRenderer:
        fonts_dir = self.fonts_dir or None
        return cached_engine(("render", fonts_dir), lambda: TextRenderer(fonts_dir=fonts_dir))


class ArtifactStoreResource(ConfigurableResource):
    """Where each request's folder of artifacts goes: a local directory or ``s3://bucket/prefix``."""

    url: str = "artifacts"
    s3_endpoint_url: str = ""
    s3_region: str = ""
    public_base_url: str = ""
    presign_expires_s: int = 0  # 0 = the store's default

    def store(self) -> ArtifactStore:
        options: dict[str, Any] = {}
        if self.url.startswith("s3://"):
            options = {"endpoint_url": self.s3_endpoint_url or None, "region": self.s3_region or None,
                       "public_base_url": self.public_base_url or None,
                       "presign_expires": self.presign_expires_s or None}
        return cached_engine(("store", self.url, options_key(options)),
                             lambda: create_artifact_store(self.url, **options))


class RuntimeResource(ConfigurableResource):
    """How stages run: requests worked on at once, the GPU memory guard of GPU-bound stages, result scoring."""

    item_threads: int = 1
    quality_score: bool = default_of(RuntimeSection, "quality_score")
    min_quality: float = default_of(RuntimeSection, "min_quality")
    review_below: float = 0.0  # the quality gate (IMGTRANS_REVIEW_BELOW); 0 = off
    inspection_rules: str = ""  # IMGTRANS_INSPECTION_RULES: a YAML file or "builtin"; empty = no inspection
    gpu_min_free_mb: int = default_of(RuntimeSection, "gpu_min_free_mb")
    gpu_wait_timeout_s: float = default_of(RuntimeSection, "gpu_wait_timeout_s")

    def gpu_guard(self) -> GpuMemoryGuard:
        return GpuMemoryGuard(min_free_bytes=self.gpu_min_free_mb * 2**20, timeout_s=self.gpu_wait_timeout_s)

    def inspector(self) -> Any:
        """The content inspector of the configured rules (inspect-only requests fall back to the starter set)."""
        from ..inspection import BUILTIN, Inspector, load_rules

        location = self.inspection_rules or BUILTIN
        return cached_engine(("inspection", location), lambda: Inspector(load_rules(location)))


def pipeline_engines(resources: Mapping[str, Any] | Any, *, queued: bool = False) -> Engines:
    """The ``Engines`` the stages call, from the pipeline resources (a mapping, or Dagster's ``context.resources``);
    ``queued``: the requests came from a queue (Redis, Kafka), so downloads obey the queued-request URL policy."""
    get = resources.__getitem__ if isinstance(resources, Mapping) else lambda key: getattr(resources, key)
    fetcher, ocr, translator = get("fetcher"), get("ocr_engine"), get("translator")
    inpainting, renderer, artifacts, runtime = get("inpainting"), get("renderer"), get("artifacts"), get("runtime")
    variant = translator.variant()
    if runtime.inspection_rules:
        # Findings change what a request ends as (held, rejected): a result inspected under other rules is not
        # an answer for this configuration. Rules that do not load fail the inspect stage, with their error.
        try:
            variant = f"{variant}|inspection={runtime.inspector().rules.digest[:16]}"
        except Exception:
            variant = f"{variant}|inspection=unreadable"
    return Engines(fetcher=lambda: fetcher.downloader(queued=queued), ocr=ocr.router, translation=translator.service,
                   inpainter=inpainting.inpainter, renderer=renderer.renderer, store=artifacts.store,
                   gpu_guard=runtime.gpu_guard, inspector=runtime.inspector, variant=variant)


def stage_runner(resources: Mapping[str, Any] | Any, *, queued: bool = False) -> StageRunner:
    get = resources.__getitem__ if isinstance(resources, Mapping) else lambda key: getattr(resources, key)
    runtime = get("runtime")
    return StageRunner(pipeline_engines(resources, queued=queued), item_threads=runtime.item_threads,
                       quality_score=runtime.quality_score, min_quality=runtime.min_quality,
                       review_below=runtime.review_below or None, inspection=bool(runtime.inspection_rules))


class IntakeResource(ConfigurableResource):
    """The intakes (Redis queue, Kafka topic): per-request status, dead letters, results and webhooks.

    Runs not started by an intake sensor never touch Redis or Kafka, so the CLI and Launchpad work without them.
    Where a request's status lives (duplicates, attempts, the one run that delivers it): Redis when it is
    configured, else, for a Kafka-only deployment, the SQLite file ``IMGTRANS_INTAKE_STATE_DB`` (one host).
    """

    redis_url: str = ""  # empty = the settings' (IMGTRANS_REDIS_URL, else local Redis)
    queue_key: str = ""
    queue_kind: str = ""  # "list" | "stream"
    results_key: str = ""
    dead_key: str = ""
    kafka_bootstrap: str = ""  # empty = the settings' (IMGTRANS_KAFKA_BOOTSTRAP)
    kafka_topic: str = ""
    state_db: str = ""  # empty = the settings' (IMGTRANS_INTAKE_STATE_DB)
    batch_size: int = 8  # requests per run: amortises run start-up and model loading (see benchmarks/)
    max_in_flight: int = default_of(IntakeSection, "max_in_flight")  # backpressure, in queued + running runs
    max_claim_per_tick: int = 256
    # Long poll: an idle tick blocks this long in Redis for the first request instead of returning at once, so a
    # request is claimed the moment it arrives rather than at the next tick (ticks start at most every 5 s).
    # Kept under the Redis socket timeout; 0 turns it off.
    claim_wait_seconds: float = default_of(IntakeSection, "claim_wait_s")
    # After the first request of a quiet period, wait this long for the ones right behind it (one run, not many).
    linger_seconds: float = 0.2
    allow_private_callbacks: bool = False

    def config(self) -> Any:
        from ..intake import IntakeConfig

        return IntakeConfig.from_settings(get_settings().intake, redis_url=self.redis_url, queue=self.queue_key,
                                          queue_kind=self.queue_kind, results=self.results_key, dead=self.dead_key)

    def claim_wait(self) -> float:
        """Seconds an idle tick blocks for the first request: ``claim_wait_seconds``, kept 0.5 s under the Redis
        socket timeout so the blocking call never times out client-side.

        Why 4.5 s by default: the daemon starts its sensor loop at most every 5 s and sleeps only for what is left
        of those 5 s after the ticks, so an idle tick that blocks ~4.5 s leaves the queue unwatched for well under
        a second per cycle."""
        return max(0.0, min(self.claim_wait_seconds, self.config().socket_timeout - 0.5))

    def client(self) -> Any:
        config = self.config()
        return cached_engine(("redis", config.redis_url), config.connect)

    def queue(self) -> Any:
        from ..intake import create_queue

        return create_queue(self.client(), self.config())

    def uses_redis(self) -> bool:
        """Whether request state lives in Redis: Redis configured, or no Kafka intake to use instead."""
        settings = get_settings()
        return bool(self.redis_url or settings.intake.enabled) or not (self.kafka_bootstrap or
                                                                         settings.kafka.enabled)

    def _state_db(self) -> str:
        return self.state_db or str(get_settings().kafka.state_db)

    def status(self) -> Any:
        if not self.uses_redis():
            from ..intake.local import LocalRequestStatus

            return LocalRequestStatus(self._state_db(), self.config().status_ttl_seconds)
        from ..intake import RequestStatus

        return RequestStatus(self.client(), self.config())

    def tick_lease(self, name: str, ttl_s: float) -> Any:
        """One tick of the ``name`` intake at a time (``intake.lease``), in Redis or in the SQLite state file."""
        if not self.uses_redis():
            from ..intake.local import LocalTickLease

            return LocalTickLease(self._state_db(), f"{name}:tick-lease", ttl_s)
        from ..intake import TickLease

        return TickLease(self.client(), f"{name}:tick-lease", ttl_s)

    def dead_letters(self) -> Any:
        from ..intake import DeadLetters

        return DeadLetters(self.client(), self.config())

    def kafka_config(self) -> Any:
        from ..intake.kafka import KafkaConfig

        return KafkaConfig.from_settings(get_settings().kafka, bootstrap=self.kafka_bootstrap, topic=self.kafka_topic)

    def kafka(self) -> Any:
        from ..intake.kafka import KafkaIntake

        return KafkaIntake(self.kafka_config())

    def transport(self, source: str | None) -> Any:
        """Where a request's result and dead letter go: the Redis lists, or the Kafka topics."""
        if source == names.SOURCE_KAFKA:
            from ..intake.kafka import KafkaTransport

            config = self.kafka_config()
            return cached_engine(("kafka-transport", repr(config)), lambda: KafkaTransport(config))
        return _RedisTransport(self)

    def _webhooks(self) -> Any:
        from ..engines.fetch import UrlPolicy
        from ..intake import WebhookSender

        config = self.config()
        return WebhookSender(config.webhook_secret, url_policy=UrlPolicy(allow_private=self.allow_private_callbacks))

    def mark_running(self, request_ids: list[str], run_id: str) -> None:
        status = self.status()
        for request_id in request_ids:
            status.mark(request_id, "running", run_id=run_id, attempts_increment=True)

    def deliver(self, outcomes: list[dict[str, Any]], run_id: str, source: str | None = None) -> None:
        """Final state of each request of a run: status, dead letter, result message, webhook.

        ``source`` (the run's intake) picks the transport; without it (a reviewer's decision), the intake the
        request came through, as its status records."""
        status = self.status()
        webhooks = self._webhooks()
        for outcome in outcomes:
            request_id = outcome["request_id"]
            if outcome["status"] == "needs_review":
                # Held by the quality gate: nothing is delivered until a reviewer approves (review.actions).
                review = outcome.get("review") or {}
                status.mark(request_id, "needs_review", run_id=run_id, result_url=outcome.get("result_url") or "",
                            meta_url=outcome.get("meta") or "", review_reason=review.get("why") or "",
                            review_score=review.get("score", ""), review_reasons=review.get("reasons") or [])
                continue
            delivered_by = status.claim_delivery(request_id, run_id)
            if delivered_by is not None:
                logger.warning("request %s was already delivered by run %s; run %s does not deliver it again",
                               request_id, delivered_by, run_id)
                continue
            succeeded = outcome["status"] == "succeeded"
            error = outcome.get("error") or None
            reason = f"[{error['stage']}] {error['reason']}" if error else None
            state = status.get(request_id) or {}
            transport = self.transport(source or state.get("source"))
            message = {"request_id": request_id, "status": "succeeded" if succeeded else "failed",
                       "result_url": outcome.get("result_url"), "meta_url": outcome.get("meta"),
                       "error": reason, "run_id": run_id}
            if outcome.get("inspection"):  # findings: the whole answer of an inspect-only request
                message["inspection"] = outcome["inspection"]
            try:
                if succeeded:
                    status.mark(request_id, "succeeded", run_id=run_id, result_url=outcome.get("result_url") or "",
                                meta_url=outcome.get("meta") or "", reused_from=outcome.get("reused_from") or "")
                else:
                    status.mark(request_id, "dead", run_id=run_id, error=reason or "failed")
                    transport.add_dead_letter(
                        state.get("payload") or json.dumps(outcome.get("request") or {"request_id": request_id}),
                        reason or "failed", request_id=request_id, run_id=run_id, stage=(error or {}).get("stage"))
                transport.push_result(message)
            except Exception as failure:
                # Not delivered (broker or Redis unreachable, a publish timing out): the request is not settled.
                # Give the claim back and say so, then fail the step: its retry, or the run's failure sensor
                # (dead letter with this reason), takes over; a finished-looking request is never left undelivered.
                status.release_delivery(request_id, run_id)
                status.mark(request_id, "running", run_id=run_id, force=True, error=f"delivery failed: {failure}")
                raise
            callback = outcome.get("callback_url")
            if callback:
                sent = webhooks.send(callback, message)
                status.mark(request_id, "succeeded" if succeeded else "dead",
                            delivery="delivered" if sent.delivered else "failed",
                            delivery_attempts=sent.attempts, delivery_error=sent.error or "")

    def settle_failed_run(self, run_id: str, request_ids: list[str], reason: str, *, will_retry: bool,
                          source: str | None = None) -> None:
        """A run failed: requests it did not settle itself become dead (or failed, when Dagster retries)."""
        status, transport = self.status(), self.transport(source)
        for request_id in request_ids:
            state = status.get(request_id) or {}
            if state.get("state") in ("succeeded", "dead", "needs_review") and state.get("run_id") == run_id:
                continue  # the run's publish step already settled it
            if state.get("run_id") not in (None, "", run_id) and state.get("state") in ("running", "succeeded"):
                continue  # a newer run (a retry) owns it now
            if will_retry:
                status.mark(request_id, "failed", run_id=run_id, error=f"{reason} (run will be retried)")
                continue
            status.mark(request_id, "dead", run_id=run_id, error=reason)
            transport.add_dead_letter(state.get("payload") or json.dumps({"request_id": request_id}), reason,
                                      request_id=request_id, run_id=run_id, stage="run")
            transport.push_result({"request_id": request_id, "status": "failed", "error": reason, "run_id": run_id})


class _RedisTransport:
    """The Redis lists as a transport (results list, dead-letter queue): the shape of ``KafkaTransport``."""

    def __init__(self, intake: IntakeResource) -> None:
        self.intake = intake

    def push_result(self, result: dict[str, Any]) -> None:
        from ..intake import push_result

        push_result(self.intake.client(), self.intake.config(), result)

    def add_dead_letter(self, raw: str, reason: str, *, request_id: str | None = None, run_id: str | None = None,
                        stage: str | None = None) -> None:
        self.intake.dead_letters().add(raw, reason, request_id=request_id, run_id=run_id, stage=stage)
