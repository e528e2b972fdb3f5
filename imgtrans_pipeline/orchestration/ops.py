"""The ops: thin wrappers that call one function of ``stages`` each and record what it produced.

Every op works on a batch of requests. A request that fails is marked failed inside the batch and skipped by the
later ops; only transient failures (timeouts, 429/5xx, an API returning garbage) make the op raise, so Dagster's
``RetryPolicy`` retries it with backoff. On the last attempt the op records them as failures instead of raising,
so the other requests of the batch still finish. GPU-bound ops (OCR, inpaint) run in the ``gpu`` pool.
"""

# No `from __future__ import annotations`: Dagster resolves Config and resource types from live annotations.

from typing import Any

from dagster import (
    Backoff,
    Config,
    Failure,
    Jitter,
    MetadataValue,
    OpExecutionContext,
    RetryPolicy,
    op,
)
from pydantic import Field

from .. import stages
from ..core.errors import InvalidRequest
from ..core.request import TranslationRequest, parse_request
from ..stages import WorkItem
from .recording import (
    CHECK_NO_SOURCE_TEXT_LEFT,
    CHECK_ONE_TRANSLATION_PER_BLOCK,
    CHECK_OUTPUT_DECODES,
    INPAINTED_IMAGE,
    MAX_RETRIES,
    RENDERED_IMAGE,
    TRANSLATION,
    check_no_source_text_left,
    check_one_translation_per_block,
    check_output_decodes,
    copy_items,
    log_check,
    materialize,
    permanent_errors_fail_once,
    preview,
    register_partitions,
    retry_transient,
    text_table,
    timings_metadata,
)
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

