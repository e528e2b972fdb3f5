"""Which OCR lines form one block (engines.ocr.blocks.group_blocks): paragraphs together, badges, headlines,
brand lines and differently styled lines apart. Pages are drawn in code and read by the real RapidOCR engine."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from imgtrans_pipeline.core.keep import split_translatable
from imgtrans_pipeline.core.types import TextRegion
from imgtrans_pipeline.engines.ocr import run_ocr
from imgtrans_pipeline.engines.ocr.blocks import group_blocks, line_style, separator_between, split_at_separators
from tests.support.imagegen import SC_INDEX, character_error_rate

REGULAR = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
BOLD = "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"


@dataclass
class Line:
    text: str
    y: int
    size: int = 28
    x: int = 30
    fill: tuple[int, int, int] = (30, 30, 30)
    bold: bool = False
    panel: tuple[int, int, int] | None = None  # a coloured label bar behind the line


def page(lines: list[Line], width: int = 640, height: int = 260, rules: list[int] = (),
         seed: int = 7) -> np.ndarray:
    """A light, slightly noisy page with the lines drawn on it (and horizontal rules at the given rows)."""
    rng = np.random.default_rng(seed)
    base = np.full((height, width, 3), 246, np.int16) + rng.integers(-3, 4, (height, width, 1))
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for y in rules:
        draw.rectangle([10, y, width - 10, y + 1], fill=(150, 150, 150))
    for line in lines:
        font = ImageFont.truetype(BOLD if line.bold else REGULAR, line.size, index=SC_INDEX)
        x0, y0, x1, y1 = draw.textbbox((line.x, line.y), line.text, font=font)
        if line.panel is not None:
            draw.rectangle([x0 - 12, y0 - 8, x1 + 12, y1 + 8], fill=line.panel)
        draw.text((line.x, line.y), line.text, font=font, fill=line.fill)
    return np.asarray(img)


def _texts(blocks) -> list[str]:
    return [b.text for b in blocks]


PARAGRAPH = ["天然棉麻面料透气舒适柔软亲肤不起球", "适合春夏秋三季穿着机洗不变形也不褪色",
             "是您日常通勤和居家休闲的理想之选。"]


def test_three_line_paragraph_is_one_block(ocr_engine) -> None:
    pixels = page([Line(t, 20 + i * 40) for i, t in enumerate(PARAGRAPH)], height=160)
    result = run_ocr(ocr_engine, pixels, "zh")
    assert len(result.regions) == 3, _texts(result.regions)
    assert len(result.blocks) == 1, _texts(result.blocks)
    assert character_error_rate("".join(PARAGRAPH), result.blocks[0].text) <= 0.05
    assert [r.text for r in result.blocks[0].regions] == [r.text for r in result.regions]  # top to bottom


def test_headline_over_body_of_different_size_are_two_blocks(ocr_engine) -> None:
    pixels = page([Line("全新升级 高清画质", 14, size=46, bold=True)]
                  + [Line(t, 90 + i * 40) for i, t in enumerate(PARAGRAPH[:2])], height=190)
    result = run_ocr(ocr_engine, pixels, "zh")
    assert len(result.blocks) == 2, _texts(result.blocks)
    headline, body = result.blocks
    assert character_error_rate("全新升级高清画质", headline.text.replace(" ", "")) <= 0.05
    assert len(body.regions) == 2


def test_adjacent_badges_on_their_own_panels_stay_two_blocks(ocr_engine) -> None:
    """Two label bars stacked tightly, each text long enough to read like paragraph lines: only their panels
    (and colours) tell them apart."""
    badges = [Line("限时特价全场包邮买一送一再送运费险", 22, fill=(255, 255, 255), panel=(200, 30, 40)),
              Line("会员专享积分翻倍满三百立减五十元券", 72, fill=(40, 30, 0), panel=(250, 200, 40))]
    pixels = page(badges, height=130)
    result = run_ocr(ocr_engine, pixels, "zh")
    assert len(result.regions) == 2, _texts(result.regions)
    assert len(result.blocks) == 2, _texts(result.blocks)
    assert len(group_blocks(result.regions)) == 1  # by geometry and text alone they would be one block
    styles = [line_style(pixels, r.bbox()) for r in result.regions]
    assert styles[0] is not None and styles[1] is not None
    assert styles[0].background[0] > 150 > styles[0].background[1]  # red panel
    assert min(styles[0].color) > 200  # white text


@pytest.mark.parametrize(("upper", "lower", "rules"), [
    (Line("年度热销爆款新品柔软亲肤不起球不变形", 20, fill=(20, 20, 20)),
     Line("全棉面料工艺升级透气舒适更加耐穿耐洗", 62, fill=(220, 30, 30)), []),  # another colour
    (Line("年度热销爆款新品柔软亲肤不起球不变形", 20, bold=True),
     Line("全棉面料工艺升级透气舒适更加耐穿耐洗", 62), []),  # another weight
    (Line("年度热销爆款新品柔软亲肤不起球不变形", 20),
     Line("全棉面料工艺升级透气舒适更加耐穿耐洗", 66), [59]),  # a rule between them (a table)
], ids=["colour", "weight", "rule"])
def test_differently_printed_lines_are_separate_blocks(ocr_engine, upper: Line, lower: Line,
                                                       rules: list[int]) -> None:
    pixels = page([upper, lower], height=120, rules=rules)
    result = run_ocr(ocr_engine, pixels, "zh")
    assert len(result.regions) == 2, _texts(result.regions)
    assert len(result.blocks) == 2, _texts(result.blocks)
    assert len(group_blocks(result.regions)) == 1  # the image is what splits them
    a, b = (r.bbox() for r in result.regions)
    assert separator_between(pixels, a, b) == bool(rules)


def test_same_lines_without_difference_are_one_block(ocr_engine) -> None:
    pixels = page([Line("年度热销爆款新品柔软亲肤不起球不变形", 20),
                   Line("全棉面料工艺升级透气舒适更加耐穿耐洗", 62)], height=120)
    result = run_ocr(ocr_engine, pixels, "zh")
    assert len(result.blocks) == 1, _texts(result.blocks)


def test_latin_brand_line_over_chinese_is_kept_untouched(ocr_engine) -> None:
    pixels = page([Line("LUXURY EXPERIENCE", 16, size=30), Line("奢华体验尽在掌握品质生活从这里开始", 60)],
                  height=120)
    result = run_ocr(ocr_engine, pixels, "zh")
    assert len(result.blocks) == 2, _texts(result.blocks)
    to_translate, kept = split_translatable(result.blocks, "zh", "en")
    assert [b.text.upper().replace(" ", "") for b in kept] == ["LUXURYEXPERIENCE"]
    assert kept[0].keep_reason == "target_script"
    assert len(to_translate) == 1 and "奢华" in to_translate[0].text
    _, kept_ko = split_translatable(result.blocks, "zh", "ko")
    assert [b.keep_reason for b in kept_ko] == ["latin_brand"]


def _region(text: str, x0: float, y0: float, x1: float, y1: float) -> TextRegion:
    return TextRegion([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], text, 0.99)


def test_text_rules_without_an_image() -> None:
    # Short stacked phrases (badges, headline + subline) stay apart; a sentence running on joins.
    assert len(group_blocks([_region("奢品箱包 初秋焕新", 80, 230, 240, 255),
                             _region("10元无门槛优惠券", 80, 255, 236, 276)])) == 2
    assert len(group_blocks([_region("神速芯片，", 60, 904, 157, 938),
                             _region("一切的原动力。", 60, 930, 200, 965)])) == 1
    assert len(group_blocks([_region("iPhone 的", 305, 703, 396, 730),
                             _region("新玩法。", 303, 724, 377, 756)])) == 1
    # Bullet items are separate even when long; a numbers-only line never joins.
    bullets = group_blocks([_region("●1年免费上门维修（个人用户注册后可享第2年主要备件上门）", 58, 458, 564, 481),
                            _region("●7X24小时惠管家人工在线服务，全年无休随时响应", 58, 485, 500, 508)])
    assert len(bullets) == 2
    assert len(group_blocks([_region("2399", 96, 337, 255, 370), _region("到手价", 96, 372, 255, 399)])) == 2
    # Lines half a line apart must also be of one size (a headline over a smaller caption).
    assert len(group_blocks([_region("AI技术加持惠普带来智能升级新体验", 40, 36, 505, 71),
                             _region("AI智能降噪和动态智能追踪全新体验", 40, 88, 420, 117)])) == 2
    # A lower line continues at most one upper line: two side-by-side columns never share it.
    cols = group_blocks([_region("左栏的第一行文字很长很长，", 10, 10, 300, 40),
                         _region("右栏的第一行文字很长很长，", 320, 10, 610, 40),
                         _region("下面一行横跨两栏的文字内容很长", 10, 45, 610, 75)])
    assert sorted(len(b.regions) for b in cols) == [1, 2]


def test_in_block_order_is_top_to_bottom() -> None:
    # "特惠" sits above "到手价" but shares a reading-order row with the big price to their right.
    regions = [_region("到手价，", 22, 372, 105, 399), _region("特惠活动，", 23, 350, 100, 376),
               _region("2399", 96, 337, 255, 401)]
    blocks = group_blocks(regions)
    joined = [b.text for b in blocks if len(b.regions) == 2]
    assert joined == ["特惠活动，到手价，"]


def test_bad_images_give_a_clear_result() -> None:
    regions = [_region("天然棉麻面料，透气舒适", 0, 0, 5, 3)]
    tiny = np.zeros((1, 1, 3), np.uint8)
    assert _texts(group_blocks(regions, image=tiny)) == ["天然棉麻面料，透气舒适"]
    assert line_style(tiny, (0, 0, 1, 1)) is None
    assert line_style(np.full((40, 200, 3), 128, np.uint8), (10, 10, 190, 30)) is None  # flat: no text
    with pytest.raises(ValueError, match="HxWx3"):
        group_blocks(regions, image=np.zeros((10, 10), np.uint8))


def test_side_by_side_claims_split_at_separator_bars(ocr_engine) -> None:
    pixels = page([Line("正品保障 | 极速发货 | 七天无理由退换", 30, size=30)], height=100)
    result = run_ocr(ocr_engine, pixels, "zh")
    assert _texts(result.blocks) == ["正品保障", "极速发货", "七天无理由退换"]
    boxes = [b.bbox for b in result.blocks]
    for left, right in itertools.pairwise(boxes):
        assert left[2] <= right[0]  # side by side, not overlapping


def test_split_at_separators_geometry() -> None:
    line = _region("2K触控全面屏|13代英特尔处理器|超级终端", 100, 10, 700, 40)
    parts = split_at_separators([line])
    assert [p.text for p in parts] == ["2K触控全面屏", "13代英特尔处理器", "超级终端"]
    xs = [p.bbox() for p in parts]
    assert xs[0][0] == 100 and xs[-1][2] == 700
    assert all(a[2] < b[0] for a, b in itertools.pairwise(xs))
    assert all(p.bbox()[1] == 10 and p.bbox()[3] == 40 for p in parts)
    plain = _region("没有分隔符的一行", 0, 0, 100, 20)
    tilted = TextRegion([(0, 40), (100, 0), (110, 20), (10, 60)], "甲|乙", 0.9)
    assert split_at_separators([plain, tilted]) == [plain, tilted]
