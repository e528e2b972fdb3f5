"""Page layout of the render stage on generated pages: sizes per source size, free space, weight, outline, contrast,
alignment, overrides and the ``extra["layout"]`` record.

Every page is drawn here with Noto Sans CJK at known sizes and weights; the "erased" image is the same page drawn
without its text, so what the renderer measures from the glyphs can be checked against what was drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from imgtrans_pipeline.core.errors import EngineError
from imgtrans_pipeline.core.types import TextBlock, TextRegion
from imgtrans_pipeline.engines.render import FontSet, TextRenderer, contrast_ratio, infer_alignments
from imgtrans_pipeline.engines.render.measure import analyse_block, stroke_width

NOTO = Path("/usr/share/fonts/opentype/noto")
SC = 2  # Simplified Chinese face in the collections
PAPER = (246, 244, 240)
RGB = tuple[int, int, int]


def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    path = NOTO / ("NotoSansCJK-Bold.ttc" if bold else "NotoSansCJK-Regular.ttc")
    if not path.is_file():
        pytest.skip(f"{path} not installed")
    return ImageFont.truetype(str(path), size, index=SC)


@dataclass
class Line:
    text: str
    x: int
    y: int  # top of the em box
    size: int
    bold: bool = False
    color: RGB = (25, 25, 30)
    outline: tuple[RGB, int] | None = None


def _page(width: int, height: int, blocks: list[list[Line]], *, alignments: list[str] | None = None,
          ground: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, list[TextBlock]]:
    """(original, erased, blocks): each block's lines drawn on ``ground`` (plain paper by default), with OCR-like
    polygons (the ink box padded by ~0.15 em, as detectors do)."""
    erased = ground.copy() if ground is not None else np.full((height, width, 3), PAPER, np.uint8)
    img = Image.fromarray(erased.copy())
    draw = ImageDraw.Draw(img)
    out: list[TextBlock] = []
    for n, lines in enumerate(blocks):
        regions = []
        for line in lines:
            font = _font(line.size, line.bold)
            stroke = line.outline[1] if line.outline else 0
            draw.text((line.x, line.y), line.text, font=font, fill=line.color, stroke_width=stroke,
                      stroke_fill=line.outline[0] if line.outline else None)
            x0, y0, x1, y1 = draw.textbbox((line.x, line.y), line.text, font=font, stroke_width=stroke)
            pad_y, pad_x = 0.15 * line.size, 0.1 * line.size
            poly = [(x0 - pad_x, y0 - pad_y), (x1 + pad_x, y0 - pad_y), (x1 + pad_x, y1 + pad_y),
                    (x0 - pad_x, y1 + pad_y)]
            regions.append(TextRegion(polygon=poly, text=line.text, score=0.99))
        xs = [p[0] for r in regions for p in r.polygon]
        ys = [p[1] for r in regions for p in r.polygon]
        align = alignments[n] if alignments else "left"
        out.append(TextBlock(regions=regions, text="".join(r.text for r in regions),
                             bbox=(min(xs), min(ys), max(xs), max(ys)), alignment=align))
    return np.asarray(img).copy(), erased, out


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2) > 0


def _inside(box: list[int] | tuple[int, ...], outer: tuple[float, ...]) -> bool:
    return box[0] >= outer[0] and box[1] >= outer[1] and box[2] <= outer[2] and box[3] <= outer[3]


def _overlap(a: list[int] | tuple[float, ...], b: list[int] | tuple[float, ...]) -> bool:
    return max(a[0], b[0]) < min(a[2], b[2]) and max(a[1], b[1]) < min(a[3], b[3])


def _drawn_stroke_ratio(out_px: np.ndarray, erased: np.ndarray, info: dict) -> float:
    """Stroke width (em) of the text drawn in a block, from the rendered pixels."""
    x0, y0, x1, y1 = info["box"]
    fill = np.asarray(info["fill"], np.float64)
    ground = erased[y0:y1, x0:x1].astype(np.float64)
    span = fill - ground
    t = ((out_px[y0:y1, x0:x1].astype(np.float64) - ground) * span).sum(axis=2) / np.maximum(
        (span ** 2).sum(axis=2), 1.0)
    return stroke_width(np.clip(t, 0, 1)) / info["font_px"]


@pytest.fixture(scope="module")
def renderer() -> TextRenderer:
    return TextRenderer()


@pytest.fixture(scope="module")
def fonts() -> FontSet:
    return FontSet()


# --- measuring the source --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [14, 22, 36, 60])
@pytest.mark.parametrize("text", ["新品上市限时特惠", "Summer Sale 50%", "到手价12期免息"])
def test_source_size_is_measured_from_the_glyphs(fonts: FontSet, text: str, size: int) -> None:
    original, erased, blocks = _page(60 + size * len(text), 3 * size, [[Line(text, 20, size, size)]])
    choice = fonts.resolve("zh")
    measured = analyse_block(original, erased, blocks[0], lambda s: fonts.font(choice, s))
    assert measured.measured
    assert abs(measured.px - size) <= max(1.0, 0.06 * size), measured


@pytest.mark.parametrize("size", [16, 24, 48])
def test_source_weight_is_measured_from_the_glyphs(fonts: FontSet, size: int) -> None:
    choice = fonts.resolve("zh")
    weights = {}
    for bold in (False, True):
        original, erased, blocks = _page(40 + 10 * size, 3 * size, [[Line("透气清爽摆脱闷热感", 20, size, size, bold)]])
        weights[bold] = analyse_block(original, erased, blocks[0], lambda s: fonts.font(choice, s)).weight
    assert weights == {False: "regular", True: "bold"}


# --- sizes -----------------------------------------------------------------------------------------------------


def test_headline_and_body_sizes_keep_their_order_and_stay_near_the_source(renderer: TextRenderer) -> None:
    """A 64 px headline and three 28 px body lines on a roomy page: the headline stays the largest, near 64 px;
    the body lines (one source size) share one rendered size near 28 px."""
    original, erased, blocks = _page(900, 620, [
        [Line("新品上市", 330, 40, 64, bold=True)],
        [Line("全场包邮", 60, 220, 28)],
        [Line("七天无理由退换", 60, 300, 28)],
        [Line("正品保证", 60, 380, 28)],
        [Line("限时优惠", 60, 500, 40)],
    ], alignments=["center", "left", "left", "left", "left"])
    translations = ["New arrivals", "Free shipping on everything", "Seven-day returns without reason",
                    "Genuine guarantee", "Limited-time offer"]
    out = renderer.render(erased, original, blocks, translations, "en")
    layout = out.extra["layout"]
    info = {b["index"]: b for b in layout["blocks"]}
    head, body, sub = info[0], [info[1], info[2], info[3]], info[4]
    assert head["font_px"] >= 0.9 * 64 and abs(head["source_px"] - 64) <= 4
    assert len({b["font_px"] for b in body}) == 1  # one source size, one rendered size
    assert body[0]["font_px"] >= 0.9 * 28
    assert head["font_px"] > sub["font_px"] > body[0]["font_px"]  # the source's order is kept
    assert layout["overlaps"] == 0 and layout["outside"] == 0 and layout["overflow_blocks"] == 0


def test_a_squeezed_headline_never_ends_up_smaller_than_the_body(renderer: TextRenderer) -> None:
    """The headline's box is boxed in on all sides; the body has room. The body may not outgrow the headline."""
    original, erased, blocks = _page(700, 400, [
        [Line("新品", 280, 20, 48, bold=True)],
        [Line("左", 200, 20, 48)],
        [Line("右", 420, 20, 48)],
        [Line("舒适", 40, 250, 24)],
    ])
    translations = ["Brand new arrivals of the season", "L", "R", "Comfortable"]
    out = renderer.render(erased, original, blocks, translations, "en", obstacles=[(0, 90, 700, 110)])
    info = {b["index"]: b for b in out.extra["layout"]["blocks"]}
    assert info[0]["font_px"] < 0.9 * 48  # it had to shrink
    assert info[3]["font_px"] <= info[0]["font_px"]
    assert info[1]["font_px"] == info[2]["font_px"] >= info[0]["font_px"]  # same source size as the headline


