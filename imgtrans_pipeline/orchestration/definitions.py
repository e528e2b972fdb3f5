"""The Dagster entry point: the only module ``workspace.yaml`` names.

Resources take their defaults from ``IMGTRANS_*`` environment variables (see ``core.config``); each can be
overridden per run in the Launchpad under ``resources:``.
"""

from __future__ import annotations

from dagster import Definitions

from ..core.config import Settings
from .assets import TRANSLATION_ASSETS, translate_stored_images
from .io_managers import translation_items_io_manager, work_items_io_manager
from .jobs import translate_images
from .resources import (
    ArtifactStoreResource,
    FetchResource,
    GpuResource,
    InpaintResource,
    IntakeResource,
    OcrResource,
    RenderResource,
    TranslatorResource,
)
from .schedules import translate_catalogue_schedule
from .sensors import redis_dead_letter_sensor, redis_intake_sensor


def build_resources(settings: Settings | None = None) -> dict[str, object]:
    settings = settings or Settings.from_env()
    return {
        "fetcher": FetchResource(
            allow_private_urls=settings.allow_private_urls,
            max_bytes=settings.max_download_bytes,
            max_pixels=settings.max_image_pixels,
            concurrency=settings.download_concurrency,
        ),
        "ocr_engine": OcrResource(engine=settings.ocr_engine, min_confidence=settings.min_confidence,
                                  threads=settings.ocr_threads, models_dir=settings.models_dir),
        "translator": TranslatorResource(
            engine=settings.translate_engine,
            models_dir=settings.models_dir,
            model=settings.translate_model,
            base_url=settings.translate_base_url,
            cache_path=settings.translation_cache,
            glossary_file=settings.glossary_file,
        ),
        "inpainting": InpaintResource(engine=settings.inpaint_engine, model_path=settings.lama_model_path),
        "gpu": GpuResource(min_free_mb=settings.gpu_min_free_mb),
        "renderer": RenderResource(fonts_dir=settings.fonts_dir),
        "artifacts": ArtifactStoreResource(url=settings.artifacts_url),
        "translation_items": translation_items_io_manager,  # the assets' per-partition items
        "io_manager": work_items_io_manager,  # translate_images' op outputs (io_managers.py says why)
        "intake": IntakeResource(batch_size=settings.batch_size, max_in_flight=settings.max_in_flight,
                                 claim_wait_seconds=settings.claim_wait_seconds,
                                 allow_private_callbacks=settings.allow_private_urls),
    }


def build_definitions(settings: Settings | None = None) -> Definitions:
    return Definitions(
        assets=TRANSLATION_ASSETS,
        jobs=[translate_images, translate_stored_images],
        sensors=[redis_intake_sensor, redis_dead_letter_sensor],
        schedules=[translate_catalogue_schedule],
        resources=build_resources(settings),
    )


defs = build_definitions()
