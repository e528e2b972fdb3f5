"""The one settings object: every ``IMGTRANS_*`` variable (and the few foreign ones we honour) read in one place.

``get_settings()`` builds it once per process (pydantic-settings parses and validates the environment, so a bad
value fails at start-up with the variable's name); everything else receives it, or the part it needs, as a
parameter. Defaults are written here and nowhere else: the Dagster resources are constructed from these values
(``orchestration.definitions``), so the Launchpad shows them as the resources' defaults and can override each per
run.

The tree has one section per concern (``ocr``, ``translate``, ``inpaint``, ``render``, ``fetch``, ``runtime``,
``intake``, ``kafka``, ``s3``, ``backfill``, ``celery``). Variable names are flat (``IMGTRANS_OCR_ENGINE``,
``IMGTRANS_QUEUE``...) because they are what operators already export; each field names its variable.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_CHECKOUT = Path(__file__).resolve().parents[2]  # the source checkout (where `make` puts models/)
FALLBACK_REDIS_URL = "redis://127.0.0.1:6379/0"


def _env(name: str, default: Any = None, **kwargs: Any) -> Any:
    """A field read from the variable ``name`` only (in code, override with ``model_copy(update=...)``)."""
    return Field(default, validation_alias=AliasChoices(name), **kwargs)


class _Section(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", validate_by_name=False, validate_by_alias=True,
                                      env_ignore_empty=True, case_sensitive=False)


class OcrSection(_Section):
    engine: str = _env("IMGTRANS_OCR_ENGINE", "rapidocr")
    fallback_engine: str = _env("IMGTRANS_OCR_FALLBACK_ENGINE", "tesseract")  # the only offline Korean OCR
    min_confidence: float = _env("IMGTRANS_MIN_CONFIDENCE", 0.6, ge=0.0, le=1.0)
    tall_ratio: float = _env("IMGTRANS_TALL_RATIO", 3.0, gt=0.0)
    # onnxruntime threads per OCR call; None = cores / item threads (requests of a batch run in parallel too).
    threads: int | None = _env("IMGTRANS_OCR_THREADS", None, ge=1)


class TranslateSection(_Section):
    engine: str = _env("IMGTRANS_TRANSLATE_ENGINE", "ctranslate2")
    model: str = _env("IMGTRANS_TRANSLATE_MODEL", "")  # API model name; empty = the engine's default
    base_url: str = _env("IMGTRANS_TRANSLATE_BASE_URL", "")  # OpenAI-compatible server, or a Gemini proxy
    # The API key: IMGTRANS_TRANSLATE_API_KEY, else the engine's conventional variable.
    api_key: SecretStr | None = _env("IMGTRANS_TRANSLATE_API_KEY", None)
    gemini_api_key: SecretStr | None = _env("GEMINI_API_KEY", None)
    openai_api_key: SecretStr | None = _env("OPENAI_API_KEY", None)
    # DeepL: the auth key (DEEPL_AUTH_KEY is what DeepL's own client libraries read); a key ending in ":fx" is a
    # free-plan key and selects api-free.deepl.com unless IMGTRANS_TRANSLATE_BASE_URL says otherwise.
    deepl_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("IMGTRANS_DEEPL_API_KEY",
                                                                                "DEEPL_AUTH_KEY"))
    deepl_english: Literal["EN-US", "EN-GB"] = _env("IMGTRANS_DEEPL_ENGLISH", "EN-US")  # DeepL's English variant
    deepl_portuguese: Literal["PT-BR", "PT-PT"] = _env("IMGTRANS_DEEPL_PORTUGUESE", "PT-BR")
    # Papago (NAVER Cloud): an application's Client ID and Client Secret.
    papago_client_id: str = _env("IMGTRANS_PAPAGO_CLIENT_ID", "")
    papago_client_secret: SecretStr | None = _env("IMGTRANS_PAPAGO_CLIENT_SECRET", None)
    papago_honorific: bool = _env("IMGTRANS_PAPAGO_HONORIFIC", False)  # polite Korean (target ko only)
    cache: str | None = _env("IMGTRANS_TRANSLATION_CACHE", None)  # SQLite file; None = <artifacts>/translation-cache
    # JSON {term: translation} applied to every request, or {"*": {...}, "<scope>": {...}} with catalogue/shop sections.
    glossary_file: str = _env("IMGTRANS_GLOSSARY", "")
    # Translation memory (SQLite): curated whole-text translations used before any engine; "off" = none;
    # None = <local artifact store>/translation-memory.sqlite (S3 store: <home>/artifacts/...).
    memory: str | None = _env("IMGTRANS_TRANSLATION_MEMORY", None)
    # LLM engines (gemini, openai) see the image (downscaled JPEG) with its text; off for text-only models.
    send_image: bool = _env("IMGTRANS_TRANSLATE_SEND_IMAGE", True)

    @field_validator("deepl_english", "deepl_portuguese", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    def key_for(self, engine: str) -> str:
        """The API key an engine should use ('' when none is configured): the engine's own IMGTRANS_ variable,
        else IMGTRANS_TRANSLATE_API_KEY, else the engine's conventional variable."""
        own = {"deepl": self.deepl_api_key, "papago": self.papago_client_secret}.get(engine)
        conventional = {"gemini": self.gemini_api_key, "openai": self.openai_api_key}.get(engine)
        secret = own or self.api_key or conventional
        return secret.get_secret_value() if secret else ""

    def engine_options(self, engine: str) -> dict[str, Any]:
        """The credentials and engine-specific options an API engine is built with (never part of run config)."""
        options: dict[str, Any] = {}
        key = self.key_for(engine)
        if key:
            options["api_key"] = key
        if engine == "deepl":
            options.update(english_variant=self.deepl_english, portuguese_variant=self.deepl_portuguese)
        elif engine == "papago":
            options["honorific"] = self.papago_honorific
            if self.papago_client_id:
                options["client_id"] = self.papago_client_id
        return options


