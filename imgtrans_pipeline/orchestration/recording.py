"""What the Dagster layer records about each request, shared by the intake job's ops and the partitioned assets.

Every unit of work is one *translation*: an image (content hash) in one source language into one target language.
It is the partition key of the per-request assets, so the UI shows each translation's lineage and history
whether it was produced by a queued request, a Launchpad run or a backfill.
"""

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    DynamicPartitionsDefinition,
    Failure,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
)

from ..core.errors import PipelineError
from ..core.types import OcrResult
from ..stages import WorkItem

ASSET_PREFIX = "imgtrans"
TRANSLATIONS = DynamicPartitionsDefinition(name="translations")
MAX_RETRIES = 3

SOURCE_IMAGE = AssetKey([ASSET_PREFIX, "source_image"])
OCR_RESULT = AssetKey([ASSET_PREFIX, "ocr_result"])
TRANSLATION = AssetKey([ASSET_PREFIX, "translation"])
INPAINTED_IMAGE = AssetKey([ASSET_PREFIX, "inpainted_image"])
RENDERED_IMAGE = AssetKey([ASSET_PREFIX, "rendered_image"])
ASSET_KEYS = {"source_image": SOURCE_IMAGE, "ocr_result": OCR_RESULT, "translation": TRANSLATION,
              "inpainted_image": INPAINTED_IMAGE, "rendered_image": RENDERED_IMAGE}

CHECK_ONE_TRANSLATION_PER_BLOCK = "one_translation_per_block"
CHECK_NO_SOURCE_TEXT_LEFT = "no_source_text_left"
CHECK_OUTPUT_DECODES = "output_decodes"


class TransientStageError(Exception):
    """Raised to make Dagster retry a step whose batch had transient failures."""


@contextmanager
def permanent_errors_fail_once() -> Iterator[None]:
    """A step-level error that retrying cannot fix (an engine whose model file is missing, a bad store URL)
    fails the step at once; Dagster's RetryPolicy would otherwise retry any exception with backoff."""
    try:
        yield
    except PipelineError as error:
        if error.transient:
            raise
        raise Failure(f"[{error.stage}] {error.reason}", allow_retries=False) from error


def partition_key(content_hash: str, source_lang: str, target_lang: str) -> str:
    """``<sha256>.<source>.<target>``: also a valid request id, used as such by backfill runs."""
    return f"{content_hash}.{source_lang}.{target_lang}"


def parse_partition_key(key: str) -> tuple[str, str, str]:
    content_hash, source_lang, target_lang = key.split(".", 2)
    return content_hash, source_lang, target_lang


def item_partition(item: WorkItem) -> str | None:
    if item.source is None:
        return None
    return partition_key(item.source.content_hash, item.request.source_lang, item.request.target_lang)


def register_partitions(instance: DagsterInstance, items: Iterable[WorkItem]) -> None:
    """Add the translations of freshly downloaded images as partitions (once; adding is idempotent)."""
    keys = sorted({key for item in items if item.needs_work and (key := item_partition(item))})
    new = [key for key in keys if not instance.has_dynamic_partition(TRANSLATIONS.name, key)]
    if new:
        instance.add_dynamic_partitions(TRANSLATIONS.name, new)


def copy_items(items: list[WorkItem]) -> list[WorkItem]:
    # Steps must not mutate their inputs: with the in-memory IO manager two branches (translate ∥ inpaint) and a
    # retried attempt would otherwise see each other's changes. Shallow copies share the big pixel arrays.
    return [
        dataclasses.replace(item, timings=dict(item.timings), artifacts=dict(item.artifacts),
                            engines=dict(item.engines))
        for item in items
    ]


def retry_transient(context: Any, items: list[WorkItem], stage: str) -> None:
    """Make Dagster retry the step (with backoff) while transient failures remain and retries are left; on the
    last attempt they stay recorded failures, so the rest of the batch still completes."""
    transient = [item for item in items if item.failed_transiently and item.failure["stage"] == stage]
    if transient and context.retry_number < MAX_RETRIES:
        reasons = "; ".join(f"{item.request_id}: {item.failure['reason']}" for item in transient)
        raise TransientStageError(f"{len(transient)} request(s) failed transiently in {stage}: {reasons}")


