"""Container-aware layout: text that sits in a pill, label bar, badge or band is laid out inside it.

Every page is generated: the container shapes are drawn on a ground, the source text is drawn into them with Noto
Sans CJK, and the "erased" image is the same page without the text (the clean plate), so where the renderer may
draw is known to the pixel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from imgtrans_pipeline.core.types import TextBlock, TextRegion
from imgtrans_pipeline.engines.render import TextRenderer
from imgtrans_pipeline.engines.render.container import find_container

NOTO = Path("/usr/share/fonts/opentype/noto")
SC = 2  # Simplified Chinese face in the collections
RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]


def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    path = NOTO / ("NotoSansCJK-Bold.ttc" if bold else "NotoSansCJK-Regular.ttc")
    if not path.is_file():
        pytest.skip(f"{path} not installed")
    return ImageFont.truetype(str(path), size, index=SC)


class Page:
    """A generated page: shapes drawn on the clean plate, text drawn on top of a copy (the original)."""

    def __init__(self, width: int, height: int, ground: RGB) -> None:
        self.plate = Image.new("RGB", (width, height), ground)
        self.shapes = ImageDraw.Draw(self.plate)
        self.texts: list[tuple[str, int, int, int, RGB, bool]] = []

    def pill(self, box: Box, fill: RGB | None, outline: RGB | None = None, width: int = 0) -> None:
        radius = (box[3] - box[1]) // 2
        self.shapes.rounded_rectangle(box, radius=radius, fill=fill, outline=outline, width=width)

    def bar(self, box: Box, fill: RGB) -> None:
        self.shapes.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=fill)

    def text(self, text: str, size: int, color: RGB, *, center: tuple[int, int] | None = None,
             at: tuple[int, int] | None = None, bold: bool = False) -> None:
        font = _font(size, bold)
        if center is not None:
            x0, y0, x1, y1 = ImageDraw.Draw(self.plate).textbbox((0, 0), text, font=font)
            at = (round(center[0] - (x0 + x1) / 2), round(center[1] - (y0 + y1) / 2))
        assert at is not None
        self.texts.append((text, at[0], at[1], size, color, bold))

    def render(self, translations: list[str], **kwargs: object) -> tuple[np.ndarray, np.ndarray, dict, object]:
        original = self.plate.copy()
        draw = ImageDraw.Draw(original)
        blocks = []
        for text, x, y, size, color, bold in self.texts:
            font = _font(size, bold)
            draw.text((x, y), text, font=font, fill=color)
            x0, y0, x1, y1 = draw.textbbox((x, y), text, font=font)
            pad_y, pad_x = 0.15 * size, 0.1 * size  # OCR-like polygon: the ink box padded a little
            poly = [(x0 - pad_x, y0 - pad_y), (x1 + pad_x, y0 - pad_y), (x1 + pad_x, y1 + pad_y),
                    (x0 - pad_x, y1 + pad_y)]
            region = TextRegion(polygon=poly, text=text, score=0.99)
            blocks.append(TextBlock(regions=[region], text=text, bbox=(x0 - pad_x, y0 - pad_y, x1 + pad_x,
                                                                       y1 + pad_y), alignment="left"))
        plate = np.asarray(self.plate).copy()
        src = np.asarray(original).copy()
        out = TextRenderer(**kwargs).render(plate, src, blocks, translations, "en")  # type: ignore[arg-type]
        return src, plate, out.extra["layout"], out


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2) > 0


def _inside(box: list[int] | Box, outer: Box) -> bool:
    return box[0] >= outer[0] and box[1] >= outer[1] and box[2] <= outer[2] and box[3] <= outer[3]


def _overlap(a: list[int] | Box, b: list[int] | Box) -> bool:
    return max(a[0], b[0]) < min(a[2], b[2]) and max(a[1], b[1]) < min(a[3], b[3])


def _pill_mask(size: tuple[int, int], box: Box) -> np.ndarray:
    """Pixels inside the pill's outer edge."""
    img = Image.new("L", size, 0)
    ImageDraw.Draw(img).rounded_rectangle(box, radius=(box[3] - box[1]) // 2, fill=255)
    return np.asarray(img) > 0


@pytest.mark.parametrize("outlined", [False, True], ids=["filled", "outlined"])
def test_longer_translation_stays_inside_its_pill(outlined: bool) -> None:
    width, height = 520, 220
    pill = (170, 90, 350, 140)
    page = Page(width, height, (214, 232, 246))
    if outlined:  # a yellow outline on the page's own ground, yellow text (as a "buy now" button)
        page.pill(pill, None, (240, 214, 30), 4)
        color: RGB = (240, 214, 30)
    else:
        page.pill(pill, (170, 30, 50))
        color = (255, 255, 255)
    page.text("立即抢购", 28, color, center=((pill[0] + pill[2]) // 2, (pill[1] + pill[3]) // 2), bold=True)
    _, plate, layout, out = page.render(["Buy it now before it is gone"])

    (info,) = layout["blocks"]
    assert info["in_container"] is True
    container = info["container"]["box"]
    assert abs(container[0] - pill[0]) <= 6 and abs(container[2] - pill[2]) <= 6  # the pill, not the page
    assert info["fits"] is True
    assert info["font_px"] >= 10
    # Never outside the pill: every changed pixel lies inside it, away from its edge.
    changed = _changed(out.pixels, plate)
    assert changed.any()
    inside = _pill_mask((width, height), (pill[0] + 3, pill[1] + 3, pill[2] - 3, pill[3] - 3))
    assert not (changed & ~inside).any()
    # Centred in it like the source.
    xs = np.nonzero(changed.any(axis=0))[0]
    ys = np.nonzero(changed.any(axis=1))[0]
    assert abs((xs.min() + xs.max()) / 2 - (pill[0] + pill[2]) / 2) <= 4
    assert abs((ys.min() + ys.max()) / 2 - (pill[1] + pill[3]) / 2) <= 5
    assert layout["overlaps"] == 0 and layout["outside"] == 0


def _star(centre: tuple[int, int], outer: float, inner: float, points: int = 12) -> list[tuple[float, float]]:
    cx, cy = centre
    angles = np.linspace(0, 2 * np.pi, 2 * points, endpoint=False) - np.pi / 2
    radii = [outer if k % 2 == 0 else inner for k in range(2 * points)]
    return [(cx + r * np.cos(a), cy + r * np.sin(a)) for r, a in zip(radii, angles, strict=True)]


def test_text_in_a_star_badge_stays_inside_the_star_and_centred() -> None:
    """A burst badge fills only ~70 % of its bounding box (less than a pill) but it is a container all the same:
    the longer translation is drawn inside the star, centred like the source, not over the band around it."""
    width, height = 640, 240
    centre, outer, inner = (520, 120), 70, 58
    page = Page(width, height, (246, 244, 240))
    page.bar((0, 40, width, 200), (200, 40, 40))
    page.shapes.polygon(_star(centre, outer, inner), fill=(255, 214, 60))
    page.text("包邮", 40, (200, 20, 20), center=centre, bold=True)
    _, plate, layout, out = page.render(["Free shipping nationwide"])

    (info,) = layout["blocks"]
    assert info["in_container"] is True and info["fits"] is True
    box = info["container"]["box"]
    assert abs(box[0] - (centre[0] - outer)) <= 4 and abs(box[2] - (centre[0] + outer)) <= 4
    changed = _changed(out.pixels, plate)
    mask_img = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask_img).polygon(_star(centre, outer - 2, inner - 2), fill=255)
    star = np.asarray(mask_img) > 0
    assert changed.any() and not (changed & ~star).any()  # nothing drawn on the red band
    xs = np.nonzero(changed.any(axis=0))[0]
    assert abs((xs.min() + xs.max()) / 2 - centre[0]) <= 3
    assert info["alignment"] == "center"


def test_block_grows_inside_a_wide_label_bar_not_beyond() -> None:
    width, height = 600, 200
    bar = (100, 80, 500, 116)  # a white label bar on a dark page, much wider than its caption
    page = Page(width, height, (40, 44, 52))
    page.bar(bar, (255, 255, 255))
    page.text("限时开售", 16, (90, 100, 130), center=(300, 98))
    translation = "On sale for a limited time from December 24"
    _, plate, layout, out = page.render([translation])

    (info,) = layout["blocks"]
    assert info["in_container"] is True
    assert tuple(info["container"]["box"]) == bar
    ink = info["box"]
    assert info["fits"] is True
    assert info["font_px"] >= 14  # kept ~ its size: the bar has room, no need to shrink to the OCR box
    assert ink[2] - ink[0] > 150  # grew well beyond the caption's own width (~70 px) ...
    assert _inside(ink, bar)  # ... but only inside the bar
    changed = _changed(out.pixels, plate)
    ys, xs = np.nonzero(changed)
    assert xs.min() >= bar[0] and xs.max() < bar[2] and ys.min() >= bar[1] and ys.max() < bar[3]
    assert abs((xs.min() + xs.max()) / 2 - 300) <= 4  # centred in the bar as the source was

    # Confined to a bar too small for it, the text shrinks rather than spilling out of the bar.
    narrow = (250, 80, 350, 116)
    page = Page(width, height, (40, 44, 52))
    page.bar(narrow, (255, 255, 255))
    page.text("限时开售", 16, (90, 100, 130), center=(300, 98))
    _, plate, layout, out = page.render([translation])
    (info,) = layout["blocks"]
    assert info["in_container"] is True and info["fits"] is True
    assert _inside(info["box"], narrow) and info["font_px"] < 16
    ys, xs = np.nonzero(_changed(out.pixels, plate))
    assert xs.min() >= narrow[0] and xs.max() < narrow[2] and ys.min() >= narrow[1] and ys.max() < narrow[3]


def test_container_touching_another_text_block() -> None:
    """A bar holding two captions, with body text on the page right under its edge: every block keeps to its own
    room, nothing overlaps, the bar's captions stay in the bar and the body text stays out of it."""
    width, height = 640, 260
    bar = (60, 60, 580, 100)
    page = Page(width, height, (250, 248, 244))
    page.bar(bar, (200, 40, 40))
    page.text("新品", 20, (255, 255, 255), center=(180, 80), bold=True)
    page.text("包邮", 20, (255, 255, 255), center=(460, 80), bold=True)
    page.text("正品保证", 20, (40, 40, 40), at=(80, 104))  # touches the bar's lower edge
    _, plate, layout, out = page.render(["New arrivals this season", "Free shipping everywhere",
                                           "Genuine product guarantee for every order"])

    assert layout["overlaps"] == 0 and layout["outside"] == 0
    by_index = {b["index"]: b for b in layout["blocks"]}
    assert set(by_index) == {0, 1, 2}
    for i in (0, 1):
        assert by_index[i]["in_container"] is True
        assert _inside(by_index[i]["box"], bar)
    assert not _overlap(by_index[0]["box"], by_index[1]["box"])
    body = by_index[2]
    assert body["in_container"] is False
    assert not _overlap(body["box"], (bar[0], bar[1], bar[2], bar[3] - 2))  # out of the bar (ink may round by 1-2)
    # The bar itself is untouched outside what its captions drew: the body text drew nothing on it.
    changed = _changed(out.pixels, plate)
    own = np.zeros_like(changed)
    for i in (0, 1):
        x0, y0, x1, y1 = by_index[i]["box"]
        own[y0:y1, x0:x1] = True
    on_bar = np.zeros_like(changed)
    on_bar[bar[1]:bar[3] - 2, bar[0]:bar[2]] = True
    assert not (changed & on_bar & ~own).any()


def test_open_ground_and_gradients_are_no_container() -> None:
    """Plain page ground, a soft gradient and a noisy photo-like ground hold text but are not containers."""
    width, height = 500, 200
    src_box = (200, 85, 300, 115)
    plain = np.full((height, width, 3), (240, 240, 240), np.uint8)
    ramp = np.linspace(60, 230, width, dtype=np.float32)
    gradient = np.stack([np.tile(ramp, (height, 1))] * 3, axis=-1).astype(np.uint8)
    rng = np.random.default_rng(7)
    noisy = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    for image in (plain, gradient, noisy):
        assert find_container(image, src_box, 20.0) is None
    bar = plain.copy()
    bar[70:130, 150:350] = (30, 90, 200)
    found = find_container(bar, src_box, 20.0)
    assert found is not None and found.box == (150, 70, 350, 130) and found.centered_x and found.centered_y
    assert found.holds((160, 80, 340, 120)) and not found.holds((140, 80, 340, 120))


def test_container_own_size_keeps_body_copy_size() -> None:
    """A small button whose long translation must shrink: with the strict order its size caps the smaller body copy
    (rank order kept); by default (``container_own_size``) the body copy keeps its size and only the button text
    shrinks."""
    width, height = 640, 260
    pill = (40, 170, 200, 214)
    page = Page(width, height, (246, 244, 240))
    page.text("夏季新款透气上衣", 20, (40, 40, 40), at=(40, 40))
    page.pill(pill, (20, 20, 20))
    page.text("立即购买", 24, (255, 255, 255), center=((pill[0] + pill[2]) // 2, (pill[1] + pill[3]) // 2))
    translations = ["New breathable summer top", "Buy it right now while stocks last"]
    _, _, ranked, _ = page.render(translations, container_own_size=False)
    _, _, own, _ = page.render(translations)
    body, button = (next(b for b in ranked["blocks"] if b["index"] == i) for i in (0, 1))
    assert button["in_container"] and button["font_px"] < 20
    assert body["font_px"] <= button["font_px"]  # rank order: the smaller source is not drawn larger
    body_own, button_own = (next(b for b in own["blocks"] if b["index"] == i) for i in (0, 1))
    assert button_own["in_container"] and button_own["font_px"] == button["font_px"]
    assert body_own["font_px"] >= 19 > button_own["font_px"]
    assert ranked["container_blocks"] == own["container_blocks"] == 1
