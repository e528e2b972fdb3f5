"""The per-image quality score, the erased-line re-check, and the synthetic benchmark pages."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.synthetic_pages import fonts_available, generate_page
from imgtrans_pipeline.core.types import TextRegion
from imgtrans_pipeline.engines.inpaint.mask import build_mask
from imgtrans_pipeline.engines.ocr import OcrEngine, run_ocr
from imgtrans_pipeline.engines.ocr.base import crop_line, recognize_lines, recognize_lines_by_crops
from imgtrans_pipeline.quality import (
    LineRecheck,
    QualityInputs,
    layout_summary,
    recheck_erased,
    score_image,
    translation_issues,
)
from tests.support.imagegen import text_image

LINES = ["新品上市", "预定享豪礼", "全场包邮"]


def clean_inputs(**changes: object) -> QualityInputs:
    """A good result: three blocks translated sensibly, nothing left, drawn in place at a fair size."""
    base = QualityInputs(
        source_lang="zh", target_lang="en",
        source_texts=list(LINES), translations=["New arrivals", "Book now for a gift", "Free shipping"],
        line_scores=[0.97, 0.95, 0.99], source_px=[40.0, 40.0, 40.0],
        layout={"blocks": [
            {"index": 0, "font_px": 34, "drawn_box": [40, 40, 400, 90], "overflow": False, "contrast": 12.0},
            {"index": 1, "font_px": 30, "drawn_box": [40, 140, 400, 190], "overflow": False, "contrast": 9.0},
            {"index": 2, "font_px": 32, "drawn_box": [40, 240, 400, 290], "overflow": False, "contrast": 15.0},
        ]},
        rechecks=[LineRecheck(source_text=t, polygon=[(0, 0), (10, 0), (10, 5), (0, 5)]) for t in LINES],
        image_size=(640, 480),
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


# --- the score on constructed cases ----------------------------------------------------------------------------


def test_clean_result_scores_high_without_reasons() -> None:
    quality = score_image(clean_inputs())
    assert quality.score >= 0.95
    assert quality.reasons == []
    assert set(quality.components) == {"erase", "ocr", "translation", "layout", "contrast"}


def test_text_left_after_erasing_gives_low_score_with_that_reason() -> None:
    checks = [
        LineRecheck(source_text="新品上市", polygon=[(0, 0), (9, 0), (9, 4), (0, 4)], read_text="新品上市",
                    read_score=0.96),
        LineRecheck(source_text="预定享豪礼", polygon=[(0, 9), (9, 9), (9, 14), (0, 14)], read_text="预定享豪",
                    read_score=0.9),
        LineRecheck(source_text="全场包邮", polygon=[(0, 20), (9, 20), (9, 24), (0, 24)], read_text="", read_score=0.0),
    ]
    quality = score_image(clean_inputs(rechecks=checks))
    assert quality.components["erase"] < 0.3
    assert quality.score < 0.3
    assert quality.reasons[0].startswith("2 source lines still readable after erasing: 新品上市, 预定享豪礼")
    assert quality.details["erase"]["left"] == ["新品上市", "预定享豪礼"]


def test_faint_or_unrelated_reading_is_not_text_left() -> None:
    checks = [
        LineRecheck(source_text="新品上市", polygon=[], read_text="新品上市", read_score=0.3),  # unsure reading
        LineRecheck(source_text="预定享豪礼", polygon=[], read_text="1", read_score=0.9),  # texture read as "1"
        LineRecheck(source_text="全场包邮", polygon=[], read=False),  # box lost its edges: not read
    ]
    assert [c.readable for c in checks] == [False, False, False]
    assert score_image(clean_inputs(rechecks=checks)).components["erase"] == 1.0


@pytest.mark.parametrize(("translation", "kind"), [
    ("", "empty"),
    ("Book 豪礼 now", "source_script"),
    ("gift gift gift gift", "repeated"),
    ("Book now and get a gift book now and get a gift", "repeated"),
    ("B", "length_ratio"),
    ("Book now to receive a luxurious gift package, delivered to your home free of charge within three days, "
     "while supplies last, terms apply", "length_ratio"),
    ("Book the fucking gift", "offensive"),
])
def test_translation_sanity_flags(translation: str, kind: str) -> None:
    issues = translation_issues("预定享豪礼", translation, "zh", "en")
    assert kind in [issue.kind for issue in issues]
    translations = ["New arrivals", translation, "Free shipping"]
    quality = score_image(clean_inputs(translations=translations))
    assert quality.components["translation"] < 1.0
    label = {"empty": "empty translation", "source_script": "source script left", "repeated": "repeated phrase",
             "length_ratio": "implausible length ratio", "offensive": "offensive word"}[kind]
    assert any(reason.startswith(label) and "预定享豪礼" in reason for reason in quality.reasons)
    if kind == "offensive":  # never publishable, whatever the other blocks
        assert quality.score <= 0.3


def test_sane_translations_and_legit_repeats_are_not_flagged() -> None:
    assert translation_issues("新品上市", "New arrivals", "zh", "en") == []
    assert translation_issues("包邮", "Free shipping nationwide", "zh", "en") == []  # short source: no ratio check
    assert translation_issues("买买买", "buy buy buy", "zh", "en") == []  # the source repeats itself
    assert translation_issues("¥199", "", "zh", "en") == []  # nothing to translate
    assert translation_issues("新品上市", "新発売", "zh", "ja") == []  # Han is the target's script too
    # Offensive words are matched from a word start ("Scunthorpe" is not flagged; "flame retardant" is no word of
    # the list); Korean by stem.
    assert translation_issues("斯肯索普", "Scunthorpe cushions", "zh", "en") == []
    assert translation_issues("酷睿版", "Core edition", "zh", "en") == []
    assert [i.kind for i in translation_issues("酷睿版", "씨발 에디션", "zh", "ko")] == ["offensive"]


def test_overlapping_drawn_blocks_are_flagged_in_both_record_formats() -> None:
    old = clean_inputs().layout
    assert old is not None
    old["blocks"][1]["drawn_box"] = [60, 60, 420, 120]  # lands on block 0
    quality = score_image(clean_inputs(layout=old))
    assert quality.details["layout"]["overlaps"] == 1
    assert "1 pair of drawn blocks overlaps" in quality.reasons
    assert quality.components["layout"] < 0.85

    record = {"layout": {"blocks": [
        {"index": 0, "box": [40, 40, 400, 90], "font_px": 34, "source_px": 40, "fits": True, "contrast": 10.0},
        {"index": 1, "box": [500, 400, 700, 520], "font_px": 10, "source_px": 40, "fits": False, "contrast": 1.4,
         "outline": False},
    ], "overlaps": [[0, 1]], "outside": 1, "min_font_blocks": [1], "overflow_blocks": [1]}}
    summary = layout_summary(record, (640, 480))
    assert (summary["overlaps"], summary["outside"], summary["min_font"], summary["overflow"]) == (1, 1, 1, 1)
    assert summary["shrunk"] == 1
    quality = score_image(clean_inputs(source_texts=LINES[:2], translations=["New", "Gift"], layout=record))
    for expected in ("1 pair of drawn blocks overlaps", "1 block drawn outside the image",
                     "1 drawn block overflows its box", "1 block at the minimum font size"):
        assert expected in quality.reasons
    assert any(reason.startswith("low contrast in 1 block") for reason in quality.reasons)
    assert quality.score < 0.3


def test_low_ocr_confidence_and_missing_inputs() -> None:
    quality = score_image(clean_inputs(line_scores=[0.62, 0.65, 0.6], rechecks=None, layout=None))
    assert quality.components["ocr"] < 0.4
    assert quality.reasons[0].startswith("OCR confidence low (mean 0.62 over 3 lines)")
    assert quality.details["not_checked"] == ["erase", "layout", "contrast"]
    empty = score_image(QualityInputs(source_lang="zh", target_lang="en"))
    assert empty.score == 1.0 and empty.reasons == ["no text to translate was found"]


# --- re-reading erased lines -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def erased_case(ocr_engine: OcrEngine, opencv_inpainter: object) -> tuple[np.ndarray, np.ndarray, list[TextRegion]]:
    image = text_image(LINES, width=640, height=300, font_size=44, background="textured", seed=3)
    ocr = run_ocr(ocr_engine, image.pixels, "zh")
    assert [r.text for r in ocr.regions] == LINES
    mask = build_mask(image.pixels.shape[:2], [r.polygon for r in ocr.regions], image=image.pixels)
    erased = opencv_inpainter.inpaint(image.pixels, mask)  # type: ignore[attr-defined]
    return image.pixels, erased, ocr.regions


def test_recheck_finds_text_left_only_where_it_was_not_erased(
        ocr_engine: OcrEngine, erased_case: tuple[np.ndarray, np.ndarray, list[TextRegion]]) -> None:
    source, erased, regions = erased_case
    kept = [r.source_text for r in recheck_erased(ocr_engine, source, regions, "zh", source=source) if r.readable]
    assert kept == LINES  # not erased at all: every line is read back
    checks = recheck_erased(ocr_engine, erased, regions, "zh", source=source)
    assert [c.readable for c in checks] == [False, False, False]
    # Erase only the first line: the other two are still there.
    partly = source.copy()
    x0, y0, x1, y1 = (int(v) for v in regions[0].bbox())
    partly[y0:y1, x0:x1] = erased[y0:y1, x0:x1]
    checks = recheck_erased(ocr_engine, partly, regions, "zh", source=source)
    assert [c.source_text for c in checks if c.readable] == LINES[1:]
    quality = score_image(clean_inputs(rechecks=checks))
    assert quality.reasons[0] == "2 source lines still readable after erasing: 预定享豪礼, 全场包邮"


def test_recognize_lines_reads_given_boxes_with_and_without_the_engine_override(
        ocr_engine: OcrEngine, erased_case: tuple[np.ndarray, np.ndarray, list[TextRegion]]) -> None:
    source, _, regions = erased_case
    polygons = [r.polygon for r in reversed(regions)] + [[(5.0, 5.0), (5.0, 5.0), (5.0, 5.0)]]
    fast = recognize_lines(ocr_engine, source, polygons, "zh")
    generic = recognize_lines_by_crops(ocr_engine, source, polygons, "zh")
    for result in (fast, generic):
        assert [r.text.replace(" ", "") for r in result] == [*reversed(LINES), ""]
        assert all(r.score > 0.8 for r in result[:3]) and result[3].score == 0.0
        assert result[0].polygon == [tuple(map(float, p)) for p in polygons[0]]
    assert recognize_lines(ocr_engine, source, [], "zh") == []


def test_a_label_bar_erased_into_the_page_colour_is_flagged(ocr_engine: OcrEngine) -> None:
    from PIL import Image, ImageDraw

    from tests.support.imagegen import font

    page = Image.new("RGB", (400, 160), (250, 250, 250))
    draw = ImageDraw.Draw(page)
    draw.rounded_rectangle((40, 40, 360, 120), radius=20, fill=(30, 30, 36))
    draw.text((70, 52), "限时抢购", font=font(48), fill=(255, 255, 255))
    source = np.asarray(page).copy()
    line = TextRegion(polygon=[(66.0, 50.0), (266.0, 50.0), (266.0, 112.0), (66.0, 112.0)], text="限时抢购", score=1.0)
    lost = source.copy()
    lost[50:112, 66:266] = (250, 250, 250)  # the bar's inside painted with the page colour
    kept = source.copy()
    kept[50:112, 66:266] = (30, 30, 36)  # text removed, bar kept
    [bad] = recheck_erased(ocr_engine, lost, [line], "zh", source=source)
    [good] = recheck_erased(ocr_engine, kept, [line], "zh", source=source)
    assert bad.fill_mismatch and not bad.readable
    assert not good.fill_mismatch and good.fill_distance is not None and good.fill_distance < 5
    quality = score_image(clean_inputs(rechecks=[bad]))
    assert quality.components["erase"] < 0.5
    assert quality.reasons[0].startswith("erased area of 1 line no longer matches its background")


def test_recheck_bad_input_gives_a_clear_result(ocr_engine: OcrEngine) -> None:
    tiny = np.zeros((1, 1, 3), np.uint8)
    degenerate = TextRegion(polygon=[(0.0, 0.0)] * 4, text="新品", score=0.9)
    outside = TextRegion(polygon=[(50.0, 50.0), (90.0, 50.0), (90.0, 70.0), (50.0, 70.0)], text="上市", score=0.9)
    checks = recheck_erased(ocr_engine, tiny, [degenerate, outside], "zh", source=tiny)
    assert [(c.read, c.readable) for c in checks] == [(False, False), (False, False)]
    with pytest.raises(ValueError, match="differ in shape"):
        recheck_erased(ocr_engine, tiny, [degenerate], "zh", source=np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="HxWx3"):
        recheck_erased(ocr_engine, np.zeros((4, 4), np.uint8), [degenerate], "zh")


def test_crop_line_straightens_and_turns_vertical_lines() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    image[20:40, 50:150] = 255
    crop = crop_line(image, [(50, 20), (150, 20), (150, 40), (50, 40)])
    assert crop is not None and crop.shape == (20, 100, 3) and crop.min() == 255
    tall = crop_line(image, [(10, 10), (30, 10), (30, 90), (10, 90)])
    assert tall is not None and tall.shape[:2] == (20, 80)
    assert crop_line(image, [(1, 1), (1, 1), (1, 1), (1, 1)]) is None
    assert crop_line(image, [(0, 0), (float("nan"), 0), (3, 3)]) is None
    assert crop_line(np.zeros((0, 0, 3), np.uint8), [(0, 0), (5, 0), (5, 5), (0, 5)]) is None


# --- the synthetic benchmark pages -----------------------------------------------------------------------------

needs_fonts = pytest.mark.skipif(not fonts_available(), reason="Noto Sans CJK not installed")


@needs_fonts
@pytest.mark.parametrize("kind", ["main", "detail"])
def test_synthetic_pages_are_deterministic(kind: str) -> None:
    a, b = generate_page(21, kind), generate_page(21, kind)
    assert np.array_equal(a.pixels, b.pixels) and np.array_equal(a.clean, b.clean)
    assert a.truth() == b.truth()
    assert not np.array_equal(generate_page(22, kind).pixels, a.pixels)
    assert a.size == ((800, 800) if kind == "main" else (790, 6000))


@needs_fonts
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_synthetic_page_differs_from_its_clean_plate_only_on_glyphs(seed: int) -> None:
    page = generate_page(seed, "main")
    changed = np.any(page.pixels != page.clean, axis=2)
    assert not np.any(changed & ~page.glyph_mask)
    assert page.glyph_mask.sum() > 0
    for line in page.lines:
        x0, y0, x1, y1 = line.box
        assert 0 <= x0 < x1 <= 800 and 0 <= y0 < y1 <= 800
        assert changed[y0:y1, x0:x1].sum() > 0.05 * (x1 - x0) * (y1 - y0), line.text  # the line is drawn there
    kinds = {line.kind for line in page.lines}
    assert "zh" in kinds and kinds & {"brand", "price", "url"}
    assert all(line.keep == (line.kind != "zh") for line in page.lines)


@needs_fonts
@pytest.mark.parametrize("seed", [1, 2])
def test_synthetic_clean_plates_hold_no_text(ocr_engine: OcrEngine, seed: int) -> None:
    page = generate_page(seed, "main")
    # Every drawn line has two or more letters; on the plate the OCR may only take an icon for a single character.
    on_plate = [r.text for r in run_ocr(ocr_engine, page.clean, "zh").regions]
    assert [t for t in on_plate if sum(ch.isalnum() for ch in t) >= 2] == []
    found = run_ocr(ocr_engine, page.pixels, "zh").regions
    drawn = {line.text.replace(" ", "") for line in page.lines}
    assert sum(1 for r in found if r.text.replace(" ", "") in drawn) >= len(page.lines) - 1


def test_benchmark_counts_only_the_source_script_part_of_a_line_as_left() -> None:
    """The quality benchmark's leftover count: a Latin brand or a number kept beside an erased line is no leftover
    of it (zh19's "PRO" was counted as "Pro 到 Max，" left), the line's own Chinese read again is."""
    from benchmarks.quality import left_in, source_letters

    def line(text: str) -> TextRegion:
        return TextRegion(text=text, polygon=[(0, 0), (10, 0), (10, 5), (0, 5)], score=0.99)

    assert source_letters("Pro 到 Max，", "zh") == "到"
    assert not left_in("Pro 到 Max，", "zh", [line("PRO"), line("MAX")])
    assert not left_in("1000 尼特", "zh", [line("1000000:1")])
    assert not left_in("iPhone 14 Pro", "zh", [line("iPhone 14 Pro")])  # nothing of the source script to erase
    assert left_in("1000 尼特", "zh", [line("尼特")])
    assert left_in("macOS 和 Pro App", "zh", [line("和")])


def test_benchmark_ranks_sizes_a_reader_sees_as_one_as_ties() -> None:
    """Lines set in one size measure ~±3 % apart; the benchmark's rank correlation ties them, so a page drawn with
    one size per class is not ranked against that noise, and a real hierarchy still counts."""
    from benchmarks.quality import size_classes, spearman

    measured = [40.6, 39.4, 40.1, 58.0, 24.2, 23.8]  # body x3, headline, caption x2
    drawn = [32.0, 32.0, 32.0, 50.0, 20.0, 20.0]
    assert size_classes(measured)[:3] == [pytest.approx(40.033, abs=0.01)] * 3
    assert spearman(measured, drawn) < 0.95
    assert spearman(size_classes(measured), drawn) == pytest.approx(1.0)
    assert spearman(size_classes(measured), [32.0, 32.0, 32.0, 20.0, 50.0, 50.0]) < 0  # hierarchy inverted


def test_throughput_rounds_merge_into_sums_per_mode():
    from benchmarks.quality import _merged

    one = {"package": "a", "modes": {"off": {"wall_s": 10.0, "cpu_s": 20.0, "images": 12, "failed": 0},
                                     "on": {"wall_s": 11.0, "cpu_s": 21.0, "images": 12, "failed": 1}}}
    two = {"package": "a", "modes": {"off": {"wall_s": 14.0, "cpu_s": 22.0, "images": 12, "failed": 0},
                                     "on": {"wall_s": 13.0, "cpu_s": 23.0, "images": 12, "failed": 0}}}
    merged = _merged([one, None, two])  # a child that failed (None) is left out
    assert merged is not None
    assert merged["modes"]["off"] == {"wall_s": 24.0, "cpu_s": 42.0, "images": 24, "failed": 0}
    assert merged["modes"]["on"]["failed"] == 1 and merged["modes"]["on"]["images"] == 24
    assert _merged([None, None]) is None
