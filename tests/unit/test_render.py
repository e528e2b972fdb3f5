"""Render stage: fonts per language, wrapping/fitting, colour sampling, drawing, encoding, and re-OCR of the output."""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgtrans_pipeline.core.errors import EngineError
from imgtrans_pipeline.core.types import TextBlock, TextRegion
from imgtrans_pipeline.engines.render import (
    FontSet,
    TextRenderer,
    choose_style,
    contrast_ratio,
    encode_image,
    fit_text,
    resolve_font,
    sample_text_color,
    wrap_text,
)
from imgtrans_pipeline.engines.render.layout import NO_LINE_START
from tests.support.imagegen import character_error_rate, cjk_font_path, text_image

PLAIN_BG = (246, 244, 240)


def _block(bbox: tuple[float, float, float, float], text: str = "原文", alignment: str = "left",
           line_height: float | None = None) -> TextBlock:
    """A hand-made block with one region spanning the box (or a region of ``line_height`` at its top)."""
    x0, y0, x1, y1 = bbox
    y_end = y0 + line_height if line_height else y1
    region = TextRegion(polygon=[(x0, y0), (x1, y0), (x1, y_end), (x0, y_end)], text=text, score=0.95)
    return TextBlock(regions=[region], text=text, bbox=bbox, alignment=alignment)


def _blank(width: int, height: int, color: tuple[int, int, int] = PLAIN_BG) -> np.ndarray:
    return np.full((height, width, 3), color, dtype=np.uint8)


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2) > 0


@pytest.fixture(scope="module")
def fonts() -> FontSet:
    return FontSet()


# --- fonts -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lang", "index"), [("ja", 0), ("ko", 1), ("zh", 2), ("zh-Hant", 3)])
def test_resolve_font_picks_the_language_face(lang: str, index: int) -> None:
    choice = resolve_font(lang)
    assert choice.index == index
    assert Path(choice.path).is_file() and choice.path.endswith(".ttc")
    family = FontSet().font(choice, 20).getname()[0]
    assert {"ja": "JP", "ko": "KR", "zh": "SC", "zh-Hant": "TC"}[lang] in family


def test_resolve_font_latin_and_bold() -> None:
    latin = resolve_font("en")
    assert Path(latin.path).is_file()
    bold = resolve_font("ko", bold=True)
    assert "Bold" in FontSet().font(bold, 20).getname()[1]


def test_configured_dir_wins_and_missing_font_is_a_clear_error(tmp_path: Path) -> None:
    configured = tmp_path / "fonts"
    configured.mkdir()
    (configured / "NotoSansCJK-Regular.ttc").symlink_to(cjk_font_path())
    fs = FontSet(configured)
    assert fs.resolve("ko").path == str(configured / "NotoSansCJK-Regular.ttc")
    assert fs.resolve("ko").index == 1

    # A directory with only a Latin font: Korean must fail (no tofu), English may use it.
    latin_only = tmp_path / "latin"
    latin_only.mkdir()
    dejavu = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if dejavu.is_file():
        (latin_only / "DejaVuSans.ttf").symlink_to(dejavu)
        isolated = FontSet(latin_only, search_system=False, search_package=False)
        assert isolated.resolve("en").path.endswith("DejaVuSans.ttf")
        with pytest.raises(EngineError, match="fonts-noto-cjk"):
            isolated.resolve("ko")

    empty = FontSet(tmp_path / "nothing-here", search_system=False, search_package=False)
    with pytest.raises(EngineError) as err:
        empty.resolve("zh")
    assert err.value.transient is False and "noto-cjk-sans-otc" in err.value.reason


def test_font_objects_are_cached(fonts: FontSet) -> None:
    choice = fonts.resolve("zh")
    assert fonts.font(choice, 23) is fonts.font(choice, 23)
    assert fonts.font(choice, 23) is not fonts.font(choice, 24)


# --- layout ----------------------------------------------------------------------------------------------------


def test_cjk_wraps_per_character_with_kinsoku(fonts: FontSet) -> None:
    font = fonts.font(fonts.resolve("zh"), 20)  # every ideograph and full-width comma is exactly 20 px wide
    lines, broke = wrap_text("一二三四五，六七八九十。", font, 101, "zh")
    # Greedy would start line 2 with "，"; kinsoku moves "五" down with it.
    assert lines == ["一二三四", "五，六七八", "九十。"]
    assert not broke
    long_text = "这是一段很长的中文说明文字，用来测试逐字换行。它没有空格，但必须在盒子里换行！"
    lines, _ = wrap_text(long_text, font, 150, "zh")
    assert "".join(lines) == long_text  # nothing lost, no spaces inserted
    assert len(lines) >= 4
    for line in lines:
        assert font.getlength(line) <= 150
        assert line[0] not in NO_LINE_START