def materialize(context: Any, asset: str, item: WorkItem, artifact: str, **metadata: Any) -> None:
    """Record one request's artifact as a materialization of its translation partition."""
    uri = item.artifacts.get(artifact)
    meta: dict[str, Any] = {"request_id": item.request_id, "artifact": MetadataValue.url(uri) if uri else None,
                            **metadata}
    if item.source is not None:
        meta["content_hash"] = item.source.content_hash
    context.log_event(AssetMaterialization(
        asset_key=ASSET_KEYS[asset],
        description=f"{asset} of request {item.request_id}",
        partition=item_partition(item),
        metadata={k: v for k, v in meta.items() if v is not None},
        tags={"imgtrans/request_id": item.request_id},
    ))


TEXT_TABLE_SCHEMA = TableSchema(columns=[TableColumn("block", "int"), TableColumn("source", "string"),
                                         TableColumn("translation", "string")])


def text_table(item: WorkItem) -> MetadataValue:
    """Source -> translation pairs as a native table (sortable and searchable in the UI)."""
    assert item.translation is not None
    pairs = zip(item.translation.source_texts, item.translation.translations, strict=True)
    records = [TableRecord({"block": i, "source": src, "translation": dst}) for i, (src, dst) in enumerate(pairs, 1)]
    return MetadataValue.table(records=records, schema=TEXT_TABLE_SCHEMA)


def timings_metadata(item: WorkItem) -> dict[str, float]:
    return {f"seconds_{stage}": round(seconds, 3) for stage, seconds in item.timings.items()}


def preview(pixels: np.ndarray, max_side: int = 200) -> MetadataValue:
    """A small JPEG thumbnail inlined in the metadata, so the asset page shows the result at a glance."""
    import base64
    import io

    from PIL import Image

    image = Image.fromarray(pixels)
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=70)
    return MetadataValue.md(f"![preview](data:image/jpeg;base64,{base64.b64encode(buffer.getvalue()).decode()})")


# --- quality checks --------------------------------------------------------------------------------------------


def check_one_translation_per_block(item: WorkItem) -> tuple[bool, dict[str, Any]]:
    assert item.ocr is not None and item.translation is not None
    blocks, translations = len(item.ocr.blocks), len(item.translation.translations)
    empty = [i for i, (s, t) in enumerate(zip(item.translation.source_texts, item.translation.translations,
                                              strict=True)) if s.strip() and not t.strip()]
    return blocks == translations and not empty, {"blocks": blocks, "translations": translations,
                                                   "empty_translations": len(empty)}


def check_no_source_text_left(item: WorkItem, recognize: Callable[[np.ndarray, str], OcrResult]
                              ) -> tuple[bool, dict[str, Any]]:
    """Re-OCR the inpainted image: none of the erased blocks' text may still be readable."""
    assert item.inpainted is not None and item.ocr is not None
    lang = item.source_lang or item.request.source_lang
    again = recognize(item.inpainted.pixels, lang)
    seen = "".join(block.text for block in again.blocks)
    left = [block.text for block in item.ocr.blocks if len(block.text) >= 2 and block.text in seen]
    return not left, {"still_readable": ", ".join(left) or "none", "blocks_erased": len(item.ocr.blocks)}


def check_output_decodes(item: WorkItem) -> tuple[bool, dict[str, Any]]:
    """The encoded result opens as an image of the source's size."""
    import io

    from PIL import Image

    assert item.rendered is not None and item.source is not None
    try:
        with Image.open(io.BytesIO(item.rendered.encoded)) as image:
            image.load()
            size = image.size
    except Exception as error:  # any decoder error is exactly what this check reports
        return False, {"error": str(error)}
    return size == (item.source.width, item.source.height), {"size": f"{size[0]}x{size[1]}",
                                                             "format": item.rendered.format}


def log_check(context: Any, asset_key: AssetKey, check_name: str, item: WorkItem,
              result: tuple[bool, dict[str, Any]]) -> None:
    passed, metadata = result
    context.log_event(AssetCheckEvaluation(asset_key=asset_key, check_name=check_name, passed=passed,
                                           metadata={"request_id": item.request_id, **metadata},
                                           partition=item_partition(item)))
