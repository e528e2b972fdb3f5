"""The Dagster entry point: the only module ``workspace.yaml`` names.

Resources are built from the one settings object (``core.settings``: ``IMGTRANS_*`` variables), so their values
show in the Launchpad as defaults that can be overridden per run under ``resources:``.
"""

from __future__ import annotations

from dagster import Definitions

from ..core.settings import Settings, get_settings
from .assets import TRANSLATION_ASSETS, translate_stored_images
from .io_managers import translation_items_io_manager, work_items_io_manager
from .jobs import rerender_request, translate_images
from .resources import (
    ArtifactStoreResource,
    FetchResource,
    InpaintResource,
    IntakeResource,
    OcrResource,
    RenderResource,
    RuntimeResource,
    TranslatorResource,
)
from .schedules import translate_catalogue_schedule
from .sensors import kafka_dead_letter_sensor, kafka_intake_sensor, redis_dead_letter_sensor, redis_intake_sensor


def build_resources(settings: Settings | None = None) -> dict[str, object]:
    settings = settings or get_settings()
    fetch, ocr, translate, runtime = settings.fetch, settings.ocr, settings.translate, settings.runtime
    return {
        "fetcher": FetchResource(allow_private_urls=fetch.allow_private_urls, max_bytes=fetch.max_download_bytes,
                                 max_pixels=fetch.max_image_pixels, concurrency=fetch.concurrency,
                                 retries=fetch.retries, timeout_s=fetch.timeout_s,
                                 s3_endpoint_url=settings.s3.endpoint_url or "",
                                 queued_file_roots=fetch.queued_file_roots(settings.artifacts),
                                 queued_s3_buckets=fetch.queued_s3_buckets(settings.artifacts)),
        "ocr_engine": OcrResource(engine=ocr.engine, fallback_engine=ocr.fallback_engine,
                                  min_confidence=ocr.min_confidence, tall_ratio=ocr.tall_ratio,
                                  threads=ocr.threads or 1, models_dir=str(settings.models_dir)),
        "translator": TranslatorResource(engine=translate.engine, models_dir=str(settings.models_dir),
                                         model=translate.model, base_url=translate.base_url,
                                         cache_path=translate.cache or "", glossary_file=translate.glossary_file,
                                         memory_path=translate.memory or "",
                                         send_image=translate.send_image),
        "inpainting": InpaintResource(engine=settings.inpaint.engine, model_path=settings.inpaint.lama_model or "",
                                      device=settings.inpaint.device),
        "renderer": RenderResource(fonts_dir=settings.render.fonts_dir or ""),
        "artifacts": ArtifactStoreResource(url=settings.artifacts, s3_endpoint_url=settings.s3.endpoint_url or "",
                                           s3_region=settings.s3.region or "",
                                           public_base_url=settings.s3.public_base_url or "",
                                           presign_expires_s=settings.s3.presign_expires or 0),
        "runtime": RuntimeResource(item_threads=runtime.item_threads or 1, gpu_min_free_mb=runtime.gpu_min_free_mb,
                                   gpu_wait_timeout_s=runtime.gpu_wait_timeout_s,
                                   quality_score=runtime.quality_score, min_quality=runtime.min_quality,
                                   review_below=runtime.review_below or 0.0,
                                   inspection_rules=runtime.inspection_rules or ""),
        "translation_items": translation_items_io_manager,  # the assets' per-partition items
        "io_manager": work_items_io_manager,  # translate_images' op outputs (io_managers.py says why)
        "intake": IntakeResource(batch_size=runtime.batch_size, max_in_flight=settings.intake.max_in_flight,
                                 claim_wait_seconds=settings.intake.claim_wait_s,
                                 kafka_bootstrap=settings.kafka.bootstrap or "", state_db=settings.kafka.state_db or "",
                                 allow_private_callbacks=fetch.allow_private_urls),
    }


def build_definitions(settings: Settings | None = None) -> Definitions:
    return Definitions(
        assets=TRANSLATION_ASSETS,
        jobs=[translate_images, translate_stored_images, rerender_request],
        sensors=[redis_intake_sensor, redis_dead_letter_sensor, kafka_intake_sensor, kafka_dead_letter_sensor],
        schedules=[translate_catalogue_schedule],
        resources=build_resources(settings),
    )


defs = build_definitions()