def test_japanese_and_korean_wrapping(fonts: FontSet) -> None:
    ja = fonts.font(fonts.resolve("ja"), 18)
    text = "今日はとても良い天気です。散歩に行きましょう！"
    lines, _ = wrap_text(text, ja, 100, "ja")
    assert "".join(lines) == text and len(lines) > 1
    assert all(ja.getlength(line) <= 100 and line[0] not in NO_LINE_START for line in lines)

    ko = fonts.font(fonts.resolve("ko"), 20)
    text = "안녕하세요 여러분 오늘은 정말 좋은 날입니다 할인 행사에 오세요"
    lines, broke = wrap_text(text, ko, 130, "ko")
    assert not broke and len(lines) > 2
    assert " ".join(lines).split() == text.split()  # words kept whole, in order
    assert all(ko.getlength(line) <= 130 for line in lines)


def test_latin_wraps_per_word_and_breaks_overlong_words(fonts: FontSet) -> None:
    font = fonts.font(fonts.resolve("en"), 20)
    text = "Fresh organic green tea leaves picked by hand"
    lines, broke = wrap_text(text, font, 160, "en")
    assert not broke and len(lines) > 1
    assert " ".join(lines) == text
    assert all(font.getlength(line) <= 160 for line in lines)

    lines, broke = wrap_text("a Supercalifragilisticexpialidocious word", font, 120, "en")
    assert broke
    assert all(font.getlength(line) <= 120 for line in lines)
    assert "".join("".join(lines).split()) == "aSupercalifragilisticexpialidociousword"


def test_largest_size_grows_with_the_box(fonts: FontSet) -> None:
    choice = fonts.resolve("en")
    get = lambda size: fonts.font(choice, size)  # noqa: E731
    text = "Summer sale on all green tea"
    sizes = []
    for w, h in [(160, 40), (320, 80), (640, 160)]:
        layout, fits = fit_text(text, w, h, get, "en")
        assert fits and layout.width <= w and layout.height <= h
        # Maximal: one pixel bigger no longer fits (or must break a word).
        bigger, bigger_fits = fit_text(text, w, h, get, "en", min_px=layout.font_px + 1, max_px=layout.font_px + 1)
        assert not bigger_fits or bigger.broke_words
        sizes.append(layout.font_px)
    assert sizes[0] < sizes[1] < sizes[2]
    assert sizes[0] >= 10


def test_min_size_not_fitting_is_reported(fonts: FontSet) -> None:
    choice = fonts.resolve("en")
    layout, fits = fit_text("far too much text for a tiny box " * 5, 60, 14, lambda s: fonts.font(choice, s), "en")
    assert not fits and layout.font_px == 10


# --- colour ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("color", "background"),
    [((200, 30, 30), "plain"), ((20, 20, 20), "plain"), ((240, 240, 240), "dark"), ((30, 60, 160), "textured")],
)
def test_sample_text_color_recovers_the_drawn_colour(color: tuple[int, int, int], background: str) -> None:
    img = text_image(["新品上市 Sale 50%"], width=420, height=120, font_size=40, color=color, background=background)
    text_rgb, bg_rgb = sample_text_color(img.pixels, img.lines[0].bbox)
    assert max(abs(a - b) for a, b in zip(text_rgb, color, strict=True)) <= 25, (text_rgb, color)
    text_lum, bg_lum = sum(text_rgb), sum(bg_rgb)
    if background == "dark":
        assert text_lum > bg_lum  # light on dark
    else:
        assert text_lum < bg_lum  # dark on light


def test_low_contrast_gets_an_outline() -> None:
    assert contrast_ratio((0, 0, 0), (255, 255, 255)) == pytest.approx(21.0)
    low = choose_style((200, 200, 200), (240, 240, 240))
    assert low.has_outline and low.stroke_fill == (0, 0, 0) and low.contrast < 3
    high = choose_style((20, 20, 20), (240, 240, 240))
    assert not high.has_outline


def test_render_adds_outline_for_light_text_on_light_background(text_renderer: TextRenderer) -> None:
    original = text_image(["浅色文字"], width=400, height=140, top=40, font_size=48, color=(215, 215, 215)).pixels
    inpainted = _blank(400, 140)
    box = (30, 30, 370, 110)
    out = text_renderer.render(inpainted, original, [_block(box)], ["Light text"], "en")
    info = out.extra["blocks"][0]
    assert info["outline"] == [0, 0, 0]
    assert max(abs(a - b) for a, b in zip(info["fill"], (215, 215, 215), strict=True)) <= 20
    crop = out.pixels[30:110, 30:370].astype(int)
    assert (crop.sum(axis=2) < 150).sum() > 50  # the dark outline was drawn


