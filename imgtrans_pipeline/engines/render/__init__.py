"""Render stage: draw translated text into the inpainted image (Pillow, horizontal text) and encode the result."""

from __future__ import annotations

from .color import TextStyle, choose_style, contrast_ratio, sample_text_color
from .fonts import FontChoice, FontSet, resolve_font
from .layout import TextLayout, fit_text, wrap_text
from .renderer import TextRenderer, encode_image

__all__ = [
    "FontChoice",
    "FontSet",
    "TextLayout",
    "TextRenderer",
    "TextStyle",
    "choose_style",
    "contrast_ratio",
    "encode_image",
    "fit_text",
    "resolve_font",
    "sample_text_color",
    "wrap_text",
]