def test_one_tight_spot_does_not_shrink_its_whole_size_class() -> None:
    """Two 48 px headlines, one of them boxed in by text left in the image; 24 px body copy below. The roomy
    headline keeps its size instead of dropping to its boxed-in twin's; the order holds (the body is not drawn
    larger than the boxed-in headline); a class-mate right next to the boxed-in one keeps its size. With no
    smaller class on the page, the two headlines share one size."""
    blocks = [
        [Line("新品上市", 60, 30, 48, bold=True)],
        [Line("限时", 380, 300, 48, bold=True)],
        [Line("全场包邮", 60, 520, 24)],
        [Line("七天无理由退换", 60, 580, 24)],
    ]
    translations = ["New arrivals", "Limited-time offer for members", "Free shipping on everything",
                    "Seven-day returns"]
    box_in = [(300, 262, 372, 390), (486, 262, 560, 390), (300, 250, 560, 284), (300, 372, 560, 390)]
    original, erased, page = _page(900, 700, blocks)
    out = TextRenderer().render(erased, original, page, translations, "en", obstacles=box_in)
    layout = out.extra["layout"]
    info = {b["index"]: b for b in layout["blocks"]}
    roomy, boxed, body = info[0], info[1], [info[2], info[3]]
    assert boxed["font_px"] < 0.6 * 48  # it had to shrink
    assert roomy["font_px"] >= 0.9 * 48  # ... alone
    assert body[0]["font_px"] == body[1]["font_px"] <= boxed["font_px"]  # the order holds
    assert layout["overlaps"] == 0 and layout["outside"] == 0 and layout["overflow_blocks"] == 0
    # A class-mate right under the boxed-in headline (a pair that reads as one set) shrinks with it.
    original, erased, page = _page(900, 700, [*blocks, [Line("特价", 380, 396, 48, bold=True)]])
    out = TextRenderer().render(erased, original, page, [*translations, "Deals"], "en", obstacles=box_in)
    info = {b["index"]: b for b in out.extra["layout"]["blocks"]}
    assert info[4]["font_px"] == info[1]["font_px"] < 0.6 * 48 and info[0]["font_px"] >= 0.9 * 48
    assert out.extra["layout"]["overlaps"] == 0
    # Without the body copy the two headlines keep one size.
    original, erased, page = _page(900, 700, blocks[:2])
    out = TextRenderer().render(erased, original, page, translations[:2], "en", obstacles=box_in)
    sizes = {b["font_px"] for b in out.extra["layout"]["blocks"]}
    assert len(sizes) == 1 and sizes.pop() < 0.6 * 48


