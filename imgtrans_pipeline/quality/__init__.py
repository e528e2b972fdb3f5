"""Per-image quality score: how good one translated image is, 0..1, with the reasons (plain Python, no I/O).

Pipeline use, after render::

    rechecks = recheck_erased(ocr_engine, inpainted.pixels, ocr.translatable_regions(), source_lang,
                              source=source.pixels)
    quality = score_image(inputs_from_results(ocr, translation, rendered, rechecks,
                                              source_lang=source_lang, target_lang=target_lang))

or both at once with ``assess_image``. ``quality.to_dict()`` is the record for meta.json.
"""

from __future__ import annotations

import numpy as np

from ..core.types import OcrResult, RenderedImage, TranslationResult
from .recheck import BLANK_EDGE_RATIO, READABLE_SCORE, READABLE_SIMILARITY, LineRecheck, edge_energy, recheck_erased
from .score import QualityInputs, QualityScore, inputs_from_results, layout_summary, score_image
from .text import TranslationIssue, normalize_text, text_similarity, translation_issues

__all__ = [
    "BLANK_EDGE_RATIO",
    "READABLE_SCORE",
    "READABLE_SIMILARITY",
    "LineRecheck",
    "QualityInputs",
    "QualityScore",
    "TranslationIssue",
    "assess_image",
    "edge_energy",
    "inputs_from_results",
    "layout_summary",
    "normalize_text",
    "recheck_erased",
    "score_image",
    "text_similarity",
    "translation_issues",
]


def assess_image(
    ocr_engine: object,
    source: np.ndarray,
    erased: np.ndarray,
    ocr: OcrResult,
    translation: TranslationResult | None,
    rendered: RenderedImage | None,
    *,
    source_lang: str,
    target_lang: str,
) -> QualityScore:
    """Re-check the erased lines with ``ocr_engine`` (the engine that read the source) and score the image."""
    rechecks = recheck_erased(ocr_engine, erased, ocr.translatable_regions(), source_lang, source=source)
    inputs = inputs_from_results(ocr, translation, rendered, rechecks, source_lang=source_lang,
                                 target_lang=target_lang, image_size=(int(source.shape[1]), int(source.shape[0])))
    return score_image(inputs)