class InpaintSection(_Section):
    engine: str = _env("IMGTRANS_INPAINT_ENGINE", "opencv")
    lama_model: str | None = _env("IMGTRANS_LAMA_MODEL", None)  # None = <models>/inpaint/big-lama.pt
    device: str = _env("IMGTRANS_INPAINT_DEVICE", "auto")


class RenderSection(_Section):
    fonts_dir: str | None = _env("IMGTRANS_FONTS_DIR", None)  # None = <models>/fonts, then the system's fonts


class FetchSection(_Section):
    allow_private_urls: bool = _env("IMGTRANS_ALLOW_PRIVATE_URLS", False)
    max_image_pixels: int = _env("IMGTRANS_MAX_IMAGE_PIXELS", 60_000_000, gt=0)
    max_download_bytes: int = _env("IMGTRANS_MAX_DOWNLOAD_BYTES", 30 * 1024 * 1024, gt=0)
    concurrency: int = _env("IMGTRANS_DOWNLOAD_CONCURRENCY", 8, ge=1)
    retries: int = _env("IMGTRANS_DOWNLOAD_RETRIES", 4, ge=0)
    timeout_s: float = _env("IMGTRANS_DOWNLOAD_TIMEOUT_SECONDS", 30.0, gt=0)
    # Trust boundary of queued requests (Redis, Kafka): local paths only below these roots (colon-separated; unset =
    # none), s3:// only from these buckets (comma- or colon-separated; unset = the artifact store's own bucket).
    # The CLI and the Launchpad are not restricted.
    file_roots: str = _env("IMGTRANS_FILE_ROOTS", "")
    s3_buckets: str | None = _env("IMGTRANS_S3_BUCKETS", None)

    def queued_file_roots(self, artifacts: str = "") -> list[str]:
        """IMGTRANS_FILE_ROOTS, plus a local artifact store's own directory (as the store's own bucket is allowed on
        S3): hash-only Kafka messages are resolved to the stored ``hash-<sha256>/source.png``."""
        roots = [root for root in self.file_roots.split(":") if root.strip()]
        if artifacts and "://" not in artifacts:
            roots.append(artifacts)
        return roots

    def queued_s3_buckets(self, artifacts: str) -> list[str]:
        if self.s3_buckets is not None:
            return [b.strip() for b in self.s3_buckets.replace(":", ",").split(",") if b.strip()]
        if artifacts.startswith("s3://"):
            return [artifacts.removeprefix("s3://").split("/", 1)[0]]
        return []