def test_style_groups_keep_a_cramped_label_from_shrinking_body_copy() -> None:
    """Body copy and a red label in a tight frame share a source size. With the strict page-wide order they share
    the rendered size too (the label pulls the body down); with ``sizes_by_style`` the label's different colour
    makes it its own style, and by default the label sits in a container (the frame) and shrinks on its own: the
    body keeps its size either way."""
    ground = np.full((420, 800, 3), PAPER, np.uint8)
    ground[250:330, 500:640] = (60, 60, 70)  # a dark frame with room for a short label only
    ground[256:324, 506:634] = PAPER
    original, erased, blocks = _page(800, 420, [
        [Line("面料柔软亲肤", 40, 40, 28)],
        [Line("版型修身显瘦", 40, 140, 28)],
        [Line("红色款", 528, 276, 28, color=(200, 30, 30))],
    ], ground=ground)
    translations = ["Soft fabric that is kind to the skin", "A slim cut that flatters", "Red version in stock"]
    shared = TextRenderer(container_own_size=False).render(erased, original, blocks, translations, "en")
    styled = TextRenderer(sizes_by_style=True).render(erased, original, blocks, translations, "en")
    default = TextRenderer().render(erased, original, blocks, translations, "en")
    sizes = {name: {b["index"]: b["font_px"] for b in out.extra["layout"]["blocks"]}
             for name, out in (("shared", shared), ("styled", styled), ("default", default))}
    assert len(set(sizes["shared"].values())) == 1 and sizes["shared"][2] < 0.8 * 28
    for name in ("styled", "default"):
        assert sizes[name][0] == sizes[name][1] >= 0.9 * 28
        assert sizes[name][2] == sizes["shared"][2]
    for out in (shared, styled, default):
        label = next(b for b in out.extra["layout"]["blocks"] if b["index"] == 2)
        assert _inside(label["box"], (506, 256, 634, 324))  # the frame's edges are graphics: no growth over them


