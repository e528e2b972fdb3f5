"""Draw each block's translation into its box on the inpainted image, then encode the result.

Horizontal text only: a vertical (top-to-bottom) source block gets its translation laid out horizontally inside the
same box, which for a narrow column means one or two characters per line (recorded in ``extra["vertical_blocks"]``).
"""

from __future__ import annotations

import io
import logging
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL
from PIL import Image, ImageDraw, ImageFont

from ...core.errors import EngineError
from ...core.types import RenderedImage, TextBlock
from .color import MIN_CONTRAST, STROKE_RATIO, TextStyle, style_for_region
from .fonts import FontChoice, FontSet, language_key
from .layout import LINE_SPACING, MIN_FONT_PX, TextLayout, fit_text, stroke_px

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}


def encode_image(pixels: np.ndarray, fmt: str = "png", quality: int = 92) -> bytes:
    """Encode RGB pixels as PNG (fast compression: the bytes are re-compressed by nobody, speed matters more),
    JPEG (RGB, ``quality``) or WebP (``quality``)."""
    key = (fmt or "png").lower()
    if key not in OUTPUT_FORMATS:
        raise EngineError(f"unsupported output format '{fmt}' (use png, jpeg or webp)", stage="render",
                          transient=False)
    img = Image.fromarray(_as_rgb(pixels))
    buf = io.BytesIO()
    pil_fmt = OUTPUT_FORMATS[key]
    if pil_fmt == "PNG":
        img.save(buf, "PNG", compress_level=1)
    elif pil_fmt == "JPEG":
        img.save(buf, "JPEG", quality=int(quality))
    else:
        img.save(buf, "WEBP", quality=int(quality), method=4)
    return buf.getvalue()


def _as_rgb(pixels: np.ndarray) -> np.ndarray:
    """Accept gray / RGBA arrays from callers, hand Pillow HxWx3 uint8."""
    arr = np.asarray(pixels)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise EngineError(f"expected an HxWx3 RGB image, got shape {arr.shape}", stage="render", transient=False)
    if arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


@dataclass
class _Placement:
    box: tuple[int, int, int, int]
    layout: TextLayout
    fits: bool
    extended: bool


