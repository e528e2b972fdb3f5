"""Draw each block's translation onto the erased image the way the source was set, then encode the result.

Per block the source text is measured from its glyph pixels (``measure``: size, weight, fill, outline); the page is
laid out as a whole (``placement``: shared sizes per source size, growth only into free space, no overlaps); each
block is drawn in its weight (Bold / Black face, or a faux-bold stroke when the file is missing), with its source
outline, or with a black/white outline when the fill would not stand out from the new background.

``extra["layout"]`` is the machine-readable record the quality score reads: per block the drawn ink box, the room it
had ("region"), the container it sat in ("container", "in_container": laid out inside it), rendered and source size,
weight, outline, fit, lines, contrast and alignment; per page the number
of overlapping drawn boxes (with each other and with kept text), boxes outside the image, blocks forced to the
minimum size and blocks that did not fit.

Horizontal text only: a vertical (top-to-bottom) source block gets its translation laid out horizontally (recorded
in ``extra["vertical_blocks"]``).
"""

from __future__ import annotations

import io
import logging
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL
from PIL import Image, ImageDraw

from ...core.errors import EngineError
from ...core.types import RenderedImage, TextBlock
from .color import (
    BLACK,
    MIN_CONTRAST,
    RGB,
    STROKE_RATIO,
    WHITE,
    background_color,
    contrast_ratio,
    outline_color,
    readable_fill,
)
from .container import Container, find_container, page_ground
from .fonts import FontChoice, FontSet, language_key
from .layout import LINE_SPACING, MAX_FONT_PX, MIN_FONT_PX, TextLayout, layout_at
from .measure import SourceText, analyse_block, polygon_line_height, region_is_vertical
from .placement import (
    BlockSpec,
    FreeSpace,
    PagePlan,
    PagePlanner,
    Placement,
    contains,
    expand,
    infer_alignments,
    intersection,
    union,
)

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}


def encode_image(pixels: np.ndarray, fmt: str = "png", quality: int = 92) -> bytes:
    """Encode RGB pixels as PNG (fast compression: the bytes are re-compressed by nobody, speed matters more),
    JPEG (RGB, ``quality``) or WebP (``quality``). A 2-D array (a mask) is encoded as one gray channel."""
    key = (fmt or "png").lower()
    if key not in OUTPUT_FORMATS:
        raise EngineError(f"unsupported output format '{fmt}' (use png, jpeg or webp)", stage="render",
                          transient=False)
    arr = np.asarray(pixels)
    gray = arr.ndim == 2 and arr.dtype == np.uint8
    img = Image.fromarray(np.ascontiguousarray(arr) if gray else _as_rgb(arr))
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


Box = tuple[int, int, int, int]
Override = Mapping[str, Any]

FAUX_BOLD_RATIO = 0.022  # extra stroke (em, each side) that makes a regular face read as bold
FAUX_BLACK_RATIO = 0.018  # ... and a bold face as black
SOURCE_SIZE_SCALE = 1.0  # rendered size aimed at, as a multiple of the source size


@dataclass
class _Block:
    """Working state of one block to draw."""

    index: int
    block: TextBlock
    text: str
    src: Box
    source: SourceText
    weight: str
    face: FontChoice
    faux_ratio: float
    fill: RGB
    outline: RGB | None
    outline_ratio: float
    outline_from_source: bool
    fixed_px: int | None = None
    fixed_color: bool = False
    source_fill: RGB = (0, 0, 0)
    alignment: str = "left"
    alignment_known: bool = True
    container: Container | None = None


