"""The ops of ``translate_images``: each runs one stage through the stage runner and records what it produced.

Every op works on a batch of requests. A request that fails is marked failed inside the batch and skipped by the
later ops; only transient failures (timeouts, 429/5xx, an API returning garbage) make the op raise, so Dagster's
``RetryPolicy`` retries it with backoff. On the last attempt the op records them as failures instead of raising,
so the other requests of the batch still finish. GPU-bound ops (OCR, inpaint) run in the ``gpu`` pool.
"""

# No `from __future__ import annotations`: Dagster resolves Config and resource types from live annotations.

from typing import Any

from dagster import Backoff, Config, Failure, Jitter, MetadataValue, OpExecutionContext, RetryPolicy, op
from pydantic import Field

from .. import names
from ..core.errors import InvalidRequest
from ..core.request import TranslationRequest, request_from_config
from ..pipeline import WorkItem, failure_summary, merge_branches, new_items
from ..pipeline.stages import outcome
from .recording import MAX_RETRIES, record_requests, register_partitions, run_stage
from .resources import PIPELINE_RESOURCE_KEYS, stage_runner

TRANSIENT_RETRY = RetryPolicy(max_retries=MAX_RETRIES, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)
STEP = {"retry_policy": TRANSIENT_RETRY, "required_resource_keys": PIPELINE_RESOURCE_KEYS}
INTAKE_STEP = {"retry_policy": TRANSIENT_RETRY, "required_resource_keys": PIPELINE_RESOURCE_KEYS | {"intake"}}


class RequestConfig(Config):
    """One translation request, as typed into the Launchpad or sent by the sensor (``to_config`` shape)."""

    request_id: str = Field(default="", description="Unique id; generated when empty.")
    image_url: str = Field(description="http(s)://, file://, s3://bucket/key or a local path.")
    target_lang: str = Field(description="Target language code, e.g. en, ko, ja.")
    source_lang: str = Field(default="auto", description="Source language code, or auto.")
    output_format: str = Field(default="png", description="png, jpeg or webp.")
    jpeg_quality: int = 92
    force: bool = Field(default=False, description="Recompute even if this image was already translated.")
    glossary: dict[str, str] = Field(default_factory=dict, description="Fixed term -> translation.")
    glossary_scope: str = Field(default="", description="Catalogue/shop id: its glossary and translation "
                                "memory entries first, then the global ones.")
    context: dict[str, str] = Field(default_factory=dict, description="What the image shows, for LLM engines: "
                                    "title, category, brand, text (free text).")
    callback_url: str = ""
    mode: str = Field(default="translate", description="translate, or inspect: download, OCR and content "
                      "inspection only (findings in meta.json, no result image).")

    def to_request(self) -> TranslationRequest:
        return request_from_config(self.model_dump())


class BatchConfig(Config):
    requests: list[RequestConfig] = Field(description="The requests this run translates (one or more).")


def _intake_source(context: OpExecutionContext) -> str | None:
    """The intake (Redis, Kafka) whose sensor started this run, if any: its requests are settled through it."""
    source = context.run.tags.get(names.TAG_SOURCE)
    return source if source in names.INTAKE_SOURCES else None


def _queued(context: OpExecutionContext) -> bool:
    """Requests from a queue (Redis, Kafka): their URLs pass the trust boundary (IMGTRANS_FILE_ROOTS/_S3_BUCKETS)."""
    return _intake_source(context) is not None


def _requests(config: BatchConfig) -> list[TranslationRequest]:
    requests = []
    for position, request_config in enumerate(config.requests):
        try:
            requests.append(request_config.to_request())
        except InvalidRequest as error:  # the caller's mistake: retrying cannot fix it
            raise Failure(f"request #{position} is invalid: {error.reason}",
                          metadata={"request_id": request_config.request_id or "(none)"},
                          allow_retries=False) from error
    return requests


@op(name=names.DOWNLOAD, tags={"kind": "io"}, **INTAKE_STEP)
def download(context: OpExecutionContext, config: BatchConfig) -> list[WorkItem]:
    """Validate the requests, check the language pairs, download and normalise the images."""
    items = new_items(_requests(config))
    if _intake_source(context):
        context.resources.intake.mark_running([item.request_id for item in items], context.run_id)
    runner = stage_runner(context.resources, queued=_queued(context))
    items = run_stage(context, names.DOWNLOAD, items, runner)
    register_partitions(context.instance, items)
    for item in items:
        if item.reused_from:
            context.log.info(f"request {item.request_id}: same image, languages and options as "
                             f"{item.reused_from}, answered from its stored result {item.result_uri}")
    record_requests(context, names.DOWNLOAD, items, runner)
    return items


@op(name=names.OCR, pool=names.GPU_POOL, tags={"kind": "gpu"}, **STEP)
def ocr(context: OpExecutionContext, items: list[WorkItem]) -> list[WorkItem]:
    """Find and read the text lines (tall images in overlapping slices), grouped into blocks; inspect the text."""
    runner = stage_runner(context.resources)
    items = run_stage(context, names.OCR, items, runner)
    items = run_stage(context, names.INSPECT, items, runner)
    record_requests(context, names.OCR, items, runner)
    return items


