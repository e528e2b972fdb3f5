"""Erasing only the glyphs (engines.inpaint.erase): generated scenes with known clean plates, one per background
kind, drawn with the synthetic benchmark's painters (real fonts, exact alpha, glyph mask known)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from benchmarks.synthetic_pages import (
    Writer,
    _fabric,
    _flat,
    _gradient,
    _photo,
    badge,
    fonts_available,
    rounded_panel,
    slanted_stripes,
)
from imgtrans_pipeline.engines.inpaint import OpenCvInpainter, build_mask, erase_text

pytestmark = pytest.mark.skipif(not fonts_available(), reason="Noto Sans CJK not installed")

RED = (214, 38, 44)


class Scene:
    """A canvas being decorated, then written on: the clean plate is frozen before the text."""

    def __init__(self, background: np.ndarray, seed: int = 0) -> None:
        self.canvas = background
        self.rng = np.random.default_rng(seed)
        self.writer = Writer(self.canvas, self.rng)
        self.polygons: list[list[tuple[float, float]]] = []

    def text(self, text: str, xy: tuple[int, int], size: int, **kw) -> None:
        if not self.polygons:
            self.writer.freeze()
        line = self.writer.write(text, xy, size, bold=kw.pop("bold", True), **kw)
        # An OCR-like polygon: the ink box with a few pixels of slack.
        x0, y0, x1, y1 = line.box
        pad = max(2, size // 10)
        self.polygons.append([(x0 - pad, y0 - pad), (x1 + pad, y0 - pad), (x1 + pad, y1 + pad), (x0 - pad, y1 + pad)])

    @property
    def pixels(self) -> np.ndarray:
        return np.clip(np.round(self.canvas), 0, 255).astype(np.uint8)

    @property
    def clean(self) -> np.ndarray:
        return np.clip(np.round(self.writer.plate), 0, 255).astype(np.uint8)

    def zone(self) -> np.ndarray:
        """The text zone as the quality benchmark measures it: ink boxes padded by a fifth of the font size."""
        h, w = self.canvas.shape[:2]
        zone = np.zeros((h, w), bool)
        for line in self.writer.lines:
            pad = max(3, line.font_px // 5)
            x0, y0, x1, y1 = line.box
            zone[max(0, y0 - pad):min(h, y1 + pad), max(0, x0 - pad):min(w, x1 + pad)] = True
        return zone


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    diff = a[where].astype(np.float64) - b[where].astype(np.float64)
    mse = float(np.mean(diff ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def inpainter() -> OpenCvInpainter:
    return OpenCvInpainter()


def erase(scene: Scene, inpainter: OpenCvInpainter, **kw):
    source = scene.pixels
    result = erase_text(source, scene.polygons, inpainter, **kw)
    # Outside the mask nothing changes, and the mask stays near the glyphs (not the whole box).
    untouched = result.mask == 0
    assert np.array_equal(result.pixels[untouched], source[untouched])
    return result


def near_glyphs(scene: Scene, result, radius: int) -> None:
    """Every erased pixel lies within ``radius`` px of a pixel the text touched."""
    grown = cv2.dilate(scene.writer.glyphs.astype(np.uint8), np.ones((2 * radius + 1,) * 2, np.uint8)) > 0
    assert not np.any((result.mask > 0) & ~grown)


def test_flat_background_is_restored_exactly_and_only_the_glyphs_change(inpainter: OpenCvInpainter) -> None:
    scene = Scene(_flat(np.random.default_rng(1), 200, 520))
    scene.text("精选优质面料 柔软亲肤", (30, 40), 40, fill=(30, 30, 36))
    scene.text("七天无理由退换货", (30, 120), 28, bold=False, fill=(150, 20, 30))
    result = erase(scene, inpainter)
    assert result.stats["lines_flat"] == 2 and result.stats["lines_fallback"] == 0
    assert psnr(result.pixels, scene.clean, scene.zone()) >= 45
    near_glyphs(scene, result, 3)
    assert result.stats["inpainted_px"] == 0  # no diffusion needed


def test_price_band_keeps_its_colour_and_the_edge_through_the_line(inpainter: OpenCvInpainter) -> None:
    # A red band whose bottom edge runs right through a line of dark text: half of each glyph is on the band,
    # half on the white page. A second, white line sits inside the band, whose ring reaches the white page.
    bg = _flat(np.random.default_rng(2), 260, 560)
    scene = Scene(bg)
    rounded_panel(scene.canvas, scene.rng, (20, 20, 540, 150), RED, radius=16)
    scene.text("到手价", (40, 42), 36, fill=(255, 255, 255))
    scene.text("限时特惠 第二件半价", (60, 128), 40, fill=(24, 24, 28))
    result = erase(scene, inpainter)
    assert result.stats["lines_fallback"] == 0 and result.stats["lines_inpainted"] == 0
    assert psnr(result.pixels, scene.clean, scene.zone()) >= 35
    near_glyphs(scene, result, 3)
    # The band is red again under both lines, the page white, and the edge row stays where it was.
    band = scene.zone()[:145] & (scene.writer.glyphs[:145])
    assert np.abs(result.pixels[:145][band].astype(int) - RED).max() <= 6
    page = scene.zone()[155:] & scene.writer.glyphs[155:]
    assert np.abs(result.pixels[155:][page].astype(int) - scene.clean[155:][page].astype(int)).max() <= 6
    edge_cols = slice(60, 480)
    edge = np.abs(result.pixels[146:154, edge_cols].astype(int) - scene.clean[146:154, edge_cols].astype(int))
    assert np.percentile(edge, 99) <= 40  # at most a pixel of the anti-aliased edge is redrawn hard


def test_white_rounded_label_bar_on_a_photo_keeps_bar_and_corners(inpainter: OpenCvInpainter) -> None:
    scene = Scene(_photo(np.random.default_rng(3), 240, 520))
    bar = (60, 70, 380, 140)
    rounded_panel(scene.canvas, scene.rng, bar, (250, 250, 250), radius=22)
    scene.text("产品参数", (100, 84), 40, fill=(36, 36, 42))
    result = erase(scene, inpainter)
    assert result.stats["lines_flat"] == 1
    assert psnr(result.pixels, scene.clean, scene.zone()) >= 40
    x0, y0, x1, y1 = bar
    inner = np.zeros(scene.writer.glyphs.shape, bool)
    inner[y0 + 6:y1 - 6, x0 + 22:x1 - 22] = True
    assert np.abs(result.pixels[inner].astype(int) - 250).max() <= 4  # still white, no smear from the photo
    corners = np.zeros_like(inner)
    for cx, cy in ((x0, y0), (x1, y0), (x0, y1), (x1, y1)):
        corners[max(0, cy - 24):cy + 24, max(0, cx - 24):cx + 24] = True
    assert np.array_equal(result.pixels[corners], scene.pixels[corners])


def test_gradient_background_is_fitted_not_diffused(inpainter: OpenCvInpainter) -> None:
    scene = Scene(_gradient(np.random.default_rng(4), 220, 600))
    rounded_panel(scene.canvas, scene.rng, (30, 110, 570, 200), (30, 90, 200), radius=12, gradient=True)
    scene.text("新品上市 限量发售", (40, 30), 56, fill=(24, 24, 28))
    scene.text("全国包邮 极速发货", (60, 130), 40, fill=(255, 255, 255))
    result = erase(scene, inpainter)
    # Both from a background model (the headline's may be the profile across the panel's edge), none inpainted.
    assert result.stats["lines_gradient"] + result.stats["lines_flat"] + result.stats["lines_pattern"] == 2
    assert result.stats["lines_gradient"] >= 1
    assert psnr(result.pixels, scene.clean, scene.zone()) >= 38


def test_badge_keeps_its_disc(inpainter: OpenCvInpainter) -> None:
    scene = Scene(_photo(np.random.default_rng(5), 200, 200))
    badge(scene.canvas, (100, 100), 58, RED, star=True)
    scene.text("热卖", (100, 78), 40, fill=(255, 255, 255), anchor="center")
    result = erase(scene, inpainter)
    assert result.stats["lines_inpainted"] == 0 and result.stats["lines_fallback"] == 0
    assert psnr(result.pixels, scene.clean, scene.zone()) >= 35
    disc = np.zeros((200, 200), bool)
    cv2.circle(disc.view(np.uint8), (100, 100), 40, 1, -1)
    assert np.abs(np.median(result.pixels[disc], axis=0) - RED).max() <= 3


@pytest.mark.parametrize("style", ["outline", "shadow"])
def test_outlined_and_shadowed_text_is_erased_with_its_outline_and_shadow(inpainter: OpenCvInpainter,
                                                                          style: str) -> None:
    scene = Scene(_gradient(np.random.default_rng(6), 200, 560))
    scene.text("一切皆有可能", (30, 50), 72, fill=(255, 255, 255), style=style)
    result = erase(scene, inpainter)
    assert result.stats["lines_fallback"] == 0
    assert psnr(result.pixels, scene.clean, scene.zone()) >= 35
    ink = scene.writer.glyphs & (np.abs(scene.pixels.astype(int) - scene.clean.astype(int)).max(axis=2) > 24)
    left = np.abs(result.pixels[ink].astype(int) - scene.clean[ink].astype(int)).max(axis=1) > 24
    assert left.mean() < 0.01


def test_slanted_stripes_keep_their_colours(inpainter: OpenCvInpainter) -> None:
    # The background varies along one direction only: refilled from its profile across the stripes, so the
    # stripes' edges run on under the glyphs where they were.
    scene = Scene(_flat(np.random.default_rng(7), 200, 600))
    slanted_stripes(scene.canvas, scene.rng, (0, 30, 600, 170), (120, 60, 170), (96, 48, 136))
    scene.text("经典永不过时", (40, 60), 72, fill=(255, 255, 255))
    result = erase(scene, inpainter)
    assert result.stats["lines"] == 1 and result.stats["lines_pattern"] == 1
    # The stripes' colours come back (no white left, no grey smear): every erased pixel within the stripes' range.
    inside = np.zeros(result.mask.shape, bool)
    inside[36:164] = True
    erased = result.pixels[(result.mask > 0) & inside].astype(int)
    assert erased.max() <= 175 and erased.min() >= 40
    assert psnr(result.pixels, scene.clean, scene.zone()) >= 40


@pytest.mark.parametrize("make", [_fabric, _photo], ids=["fabric", "photo"])
def test_textured_background_uses_the_inpainter_on_the_glyph_mask(inpainter: OpenCvInpainter, make) -> None:
    scene = Scene(make(np.random.default_rng(8), 200, 520))
    scene.text("柔软亲肤", (40, 60), 64, fill=(255, 255, 255))
    result = erase(scene, inpainter)
    assert result.stats["lines_inpainted"] == 1 and result.stats["inpainted_px"] > 0
    boxes = build_mask(scene.pixels.shape[:2], scene.polygons)  # what the whole line box would have been
    assert (result.mask > 0).sum() < 0.9 * (boxes > 0).sum()
    white_left = (result.pixels[scene.writer.glyphs].astype(int).min(axis=1) > 235).mean()
    assert white_left < 0.01
    assert psnr(result.pixels, scene.clean, scene.zone()) >= 20


def test_kept_text_next_to_an_erased_line_is_never_touched(inpainter: OpenCvInpainter) -> None:
    scene = Scene(_flat(np.random.default_rng(9), 140, 600))
    scene.text("全场包邮", (20, 40), 48, fill=(30, 30, 36))
    scene.text("AURORA", (250, 44), 44, fill=(30, 30, 36), latin=True, kind="brand")
    keep = [scene.polygons.pop()]
    result = erase(scene, inpainter, protect=keep)
    x0, y0 = (int(v) for v in keep[0][0])
    x1, y1 = (int(v) for v in keep[0][2])
    assert np.array_equal(result.pixels[y0:y1, x0:x1], scene.pixels[y0:y1, x0:x1])
    assert result.stats["lines"] == 1 and result.stats["lines_flat"] == 1


def test_a_line_without_separable_text_falls_back_to_its_box_and_is_counted(inpainter: OpenCvInpainter) -> None:
    scene = Scene(_flat(np.random.default_rng(10), 160, 400))
    scene.writer.freeze()
    scene.polygons.append([(40, 50), (300, 50), (300, 100), (40, 100)])  # OCR saw a line where nothing shows
    result = erase(scene, inpainter)
    assert result.stats["lines_fallback"] == 1
    assert sum(result.stats["reasons"].values()) == 1
    assert result.mask[75, 170] == 255  # the box, as before


def test_degenerate_regions_are_recorded_not_fatal(inpainter: OpenCvInpainter) -> None:
    scene = Scene(_flat(np.random.default_rng(11), 120, 300))
    scene.text("推荐", (30, 30), 40, fill=(30, 30, 36))
    polygons = [
        *scene.polygons,
        [(50.0, 50.0)] * 4,  # zero size
        [(900, 900), (950, 900), (950, 940), (900, 940)],  # outside the image
        [(-80, -60), (-10, -60), (-10, -20), (-80, -20)],  # outside, negative
        [(float("nan"), 1.0), (2.0, 3.0), (4.0, 5.0)],  # not finite
        [],
    ]
    result = erase_text(scene.pixels, polygons, inpainter)
    assert result.stats["lines"] == 6
    assert result.stats["lines_skipped"] == 5 and result.stats["lines_flat"] == 1
    assert len(result.stats["line_kinds"]) == 6
    assert psnr(result.pixels, scene.clean, scene.zone()) >= 40
    empty = erase_text(scene.pixels, [], inpainter)
    assert not empty.mask.any() and np.array_equal(empty.pixels, scene.pixels)


def ghost_pill(canvas: np.ndarray, box: tuple[int, int, int, int], color: tuple[int, int, int],
               width: int) -> np.ndarray:
    """The outline of a rounded button ("立即抢购 >" in a thin frame): drawn on ``canvas``, returned as a mask."""
    x0, y0, x1, y1 = box
    radius = (y1 - y0) // 2
    outer = np.zeros(canvas.shape[:2], np.uint8)
    cv2.rectangle(outer, (x0 + radius, y0), (x1 - radius, y1), 1, -1)
    cv2.circle(outer, (x0 + radius, y0 + radius), radius, 1, -1)
    cv2.circle(outer, (x1 - radius, y0 + radius), radius, 1, -1)
    frame = (outer > 0) & ~(cv2.erode(outer, np.ones((2 * width + 1,) * 2, np.uint8)) > 0)
    canvas[frame] = color
    return frame


@pytest.mark.parametrize("make", [_flat, _photo], ids=["flat", "photo"])
def test_a_frame_in_the_text_colour_around_the_line_is_kept(inpainter: OpenCvInpainter, make) -> None:
    # A ghost button: yellow text in a yellow outlined pill a few pixels outside the OCR polygon. The frame is part
    # of the design; only the glyphs go.
    yellow = (250, 216, 40)
    scene = Scene(make(np.random.default_rng(12), 160, 420))
    x0, y0, x1, y1 = scene.writer.measure("立即抢购", 34, True, False, 0)
    left, top = 90, 60
    pill = (left - 16, top - 6, left + (x1 - x0) + 16, top + (y1 - y0) + 6)
    frame = ghost_pill(scene.canvas, pill, yellow, 2)
    scene.text("立即抢购", (left, top), 34, fill=yellow)
    result = erase(scene, inpainter)
    changed = np.abs(result.pixels.astype(int) - scene.pixels.astype(int)).max(axis=2) > 24
    assert changed[frame].mean() < 0.03, f"{changed[frame].mean():.1%} of the frame erased"
    glyphs_left = (np.abs(result.pixels[scene.writer.glyphs].astype(int) - yellow).max(axis=1) < 40).mean()
    assert glyphs_left < 0.05


def test_the_grid_of_a_table_whose_cells_the_polygons_fill_is_kept(inpainter: OpenCvInpainter) -> None:
    # A size table: 1-px dark rules around small dark labels, the OCR polygon reaching the rules. The rules stay.
    scene = Scene(_flat(np.random.default_rng(13), 160, 420))
    ink = (40, 40, 44)
    rows, cols = (40, 72, 104), (60, 140, 300)
    grid = np.zeros(scene.canvas.shape[:2], bool)
    for y in rows:
        grid[y, cols[0]:cols[-1] + 1] = True
    for x in cols:
        grid[rows[0]:rows[-1] + 1, x] = True
    scene.canvas[grid] = ink
    for top in rows[:-1]:
        scene.text("衣长", (84, top + 6), 20, bold=False, fill=ink)
        # The polygon as OCR gives it for a tight cell: from rule to rule.
        x0, _, x1, _ = (int(v) for v in (*scene.polygons[-1][0], *scene.polygons[-1][2]))
        scene.polygons[-1] = [(x0, top), (x1, top), (x1, top + 32), (x0, top + 32)]
    result = erase(scene, inpainter)
    changed = np.abs(result.pixels.astype(int) - scene.pixels.astype(int)).max(axis=2) > 24
    assert changed[grid].mean() < 0.03, f"{changed[grid].mean():.1%} of the grid erased"
    glyphs_left = (np.abs(result.pixels[scene.writer.glyphs].astype(int) - ink).max(axis=1) < 40).mean()
    assert glyphs_left < 0.05


NAVY = (24, 18, 82)


def test_a_tight_pill_whose_text_is_in_the_page_colour_keeps_its_shape_whatever_the_line_order(
        inpainter: OpenCvInpainter) -> None:
    """zh07: dark 纸品自营 fills a white pill on a page of the same dark blue, a white line right below it. The
    pill came back with its glyphs left in or grown down into the page, depending on the seed its line's colour
    clustering drew, which was the line's index: keeping another line on the page changed it. Now the seed comes
    from the line's position, and beyond the pill's edge the page is the background."""
    rng = np.random.default_rng(5)
    page = np.broadcast_to(np.array(NAVY, np.float32), (200, 400, 3)).copy()
    page += rng.normal(0.0, 3.0, page.shape).astype(np.float32)  # JPEG-like grain on the page
    scene = Scene(page)
    pill = (70, 40, 200, 74)
    rounded_panel(scene.canvas, scene.rng, pill, (254, 254, 253), radius=2)
    scene.text("纸品自营", (78, 42), 28, fill=NAVY)
    scene.text("韧性相伴", (66, 82), 30, fill=(250, 250, 250), bold=False)
    x0, y0, x1, y1 = pill
    scene.polygons[0] = [(x0, y0), (x1 + 1, y0), (x1 + 1, y1 + 2), (x0, y1 + 2)]  # the OCR box runs past the pill
    below = np.zeros(scene.writer.glyphs.shape, bool)
    below[y1 + 1:y1 + 6, x0:x1] = True  # the page between the pill and the next line
    inside = np.zeros_like(below)
    inside[y0 + 3:y1 - 3, x0 + 3:x1 - 3] = True
    for extra in range(4):  # other lines before the pill's shift its index (and seed)
        polygons = [[(300.0, 150.0 + i), (330.0, 150.0 + i), (330.0, 160.0 + i), (300.0, 160.0 + i)]
                    for i in range(extra)] + scene.polygons
        result = erase_text(scene.pixels, polygons, inpainter)
        assert np.abs(result.pixels[inside].astype(int) - 254).max() <= 12, extra  # glyphs gone, pill white
        assert np.abs(result.pixels[below].astype(int) - scene.pixels[below].astype(int)).max() <= 24, extra