def _parse_color(value: Any) -> RGB:
    if isinstance(value, str):
        h = value.strip().lstrip("#")
        if len(h) == 3:
            h = "".join(c * 2 for c in h)
        if len(h) != 6:
            raise ValueError(f"colour '{value}' is not #rgb or #rrggbb")
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    r, g, b = (int(v) for v in list(value)[:3])
    return max(0, min(255, r)), max(0, min(255, g)), max(0, min(255, b))


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
        size_scale: float = SOURCE_SIZE_SCALE,
        keep_weight: bool = True,
        sizes_by_style: bool = False,
        containers: bool = True,
        container_own_size: bool = True,
    ) -> None:
        """``min_font_px``: never draw smaller. ``min_contrast``: WCAG ratio of fill to the new background below
        which an outline is added (``stroke_ratio`` em wide). ``size_scale``: aim at this multiple of the source
        size. ``keep_weight``: draw bold source text bold (False = the FontSet's weight for everything).
        ``sizes_by_style``: blocks share a rendered size when they share source size, weight and colour, so one
        cramped coloured label does not shrink body copy of the same size (default: source size alone).
        ``containers``: text sitting in a bar, pill, badge or band is laid out inside it (``container``).
        ``container_own_size``: such text shrinks to fit its container on its own, without lowering the size of its
        size class and of smaller ones: a designer sizes a button label by its button, and one cramped pill must
        not shrink the page's body copy (the label may then be drawn smaller than body copy with a smaller source
        size; False keeps the strict page-wide order)."""
        self.fonts = fonts or FontSet(fonts_dir, bold=bold)
        self.min_font_px = max(1, int(min_font_px))
        self.line_spacing = line_spacing
        self.min_contrast = min_contrast
        self.stroke_ratio = stroke_ratio
        self.size_scale = size_scale
        self.keep_weight = keep_weight
        self.sizes_by_style = sizes_by_style
        self.containers = containers
        self.container_own_size = container_own_size

    def version(self) -> str:
        # The suffix names the layout generation: results drawn by an older layout are not reused.
        return f"pillow-{PIL.__version__}+layout5"

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
        obstacles: Sequence[TextBlock | Sequence[float]] | None = None,
        overrides: Sequence[Override | None] | None = None,
    ) -> RenderedImage:
        """Draw ``translations[i]`` for ``blocks[i]``; empty translations are skipped (the erased area stays).

        ``obstacles``: text left in the image (``OcrResult.kept_blocks``, or (x0, y0, x1, y1) boxes) that nothing
        may be drawn over. ``overrides``: one entry per block (or None) with optional ``text`` (replaces the
        translation), ``font_px`` (exact size), ``color`` ("#rrggbb" or (r, g, b)) and ``keep_original`` (put the
        source pixels back and draw nothing). ``extra["layout"]`` records what was drawn where (module docstring).
        """
        if len(blocks) != len(translations):
            raise EngineError(f"{len(blocks)} blocks but {len(translations)} translations", stage="render",
                              transient=False)
        if overrides is not None and len(overrides) != len(blocks):
            raise EngineError(f"{len(blocks)} blocks but {len(overrides)} overrides", stage="render",
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
        height, width = canvas_px.shape[:2]
        kept = [_obstacle_box(o, width, height) for o in (obstacles or ())]
        kept = [b for b in kept if b is not None]

        work: list[_Block] = []
        restore: list[int] = []
        vertical: list[int] = []
        skipped = 0
        for i, (block, text) in enumerate(zip(blocks, translations, strict=True)):
            entry = overrides[i] if overrides is not None else None
            if entry is not None and not isinstance(entry, Mapping):
                raise EngineError(f"override {i} is {type(entry).__name__}, not a mapping", stage="render",
                                  transient=False)
            override = dict(entry or {})
            box = _int_box(block.bbox, width, height)
            valid = box[2] - box[0] >= 2 and box[3] - box[1] >= 2
            if override.get("keep_original"):
                if valid:
                    restore.append(i)
                    kept.append(box)
                continue
            text = str(override["text"] if override.get("text") is not None else (text or "")).strip()
            if not text:
                skipped += 1
                continue
            if not valid:
                logger.warning("block %d has an empty box %s after clipping; skipped", i, block.bbox)
                skipped += 1
                continue
            if _looks_vertical(block):
                vertical.append(i)
            work.append(self._prepare(i, block, text, box, override, original_px, canvas_px, choice, target_lang))

        self._align(work, blocks, obstacles or ())
        if work and self.containers:
            # Read from the source: the erased image may have smeared the bar or pill the text sat in.
            ground = page_ground(original_px)
            for item in work:
                item.container = find_container(original_px, item.src, item.source.px, ground)
                if item.container is not None and item.container.centered_x and not item.alignment_known:
                    item.alignment = "center"  # a label centred in its pill or badge (other anchors stay allowed)
        image = canvas_px.copy()
        if restore:
            _restore_original(image, original_px, blocks, restore)
        plan = PagePlan(placements={})
        if work:
            text_boxes = [_int_box(b.bbox, width, height) for b in blocks] + list(kept)
            margins = [min(12, max(2, round(0.2 * (b[3] - b[1])))) for b in text_boxes]
            space = FreeSpace(original_px, [expand(b, m) for b, m in zip(text_boxes, margins, strict=True)],
                              canvas_px)
            layouts: dict[tuple[str, FontChoice, int, float], TextLayout] = {}  # shared by both plans
            plan, styles_changed = self._plan(work, space, canvas_px, kept, lang, layouts)
            if styles_changed:  # an outline was added after placement: its width needs room too
                plan, _ = self._plan(work, space, canvas_px, kept, lang, layouts)

        pil = Image.fromarray(image)
        draw = ImageDraw.Draw(pil)
        records: list[dict[str, Any]] = []
        dropped = [item.index for item in work if item.index not in plan.placements]
        for item in work:
            placement = plan.placements.get(item.index)
            if placement is not None:
                records.append(self._draw(draw, item, placement, canvas_px, lang, plan))
        pixels = np.asarray(pil).copy()
        encoded = encode_image(pixels, fmt, jpeg_quality)
        layout_record = _layout_summary(records, kept, width, height, self.min_font_px, plan, dropped)
        family, face_style = _font_name(self.fonts, choice)
        extra: dict[str, Any] = {
            "renderer": self.version(),
            "font_index": choice.index,
            "font_name": f"{family} {face_style}".strip(),
            "target_lang": target_lang,
            "blocks": [_legacy_record(r) for r in records],
            "overflowed": [r["index"] for r in records if not r["fits"]],
            "extended": [r["index"] for r in records if r["extended"]],
            "skipped_empty": skipped,
            "kept_original": restore,
            "layout": layout_record,
        }
        if vertical:
            extra["vertical_blocks"] = vertical
            extra["limitations"] = "vertical source text is re-rendered horizontally"
        sizes = [r["font_px"] for r in records]
        return RenderedImage(pixels=pixels, encoded=encoded, format=fmt, font=choice.path, blocks_drawn=len(records),
                             min_font_px=min(sizes, default=0), extra=extra)

    # -- per block ----------------------------------------------------------------------------------------------

    def _prepare(self, i: int, block: TextBlock, text: str, box: Box, override: dict[str, Any],
                 original: np.ndarray, canvas: np.ndarray, choice: FontChoice, target_lang: str) -> _Block:
        source = analyse_block(original, canvas, block, lambda size: self.fonts.font(choice, size))
        weight = source.weight if self.keep_weight else "regular"
        face, faux = self._face(choice, weight, target_lang)
        fill = source.fill
        fixed_color = override.get("color") is not None
        if fixed_color:
            try:
                fill = _parse_color(override["color"])
            except (TypeError, ValueError) as exc:
                raise EngineError(f"override {i}: bad colour {override['color']!r}: {exc}", stage="render",
                                  transient=False) from exc
        fixed_px = override.get("font_px")
        if fixed_px is not None:
            try:
                fixed_px = max(1, min(MAX_FONT_PX, int(fixed_px)))
            except (TypeError, ValueError) as exc:
                raise EngineError(f"override {i}: bad font_px {override['font_px']!r}", stage="render",
                                  transient=False) from exc
        item = _Block(index=i, block=block, text=text, src=box, source=source, weight=weight, face=face,
                      faux_ratio=faux, fill=fill, outline=source.outline, outline_ratio=source.outline_ratio,
                      outline_from_source=source.outline is not None, fixed_px=fixed_px, fixed_color=fixed_color,
                      source_fill=fill)
        self._check_contrast(item, background_color(canvas, box))
        return item

    @staticmethod
    def _align(work: list[_Block], blocks: list[TextBlock], obstacles: Sequence[TextBlock | Sequence[float]]) -> None:
        """Alignment per block from its own lines and the lines stacked around it (kept text included)."""
        own = [[r.bbox() for r in block.regions] or [tuple(block.bbox)] for block in blocks]
        others: list[tuple[float, float, float, float]] = []
        for o in obstacles:
            if isinstance(o, TextBlock):
                others += [r.bbox() for r in o.regions] or [tuple(o.bbox)]  # type: ignore[list-item]
            else:
                others.append(tuple(float(v) for v in list(o)[:4]))  # type: ignore[arg-type]
        inferred = infer_alignments(own, [b.alignment for b in blocks], others)  # type: ignore[arg-type]
        for item in work:
            item.alignment, item.alignment_known = inferred[item.index]

    def _face(self, choice: FontChoice, weight: str, target_lang: str) -> tuple[FontChoice, float]:
        """The font file for a weight, and the faux-bold stroke (em) that stands in for a missing heavier file."""
        if weight == "regular" or (self.fonts.bold and weight == "bold"):
            return choice, 0.0
        if weight == "black":
            black = self.fonts.weighted(choice, "Black", target_lang)
            if black is not None:
                return black, 0.0
            bold = choice if self.fonts.bold else self.fonts.weighted(choice, "Bold", target_lang)
            return (bold, FAUX_BLACK_RATIO) if bold is not None else (choice, FAUX_BOLD_RATIO + FAUX_BLACK_RATIO)
        bold = self.fonts.weighted(choice, "Bold", target_lang)
        return (bold, 0.0) if bold is not None else (choice, FAUX_BOLD_RATIO)

    def _check_contrast(self, item: _Block, background: RGB) -> bool:
        """Make the block readable on ``background`` (the erased image where it is drawn): its source fill as is,
        or that fill nudged darker / lighter, or its source outline, or an outline in a shade of the background.
        True when an outline was added (its width needs room in the layout)."""
        had_outline = item.outline is not None
        item.fill = item.source_fill
        if contrast_ratio(item.fill, background) >= self.min_contrast:
            return False
        if item.outline_from_source and contrast_ratio(item.fill, item.outline) >= self.min_contrast:
            return False
        nudged = None if item.fixed_color else readable_fill(item.fill, background, self.min_contrast)
        if nudged is not None:
            item.fill = nudged
            return False
        if item.outline is None or contrast_ratio(item.fill, item.outline) < self.min_contrast:
            item.outline = outline_color(item.fill, background)
            item.outline_ratio = max(item.outline_ratio, self.stroke_ratio)
            item.outline_from_source = False
        return not had_outline

    def _pads(self, item: _Block, size: int) -> tuple[int, int]:
        """(outline px, faux bold px) at a font size."""
        outline = max(1, round(size * item.outline_ratio)) if item.outline is not None else 0
        faux = round(size * item.faux_ratio) if item.faux_ratio > 0 else 0
        return outline, faux

    def _plan(self, work: list[_Block], space: FreeSpace, canvas: np.ndarray, kept: list[Box], lang: str,
              layouts: dict[tuple[str, FontChoice, int, float], TextLayout]) -> tuple[PagePlan, bool]:
        by_index = {item.index: item for item in work}

        def layout_fn(i: int, size: int, max_width: float) -> TextLayout:
            item = by_index[i]
            key = (item.text, item.face, size, max_width)
            cached = layouts.get(key)
            if cached is None:
                cached = layouts[key] = layout_at(item.text, self.fonts.font(item.face, size), max(1.0, max_width),
                                                  lang, self.line_spacing)
            return cached

        def pad_fn(i: int, size: int) -> int:
            outline, faux = self._pads(by_index[i], size)
            return outline + faux + 1  # +1: ink may overhang the advance width by a pixel

        specs = []
        for item in work:
            target = max(self.min_font_px, round(item.source.px * self.size_scale))
            specs.append(BlockSpec(index=item.index, src=item.src, source_px=item.source.px, target_px=target,
                                   alignment=item.alignment, src_lines=max(1, len(item.block.regions)),
                                   fixed_px=item.fixed_px, flexible=not item.alignment_known,
                                   bold=item.weight != "regular", fill=item.source_fill,
                                   container=item.container, ink_x=item.source.ink_x))
        plan = PagePlanner(specs, layout_fn, pad_fn, space, kept=kept, min_px=self.min_font_px,
                           by_style=self.sizes_by_style, container_own_size=self.container_own_size).plan()
        changed = False
        for item in work:
            placement = plan.placements.get(item.index)
            if placement is not None:
                changed |= self._check_contrast(item, background_color(canvas, placement.box))
        return plan, changed

    def _draw(self, draw: ImageDraw.ImageDraw, item: _Block, placement: Placement, canvas: np.ndarray, lang: str,
              plan: PagePlan) -> dict[str, Any]:
        layout = placement.layout
        size = layout.font_px
        font = self.fonts.font(item.face, size)
        outline_px, faux_px = self._pads(item, size)
        x0, y0, _, _ = placement.box
        inner_x = x0 + placement.pad
        top = y0 + placement.pad
        ink: Box | None = None
        for n, line in enumerate(layout.lines):
            lw = layout.line_widths[n]
            if placement.alignment == "center":
                x = inner_x + (layout.width - lw) / 2.0
            elif placement.alignment == "right":
                x = inner_x + layout.width - lw
            else:
                x = inner_x
            xy = (round(x), round(top + layout.ascent + n * layout.line_pitch))
            if item.outline is not None:
                draw.text(xy, line, font=font, fill=item.outline, anchor="ls", stroke_width=outline_px + faux_px,
                          stroke_fill=item.outline)
            draw.text(xy, line, font=font, fill=item.fill, anchor="ls", stroke_width=faux_px, stroke_fill=item.fill)
            lx0, ly0, lx1, ly1 = font.getbbox(line, anchor="ls", stroke_width=outline_px + faux_px)
            line_box = (int(xy[0] + lx0), int(xy[1] + ly0), int(xy[0] + lx1), int(xy[1] + ly1))
            if lx1 > lx0 and ly1 > ly0:
                ink = line_box if ink is None else union(ink, line_box)
        ink = ink or placement.box
        background = background_color(canvas, ink)
        contrast = contrast_ratio(item.fill, background)
        return {
            "index": item.index,
            "box": list(ink),
            "region": list(placement.region),
            "source_box": list(item.src),
            "font_px": size,
            "source_px": round(item.source.px, 1),
            "source_measured": item.source.measured,
            "size_group": plan.group_of.get(item.index),
            "bold": item.weight != "regular",
            "weight": item.weight,
            "source_stroke_ratio": item.source.stroke_ratio,
            "face": f"{item.face.label()}" + (f"+faux{faux_px}" if faux_px else ""),
            "fill": list(item.fill),
            "outline": list(item.outline) if item.outline is not None else None,
            "outline_px": outline_px,
            "outline_from_source": item.outline_from_source,
            "background": list(background),
            "contrast": round(contrast, 2),
            "outline_contrast": round(contrast_ratio(item.fill, item.outline), 2) if item.outline else None,
            "fits": placement.fits,
            "demoted": placement.demoted,
            "extended": not contains(item.src, ink),
            "lines": list(layout.lines),
            "alignment": placement.alignment,
            "source_alignment": item.alignment,
            # the bar / pill / badge the text sat in and was laid out inside (None: free-space rules)
            "container": item.container.record() if item.container is not None else None,
            "in_container": placement.container is not None,
        }


def _legacy_record(r: dict[str, Any]) -> dict[str, Any]:
    """The per-block entry of ``extra["blocks"]`` as before the layout record existed."""
    return {"index": r["index"], "font_px": r["font_px"], "lines": r["lines"], "box": r["source_box"],
            "drawn_box": r["box"], "fill": r["fill"], "outline": r["outline"], "contrast": r["contrast"],
            "extended": r["extended"], "overflow": not r["fits"]}


def _layout_summary(records: list[dict[str, Any]], kept: list[Box], width: int, height: int, min_px: int,
                    plan: PagePlan, dropped: list[int]) -> dict[str, Any]:
    boxes = [tuple(r["box"]) for r in records]
    overlaps = sum(1 for a in range(len(boxes)) for b in range(a + 1, len(boxes))
                   if intersection(boxes[a], boxes[b]) is not None)  # type: ignore[arg-type]
    overlaps += sum(1 for a in boxes for k in kept if intersection(a, k) is not None)  # type: ignore[arg-type]
    outside = sum(1 for b in boxes if b[0] < 0 or b[1] < 0 or b[2] > width or b[3] > height)
    return {
        "blocks": [{k: r[k] for k in ("index", "box", "region", "font_px", "source_px", "bold", "outline", "fits",
                                      "lines", "contrast", "alignment", "weight", "fill", "size_group",
                                      "source_measured", "demoted", "container", "in_container")}
                   for r in records],
        "overlaps": overlaps,
        "outside": outside,
        "min_font_blocks": sum(1 for r in records if r["font_px"] <= min_px < r["source_px"]),
        "overflow_blocks": sum(1 for r in records if not r["fits"]) + len(dropped),
        "dropped": dropped,  # no room for the text anywhere in the image: not drawn
        "container_blocks": sum(1 for r in records if r["in_container"]),
        "size_groups": [{"font_px": px, "size_class": plan.group_class[n],
                         "blocks": sorted(i for i, g in plan.group_of.items() if g == n)}
                        for n, px in enumerate(plan.group_px)],
    }


def _contrasting(rgb: RGB) -> RGB:
    return BLACK if contrast_ratio(rgb, BLACK) >= contrast_ratio(rgb, WHITE) else WHITE


def _int_box(bbox: Sequence[float], width: int, height: int) -> Box:
    x0, y0, x1, y1 = (float(v) for v in list(bbox)[:4])
    if not all(np.isfinite([x0, y0, x1, y1])):
        return 0, 0, 0, 0
    return (max(0, int(np.floor(x0))), max(0, int(np.floor(y0))), min(width, int(np.ceil(x1))),
            min(height, int(np.ceil(y1))))


def _obstacle_box(obstacle: TextBlock | Sequence[float], width: int, height: int) -> Box | None:
    bbox = obstacle.bbox if isinstance(obstacle, TextBlock) else obstacle
    try:
        box = _int_box(bbox, width, height)
    except (TypeError, ValueError):
        raise EngineError(f"obstacle {obstacle!r} is not a TextBlock or an (x0, y0, x1, y1) box", stage="render",
                          transient=False) from None
    return box if box[2] > box[0] and box[3] > box[1] else None


def _restore_original(image: np.ndarray, original: np.ndarray, blocks: list[TextBlock], indices: list[int]) -> None:
    """Put the source pixels of these blocks back (the eraser's mask reached ~0.3 line heights around them), but
    not over a neighbouring block's erased area."""
    height, width = image.shape[:2]

    def padded(block: TextBlock) -> Box:
        line_h = statistics.median(polygon_line_height(r) for r in block.regions) if block.regions else (
            block.bbox[3] - block.bbox[1])
        return _int_box(expand_f(block.bbox, 0.35 * line_h + 2), width, height)

    keep = set(indices)
    for i in indices:
        x0, y0, x1, y1 = padded(blocks[i])
        sel = np.ones((max(0, y1 - y0), max(0, x1 - x0)), dtype=bool)
        for j, other in enumerate(blocks):
            if j in keep:
                continue
            ox0, oy0, ox1, oy1 = padded(other)
            sel[max(0, oy0 - y0):max(0, oy1 - y0), max(0, ox0 - x0):max(0, ox1 - x0)] = False
        image[y0:y1, x0:x1][sel] = original[y0:y1, x0:x1][sel]


def expand_f(bbox: Sequence[float], m: float) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in list(bbox)[:4])
    return x0 - m, y0 - m, x1 + m, y1 + m


def _looks_vertical(block: TextBlock) -> bool:
    """A block whose lines are tall narrow columns of several characters (vertical CJK)."""
    if not block.regions:
        return False
    return sum(1 for r in block.regions if region_is_vertical(r)) > len(block.regions) / 2


def _font_name(fonts: FontSet, choice: FontChoice) -> tuple[str, str]:
    try:
        family, style = fonts.font(choice, 12).getname()
        return family or "", style or ""
    except OSError:
        return "", ""
