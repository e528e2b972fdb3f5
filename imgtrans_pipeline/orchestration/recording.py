"""How a Dagster step runs a stage and records what it produced: the one path every op and asset takes.

Every unit of work is one *translation*: an image (content hash) in one source language into one target language.
It is the partition key of the per-request assets, so the UI shows each translation's lineage and history
whether it was produced by a queued request, a Launchpad run or a backfill.

* :func:`run_stage` copies the step's input items, runs the stage through the ``StageRunner`` and asks Dagster to
  retry the step while transient failures remain (on the last attempt they stay recorded failures);
* :func:`record_requests` (ops) logs one materialization and the checks per request, on its partition;
* :func:`asset_outputs` (assets over a partition range) yields the output with summary metadata and one check
  result per check.
Which artifact, metadata and checks belong to each stage is said once, in ``STAGE_RECORDS``.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    DynamicPartitionsDefinition,
    Failure,
    MetadataValue,
    Output,
    TableColumn,
    TableRecord,
    TableSchema,
)

from .. import names
from ..core.errors import PipelineError
from ..pipeline import StageRunner, WorkItem, copy_items
from .resources import stage_runner

TRANSLATIONS = DynamicPartitionsDefinition(name=names.TRANSLATIONS_PARTITIONS)
MAX_RETRIES = 3


def asset_key(name: str) -> AssetKey:
    return AssetKey([names.ASSET_PREFIX, name])


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


def item_partition(item: WorkItem) -> str | None:
    if item.source is None:
        return None
    return names.partition_key(item.source.content_hash, item.request.source_lang, item.request.target_lang)


def register_partitions(instance: DagsterInstance, items: Iterable[WorkItem]) -> None:
    """Add the translations of freshly downloaded images as partitions (once; adding is idempotent)."""
    keys = sorted({key for item in items if item.needs_work and (key := item_partition(item))})
    new = [key for key in keys if not instance.has_dynamic_partition(TRANSLATIONS.name, key)]
    if new:
        instance.add_dynamic_partitions(TRANSLATIONS.name, new)


def retry_transient(context: Any, items: list[WorkItem], stage: str) -> None:
    """Make Dagster retry the step (with backoff) while transient failures remain and retries are left; on the
    last attempt they stay recorded failures, so the rest of the batch still completes."""
    transient = [item for item in items if item.failed_transiently and item.failure["stage"] == stage]  # type: ignore[index]
    if transient and context.retry_number < MAX_RETRIES:
        reasons = "; ".join(f"{item.request_id}: {item.failure['reason']}" for item in transient)  # type: ignore[index]
        raise TransientStageError(f"{len(transient)} request(s) failed transiently in {stage}: {reasons}")


def run_stage(context: Any, stage: str, items: list[WorkItem], runner: StageRunner | None = None
              ) -> list[WorkItem]:
    """Run ``stage`` on copies of ``items`` (a step must not mutate its inputs: with in-memory outputs two branches
    and a retried attempt would see each other's changes)."""
    items = copy_items(items)
    runner = runner or stage_runner(context.resources)
    with permanent_errors_fail_once():
        runner.prepare(stage, items)
    runner.run(stage, items)
    retry_transient(context, items, stage)
    return items


# --- what each stage records ----------------------------------------------------------------------------------

Check = Callable[[WorkItem, StageRunner], tuple[bool, dict[str, Any]]]


@dataclass(frozen=True)
class StageRecord:
    asset: str
    artifact: Callable[[WorkItem], str | None]  # the artifact the materialization links to
    produced: Callable[[WorkItem], bool]  # whether the stage produced something for this item
    metadata: Callable[[WorkItem], dict[str, Any]]  # per request
    checks: Sequence[tuple[str, Check]] = ()
    sampled_checks: frozenset[str] = field(default_factory=frozenset)  # costly: one request per step
    warn_only: frozenset[str] = field(default_factory=frozenset)  # checks whose failure is a warning


TEXT_TABLE_SCHEMA = TableSchema(columns=[TableColumn("block", "int"), TableColumn("source", "string"),
                                         TableColumn("translation", "string"), TableColumn("via", "string")])


def text_table(item: WorkItem) -> MetadataValue:
    """Source -> translation pairs as a native table (sortable and searchable in the UI), with where each
    translation came from (memory, glossary, cache, engine, passthrough)."""
    assert item.translation is not None
    result = item.translation
    pairs = zip(result.source_texts, result.translations, strict=True)
    records = [TableRecord({"block": i, "source": src, "translation": dst,
                            "via": result.sources[i - 1]["origin"] if i <= len(result.sources) else ""})
               for i, (src, dst) in enumerate(pairs, 1)]
    return MetadataValue.table(records=records, schema=TEXT_TABLE_SCHEMA)


def _translation_metadata(item: WorkItem) -> dict[str, Any]:
    assert item.translation is not None
    result = item.translation
    return {"texts": len(result.translations), "engine": item.engines.get("translate", ""),
            "cache_hits": result.cache_hits, "text_table": text_table(item), "flagged_blocks": len(result.flags),
            # Where the translations came from ("engine 3, memory 1"); per block in meta.json translation_sources.
            "origins": ", ".join(f"{k} {n}" for k, n in result.origin_counts().items()) or "none"}


def preview(pixels: np.ndarray, max_side: int = 200) -> MetadataValue:
    """A small JPEG thumbnail inlined in the metadata, so the asset page shows the result at a glance."""
    from PIL import Image

    image = Image.fromarray(pixels)
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=70)
    return MetadataValue.md(f"![preview](data:image/jpeg;base64,{base64.b64encode(buffer.getvalue()).decode()})")


