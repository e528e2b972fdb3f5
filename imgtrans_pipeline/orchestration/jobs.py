"""The job graph: download → ocr → (translate ∥ inpaint) → render → publish."""

from __future__ import annotations

from dagster import job

from .ops import download, inpaint, ocr, publish, render, translate

TRANSLATE_JOB = "translate_images"


@job(
    name=TRANSLATE_JOB,
    description="Translate the text inside images: download, OCR, translate ∥ inpaint, render, publish.",
    tags={"imgtrans/pipeline": "translate"},
)
def translate_images() -> None:
    located = ocr(download())
    publish(render(translate(located), inpaint(located)))