# --- free space ------------------------------------------------------------------------------------------------


def test_growth_stops_at_other_blocks_and_never_covers_kept_text(renderer: TextRenderer) -> None:
    original, erased, blocks = _page(640, 300, [
        [Line("产品介绍", 40, 40, 40)],
        [Line("价格", 420, 40, 40)],
    ])
    # A price left in the image (kept text) right under the first block.
    kept_img = Image.fromarray(original)
    ImageDraw.Draw(kept_img).text((40, 110), "¥199", font=_font(40), fill=(200, 30, 30))
    original = np.asarray(kept_img).copy()
    erased_with_kept = erased.copy()
    erased_with_kept[100:170, 30:200] = original[100:170, 30:200]  # the eraser left the price alone
    kept = (34, 104, 170, 166)
    translations = ["Product introduction and technical specification", "Price"]
    out = renderer.render(erased_with_kept, original, blocks, translations, "en", obstacles=[kept])
    layout = out.extra["layout"]
    a, b = (next(x for x in layout["blocks"] if x["index"] == i) for i in (0, 1))
    assert layout["overlaps"] == 0 and a["fits"] and b["fits"]
    assert not _overlap(a["box"], b["box"])
    assert not _overlap(a["box"], blocks[1].bbox)  # nor over the other block's source place
    assert not _overlap(a["box"], kept) and not _overlap(b["box"], kept)
    assert np.array_equal(out.pixels[kept[1]:kept[3], kept[0]:kept[2]], original[kept[1]:kept[3], kept[0]:kept[2]])
    assert a["font_px"] >= 30  # it wrapped into the free space below-right instead of shrinking to a sliver


def test_growth_avoids_busy_graphics(renderer: TextRenderer) -> None:
    rng = np.random.default_rng(7)
    ground = np.full((300, 800, 3), PAPER, np.uint8)
    ground[0:300, 330:800] = rng.integers(0, 255, (300, 470, 3), dtype=np.uint8)  # a photo beside the title
    original, erased, blocks = _page(800, 300, [[Line("产品介绍", 40, 60, 44)]], ground=ground)
    out = renderer.render(erased, original, blocks, ["Product introduction"], "en")
    info = out.extra["layout"]["blocks"][0]
    assert info["box"][2] <= 330 and info["fits"]
    assert info["region"][2] <= 330
    _ys, xs = np.nonzero(_changed(out.pixels, erased))
    assert xs.max() < 330


def test_growth_stops_at_the_faint_edge_of_a_card() -> None:
    """A dark card on a black page: its edge is only ~12 grey levels, but text must not spill off the card."""
    ground = np.full((300, 900, 3), 12, np.uint8)
    ground[20:280, 20:420] = (30, 30, 32)
    original, erased, blocks = _page(900, 300, [[Line("全天候显示", 200, 120, 30, color=(235, 235, 235))]],
                                     ground=ground)
    out = TextRenderer().render(erased, original, blocks, ["Always-on display, all day and all night"], "en")
    info = out.extra["layout"]["blocks"][0]
    assert info["fits"] and _inside(info["box"], (20, 20, 420, 280))
    assert info["font_px"] >= 0.9 * 30  # it wrapped inside the card instead of shrinking


