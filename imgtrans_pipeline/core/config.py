"""Settings from environment variables, with embedded defaults that work offline on a fresh machine.

Every knob has an ``IMGTRANS_*`` variable; the Dagster resources take their defaults from here, and the Launchpad
(or a run config) can override each per run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def project_root() -> Path:
    """The directory holding models/ and artifacts/: IMGTRANS_HOME, else the current directory."""
    return Path(_env("IMGTRANS_HOME", os.getcwd())).resolve()


def default_models_dir() -> Path:
    """IMGTRANS_MODELS_DIR, else $IMGTRANS_HOME/models, else models/ of the source checkout (where `make` puts
    them), so the CLI finds its models whatever the working directory."""
    if os.environ.get("IMGTRANS_MODELS_DIR"):
        return Path(os.environ["IMGTRANS_MODELS_DIR"]).expanduser().resolve()
    if os.environ.get("IMGTRANS_HOME"):
        return Path(os.environ["IMGTRANS_HOME"]).expanduser().resolve() / "models"
    return Path(__file__).resolve().parents[2] / "models"


@dataclass(frozen=True)
class Settings:
    models_dir: str
    artifacts_url: str
    ocr_engine: str = "rapidocr"
    min_confidence: float = 0.6
    translate_engine: str = "ctranslate2"
    translate_model: str = ""
    translate_base_url: str = ""
    translation_cache: str = ""
    inpaint_engine: str = "opencv"
    lama_model_path: str = ""
    gpu_min_free_mb: int = 2048
    allow_private_urls: bool = False
    max_image_pixels: int = 60_000_000
    max_download_bytes: int = 30 * 1024 * 1024
    download_concurrency: int = 8
    batch_size: int = 8
    item_threads: int = 2
    ocr_threads: int = 1
    max_in_flight: int = 64
    claim_wait_seconds: float = 4.5
    fonts_dir: str = ""
    glossary_file: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Settings:
        root = project_root()
        models_dir = _env("IMGTRANS_MODELS_DIR", str(default_models_dir()))
        # Requests of a batch worked on at once, and onnxruntime threads per OCR call: together about one thread
        # per core (measured on 2 cores: 2 requests x 1 thread = 1.43x the throughput of 1 request x 2 threads).
        cores = os.cpu_count() or 1
        item_threads = max(1, int(_env("IMGTRANS_ITEM_THREADS", str(min(cores, 4)))))
        return cls(
            models_dir=models_dir,
            artifacts_url=_env("IMGTRANS_ARTIFACTS", str(root / "artifacts")),
            ocr_engine=_env("IMGTRANS_OCR_ENGINE", "rapidocr"),
            min_confidence=float(_env("IMGTRANS_MIN_CONFIDENCE", "0.6")),
            translate_engine=_env("IMGTRANS_TRANSLATE_ENGINE", "ctranslate2"),
            translate_model=_env("IMGTRANS_TRANSLATE_MODEL", ""),
            translate_base_url=_env("IMGTRANS_TRANSLATE_BASE_URL", ""),
            translation_cache=_env("IMGTRANS_TRANSLATION_CACHE", str(root / "artifacts" / "translation-cache.sqlite")),
            inpaint_engine=_env("IMGTRANS_INPAINT_ENGINE", "opencv"),
            lama_model_path=_env("IMGTRANS_LAMA_MODEL", str(Path(models_dir) / "inpaint" / "big-lama.pt")),
            gpu_min_free_mb=int(_env("IMGTRANS_GPU_MIN_FREE_MB", "2048")),
            allow_private_urls=_env_bool("IMGTRANS_ALLOW_PRIVATE_URLS", False),
            max_image_pixels=int(_env("IMGTRANS_MAX_IMAGE_PIXELS", "60000000")),
            max_download_bytes=int(_env("IMGTRANS_MAX_DOWNLOAD_BYTES", str(30 * 1024 * 1024))),
            download_concurrency=int(_env("IMGTRANS_DOWNLOAD_CONCURRENCY", "8")),
            batch_size=int(_env("IMGTRANS_BATCH_SIZE", "8")),
            item_threads=item_threads,
            ocr_threads=max(1, int(_env("IMGTRANS_OCR_THREADS", str(max(1, cores // item_threads))))),
            max_in_flight=int(_env("IMGTRANS_MAX_IN_FLIGHT", "64")),
            claim_wait_seconds=float(_env("IMGTRANS_CLAIM_WAIT_SECONDS", "4.5")),
            fonts_dir=_env("IMGTRANS_FONTS_DIR", str(Path(models_dir) / "fonts")),
            glossary_file=_env("IMGTRANS_GLOSSARY", ""),
        )
