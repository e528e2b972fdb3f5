"""Render stage: measure the source text, lay the translations out over the page, draw them (Pillow, horizontal
text) and encode the result."""

from __future__ import annotations

from .color import TextStyle, choose_style, contrast_ratio, outline_color, readable_fill, sample_text_color
from .fonts import FontChoice, FontSet, resolve_font
from .layout import TextLayout, fit_text, wrap_text
from .measure import SourceText, analyse_block
from .placement import BlockSpec, FreeSpace, PagePlan, PagePlanner, Placement, infer_alignments
from .renderer import TextRenderer, encode_image

__all__ = [
    "BlockSpec",
    "FontChoice",
    "FontSet",
    "FreeSpace",
    "PagePlan",
    "PagePlanner",
    "Placement",
    "SourceText",
    "TextLayout",
    "TextRenderer",
    "TextStyle",
    "analyse_block",
    "choose_style",
    "contrast_ratio",
    "encode_image",
    "fit_text",
    "infer_alignments",
    "outline_color",
    "readable_fill",
    "resolve_font",
    "sample_text_color",
    "wrap_text",
]