def test_text_near_the_right_edge_stays_inside_the_image(renderer: TextRenderer) -> None:
    width = 600
    original, erased, blocks = _page(width, 240, [[Line("新品上市特价", 430, 60, 26)]])
    out = renderer.render(erased, original, blocks, ["New products on the market at special prices"], "en")
    layout = out.extra["layout"]
    info = layout["blocks"][0]
    assert layout["outside"] == 0 and info["fits"]
    assert info["box"][0] >= 0 and info["box"][2] <= width
    _ys, xs = np.nonzero(_changed(out.pixels, erased))
    assert xs.max() <= width - 3  # no glyph cut by the edge
    assert info["box"][0] <= xs.min() and xs.max() < info["box"][2]  # the record is where the ink is


# --- weight, colour, outline -----------------------------------------------------------------------------------


def test_bold_source_is_drawn_bold_and_regular_stays_regular(renderer: TextRenderer) -> None:
    ratios = {}
    for bold in (False, True):
        original, erased, blocks = _page(800, 200, [[Line("透气清爽摆脱闷热感", 40, 60, 48, bold=bold)]])
        out = renderer.render(erased, original, blocks, ["Breathable and fresh"], "en")
        info = out.extra["layout"]["blocks"][0]
        assert info["bold"] is bold
        ratios[bold] = _drawn_stroke_ratio(out.pixels, erased, info)
    # Noto Sans Regular strokes are ~0.07 em, Bold ~0.11 em.
    assert ratios[False] < 0.09 < ratios[True], ratios


def test_outlined_source_keeps_its_outline_colour(renderer: TextRenderer) -> None:
    ground = np.full((220, 800, 3), (120, 170, 220), np.uint8)
    line = Line("夏季清凉特惠", 40, 60, 56, bold=True, color=(255, 255, 255), outline=((150, 20, 30), 4))
    original, erased, blocks = _page(800, 220, [[line]], ground=ground)
    out = renderer.render(erased, original, blocks, ["Summer sale"], "en")
    info = out.extra["layout"]["blocks"][0]
    assert info["outline"] is not None
    assert np.abs(np.asarray(info["outline"]) - (150, 20, 30)).max() <= 30
    assert np.abs(np.asarray(info["fill"]) - (255, 255, 255)).max() <= 20
    x0, y0, x1, y1 = info["box"]
    crop = out.pixels[y0:y1, x0:x1].astype(int)
    near_outline = (np.abs(crop - (150, 20, 30)).max(axis=2) <= 30).sum()
    near_fill = (np.abs(crop - 255).max(axis=2) <= 20).sum()
    assert near_outline > 0.3 * near_fill > 100  # a real rim of the outline colour around white glyphs


def test_new_background_with_too_little_contrast_gets_an_outline(renderer: TextRenderer) -> None:
    """Dark text on a white label; the eraser removed the label and left dark ground: the fill alone would vanish."""
    ground = np.full((200, 700, 3), (40, 45, 60), np.uint8)
    original = ground.copy()
    original[40:140, 30:420] = 255  # the white label behind the text
    original, _, blocks = _page(700, 200, [[Line("限时折扣", 60, 60, 40, color=(30, 30, 40))]], ground=original)
    out = renderer.render(ground, original, blocks, ["Limited discount"], "en")
    info = out.extra["layout"]["blocks"][0]
    fill = tuple(info["fill"])
    assert contrast_ratio(fill, (40, 45, 60)) < 3.0  # the source colour is kept ...
    assert info["outline"] is not None and contrast_ratio(fill, tuple(info["outline"])) >= 3.0  # ... and outlined
    x0, y0, x1, y1 = info["box"]
    crop = out.pixels[y0:y1, x0:x1].astype(int)
    assert (np.abs(crop - np.asarray(info["outline"])).max(axis=2) <= 12).sum() > 150