# --- rendering -------------------------------------------------------------------------------------------------


def test_english_render_is_readable_by_ocr(text_renderer: TextRenderer,
                                           render_reader: Callable[[np.ndarray], str]) -> None:
    original = text_image(["新鲜有机绿茶", "产自高山"], width=640, height=220, top=40, font_size=44,
                          line_gap=40).pixels
    inpainted = _blank(640, 220)
    block = _block((40, 40, 600, 170), text="新鲜有机绿茶产自高山", line_height=50)
    translation = "Fresh organic green tea from the mountains"
    out = text_renderer.render(inpainted, original, [block], [translation], "en")
    assert out.blocks_drawn == 1 and out.min_font_px >= 20
    assert out.extra["blocks"][0]["font_px"] <= 50  # capped at the source line height
    read = render_reader(out.pixels)
    cer = character_error_rate(translation.lower(), read.lower())
    assert cer <= 0.10, (read, cer)
    changed = _changed(out.pixels, inpainted)
    ys, xs = np.nonzero(changed)
    assert xs.min() >= 40 and xs.max() < 600 and ys.min() >= 40 and ys.max() < 170


def test_korean_render_stays_inside_the_box(text_renderer: TextRenderer) -> None:
    width, height = 520, 260
    original = text_image(["新品特价"], width=width, height=height, top=70, font_size=60, color=(20, 20, 20)).pixels
    inpainted = _blank(width, height)
    box = (60, 60, 460, 200)
    text = "신상품 특가 할인 행사"
    out = text_renderer.render(inpainted, original, [_block(box, alignment="center")], [text], "ko")
    changed = _changed(out.pixels, inpainted)
    assert changed.sum() > 500
    ys, xs = np.nonzero(changed)
    assert xs.min() >= box[0] and xs.max() < box[2] and ys.min() >= box[1] and ys.max() < box[3]
    # Centred: ink is balanced left/right within a few pixels.
    assert abs((xs.min() - box[0]) - (box[2] - 1 - xs.max())) <= 6
    assert out.extra["font_index"] == 1 and "KR" in out.extra["font_name"]

    if shutil.which("tesseract") is None:
        pytest.skip("tesseract not installed: Korean re-OCR not checked")
    langs = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True, check=False).stdout
    if "kor" not in langs.split():
        pytest.skip("tesseract-ocr-kor not installed: Korean re-OCR not checked")
    proc = subprocess.run(["tesseract", "stdin", "stdout", "-l", "kor", "--psm", "6"], input=encode_image(out.pixels),
                          capture_output=True, check=True, timeout=60)
    read = proc.stdout.decode("utf-8")
    assert character_error_rate(text, read) <= 0.2, read


def test_alignment_is_kept(text_renderer: TextRenderer) -> None:
    inpainted = _blank(500, 100)
    for alignment in ("left", "right"):
        out = text_renderer.render(inpainted, inpainted, [_block((20, 20, 480, 80), alignment=alignment,
                                                                 line_height=30)], ["Price"], "en")
        xs = np.nonzero(_changed(out.pixels, inpainted))[1]
        if alignment == "left":
            assert xs.min() - 20 <= 6
        else:
            assert 479 - xs.max() <= 6
        assert xs.max() - xs.min() < 300  # short word, not stretched across the box


def test_empty_translations_are_skipped_and_counts_checked(text_renderer: TextRenderer) -> None:
    inpainted = _blank(300, 200)
    blocks = [_block((10, 10, 290, 60)), _block((10, 100, 290, 150))]
    out = text_renderer.render(inpainted, inpainted, blocks, ["  ", "Hello"], "en")
    assert out.blocks_drawn == 1 and out.extra["skipped_empty"] == 1
    assert not _changed(out.pixels, inpainted)[10:60].any()
    assert _changed(out.pixels, inpainted)[100:150].any()
    with pytest.raises(EngineError):
        text_renderer.render(inpainted, inpainted, blocks, ["only one"], "en")