class TextRenderer:
    """Renders translations with Pillow. Thread-safe: fonts are cached, each call draws on its own copy."""

    name = "pillow"

    def __init__(
        self,
        fonts: FontSet | None = None,
        *,
        fonts_dir: str | None = None,
        bold: bool = False,
        min_font_px: int = MIN_FONT_PX,
        line_spacing: float = LINE_SPACING,
        min_contrast: float = MIN_CONTRAST,
        stroke_ratio: float = STROKE_RATIO,
        max_scale_to_source: float | None = 0.8,
        max_grow_width: float = 0.25,
        max_grow_height: float = 0.5,
    ) -> None:
        """``max_scale_to_source`` caps the font size at this multiple of the source lines' median height, so a
        short translation of a two-line block is not drawn twice as large as the original (None = box only).
        0.8 because RapidOCR line boxes are ~1.5x the font size (padding); tight boxes (tesseract) render smaller.
        ``max_grow_*``: how far (fraction of the box) a box may grow when even ``min_font_px`` does not fit."""
        self.fonts = fonts or FontSet(fonts_dir, bold=bold)
        self.min_font_px = int(min_font_px)
        self.line_spacing = line_spacing
        self.min_contrast = min_contrast
        self.stroke_ratio = stroke_ratio
        self.max_scale_to_source = max_scale_to_source
        self.max_grow_width = max_grow_width
        self.max_grow_height = max_grow_height

    def version(self) -> str:
        return f"pillow-{PIL.__version__}"

    # -- public API ---------------------------------------------------------------------------------------------

    def render(
        self,
        inpainted: np.ndarray,
        original: np.ndarray,
        blocks: list[TextBlock],
        translations: list[str],
        target_lang: str,
        *,
        output_format: str = "png",
        jpeg_quality: int = 92,
    ) -> RenderedImage:
        """Draw ``translations[i]`` into ``blocks[i].bbox``; empty translations are skipped (the erased area stays)."""
        if len(blocks) != len(translations):
            raise EngineError(f"{len(blocks)} blocks but {len(translations)} translations", stage="render",
                              transient=False)
        canvas_px = _as_rgb(inpainted)
        original_px = _as_rgb(original)
        if original_px.shape != canvas_px.shape:
            raise EngineError(f"original {original_px.shape} and inpainted {canvas_px.shape} images differ in size",
                              stage="render", transient=False)
        fmt = (output_format or "png").lower()
        fmt = "jpeg" if fmt == "jpg" else fmt
        if fmt not in OUTPUT_FORMATS:
            raise EngineError(f"unsupported output format '{output_format}'", stage="render", transient=False)

        lang = language_key(target_lang)
        choice = self.fonts.resolve(target_lang)
        image = Image.fromarray(canvas_px.copy())
        draw = ImageDraw.Draw(image)
        height, width = canvas_px.shape[:2]

        per_block: list[dict[str, Any]] = []
        sizes: list[int] = []
        overflowed: list[int] = []
        extended: list[int] = []
        vertical: list[int] = []
        skipped = 0
        for i, (block, text) in enumerate(zip(blocks, translations, strict=True)):
            text = (text or "").strip()
            if not text:
                skipped += 1
                continue
            box = _int_box(block.bbox, width, height)
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                logger.warning("block %d has an empty box %s after clipping; skipped", i, block.bbox)
                skipped += 1
                continue
            if _looks_vertical(block):
                vertical.append(i)
            style = style_for_region(original_px, canvas_px, block.bbox, min_contrast=self.min_contrast,
                                     stroke_ratio=self.stroke_ratio)
            others = [_int_box(b.bbox, width, height) for j, b in enumerate(blocks) if j != i]
            placement = self._place(text, box, block, style, choice, lang, width, height,
                                    roomy=_roomy_box(canvas_px, box, block.alignment, others))
            self._draw(draw, placement, block.alignment, style, choice, text)
            sizes.append(placement.layout.font_px)
            if not placement.fits:
                overflowed.append(i)
            if placement.extended:
                extended.append(i)
            per_block.append({
                "index": i,
                "font_px": placement.layout.font_px,
                "lines": placement.layout.lines,
                "box": list(box),
                "drawn_box": list(placement.box),
                "fill": list(style.fill),
                "outline": list(style.stroke_fill) if style.stroke_fill else None,
                "contrast": round(style.contrast, 2),
                "extended": placement.extended,
                "overflow": not placement.fits,
            })

        pixels = np.asarray(image).copy()
        encoded = encode_image(pixels, fmt, jpeg_quality)
        family, face_style = _font_name(self.fonts, choice)
        extra: dict[str, Any] = {
            "renderer": self.version(),
            "font_index": choice.index,
            "font_name": f"{family} {face_style}".strip(),
            "target_lang": target_lang,
            "blocks": per_block,
            "overflowed": overflowed,
            "extended": extended,
            "skipped_empty": skipped,
        }
        if vertical:
            extra["vertical_blocks"] = vertical
            extra["limitations"] = "vertical source text is re-rendered horizontally"
        return RenderedImage(pixels=pixels, encoded=encoded, format=fmt, font=choice.path, blocks_drawn=len(per_block),
                             min_font_px=min(sizes, default=0), extra=extra)

    # -- layout + drawing ---------------------------------------------------------------------------------------

    def _max_px(self, block: TextBlock) -> int | None:
        if not self.max_scale_to_source or not block.regions:
            return None
        heights = []
        for r in block.regions:
            x0, y0, x1, y1 = r.bbox()
            # A vertical line's glyph size is its width, a horizontal line's its height.
            heights.append(min(y1 - y0, x1 - x0) if (y1 - y0) > 2 * (x1 - x0) else (y1 - y0))
        med = statistics.median(heights)
        return max(self.min_font_px, int(med * self.max_scale_to_source)) if med > 0 else None

    def _place(self, text: str, box: tuple[int, int, int, int], block: TextBlock, style: TextStyle,
               choice: FontChoice, lang: str, width: int, height: int,
               roomy: tuple[int, int, int, int] | None = None) -> _Placement:
        def get_font(size: int) -> ImageFont.FreeTypeFont:
            return self.fonts.font(choice, size)

        ratio = style.stroke_ratio if style.has_outline else 0.0
        max_px = self._max_px(block)
        bw, bh = box[2] - box[0], box[3] - box[1]
        layout, fits = fit_text(text, bw, bh, get_font, lang, min_px=self.min_font_px, max_px=max_px,
                                line_spacing=self.line_spacing, stroke_ratio=ratio)
        shrunk = not fits or (max_px is not None and layout.font_px < ROOMY_TRIGGER * max_px)
        if shrunk and roomy is not None and roomy != box:
            # Translations often run longer than the source (zh -> en ~2-3x); spreading into free background
            # beside the block keeps the text near its original size instead of shrinking it.
            rw, rh = roomy[2] - roomy[0], roomy[3] - roomy[1]
            r_layout, r_fits = fit_text(text, rw, rh, get_font, lang, min_px=self.min_font_px, max_px=max_px,
                                        line_spacing=self.line_spacing, stroke_ratio=ratio)
            if r_fits and (not fits or r_layout.font_px > layout.font_px):
                return _Placement(roomy, r_layout, True, True)
        if fits:
            return _Placement(box, layout, True, False)
        grown = _grow_box(box, block.alignment, width, height, self.max_grow_width, self.max_grow_height)
        if grown != box:
            gw, gh = grown[2] - grown[0], grown[3] - grown[1]
            g_layout, g_fits = fit_text(text, gw, gh, get_font, lang, min_px=self.min_font_px,
                                        max_px=self.min_font_px, line_spacing=self.line_spacing, stroke_ratio=ratio)
            logger.info("block text did not fit %s at %d px; grew box to %s (fits=%s)", box, self.min_font_px,
                        grown, g_fits)
            return _Placement(grown, g_layout, g_fits, True)
        return _Placement(box, layout, False, False)

    def _draw(self, draw: ImageDraw.ImageDraw, placement: _Placement, alignment: str, style: TextStyle,
              choice: FontChoice, text: str) -> None:
        layout = placement.layout
        x0, y0, x1, y1 = placement.box
        font = self.fonts.font(choice, layout.font_px)
        sw = stroke_px(layout.font_px, style.stroke_ratio if style.has_outline else 0.0)
        inner_h = y1 - y0
        # Vertical centring in the box; on overflow start at the top so only the end spills out.
        top = y0 + (inner_h - layout.height) / 2.0 if placement.fits else y0 + sw
        for i, line in enumerate(layout.lines):
            lw = layout.line_widths[i]
            if alignment == "center":
                x = x0 + (x1 - x0 - lw) / 2.0
            elif alignment == "right":
                x = x1 - sw - lw
            else:
                x = x0 + sw
            baseline = top + layout.ascent + i * layout.line_pitch
            draw.text((round(x), round(baseline)), line, font=font, fill=style.fill, anchor="ls", stroke_width=sw,
                      stroke_fill=style.stroke_fill)