def test_slightly_faint_text_is_darkened_instead_of_outlined(renderer: TextRenderer) -> None:
    original, erased, blocks = _page(700, 160, [[Line("价格说明见详情页", 40, 50, 24, color=(160, 160, 162))]])
    out = renderer.render(erased, original, blocks, ["See the details page for pricing"], "en")
    info = out.extra["layout"]["blocks"][0]
    assert info["outline"] is None
    assert info["contrast"] >= 3.0
    assert max(abs(a - b) for a, b in zip(info["fill"], (160, 160, 162), strict=True)) <= 60


# --- alignment -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alignment", ["left", "center", "right"])
def test_alignment_of_a_paragraph_is_kept(renderer: TextRenderer, alignment: str) -> None:
    width, size = 700, 28
    lines = ["多种颜色可选", "纯棉面料亲肤透气", "经典版型"]
    anchor = {"left": 60, "center": 350, "right": 640}[alignment]
    placed = []
    for n, text in enumerate(lines):
        w = _font(size).getlength(text)
        x = {"left": anchor, "center": anchor - w / 2, "right": anchor - w}[alignment]
        placed.append(Line(text, round(x), 60 + n * 44, size))
    original, erased, blocks = _page(width, 260, [placed], alignments=[alignment])
    translation = "Many colours to choose from, pure cotton that breathes, a classic cut"
    out = renderer.render(erased, original, blocks, [translation], "en")
    info = out.extra["layout"]["blocks"][0]
    assert info["alignment"] == alignment and len(info["lines"]) >= 2
    changed = _changed(out.pixels, erased)
    x0, y0, x1, y1 = info["box"]
    # Each drawn line's ink: left edges, centres or right edges line up, at the source's anchor.
    rows = changed[y0:y1, x0:x1].any(axis=1)
    spans, start = [], None
    for y, on in enumerate([*rows, False]):
        if on and start is None:
            start = y
        elif not on and start is not None:
            if y - start >= 6:
                cols = np.nonzero(changed[y0 + start:y0 + y, x0:x1].any(axis=0))[0]
                spans.append((x0 + cols.min(), x0 + cols.max() + 1))
            start = None
    assert len(spans) >= 2
    edge = {"left": [s[0] for s in spans], "center": [(s[0] + s[1]) / 2 for s in spans],
            "right": [s[1] for s in spans]}[alignment]
    assert max(edge) - min(edge) <= 4, spans
    assert abs(np.mean(edge) - anchor) <= 8, (spans, anchor)


def _ink_columns(out_px: np.ndarray, erased: np.ndarray, box: list[int]) -> tuple[int, int]:
    x0, y0, x1, y1 = box
    cols = np.nonzero(_changed(out_px, erased)[y0:y1, x0:x1].any(axis=0))[0]
    return x0 + int(cols.min()), x0 + int(cols.max()) + 1


@pytest.mark.parametrize("translation", ["Details", "Presentation of the details"])
def test_a_centred_title_keeps_its_centre_when_it_grows_or_shrinks(renderer: TextRenderer,
                                                                     translation: str) -> None:
    """A one-line title centred on the page (a narrower and a wider translation): the drawn ink is centred on the
    source ink within 2 px."""
    width, size, text = 800, 56, "细节展示"
    w = _font(size, True).getlength(text)
    original, erased, blocks = _page(width, 300, [[Line(text, round(width / 2 - w / 2), 60, size, bold=True)]],
                                     alignments=["center"])
    src_x0, src_x1 = _ink_columns(original, erased, [0, 0, width, 300])
    out = renderer.render(erased, original, blocks, [translation], "en")
    (info,) = out.extra["layout"]["blocks"]
    x0, x1 = _ink_columns(out.pixels, erased, info["box"])
    assert info["alignment"] == "center" and info["font_px"] >= 0.9 * size
    assert abs((x0 + x1) / 2 - (src_x0 + src_x1) / 2) <= 2, (x0, x1, src_x0, src_x1)


