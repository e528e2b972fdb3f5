"""The job graphs: download → ocr → (translate ∥ inpaint) → render → publish; and the review's re-render of one
request (render + quality + publish from its stored artifacts)."""

from __future__ import annotations

from dagster import in_process_executor, job

from .. import names
from .ops import download, inpaint, ocr, publish, render, rerender, translate


@job(
    name=names.TRANSLATE_JOB,
    description="Translate the text inside images: download, OCR, translate ∥ inpaint, render, publish.",
    tags={names.TAG_PIPELINE: "translate"},
    # One process per run, not per step: the multiprocess executor would start a process for every op and load
    # its models again each time (~2 s per step measured). Requests inside a run are batched instead.
    executor_def=in_process_executor,
)
def translate_images() -> None:
    located = ocr(download())
    publish(render(translate(located), inpaint(located)))


@job(
    name=names.RERENDER_JOB,
    description="Re-render one request from its stored artifacts with a reviewer's corrections: render, quality "
                "and publish only; a new revision, the previous one kept.",
    tags={names.TAG_PIPELINE: "rerender"},
    executor_def=in_process_executor,
)
def rerender_request() -> None:
    rerender()