def check_one_translation_per_block(item: WorkItem, runner: StageRunner) -> tuple[bool, dict[str, Any]]:
    assert item.ocr is not None and item.translation is not None
    blocks, translations = len(item.ocr.blocks), len(item.translation.translations)
    empty = [i for i, (s, t) in enumerate(zip(item.translation.source_texts, item.translation.translations,
                                              strict=True)) if s.strip() and not t.strip()]
    return blocks == translations and not empty, {"blocks": blocks, "translations": translations,
                                                   "empty_translations": len(empty)}


def check_no_source_text_left(item: WorkItem, runner: StageRunner) -> tuple[bool, dict[str, Any]]:
    """None of the erased lines may still be readable: the quality stage re-read every erased line of every image;
    without a score (scoring off) the inpainted image of one request per step is OCR'd again instead."""
    assert item.inpainted is not None and item.ocr is not None
    erase = (item.quality or {}).get("details", {}).get("erase")
    if erase is not None:
        left = list(erase.get("left", []))
        return not left, {"still_readable": ", ".join(left) or "none", "lines_checked": erase.get("lines_checked", 0)}
    again = runner.engines.ocr.recognize(item.inpainted.pixels, item.source_lang or item.request.source_lang)
    seen = "".join(block.text for block in again.blocks)
    left = [block.text for block in item.ocr.blocks if len(block.text) >= 2 and block.text in seen]
    return not left, {"still_readable": ", ".join(left) or "none", "blocks_erased": len(item.ocr.blocks)}


def check_quality(item: WorkItem, runner: StageRunner) -> tuple[bool, dict[str, Any]]:
    """The image's quality score is at least the minimum (IMGTRANS_MIN_QUALITY); a warning otherwise."""
    quality = item.quality or {}
    score = float(quality.get("score", 1.0))
    return score >= runner.min_quality, {"score": round(score, 3), "minimum": runner.min_quality,
                                         "reasons": MetadataValue.md("\n".join(f"- {r}" for r in
                                                                              quality.get("reasons", [])) or "none")}


def check_output_decodes(item: WorkItem, runner: StageRunner) -> tuple[bool, dict[str, Any]]:
    """The encoded result opens as an image of the source's size."""
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


def inspected(item: WorkItem, side: str) -> bool:
    return item.inspection is not None and side in item.inspection.get("inspected", [])


