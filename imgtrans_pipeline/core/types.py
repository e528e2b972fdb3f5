"""Data that flows between stages. Plain dataclasses with numpy images (RGB, uint8, HxWx3); no I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Point = tuple[float, float]
Polygon = list[Point]  # four or more (x, y) points, clockwise from top-left


@dataclass
class SourceImage:
    """A downloaded image after normalisation (EXIF orientation applied, converted to RGB)."""

    pixels: np.ndarray  # HxWx3 uint8, RGB
    content_hash: str  # sha256 over size + decoded RGB pixels (fetch.normalize.pixel_hash): the image's key
    source_format: str  # format sniffed from the bytes: "jpeg", "png", "webp", "gif", ...
    byte_size: int  # size of the downloaded bytes
    png_bytes: bytes  # the normalised image, PNG-encoded (what the hash is computed over)

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


@dataclass
class TextRegion:
    """One OCR'd line: polygon in image coordinates, recognised text, confidence 0..1."""

    polygon: Polygon
    text: str
    score: float

    def bbox(self) -> tuple[float, float, float, float]:
        xs = [p[0] for p in self.polygon]
        ys = [p[1] for p in self.polygon]
        return min(xs), min(ys), max(xs), max(ys)

    def to_dict(self) -> dict[str, Any]:
        return {"polygon": [[round(x, 1), round(y, 1)] for x, y in self.polygon], "text": self.text,
                "score": round(float(self.score), 4)}


@dataclass
class TextBlock:
    """Lines that belong together (a paragraph or a banner), in reading order; the unit of translation."""

    regions: list[TextRegion]
    text: str  # the lines joined in reading order (no separator for CJK, a space otherwise)
    bbox: tuple[float, float, float, float]  # x0, y0, x1, y1
    alignment: str = "left"  # "left" | "center" | "right", estimated from line positions
    # Why the block is left in the image untranslated (core.keep.split_translatable); None: it is translated.
    keep_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "text": self.text,
            "bbox": [round(v, 1) for v in self.bbox],
            "alignment": self.alignment,
            "regions": [r.to_dict() for r in self.regions],
        }
        if self.keep_reason is not None:
            out["keep_reason"] = self.keep_reason
        return out


@dataclass
class OcrResult:
    regions: list[TextRegion]
    blocks: list[TextBlock]
    engine: str
    detected_lang: str | None = None  # filled when the request's source_lang was 'auto'
    dropped_low_confidence: int = 0
    slices: int = 1  # how many slices a tall image was cut into
    # Blocks with nothing to translate (prices, model numbers, Latin brand names in a CJK image): left in the
    # image untouched, neither erased nor re-drawn. ``blocks`` holds only the ones to translate.
    kept_blocks: list[TextBlock] = field(default_factory=list)

    def translatable_regions(self) -> list[TextRegion]:
        return [region for block in self.blocks for region in block.regions]

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "detected_lang": self.detected_lang,
            "dropped_low_confidence": self.dropped_low_confidence,
            "slices": self.slices,
            "regions": [r.to_dict() for r in self.regions],
            "blocks": [b.to_dict() for b in self.blocks],
            "kept_blocks": [b.to_dict() for b in self.kept_blocks],
        }


@dataclass
class TranslationResult:
    """One translation per OCR block, same order."""

    source_texts: list[str]
    translations: list[str]
    source_lang: str
    target_lang: str
    engine: str
    model: str
    cache_hits: int = 0
    # Problems left in a translation, by text index ("number_lost:5折": a number that did not come through).
    flags: dict[int, list[str]] = field(default_factory=dict)
    # Where each translation came from, by text index: {"origin": "memory" | "glossary" | "cache" | "engine" |
    # "passthrough", plus the memory entry's scope, the glossary, or the engine and model} (may be empty).
    sources: list[dict[str, Any]] = field(default_factory=list)

    def origin_counts(self) -> dict[str, int]:
        """How many texts each origin translated (``{"engine": 3, "memory": 1}``)."""
        counts: dict[str, int] = {}
        for source in self.sources:
            counts[source["origin"]] = counts.get(source["origin"], 0) + 1
        return dict(sorted(counts.items()))

    def to_dict(self) -> dict[str, Any]:
        pairs: list[dict[str, Any]] = []
        for index, (source, translation) in enumerate(zip(self.source_texts, self.translations, strict=True)):
            pair: dict[str, Any] = {"source": source, "translation": translation}
            if self.flags.get(index):
                pair["flags"] = list(self.flags[index])
            if index < len(self.sources):
                pair["via"] = dict(self.sources[index])
            pairs.append(pair)
        return {
            "engine": self.engine,
            "model": self.model,
            "source_lang": self.source_lang,
            "target_lang": self.target_lang,
            "cache_hits": self.cache_hits,
            "origins": self.origin_counts(),
            "pairs": pairs,
        }


@dataclass
class InpaintResult:
    mask: np.ndarray  # HxW uint8, 255 where text was erased
    pixels: np.ndarray  # HxWx3 uint8 RGB
    engine: str


@dataclass
class RenderedImage:
    pixels: np.ndarray  # HxWx3 uint8 RGB
    encoded: bytes  # in the requested output format
    format: str  # "png" | "jpeg" | "webp"
    font: str  # font file used
    blocks_drawn: int = 0
    min_font_px: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
