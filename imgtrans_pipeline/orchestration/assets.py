"""Per-translation assets: source_image -> ocr_result -> (translation, inpainted_image) -> rendered_image.

Partitioned by ``translations`` (``<image sha256>.<source>.<target>``). The intake job's ops record their
materializations against these partitions as each request goes through, so the UI shows every translation's
lineage and history. Materializing the assets themselves re-translates *stored* images: that is how backfills
run (a new target language for the whole catalogue, or results of an older pipeline version). Each asset takes
a whole partition range in one run (``BackfillPolicy.single_run``): a run pays its start-up and model loading once
for hundreds of images, and the stage functions work on the batch.
"""

from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    BackfillPolicy,
    Failure,
    MetadataValue,
    Output,
    asset,
    define_asset_job,
)

from .. import PIPELINE_VERSION, stages
from ..core.errors import FetchError
from ..core.request import RequestOptions, TranslationRequest
from ..stages import WorkItem
from .recording import (
    CHECK_NO_SOURCE_TEXT_LEFT,
    CHECK_ONE_TRANSLATION_PER_BLOCK,
    CHECK_OUTPUT_DECODES,
    INPAINTED_IMAGE,
    OCR_RESULT,
    RENDERED_IMAGE,
    SOURCE_IMAGE,
    TRANSLATION,
    TRANSLATIONS,
    check_no_source_text_left,
    check_one_translation_per_block,
    check_output_decodes,
    copy_items,
    parse_partition_key,
    permanent_errors_fail_once,
    retry_transient,
    text_table,
)
from .resources import (
    ArtifactStoreResource,
    FetchResource,
    GpuResource,
    InpaintResource,
    OcrResource,
    RenderResource,
    TranslatorResource,
)

BACKFILL_JOB = "translate_stored_images"
COMMON = {"partitions_def": TRANSLATIONS, "backfill_policy": BackfillPolicy.single_run(),
          "code_version": PIPELINE_VERSION, "group_name": "translations", "io_manager_key": "translation_items"}
HASH_FOLDER = "hash-"


def stored_source_uri(store: Any, content_hash: str) -> str | None:
    """Where an earlier request stored this image: any dedupe index entry of the hash names its request."""
    from ..storage import get_json

    folder = HASH_FOLDER + content_hash
    for name in store.list(folder):
        entry = get_json(store, folder, name)
        request_id = entry.get("request_id")
        if request_id and store.exists(request_id, "source.png"):
            return store.uri(request_id, "source.png")
    return None


def _summary(results: list[tuple[WorkItem, tuple[bool, dict[str, Any]]]]) -> tuple[bool, dict[str, Any]]:
    failed = [item.request_id for item, (passed, _) in results if not passed]
    return not failed, {"checked": len(results), "failed": len(failed),
                        "failed_partitions": MetadataValue.json(failed[:50])}


@asset(key=SOURCE_IMAGE, pool=None, **COMMON)
def source_image(context: AssetExecutionContext, fetcher: FetchResource,
                 artifacts: ArtifactStoreResource) -> list[WorkItem]:
    """The stored source image of each translation in the range, re-read and verified against its hash."""
    store = artifacts.store()
    items: list[WorkItem] = []
    for key in context.partition_keys:
        content_hash, source_lang, target_lang = parse_partition_key(key)
        uri = stored_source_uri(store, content_hash)
        # The partition key is a valid request id: a backfilled translation's artifacts live under it.
        request = TranslationRequest(request_id=key, image_url=uri or f"hash:{content_hash}",
                                     source_lang=source_lang, target_lang=target_lang,
                                     options=RequestOptions(force=True))
        item = WorkItem(request=request)
        if uri is None:
            item.fail(FetchError(f"no stored source for image {content_hash[:12]}"), "download")
        items.append(item)
    stages.fetch_stage(items, fetcher.fetch_images, store)
    retry_transient(context, items, "download")
    for item in items:
        if item.source is not None and item.source.content_hash != parse_partition_key(item.request_id)[0]:
            item.fail(FetchError("stored source no longer matches its hash"), "download")
    context.add_output_metadata({"images": len(items), "failed": sum(not i.ok for i in items)})
    return items


@asset(key=OCR_RESULT, pool="gpu", **COMMON)
def ocr_result(context: AssetExecutionContext, source_image: list[WorkItem], ocr_engine: OcrResource,
               gpu: GpuResource, artifacts: ArtifactStoreResource) -> list[WorkItem]:
    items = copy_items(source_image)
    gpu.wait_for_memory("ocr")
    stages.ocr_stage(items, ocr_engine.recognize, artifacts.store())
    retry_transient(context, items, "ocr")
    context.add_output_metadata({"blocks": sum(len(i.ocr.blocks) for i in items if i.ocr)})
    return items