def check_inspection(side: str) -> Check:
    """No ``reject`` rule fired on this side (``source``: the OCR text, ``translation``); every match listed."""

    def check(item: WorkItem, runner: StageRunner) -> tuple[bool, dict[str, Any]]:
        matches = [m for m in (item.inspection or {}).get("matches", []) if m["on"] == side]
        rejected = sorted({m["rule"] for m in matches if m["action"] == "reject"})
        return not rejected, {"rejected_by": ", ".join(rejected) or "none", "matches": len(matches),
                              names.INSPECTION_METADATA: MetadataValue.json(matches[:50])}

    return check


def _inspection_metadata(item: WorkItem, side: str) -> dict[str, Any]:
    if not inspected(item, side):
        return {}
    inspection = item.inspection or {}
    matches = [m for m in inspection.get("matches", []) if m["on"] == side]
    return {"inspection_verdict": inspection.get("verdict", "pass"), "inspection_match_count": len(matches),
            names.INSPECTION_METADATA: MetadataValue.json(matches[:50])}


def _timings(item: WorkItem) -> dict[str, float]:
    return {f"seconds_{stage}": round(seconds, 3) for stage, seconds in item.timings.items()}


def _ocr_metadata(item: WorkItem) -> dict[str, Any]:
    assert item.ocr is not None
    return {"regions": len(item.ocr.regions), "blocks": len(item.ocr.blocks),
            "detected_lang": item.source_lang or "none",
            "text": MetadataValue.md("\n".join(f"- {b.text}" for b in item.ocr.blocks) or "(no text)"),
            **_inspection_metadata(item, "source")}


def _erase_counts(item: WorkItem) -> dict[str, int]:
    """How the lines were erased (model fill, inpainting, box fallback), as the erase stats count them."""
    stats = item.inpainted.stats if item.inpainted is not None else {}
    return {key: int(value) for key, value in stats.items() if key.startswith("lines") and isinstance(value, int)}


def _render_metadata(item: WorkItem) -> dict[str, Any]:
    assert item.rendered is not None
    metadata: dict[str, Any] = {"format": item.rendered.format, "blocks_drawn": item.rendered.blocks_drawn,
                                "font": item.rendered.font, "preview": preview(item.rendered.pixels), **_timings(item)}
    if item.quality is not None:
        metadata[names.QUALITY_SCORE_METADATA] = float(item.quality["score"])
        metadata["quality_reasons"] = MetadataValue.md("\n".join(f"- {r}" for r in item.quality["reasons"])
                                                       or "none")
    return metadata


STAGE_RECORDS: dict[str, StageRecord] = {
    names.DOWNLOAD: StageRecord(
        names.SOURCE_IMAGE, lambda i: names.SOURCE_PNG, lambda i: i.needs_work and i.source is not None,
        lambda i: {"width": i.source.width, "height": i.source.height,  # type: ignore[union-attr]
                   "source_format": i.source.source_format}),  # type: ignore[union-attr]
    names.OCR: StageRecord(names.OCR_RESULT, lambda i: names.OCR_JSON, lambda i: i.ocr is not None, _ocr_metadata,
                           checks=((names.CHECK_INSPECTION, check_inspection("source")),)),
    names.TRANSLATE: StageRecord(
        names.TRANSLATION, lambda i: names.TRANSLATION_JSON, lambda i: i.translation is not None,
        lambda i: {**_translation_metadata(i), **_inspection_metadata(i, "translation")},
        checks=((names.CHECK_ONE_TRANSLATION_PER_BLOCK, check_one_translation_per_block),
                (names.CHECK_INSPECTION, check_inspection("translation")))),
    names.INPAINT: StageRecord(
        names.INPAINTED_IMAGE, lambda i: names.INPAINTED_PNG, lambda i: i.inpainted is not None,
        lambda i: {"engine": i.inpainted.engine, "mask": MetadataValue.url(i.artifacts[names.MASK_PNG]),  # type: ignore[union-attr]
                   "masked_fraction": round(float((i.inpainted.mask > 0).mean()), 4),  # type: ignore[union-attr]
                   **_erase_counts(i)},
    ),
    names.RENDER: StageRecord(
        names.RENDERED_IMAGE, lambda i: names.find_result_name(i.artifacts), lambda i: i.rendered is not None,
        _render_metadata,
        # Recorded with the render step: the erased lines are re-read by the quality stage, after rendering.
        checks=((names.CHECK_OUTPUT_DECODES, check_output_decodes),
                (names.CHECK_NO_SOURCE_TEXT_LEFT, check_no_source_text_left),
                (names.CHECK_QUALITY, check_quality)),
        warn_only=frozenset({names.CHECK_QUALITY})),
}


