"""Per-translation assets: source_image -> ocr_result -> (translation, inpainted_image) -> rendered_image.

Partitioned by ``translations`` (``<image sha256>.<source>.<target>``). The intake job's ops record their
materializations against these partitions as each request goes through, so the UI shows every translation's
lineage and history. Materializing the assets themselves re-translates *stored* images: that is how backfills
run (a new target language for the whole catalogue, or results of an older pipeline version). Each asset takes
a whole partition range in one run (``BackfillPolicy.single_run``): a run pays its start-up and model loading once
for hundreds of images, and the stage runner works on the batch exactly as the ops do.
"""

from typing import Any

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    BackfillPolicy,
    Failure,
    MetadataValue,
    asset,
    define_asset_job,
)

from .. import PIPELINE_VERSION, names
from ..core.errors import FetchError
from ..core.request import RequestOptions, TranslationRequest
from ..pipeline import WorkItem, failure_summary, merge_branches
from ..pipeline.dedupe import stored_source_uri
from .recording import STAGE_RECORDS, TRANSLATIONS, asset_key, asset_outputs, run_stage
from .resources import PIPELINE_RESOURCE_KEYS, stage_runner

COMMON = {"partitions_def": TRANSLATIONS, "backfill_policy": BackfillPolicy.single_run(),
          "code_version": PIPELINE_VERSION, "group_name": "translations", "io_manager_key": "translation_items",
          "required_resource_keys": PIPELINE_RESOURCE_KEYS}


def _checks(stage: str) -> list[AssetCheckSpec]:
    record = STAGE_RECORDS[stage]
    return [AssetCheckSpec(name, asset=asset_key(record.asset)) for name, _ in record.checks]


def _stage_asset(context: AssetExecutionContext, stage: str, items: list[WorkItem],
                 summary: Any) -> Any:
    runner = stage_runner(context.resources)
    items = run_stage(context, stage, items, runner)
    if stage in (names.OCR, names.TRANSLATE):  # the text it produced is inspected, as in translate_images
        items = run_stage(context, names.INSPECT, items, runner)
    yield from asset_outputs(stage, items, runner, summary(items))


@asset(key=asset_key(names.SOURCE_IMAGE), **COMMON)
def source_image(context: AssetExecutionContext) -> Any:
    """The stored source image of each translation in the range, re-read and verified against its hash."""
    runner = stage_runner(context.resources)
    store = runner.engines.store
    items: list[WorkItem] = []
    for key in context.partition_keys:
        content_hash, source_lang, target_lang = names.parse_partition_key(key)
        uri = stored_source_uri(store, content_hash)
        # The partition key is a valid request id: a backfilled translation's artifacts live under it.
        request = TranslationRequest(request_id=key, image_url=uri or f"hash:{content_hash}",
                                     source_lang=source_lang, target_lang=target_lang,
                                     options=RequestOptions(force=True))
        item = WorkItem(request=request)
        if uri is None:
            item.fail(FetchError(f"no stored source for image {content_hash[:12]}"), names.DOWNLOAD)
        items.append(item)
    items = run_stage(context, names.DOWNLOAD, items, runner)
    for item in items:
        if item.source is not None and item.source.content_hash != names.parse_partition_key(item.request_id)[0]:
            item.fail(FetchError("stored source no longer matches its hash"), names.DOWNLOAD)
    yield from asset_outputs(names.DOWNLOAD, items, runner,
                             {"images": len(items), "failed": sum(not i.ok for i in items)})


@asset(key=asset_key(names.OCR_RESULT), pool=names.GPU_POOL, check_specs=_checks(names.OCR), **COMMON)
def ocr_result(context: AssetExecutionContext, source_image: list[WorkItem]) -> Any:
    yield from _stage_asset(context, names.OCR, source_image,
                            lambda items: {"blocks": sum(len(i.ocr.blocks) for i in items if i.ocr)})


@asset(key=asset_key(names.TRANSLATION), check_specs=_checks(names.TRANSLATE), **COMMON)
def translation(context: AssetExecutionContext, ocr_result: list[WorkItem]) -> Any:
    def summary(items: list[WorkItem]) -> dict[str, Any]:
        done = [item for item in items if item.ok and item.translation is not None]
        first = STAGE_RECORDS[names.TRANSLATE].metadata(done[0])["text_table"] if done else MetadataValue.md("(none)")
        return {"texts": sum(len(i.translation.translations) for i in done), "sample": first}  # type: ignore[union-attr]

    yield from _stage_asset(context, names.TRANSLATE, ocr_result, summary)


@asset(key=asset_key(names.INPAINTED_IMAGE), pool=names.GPU_POOL, check_specs=_checks(names.INPAINT), **COMMON)
def inpainted_image(context: AssetExecutionContext, ocr_result: list[WorkItem]) -> Any:
    yield from _stage_asset(context, names.INPAINT, ocr_result,
                            lambda items: {"engine": next((i.inpainted.engine for i in items if i.inpainted), "")})


@asset(key=asset_key(names.RENDERED_IMAGE), check_specs=_checks(names.RENDER), **COMMON)
def rendered_image(context: AssetExecutionContext, translation: list[WorkItem],
                   inpainted_image: list[WorkItem]) -> Any:
    """The translated image, published with its meta.json; recorded so identical requests reuse it."""
    runner = stage_runner(context.resources)
    items = run_stage(context, names.RENDER, merge_branches(translation, inpainted_image), runner)
    items = run_stage(context, names.QUALITY, items, runner)
    items = run_stage(context, names.PUBLISH, items, runner)
    summary = failure_summary(items)
    if summary:
        raise Failure(summary, allow_retries=False)
    yield from asset_outputs(names.RENDER, items, runner,
                             {"translations": len(items),
                              "results": MetadataValue.json([i.result_uri for i in items[:20]])})


TRANSLATION_ASSETS = [source_image, ocr_result, translation, inpainted_image, rendered_image]

translate_stored_images = define_asset_job(
    names.BACKFILL_JOB,
    selection=[asset_key(name) for name in (names.SOURCE_IMAGE, names.OCR_RESULT, names.TRANSLATION,
                                            names.INPAINTED_IMAGE, names.RENDERED_IMAGE)],
    partitions_def=TRANSLATIONS,
    description="Re-translate stored images (by content hash) for a range of translation partitions.",
)
