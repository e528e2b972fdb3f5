"""Line boxes the detector cut short of their first or last character are widened over it (engines.ocr.line_ends)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.synthetic_pages import fonts_available, generate_page
from imgtrans_pipeline.core.types import TextRegion
from imgtrans_pipeline.engines.ocr import OcrEngine, run_ocr
from imgtrans_pipeline.engines.ocr.line_ends import widen_clipped_lines
from tests.support.imagegen import text_image


def _box(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _ink_columns(pixels: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int]:
    x0, y0, x1, y1 = box
    cols = np.nonzero((pixels[y0:y1, x0:x1].min(axis=2) < 128).any(axis=0))[0]
    return x0 + int(cols[0]), x0 + int(cols[-1]) + 1


def test_a_box_starting_inside_its_first_character_is_widened_over_it() -> None:
    img = text_image(["一机多用"], width=520, height=160, font_size=72, left=80, top=40)
    ink_x0, ink_x1 = _ink_columns(img.pixels, img.lines[0].bbox)
    _, y0, _, y1 = img.lines[0].bbox
    # The detector's box of 一机多用 as RapidOCR returns it on a banner: from the middle of 一.
    cut = TextRegion(polygon=_box(ink_x0 + 40, y0 - 12, ink_x1 + 6, y1 + 12), text="一机多用", score=0.94)
    whole = TextRegion(polygon=_box(ink_x0 - 6, y0 - 12, ink_x1 + 6, y1 + 12), text="一机多用", score=0.99)
    widened, untouched = widen_clipped_lines(img.pixels, [cut, whole])
    assert widened.bbox()[0] <= ink_x0 - 1
    assert ink_x0 - widened.bbox()[0] < 0.3 * 72  # over the character, not further
    assert widened.bbox()[1:] == cut.bbox()[1:] and widened.text == cut.text
    assert untouched.polygon == whole.polygon


def test_a_shape_the_box_touches_or_latin_text_is_not_taken_for_a_cut_character() -> None:
    img = text_image(["新品上市", "全场包邮", "NEW ARRIVALS"], width=640, height=420, font_size=60, left=40, top=40,
                     line_gap=70)
    pixels = img.pixels.copy()
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1), (cx0, cy0, cx1, cy1) = (line.bbox for line in img.lines)
    pixels[ay0 - 14:ay1 + 14, ax1 + 4:ax1 + 40] = 30  # a dark patch of the picture right after the line, taller
    pixels[by0 + 1:by0 + 6, bx1 + 4:bx1 + 40] = 30  # a thin bar level with the line's top, not its middle
    # Each box ends inside its shape and its text is one character longer than the ink: only the shapes could
    # be that character.
    regions = [TextRegion(polygon=_box(ax0 - 4, ay0 - 8, ax1 + 10, ay1 + 8), text="新品上市上", score=0.9),
               TextRegion(polygon=_box(bx0 - 4, by0 - 8, bx1 + 10, by1 + 8), text="全场包邮包", score=0.9),
               TextRegion(polygon=_box(cx0 + 20, cy0 - 8, cx1 + 4, cy1 + 8), text="NEW ARRIVALS", score=0.9)]
    assert [r.polygon for r in widen_clipped_lines(pixels, regions)] == [r.polygon for r in regions]


def test_bad_regions_pass_unchanged() -> None:
    img = text_image(["一机多用"], width=400, height=120, font_size=48, left=40, top=30)
    odd = [TextRegion(polygon=[(0, 0), (5, 5)], text="一机", score=0.5),
           TextRegion(polygon=_box(10, 10, 12, 12), text="一机多用", score=0.5),
           TextRegion(polygon=_box(390, 0, 460, 200), text="", score=0.5)]
    assert widen_clipped_lines(img.pixels, odd) == odd
    assert widen_clipped_lines(img.pixels, []) == []


@pytest.mark.skipif(not fonts_available(), reason="benchmark fonts not installed")
def test_ocr_keeps_the_first_character_rapidocr_cuts_from_a_banner_headline(ocr_engine: OcrEngine) -> None:
    """A generated banner where RapidOCR's box of 一机多用 starts inside 一: the OCR stage's box covers it, so the
    eraser removes it (it used to stay beside the translation as a stray dash)."""
    page = generate_page(1, "main", name="syn-001-main")
    line = next(t for t in page.lines if t.text.startswith("一"))
    result = run_ocr(ocr_engine, page.pixels, "zh")
    region = next(r for r in result.regions if r.text.startswith("一") and "多用" in r.text)
    assert region.bbox()[0] <= line.box[0]