def _int_box(bbox: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = bbox
    return (max(0, int(np.floor(x0))), max(0, int(np.floor(y0))), min(width, int(np.ceil(x1))),
            min(height, int(np.ceil(y1))))


ROOMY_TRIGGER = 0.75  # below this fraction of the source size, look for free space beside the block
FLAT_STD = 10.0  # a column strip of background is "free" when this flat ...
FLAT_DELTA = 18.0  # ... and this close to the block's own background


def _roomy_box(canvas: np.ndarray, box: tuple[int, int, int, int], alignment: str,
               others: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    """The block's box widened (away from its aligned edge) over flat background like its own, stopping at other
    blocks and keeping the block's margin to the image edge mirrored on the other side."""
    x0, y0, x1, y1 = box
    width = canvas.shape[1]
    inside = canvas[y0:y1, x0:x1].reshape(-1, 3).astype(np.float32)
    if inside.size == 0:
        return box
    background = np.median(inside, axis=0)
    rows = [o for o in others if o[1] < y1 and o[3] > y0]  # blocks beside this one

    def free(x: int) -> bool:
        if any(o[0] <= x < o[2] for o in rows):
            return False
        strip = canvas[y0:y1, x].astype(np.float32)
        return float(strip.std(axis=0).max()) <= FLAT_STD and float(
            np.abs(strip.mean(axis=0) - background).max()) <= FLAT_DELTA

    def extent(start: int, stop: int, step: int) -> int:
        x = start
        while x != stop and free(x):
            x += step
        return x

    left_margin, right_margin = x0, width - x1
    margin = min(left_margin, right_margin) if alignment == "center" else (
        left_margin if alignment == "left" else right_margin)
    nx0, nx1 = x0, x1
    if alignment in ("left", "center"):
        nx1 = extent(x1, max(x1, width - margin), 1)
    if alignment in ("right", "center"):
        nx0 = extent(x0 - 1, min(x0 - 1, margin - 1), -1) + 1
    if alignment == "center":  # keep it centred: grow both sides by the smaller reach
        grow = min(x0 - nx0, nx1 - x1)
        nx0, nx1 = x0 - grow, x1 + grow
    return nx0, y0, nx1, y1


def _grow_box(box: tuple[int, int, int, int], alignment: str, width: int, height: int, grow_w: float,
              grow_h: float) -> tuple[int, int, int, int]:
    """Widen the box (away from its aligned edge) and extend it downward, staying inside the image."""
    x0, y0, x1, y1 = box
    dw = int((x1 - x0) * grow_w)
    dh = int((y1 - y0) * grow_h)
    if alignment == "right":
        nx0, nx1 = x0 - dw, x1
    elif alignment == "center":
        nx0, nx1 = x0 - dw // 2, x1 + dw - dw // 2
    else:
        nx0, nx1 = x0, x1 + dw
    if nx0 < 0:  # shift what does not fit on one side to the other
        nx1 = min(width, nx1 - nx0)
        nx0 = 0
    if nx1 > width:
        nx0 = max(0, nx0 - (nx1 - width))
        nx1 = width
    return nx0, y0, nx1, min(height, y1 + dh)


def _looks_vertical(block: TextBlock) -> bool:
    """A block whose lines are tall narrow columns of several characters (vertical CJK)."""
    if not block.regions:
        return False
    tall = 0
    for r in block.regions:
        x0, y0, x1, y1 = r.bbox()
        if (y1 - y0) > 2.0 * max(1.0, x1 - x0) and len(r.text) >= 2:
            tall += 1
    return tall > len(block.regions) / 2


def _font_name(fonts: FontSet, choice: FontChoice) -> tuple[str, str]:
    try:
        family, style = fonts.font(choice, 12).getname()
        return family or "", style or ""
    except OSError:
        return "", ""