def test_a_right_aligned_line_grows_leftwards(renderer: TextRenderer) -> None:
    """One-line blocks stacked on one right edge (a price column): each longer translation keeps that edge."""
    size, right = 26, 760
    texts = ["全场包邮", "七天无理由退换"]
    lines = [[Line(t, round(right - _font(size).getlength(t)), 80 + 50 * n, size)] for n, t in enumerate(texts)]
    original, erased, blocks = _page(800, 260, lines)
    out = renderer.render(erased, original, blocks, ["Free shipping on everything", "Seven-day returns"], "en")
    for info in out.extra["layout"]["blocks"]:
        src_x0, src_x1 = _ink_columns(original, erased, [0, round(blocks[info["index"]].bbox[1]), 800,
                                                          round(blocks[info["index"]].bbox[3])])
        x0, x1 = _ink_columns(out.pixels, erased, info["box"])
        assert info["alignment"] == "right"
        assert abs(x1 - src_x1) <= 2 and x0 < src_x0  # grown leftwards from the same right edge


def test_a_subline_keeps_the_edge_of_its_headline(renderer: TextRenderer) -> None:
    """A headline over a much smaller subline, both set on one left edge in the right half of a banner (the OCR's
    one-line guess for the subline is "right"): the subline is drawn from that left edge."""
    original, erased, blocks = _page(1000, 360, [
        [Line("低至半价", 560, 60, 72, bold=True)],
        [Line("高倍防晒轻薄冰爽", 560, 160, 26)],
    ], alignments=["left", "right"])
    out = renderer.render(erased, original, blocks, ["Half price", "Strong sun protection, light and cool"], "en")
    info = {b["index"]: b for b in out.extra["layout"]["blocks"]}
    assert info[1]["alignment"] == "left"
    src_x0, _ = _ink_columns(original, erased, [0, 150, 1000, 200])
    x0, _ = _ink_columns(out.pixels, erased, info[1]["box"])
    assert abs(x0 - src_x0) <= 3


def test_a_pixel_of_ocr_jitter_is_no_alignment() -> None:
    """A column of two-character table labels (OCR boxes one pixel apart on one edge, the real pages' boxes): no
    edge is shared more than another, so it stays a guess instead of becoming right-aligned by a pixel."""
    boxes = [(71, 2834, 145, 2882), (72, 2898, 143, 2943), (72, 2959, 143, 3004), (73, 3022, 143, 3067)]
    assert infer_alignments([[b] for b in boxes], ["left"] * 4) == [("left", False)] * 4
    # Clearly different widths on one left edge are evidence.
    boxes = [(72, 100, 143, 140), (72, 150, 260, 190), (73, 200, 190, 240)]
    assert infer_alignments([[b] for b in boxes], ["center"] * 3) == [("left", True)] * 3


def test_a_centred_list_of_one_line_blocks_is_drawn_centred(renderer: TextRenderer) -> None:
    """OCR makes each line of a centred list its own block ("left" by default); the list's shared centre wins."""
    size, cx = 26, 200
    texts = ["赠送耳机", "学生专享优惠补贴", "超快闪充", "以旧换新"]
    blocks_lines = []
    for n, text in enumerate(texts):
        w = _font(size).getlength(text)
        blocks_lines.append([Line(text, round(cx - w / 2), 40 + n * 50, size)])
    original, erased, blocks = _page(700, 260, blocks_lines)
    assert all(b.alignment == "left" for b in blocks)
    out = renderer.render(erased, original, blocks, ["Free earphones", "Student discount", "Fast charging",
                                                    "Trade-in"], "en")
    for info in out.extra["layout"]["blocks"]:
        assert info["alignment"] == "center"
        assert abs((info["box"][0] + info["box"][2]) / 2 - cx) <= 4


# --- overrides, record, bad input ------------------------------------------------------------------------------