class RuntimeSection(_Section):
    batch_size: int = _env("IMGTRANS_BATCH_SIZE", 8, ge=1)  # requests per run (intake)
    # Score every result 0..1 (re-reading the erased lines, checking translation and layout); warn below the minimum.
    quality_score: bool = _env("IMGTRANS_QUALITY_SCORE", True)
    min_quality: float = _env("IMGTRANS_MIN_QUALITY", 0.6, ge=0.0, le=1.0)
    # Quality gate: a result scoring below this waits for a reviewer (state needs_review) instead of being
    # delivered; None = off. Above 1 sends every scored result to review.
    review_below: float | None = _env("IMGTRANS_REVIEW_BELOW", None, ge=0.0)
    # Requests of a batch a stage works on at once; None = the CPU count capped at 4.
    item_threads: int | None = _env("IMGTRANS_ITEM_THREADS", None, ge=1)
    gpu_min_free_mb: int = _env("IMGTRANS_GPU_MIN_FREE_MB", 2048, ge=0)
    gpu_wait_timeout_s: float = _env("IMGTRANS_GPU_WAIT_TIMEOUT_SECONDS", 300.0, gt=0)
    log_format: Literal["text", "json"] = _env("IMGTRANS_LOG_FORMAT", "text")
    # Content inspection rules (YAML file, or "builtin" for the shipped starter set); unset = no inspection, except
    # for inspect-only requests, which use the starter set then.
    inspection_rules: str | None = _env("IMGTRANS_INSPECTION_RULES", None)
    # `imgtrans serve` stops gracefully (as on SIGTERM) once this file exists.
    stop_file: str | None = _env("IMGTRANS_STOP_FILE", None)