GPU_POOL = "gpu"
TRANSIENT_RETRY = RetryPolicy(max_retries=MAX_RETRIES, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


class RequestConfig(Config):
    """One translation request, as typed into the Launchpad or sent by the sensor."""

    request_id: str = Field(default="", description="Unique id; generated when empty.")
    image_url: str = Field(description="http(s)://, file://, s3://bucket/key or a local path.")
    target_lang: str = Field(description="Target language code, e.g. en, ko, ja.")
    source_lang: str = Field(default="auto", description="Source language code, or auto.")
    output_format: str = Field(default="png", description="png, jpeg or webp.")
    jpeg_quality: int = 92
    force: bool = Field(default=False, description="Recompute even if this image was already translated.")
    glossary: dict[str, str] = Field(default_factory=dict, description="Fixed term -> translation.")
    callback_url: str = ""

    def to_request(self) -> TranslationRequest:
        raw: dict[str, Any] = {
            "request_id": self.request_id,
            "image_url": self.image_url,
            "target_lang": self.target_lang,
            "source_lang": self.source_lang,
            "options": {"output_format": self.output_format, "jpeg_quality": self.jpeg_quality,
                        "force": self.force, "glossary": self.glossary},
        }
        if self.callback_url:
            raw["callback_url"] = self.callback_url
        return parse_request(raw)


class BatchConfig(Config):
    requests: list[RequestConfig] = Field(description="The requests this run translates (one or more).")


def _from_redis(context: OpExecutionContext) -> bool:
    return context.run.tags.get("imgtrans/source") == "redis"


def _public_url(store: Any, item: WorkItem) -> str | None:
    """A URL a producer can fetch: the S3 public/presigned URL, or the file URI for a local store."""
    if not item.result_uri:
        return None
    if item.reused_from or not hasattr(store, "public_url"):
        return item.result_uri
    name = next((n for n in item.artifacts if n.startswith("result.")), None)
    try:
        return store.public_url(item.request_id, name) if name else item.result_uri
    except Exception:  # a URL we cannot sign still leaves the stored URI
        return item.result_uri


@op(retry_policy=TRANSIENT_RETRY, tags={"kind": "io"})
def download(context: OpExecutionContext, config: BatchConfig, fetcher: FetchResource, ocr_engine: OcrResource,
             translator: TranslatorResource, artifacts: ArtifactStoreResource,
             intake: IntakeResource) -> list[WorkItem]:
    """Validate the requests, check the language pairs, download and normalise the images."""
    items: list[WorkItem] = []
    for position, request_config in enumerate(config.requests):
        try:
            items.append(WorkItem(request=request_config.to_request()))
        except InvalidRequest as error:
            # Invalid config is the caller's mistake: retrying cannot fix it.
            raise Failure(f"request #{position} is invalid: {error.reason}",
                          metadata={"request_id": request_config.request_id or "(none)"},
                          allow_retries=False) from error

    if _from_redis(context):
        intake.mark_running([item.request_id for item in items], context.run_id)

    def supports(source: str, target: str) -> None:
        ocr_engine.check_language(source)
        translator.check_pair(source, target)

    stages.check_languages(items, supports)
    stages.fetch_stage(items, fetcher.fetch_images, artifacts.store())
    retry_transient(context, items, "download")
    stages.reuse_stage(items, artifacts.store(), translator.variant())
    register_partitions(context.instance, items)
    for item in items:
        if item.reused_from:
            context.log.info(f"request {item.request_id}: same image, languages and options as "
                             f"{item.reused_from}, answered from its stored result {item.result_uri}")
    for item in items:
        if item.ok and item.source is not None:
            materialize(context, "source_image", item, "source.png", width=item.source.width,
                        height=item.source.height, source_format=item.source.source_format)
    return items


@op(retry_policy=TRANSIENT_RETRY, pool=GPU_POOL, tags={"kind": "gpu"})
def ocr(context: OpExecutionContext, items: list[WorkItem], ocr_engine: OcrResource, gpu: GpuResource,
        artifacts: ArtifactStoreResource) -> list[WorkItem]:
    """Find and read the text lines (tall images in overlapping slices), grouped into blocks."""
    items = copy_items(items)
    gpu.wait_for_memory("ocr")
    stages.ocr_stage(items, ocr_engine.recognize, artifacts.store(), threads=ocr_engine.item_threads())
    retry_transient(context, items, "ocr")
    for item in items:
        if item.ok and item.ocr is not None:
            materialize(context, "ocr_result", item, "ocr.json", regions=len(item.ocr.regions),
                        blocks=len(item.ocr.blocks), detected_lang=item.source_lang or "none",
                        text=MetadataValue.md("\n".join(f"- {b.text}" for b in item.ocr.blocks) or "(no text)"))
    return items


@op(retry_policy=TRANSIENT_RETRY, tags={"kind": "io"})
def translate(context: OpExecutionContext, items: list[WorkItem], translator: TranslatorResource,
              artifacts: ArtifactStoreResource) -> list[WorkItem]:
    """Translate each image's text blocks in one batched call (cached, glossary applied)."""
    items = copy_items(items)
    stages.translate_stage(items, translator.translate, artifacts.store())
    retry_transient(context, items, "translate")
    for item in items:
        if item.ok and item.translation is not None:
            materialize(context, "translation", item, "translation.json", texts=len(item.translation.translations),
                        engine=item.engines.get("translate", ""), cache_hits=item.translation.cache_hits,
                        text_table=text_table(item))
            log_check(context, TRANSLATION, CHECK_ONE_TRANSLATION_PER_BLOCK, item,
                      check_one_translation_per_block(item))
    return items


@op(retry_policy=TRANSIENT_RETRY, pool=GPU_POOL, tags={"kind": "gpu"})
def inpaint(context: OpExecutionContext, items: list[WorkItem], inpainting: InpaintResource,
            renderer: RenderResource, ocr_engine: OcrResource, gpu: GpuResource,
            artifacts: ArtifactStoreResource) -> list[WorkItem]:
    """Erase the original text: mask from the OCR polygons, then the inpainting engine."""
    items = copy_items(items)
    with permanent_errors_fail_once():
        engine = inpainting.inpainter()
    gpu.wait_for_memory("inpaint")
    stages.inpaint_stage(items, engine.inpaint, engine.name, artifacts.store(), renderer.encode_png,
                         threads=inpainting.item_threads())
    retry_transient(context, items, "inpaint")
    for item in items:
        if item.ok and item.inpainted is not None:
            masked = float((item.inpainted.mask > 0).mean())
            materialize(context, "inpainted_image", item, "inpainted.png", engine=engine.name,
                        mask=MetadataValue.url(item.artifacts["mask.png"]), masked_fraction=round(masked, 4))
    # Re-OCR costs about as much as OCR itself, so it runs on a sample: the first erased image of the batch.
    sample = next((item for item in items if item.ok and item.inpainted is not None and item.ocr
                   and item.ocr.blocks), None)
    if sample is not None:
        log_check(context, INPAINTED_IMAGE, CHECK_NO_SOURCE_TEXT_LEFT, sample,
                  check_no_source_text_left(sample, ocr_engine.recognize))
    return items


@op(retry_policy=TRANSIENT_RETRY, tags={"kind": "cpu"})
def render(context: OpExecutionContext, translated: list[WorkItem], inpainted: list[WorkItem],
           renderer: RenderResource, artifacts: ArtifactStoreResource) -> list[WorkItem]:
    """Draw each translation into its text block of the inpainted image."""
    items = stages.merge_branches(copy_items(translated), copy_items(inpainted))
    stages.render_stage(items, renderer.render, artifacts.store())
    retry_transient(context, items, "render")
    for item in items:
        if item.ok and item.rendered is not None:
            name = next(n for n in item.artifacts if n.startswith("result."))
            materialize(context, "rendered_image", item, name, format=item.rendered.format,
                        blocks_drawn=item.rendered.blocks_drawn, font=item.rendered.font,
                        preview=preview(item.rendered.pixels), **timings_metadata(item))
            log_check(context, RENDERED_IMAGE, CHECK_OUTPUT_DECODES, item, check_output_decodes(item))
    return items


@op(tags={"kind": "io"})
def publish(context: OpExecutionContext, items: list[WorkItem], ocr_engine: OcrResource, translator: TranslatorResource,
            inpainting: InpaintResource, artifacts: ArtifactStoreResource,
            intake: IntakeResource) -> list[dict[str, Any]]:
    """Write every request's ``meta.json`` and report the outcome; the run fails if any request failed."""
    items = copy_items(items)
    versions: dict[str, str] = {}
    for resource in (ocr_engine, translator, inpainting):
        try:
            versions.update(resource.versions())
        except Exception as error:
            context.log.warning(f"could not read engine version: {error}")
    stages.publish_stage(items, artifacts.store(), versions)
    stages.record_results(items, artifacts.store(), translator.variant())
    store = artifacts.store()
    outcomes = [
        {"request_id": item.request_id, "status": "succeeded" if item.ok else "failed",
         "result": item.result_uri, "result_url": _public_url(store, item), "meta": item.artifacts.get("meta.json"),
         "error": item.failure, "reused_from": item.reused_from, "callback_url": item.request.callback_url,
         "request": item.request.to_dict()}
        for item in items
    ]
    if _from_redis(context):
        intake.deliver(outcomes, context.run_id)
    for item in items:
        if item.ok:
            context.log.info(f"request {item.request_id} succeeded: {item.result_uri}")
    failed = [item for item in items if not item.ok]
    if failed:
        lines = [f"{item.request_id}: [{item.failure['stage']}] {item.failure['reason']}" for item in failed]
        raise Failure(
            description=f"{len(failed)} of {len(items)} request(s) failed:\n" + "\n".join(lines),
            metadata={"failed": MetadataValue.json([o for o in outcomes if o["status"] == "failed"]),
                      "succeeded": len(items) - len(failed)},
            allow_retries=False,
        )
    return outcomes