def test_overrides_text_size_colour_and_keep_original(renderer: TextRenderer) -> None:
    original, erased, blocks = _page(700, 300, [
        [Line("新品上市", 40, 30, 40)],
        [Line("全场包邮", 40, 130, 28)],
        [Line("正品保证", 40, 220, 28)],
    ])
    overrides = [{"text": "Just in", "font_px": 30, "color": "#c81e1e"}, None, {"keep_original": True}]
    out = renderer.render(erased, original, blocks, ["New arrivals", "Free shipping", "Genuine"], "en",
                          overrides=overrides)
    layout = out.extra["layout"]
    info = {b["index"]: b for b in layout["blocks"]}
    assert set(info) == {0, 1} and out.extra["kept_original"] == [2]
    assert info[0]["lines"] == ["Just in"] and info[0]["font_px"] == 30 and info[0]["fill"] == [200, 30, 30]
    x0, y0, x1, y1 = (round(v) for v in blocks[2].bbox)
    assert np.array_equal(out.pixels[y0:y1, x0:x1], original[y0:y1, x0:x1])  # the source text is back
    with pytest.raises(EngineError):
        renderer.render(erased, original, blocks, ["a", "b", "c"], "en", overrides=[None])
    for bad in ([{"color": "blue"}, None, None], [{"font_px": "big"}, None, None], ["keep", None, None]):
        with pytest.raises(EngineError):
            renderer.render(erased, original, blocks, ["a", "b", "c"], "en", overrides=bad)


def test_layout_record_matches_the_pixels(renderer: TextRenderer) -> None:
    original, erased, blocks = _page(800, 400, [
        [Line("夏季新品", 260, 30, 56, bold=True)],
        [Line("轻薄透气", 60, 200, 30)],
        [Line("舒适百搭", 460, 200, 30)],
    ], alignments=["center", "left", "left"])
    out = renderer.render(erased, original, blocks, ["Summer collection", "Light and airy", "Goes with anything"],
                          "en")
    layout = out.extra["layout"]
    assert {"blocks", "overlaps", "outside", "min_font_blocks", "overflow_blocks"} <= set(layout)
    keys = {"index", "box", "region", "font_px", "source_px", "bold", "outline", "fits", "lines", "contrast",
            "alignment"}
    changed = _changed(out.pixels, erased)
    covered = np.zeros_like(changed)
    for info in layout["blocks"]:
        assert keys <= set(info)
        assert _inside(info["box"], tuple(info["region"]))
        x0, y0, x1, y1 = info["box"]
        covered[y0:y1, x0:x1] = True
    assert not (changed & ~covered).any()  # every drawn pixel is inside a recorded box


@pytest.mark.parametrize(("width", "height"), [(1, 1), (3, 200), (200, 3)])
def test_tiny_images_do_not_crash(renderer: TextRenderer, width: int, height: int) -> None:
    img = np.full((height, width, 3), 200, np.uint8)
    block = TextBlock(regions=[TextRegion([(0, 0), (width, 0), (width, height), (0, height)], "字", 0.9)],
                      text="字", bbox=(0, 0, width, height))
    out = renderer.render(img, img, [block], ["Word"], "en")
    assert out.pixels.shape == img.shape
    assert out.extra["layout"]["outside"] == 0


def test_degenerate_polygons_and_blocks_outside_the_image_are_skipped(renderer: TextRenderer) -> None:
    img = np.full((100, 200, 3), 240, np.uint8)
    flat = TextBlock(regions=[TextRegion([(10, 10), (10, 10), (10, 10), (10, 10)], "字", 0.9)], text="字",
                     bbox=(10, 10, 10, 10))
    away = TextBlock(regions=[TextRegion([(500, 500), (600, 500), (600, 530), (500, 530)], "字", 0.9)], text="字",
                     bbox=(500, 500, 600, 530))
    nan = TextBlock(regions=[TextRegion([(float("nan"), 0), (5, 0), (5, 5), (0, 5)], "字", 0.9)], text="字",
                    bbox=(float("nan"), 0, 5, 5))
    out = renderer.render(img, img, [flat, away, nan], ["A", "B", "C"], "en")
    assert out.blocks_drawn == 0 and out.extra["skipped_empty"] == 3
    assert np.array_equal(out.pixels, img)