class IntakeSection(_Section):
    # Unset = no Redis intake: the sensors start stopped and runs from the CLI/Launchpad never touch Redis.
    redis_url: str | None = _env("IMGTRANS_REDIS_URL", None)
    queue: str = _env("IMGTRANS_QUEUE", "imgtrans:requests", min_length=1)
    queue_kind: Literal["list", "stream"] = _env("IMGTRANS_QUEUE_KIND", "list")
    results: str = _env("IMGTRANS_RESULTS", "imgtrans:results", min_length=1)
    dead: str = _env("IMGTRANS_DEAD", "imgtrans:dead", min_length=1)
    status_prefix: str = _env("IMGTRANS_STATUS_PREFIX", "imgtrans:request:", min_length=1)
    stream_group: str = _env("IMGTRANS_STREAM_GROUP", "imgtrans")
    stream_consumer: str = _env("IMGTRANS_STREAM_CONSUMER", "imgtrans-intake")
    webhook_secret: SecretStr | None = _env("IMGTRANS_WEBHOOK_SECRET", None)
    status_ttl_seconds: int = _env("IMGTRANS_STATUS_TTL_SECONDS", 7 * 24 * 3600, gt=0)
    socket_timeout_s: float = _env("IMGTRANS_REDIS_SOCKET_TIMEOUT", 5.0, gt=0)
    max_in_flight: int = _env("IMGTRANS_MAX_IN_FLIGHT", 64, ge=1)
    claim_wait_s: float = _env("IMGTRANS_CLAIM_WAIT_SECONDS", 4.5, ge=0)

    @field_validator("queue_kind", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def enabled(self) -> bool:
        return bool(self.redis_url)

    @property
    def url(self) -> str:
        return self.redis_url or FALLBACK_REDIS_URL


class KafkaSection(_Section):
    # Unset = no Kafka intake (its sensors start stopped). Comma-separated host:port list.
    bootstrap: str | None = _env("IMGTRANS_KAFKA_BOOTSTRAP", None)
    topic: str = _env("IMGTRANS_KAFKA_TOPIC", "imgtrans.requests", min_length=1)
    group: str = _env("IMGTRANS_KAFKA_GROUP", "imgtrans", min_length=1)
    dead_topic: str = _env("IMGTRANS_KAFKA_DEAD_TOPIC", "imgtrans.dead", min_length=1)
    results_topic: str = _env("IMGTRANS_KAFKA_RESULTS_TOPIC", "imgtrans.results", min_length=1)
    # Request status, delivery claims and the tick lease without Redis (IMGTRANS_REDIS_URL unset): a SQLite file,
    # so one host only. None = <IMGTRANS_HOME>/intake-state.sqlite.
    state_db: str | None = _env("IMGTRANS_INTAKE_STATE_DB", None)
    timeout_s: float = _env("IMGTRANS_KAFKA_TIMEOUT_SECONDS", 10.0, gt=0)  # broker round trips (metadata, commit)

    @property
    def enabled(self) -> bool:
        return bool(self.bootstrap)


class S3Section(_Section):
    endpoint_url: str | None = _env("IMGTRANS_S3_ENDPOINT_URL", None)
    region: str | None = _env("IMGTRANS_S3_REGION", None)
    public_base_url: str | None = _env("IMGTRANS_S3_PUBLIC_BASE_URL", None)
    presign_expires: int | None = _env("IMGTRANS_S3_PRESIGN_EXPIRES", None, gt=0)

    def store_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class BackfillSection(_Section):
    targets: str = _env("IMGTRANS_BACKFILL_TARGETS", "")  # e.g. "en,ko": every stored image in these languages
    cron: str = _env("IMGTRANS_BACKFILL_CRON", "0 3 * * *")
    per_run: int = _env("IMGTRANS_BACKFILL_PER_RUN", 200, ge=1)

    def target_list(self) -> list[str]:
        from .languages import normalize_language

        return [normalize_language(code, field="IMGTRANS_BACKFILL_TARGETS")
                for code in self.targets.split(",") if code.strip()]


class CelerySection(_Section):
    broker: str | None = _env("IMGTRANS_CELERY_BROKER", None)  # None = the intake's Redis
    backend: str | None = _env("IMGTRANS_CELERY_BACKEND", None)  # None = the broker
    queue: str = _env("IMGTRANS_CELERY_QUEUE", "dagster")
    worker_max_memory_mib: int = _env("IMGTRANS_WORKER_MAX_MEMORY_MIB", 1400, gt=0)
    preload: bool = _env("IMGTRANS_CELERY_PRELOAD", False)


class WebSection(_Section):
    # Required when the review/metrics page is bound to a non-loopback address (bearer header or ?token=).
    review_token: SecretStr | None = _env("IMGTRANS_REVIEW_TOKEN", None)


class Settings(BaseSettings):
    """Everything configurable, with defaults that work offline on a fresh machine."""

    # validate_default off: the None defaults below are resolved by _derived_defaults, not validated as paths.
    model_config = SettingsConfigDict(extra="ignore", validate_by_name=False, validate_by_alias=True,
                                      env_ignore_empty=True, case_sensitive=False, validate_default=False)

    home: Path = _env("IMGTRANS_HOME", None)  # holds models/ and artifacts/; default: the working directory
    models_dir: Path = _env("IMGTRANS_MODELS_DIR", None)
    artifacts: str = _env("IMGTRANS_ARTIFACTS", None)  # a directory or s3://bucket/prefix
    dagster_home: Path | None = _env("DAGSTER_HOME", None)

    ocr: OcrSection = Field(default_factory=OcrSection)
    translate: TranslateSection = Field(default_factory=TranslateSection)
    inpaint: InpaintSection = Field(default_factory=InpaintSection)
    render: RenderSection = Field(default_factory=RenderSection)
    fetch: FetchSection = Field(default_factory=FetchSection)
    runtime: RuntimeSection = Field(default_factory=RuntimeSection)
    intake: IntakeSection = Field(default_factory=IntakeSection)
    kafka: KafkaSection = Field(default_factory=KafkaSection)
    s3: S3Section = Field(default_factory=S3Section)
    backfill: BackfillSection = Field(default_factory=BackfillSection)
    celery: CelerySection = Field(default_factory=CelerySection)
    web: WebSection = Field(default_factory=WebSection)

    @model_validator(mode="after")
    def _derived_defaults(self) -> Settings:
        """Defaults that depend on other settings, resolved once so every reader sees the same value."""
        explicit_home = self.home is not None
        self.home = Path(self.home or os.getcwd()).expanduser().resolve()
        if self.models_dir is None:
            # With IMGTRANS_HOME: its models/; else the checkout's models/ (where `make` puts them), so the CLI
            # finds its models whatever the working directory.
            self.models_dir = self.home / "models" if explicit_home else _CHECKOUT / "models"
        self.models_dir = Path(self.models_dir).expanduser().resolve()
        if self.artifacts is None:
            self.artifacts = str(self.home / "artifacts")
        if self.kafka.state_db is None:
            self.kafka.state_db = str(self.home / "intake-state.sqlite")
        if self.translate.cache is None:
            self.translate.cache = str(self.home / "artifacts" / "translation-cache.sqlite")
        if self.translate.memory is None:
            # Curated data that belongs with the results: in a local artifact store, else under the home.
            store = self.artifacts if "://" not in self.artifacts else str(self.home / "artifacts")
            self.translate.memory = str(Path(store) / "translation-memory.sqlite")
        elif self.translate.memory.strip().lower() in ("off", "none", "false", "0"):
            self.translate.memory = ""
        if self.inpaint.lama_model is None:
            self.inpaint.lama_model = str(self.models_dir / "inpaint" / "big-lama.pt")
        if self.render.fonts_dir is None:
            self.render.fonts_dir = str(self.models_dir / "fonts")
        cores = os.cpu_count() or 1
        if self.runtime.item_threads is None:
            # Requests worked on at once and onnxruntime threads per OCR call: together about one per core
            # (two requests on one thread each beat one request on two threads: README "Performance").
            self.runtime.item_threads = min(cores, 4)
        if self.ocr.threads is None:
            self.ocr.threads = max(1, cores // self.runtime.item_threads)
        return self

    def replace(self, **changes: Any) -> Settings:
        """A copy with some values changed; ``section__field=value`` changes a field of a section
        (``settings.replace(artifacts="/tmp/a", inpaint__engine="lama")``). Derived defaults are not re-derived."""
        top: dict[str, Any] = {}
        sections: dict[str, dict[str, Any]] = {}
        for key, value in changes.items():
            section, _, field = key.partition("__")
            if field:
                sections.setdefault(section, {})[field] = value
            else:
                top[key] = value
        for section, fields in sections.items():
            current = getattr(self, section)
            unknown = set(fields) - set(type(current).model_fields)
            if unknown:
                raise ValueError(f"unknown {section} setting(s): {', '.join(sorted(unknown))}")
            top[section] = current.model_copy(update=fields)
        unknown = set(top) - set(type(self).model_fields)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return self.model_copy(update=top)

    @property
    def celery_broker(self) -> str:
        """Celery's broker: IMGTRANS_CELERY_BROKER, else the intake's Redis (its keys do not collide)."""
        return self.celery.broker or self.intake.url

    @property
    def celery_backend(self) -> str:
        return self.celery.backend or self.celery_broker


def default_of(section: type[BaseSettings], field: str) -> Any:
    """The default of one settings field, for parameter objects that mirror a section (written once, here)."""
    return section.model_fields[field].default


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests that change the environment; a CLI that set DAGSTER_HOME)."""
    get_settings.cache_clear()