@op(name=names.TRANSLATE, tags={"kind": "io"}, **STEP)
def translate(context: OpExecutionContext, items: list[WorkItem]) -> list[WorkItem]:
    """Translate each image's text blocks in one batched call (cached, glossary applied); inspect the translation."""
    runner = stage_runner(context.resources)
    items = run_stage(context, names.TRANSLATE, items, runner)
    items = run_stage(context, names.INSPECT, items, runner)
    record_requests(context, names.TRANSLATE, items, runner)
    return items


@op(name=names.INPAINT, pool=names.GPU_POOL, tags={"kind": "gpu"}, **STEP)
def inpaint(context: OpExecutionContext, items: list[WorkItem]) -> list[WorkItem]:
    """Erase the original text: mask from the text pixels, then the inpainting engine."""
    runner = stage_runner(context.resources)
    items = run_stage(context, names.INPAINT, items, runner)
    record_requests(context, names.INPAINT, items, runner)
    return items


@op(name=names.RENDER, tags={"kind": "cpu"}, **STEP)
def render(context: OpExecutionContext, translated: list[WorkItem], inpainted: list[WorkItem]) -> list[WorkItem]:
    """Draw each translation into its text block of the inpainted image, then score each result."""
    runner = stage_runner(context.resources)
    items = run_stage(context, names.RENDER, merge_branches(translated, inpainted), runner)
    items = run_stage(context, names.QUALITY, items, runner)
    record_requests(context, names.RENDER, items, runner)
    return items


@op(name=names.PUBLISH, tags={"kind": "io"}, **INTAKE_STEP)
def publish(context: OpExecutionContext, items: list[WorkItem]) -> list[dict[str, Any]]:
    """Write every request's ``meta.json`` and report the outcome; the run fails if any request failed."""
    runner = stage_runner(context.resources)
    items = run_stage(context, names.PUBLISH, items, runner)
    outcomes = [outcome(item, runner.engines.store) for item in items]
    if source := _intake_source(context):
        context.resources.intake.deliver(outcomes, context.run_id, source)
    for item in items:
        if item.ok:
            context.log.info(f"request {item.request_id} succeeded: {item.result_uri}")
    summary = failure_summary(items)
    if summary:
        raise Failure(description=summary, allow_retries=False,
                      metadata={"failed": MetadataValue.json([o for o in outcomes if o["status"] == "failed"]),
                                "succeeded": sum(item.ok for item in items)})
    return outcomes


# --- review: re-render one request from its stored artifacts ----------------------------------------------------


class BlockEditConfig(Config):
    """A reviewer's change to one block (``review.rerender.BlockEdit``)."""

    block: int = Field(description="0-based block index (ocr.json blocks).")
    text: str | None = Field(default=None, description="Corrected translation; empty: unchanged.")
    font_px: int | None = Field(default=None, description="Exact font size in pixels.")
    color: str | None = Field(default=None, description="Text colour #rrggbb.")
    keep_original: bool | None = Field(default=None, description="Put the source pixels back, draw nothing.")
    reset: bool = Field(default=False, description="Drop earlier size/colour/keep overrides of this block.")


class RerenderConfig(Config):
    request_id: str = Field(description="The request to re-render (its artifacts must be stored).")
    edits: list[BlockEditConfig] = Field(default_factory=list)
    expected_revision: int = Field(default=0, description="Fail unless the request is at this revision (0: any).")
    changed_by: str = Field(default="reviewer", description="Who made the change (recorded in meta.json).")
    note: str = ""


@op(name=names.RERENDER, tags={"kind": "cpu"}, **STEP)
def rerender(context: OpExecutionContext, config: RerenderConfig) -> dict[str, Any]:
    """Render, score and publish one request again from its stored artifacts with the reviewer's edits: a new
    revision (the previous one kept as rev-<n>.*)."""
    from ..review.rerender import BlockEdit
    from ..review.rerender import rerender as rerender_request
    from ..review.state import ReviewError

    runner = stage_runner(context.resources)
    edits = [BlockEdit.from_dict(edit.model_dump()) for edit in config.edits]

    def stage(name: str, items: list[WorkItem]) -> list[WorkItem]:
        items = run_stage(context, name, items, runner)
        if name == names.QUALITY:  # the rendered_image materialization and checks, on the request's partition
            record_requests(context, names.RENDER, items, runner)
        return items

    try:
        result = rerender_request(runner, config.request_id, edits, expected_revision=config.expected_revision or None,
                                  by=config.changed_by, note=config.note, stage=stage, run_id=context.run_id)
    except ReviewError as error:
        raise Failure(description=error.message, allow_retries=False,
                      metadata={"request_id": config.request_id, "error_kind": error.kind}) from error
    context.add_output_metadata({"request_id": result.request_id, "revision": result.revision,
                                 "changed": result.changed, "changes": MetadataValue.json(result.changes),
                                 "score": result.score if result.score is not None else -1.0})
    context.log.info(f"request {result.request_id}: revision {result.revision}"
                     + ("" if result.changed else " (the edits changed nothing)"))
    return result.to_dict()