@asset(key=TRANSLATION, check_specs=[AssetCheckSpec(CHECK_ONE_TRANSLATION_PER_BLOCK, asset=TRANSLATION)],
       **COMMON)
def translation(context: AssetExecutionContext, ocr_result: list[WorkItem], translator: TranslatorResource,
                artifacts: ArtifactStoreResource) -> Any:
    items = copy_items(ocr_result)
    stages.translate_stage(items, translator.translate, artifacts.store())
    retry_transient(context, items, "translate")
    done = [item for item in items if item.ok and item.translation is not None]
    yield Output(items, metadata={"texts": sum(len(i.translation.translations) for i in done),
                                  "sample": text_table(done[0]) if done else MetadataValue.md("(none)")})
    passed, metadata = _summary([(item, check_one_translation_per_block(item)) for item in done])
    yield AssetCheckResult(check_name=CHECK_ONE_TRANSLATION_PER_BLOCK, passed=passed, metadata=metadata)


@asset(key=INPAINTED_IMAGE, pool="gpu", check_specs=[AssetCheckSpec(CHECK_NO_SOURCE_TEXT_LEFT, asset=INPAINTED_IMAGE)],
       **COMMON)
def inpainted_image(context: AssetExecutionContext, ocr_result: list[WorkItem], inpainting: InpaintResource,
                    renderer: RenderResource, ocr_engine: OcrResource, gpu: GpuResource,
                    artifacts: ArtifactStoreResource) -> Any:
    items = copy_items(ocr_result)
    with permanent_errors_fail_once():
        engine = inpainting.inpainter()
    gpu.wait_for_memory("inpaint")
    stages.inpaint_stage(items, engine.inpaint, engine.name, artifacts.store(), renderer.encode_png)
    retry_transient(context, items, "inpaint")
    yield Output(items, metadata={"engine": engine.name})
    sample = [item for item in items if item.ok and item.inpainted is not None and item.ocr and item.ocr.blocks][:1]
    passed, metadata = _summary([(item, check_no_source_text_left(item, ocr_engine.recognize)) for item in sample])
    yield AssetCheckResult(check_name=CHECK_NO_SOURCE_TEXT_LEFT, passed=passed, metadata=metadata)


@asset(key=RENDERED_IMAGE, check_specs=[AssetCheckSpec(CHECK_OUTPUT_DECODES, asset=RENDERED_IMAGE)], **COMMON)
def rendered_image(context: AssetExecutionContext, translation: list[WorkItem], inpainted_image: list[WorkItem],
                   renderer: RenderResource, ocr_engine: OcrResource, translator: TranslatorResource,
                   inpainting: InpaintResource, artifacts: ArtifactStoreResource) -> Any:
    """The translated image, published with its meta.json; recorded so identical requests reuse it."""
    store = artifacts.store()
    items = stages.merge_branches(copy_items(translation), copy_items(inpainted_image))
    stages.render_stage(items, renderer.render, store)
    versions: dict[str, str] = {}
    for resource in (ocr_engine, translator, inpainting):
        versions.update(resource.versions())
    stages.publish_stage(items, store, versions)
    stages.record_results(items, store, translator.variant())
    failed = [item for item in items if not item.ok]
    if failed:
        lines = [f"{item.request_id}: [{item.failure['stage']}] {item.failure['reason']}" for item in failed]
        raise Failure(f"{len(failed)} of {len(items)} translation(s) failed:\n" + "\n".join(lines[:50]),
                      allow_retries=False)
    yield Output(items, metadata={"translations": len(items),
                                  "results": MetadataValue.json([i.result_uri for i in items[:20]])})
    passed, metadata = _summary([(item, check_output_decodes(item)) for item in items if item.rendered])
    yield AssetCheckResult(check_name=CHECK_OUTPUT_DECODES, passed=passed, metadata=metadata)


TRANSLATION_ASSETS = [source_image, ocr_result, translation, inpainted_image, rendered_image]

translate_stored_images = define_asset_job(
    BACKFILL_JOB,
    selection=[asset.key for asset in TRANSLATION_ASSETS],
    partitions_def=TRANSLATIONS,
    description="Re-translate stored images (by content hash) for a range of translation partitions.",
)