def test_overflowing_text_grows_into_free_space_within_the_image(text_renderer: TextRenderer) -> None:
    """A long translation of a tiny label on an empty page keeps its size and takes the free room beside it."""
    inpainted = _blank(300, 120)
    box = (100, 10, 200, 30)
    text = "This translation is much longer than the tiny original label"
    out = text_renderer.render(inpainted, inpainted, [_block(box)], [text], "en")
    info = out.extra["layout"]["blocks"][0]
    assert out.extra["extended"] == [0] and info["fits"]
    assert info["font_px"] >= 14  # the polygon says ~16 px text: no shrinking to the 10 px minimum
    x0, y0, x1, y1 = info["box"]
    assert x1 - x0 > 100 and y1 > 30
    # One line alone on the page: its alignment is a guess, so it may grow from either edge or its centre.
    anchor = {"left": x0 - 100, "center": (x0 + x1) / 2 - 150, "right": x1 - 200}[info["alignment"]]
    assert abs(anchor) <= 4
    assert x0 >= 0 and x1 <= 300 and y1 <= 120 and out.extra["layout"]["outside"] == 0
    ys, xs = np.nonzero(_changed(out.pixels, inpainted))
    assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1  # the record is the ink


@pytest.mark.parametrize(("fmt", "pil_format"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_output_formats_decode_to_the_right_size(text_renderer: TextRenderer, fmt: str, pil_format: str) -> None:
    inpainted = _blank(333, 147)
    out = text_renderer.render(inpainted, inpainted, [_block((10, 10, 320, 130))], ["Format check"], "en",
                               output_format=fmt, jpeg_quality=80)
    assert out.format == fmt
    decoded = Image.open(io.BytesIO(out.encoded))
    assert decoded.format == pil_format and decoded.size == (333, 147) and decoded.mode == "RGB"
    if fmt == "png":
        assert np.array_equal(np.asarray(decoded), out.pixels)  # lossless


def test_encode_image_rejects_unknown_format() -> None:
    with pytest.raises(EngineError):
        encode_image(_blank(4, 4), "bmp")
    assert encode_image(_blank(4, 4)[:, :, 0], "jpeg", 50)[:2] == b"\xff\xd8"  # gray input accepted


def test_pypi_font_package_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The layout of PyPI noto-cjk-sans-otc 0.0.1 (package dir holding NotoSansCJK-Regular.ttc) is found last."""
    pkg = tmp_path / "site" / "noto_cjk_sans_otc"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('FONT_FILE = "NotoSansCJK-Regular.ttc"\n')
    (pkg / "NotoSansCJK-Regular.ttc").symlink_to(cjk_font_path())
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    fs = FontSet(tmp_path / "no-dir", search_system=False, search_package=True)
    choice = fs.resolve("zh-Hant")
    assert choice.path == str(pkg / "NotoSansCJK-Regular.ttc") and choice.index == 3


def test_vertical_source_block_is_noted(text_renderer: TextRenderer) -> None:
    inpainted = _blank(200, 400)
    region = TextRegion(polygon=[(80, 20), (120, 20), (120, 380), (80, 380)], text="竖排文字测试", score=0.9)
    block = TextBlock(regions=[region], text=region.text, bbox=(80, 20, 120, 380))
    out = text_renderer.render(inpainted, inpainted, [block], ["竖排"], "zh")
    assert out.extra["vertical_blocks"] == [0] and out.blocks_drawn == 1
    ys, xs = np.nonzero(_changed(out.pixels, inpainted))
    assert ys.min() >= 20 and ys.max() < 380  # laid out horizontally, within the column's height
    assert xs.min() >= 0 and xs.max() < 200
    info = out.extra["layout"]["blocks"][0]
    assert info["font_px"] >= 24 and info["fits"]  # column width 40 px ~ 32 px glyphs: not shrunk to fit it


def test_long_translation_spreads_over_free_background_instead_of_shrinking(text_renderer):
    """zh -> en runs 2-3x longer: a short Chinese title's box would force tiny English text."""
    canvas = np.full((300, 800, 3), 240, np.uint8)
    title = _block((40, 40, 200, 100), "产品介绍")  # ~60 px tall source line
    wide = text_renderer.render(canvas, canvas, [title], ["Product Introduction"], "en")
    info = wide.extra["blocks"][0]
    assert info["extended"] and info["drawn_box"][2] > 200
    assert info["drawn_box"][2] <= 800 - 40  # the left margin is mirrored on the right
    assert info["font_px"] >= 0.75 * 0.8 * 60

    # A busy photo to the right of the title: the text must not spread over it.
    busy = canvas.copy()
    busy[20:120, 260:800] = np.random.default_rng(0).integers(0, 255, (100, 540, 3), dtype=np.uint8)
    boxed = text_renderer.render(busy, busy, [title], ["Product Introduction"], "en")
    assert boxed.extra["blocks"][0]["drawn_box"][2] <= 260

    # Another block beside it is an obstacle too.
    neighbour = _block((420, 40, 700, 100), "价格")
    both = text_renderer.render(canvas, canvas, [title, neighbour], ["Product Introduction", "Price"], "en")
    assert both.extra["blocks"][0]["drawn_box"][2] <= 420