def recordable(item: WorkItem) -> bool:
    """Succeeded so far, or rejected by the inspection: what the stage produced is recorded with the rule hits."""
    return item.ok or (item.failure or {}).get("stage") == names.INSPECT


def _checked(record: StageRecord, check_name: str, items: list[WorkItem]) -> list[WorkItem]:
    if check_name == names.CHECK_INSPECTION:
        side = "source" if record.asset == names.OCR_RESULT else "translation"
        return [item for item in items if recordable(item) and record.produced(item) and inspected(item, side)]
    done = [item for item in items if item.ok and record.produced(item)]
    if check_name == names.CHECK_QUALITY:
        return [item for item in done if item.quality is not None]
    if check_name == names.CHECK_NO_SOURCE_TEXT_LEFT:
        scored = [item for item in done if item.quality is not None]
        # Unscored results: re-OCR costs about as much as OCR itself, so one per step.
        return scored or [item for item in done if item.inpainted is not None and item.ocr and item.ocr.blocks][:1]
    if check_name in record.sampled_checks:
        return [item for item in done if item.ocr is not None and item.ocr.blocks][:1]
    return done


def _severity(record: StageRecord, check_name: str) -> AssetCheckSeverity:
    return AssetCheckSeverity.WARN if check_name in record.warn_only else AssetCheckSeverity.ERROR


def record_requests(context: Any, stage: str, items: list[WorkItem], runner: StageRunner) -> None:
    """Ops: one materialization of the stage's asset per request, and its checks, on the request's partition."""
    record = STAGE_RECORDS[stage]
    key = asset_key(record.asset)
    for item in items:
        if not (recordable(item) and record.produced(item)):
            continue
        uri = item.artifacts.get(record.artifact(item) or "")
        metadata: dict[str, Any] = {"request_id": item.request_id, "artifact": MetadataValue.url(uri) if uri else None,
                                    **record.metadata(item)}
        if item.source is not None:
            metadata["content_hash"] = item.source.content_hash
        context.log_event(AssetMaterialization(
            asset_key=key, description=f"{record.asset} of request {item.request_id}",
            partition=item_partition(item), metadata={k: v for k, v in metadata.items() if v is not None},
            tags={names.TAG_FIRST_REQUEST: item.request_id}))
    for check_name, check in record.checks:
        for item in _checked(record, check_name, items):
            passed, metadata = check(item, runner)
            context.log_event(AssetCheckEvaluation(asset_key=key, check_name=check_name, passed=passed,
                                                   metadata={"request_id": item.request_id, **metadata},
                                                   partition=item_partition(item),
                                                   severity=_severity(record, check_name)))


def asset_outputs(stage: str, items: list[WorkItem], runner: StageRunner,
                  summary: dict[str, Any]) -> Iterator[Output | AssetCheckResult]:
    """Assets over a partition range: the items with ``summary`` metadata, then one result per check."""
    record = STAGE_RECORDS[stage]
    yield Output(items, metadata=summary)
    for check_name, check in record.checks:
        results = [(item, check(item, runner)) for item in _checked(record, check_name, items)]
        failed = [item.request_id for item, (passed, _) in results if not passed]
        yield AssetCheckResult(check_name=check_name, passed=not failed, severity=_severity(record, check_name),
                               metadata={"checked": len(results), "failed": len(failed),
                                         "failed_partitions": MetadataValue.json(failed[:50])})
