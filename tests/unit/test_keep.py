"""What stays untranslated (core.keep): brand lines, prices, numbers, URLs, watermarks, model numbers."""

from __future__ import annotations

import pytest

from imgtrans_pipeline.core.keep import keep_reason, line_height, polygon_tilt, split_translatable
from imgtrans_pipeline.core.types import TextBlock, TextRegion


def _block(text: str, x: float = 10, y: float = 10, w: float = 200, h: float = 30, tilt: float = 0.0) -> TextBlock:
    dy = w * tilt
    polygon = [(x, y + dy), (x + w, y), (x + w, y + h), (x, y + h + dy)]
    region = TextRegion(polygon, text, 0.99)
    return TextBlock(regions=[region], text=text, bbox=region.bbox())


@pytest.mark.parametrize(("text", "reason"), [
    ("SOUND", "target_script"),
    ("LUXURY EXPERIENCE", "target_script"),
    ("vivo X9", "target_script"),
    ("X9", "model_number"),
    ("K2-300", "model_number"),
    ("GT-AX6000", "model_number"),
    ("S10+", "model_number"),
    ("¥199", "price"),
    ("￥4999", "price"),  # full-width yen, NFKC
    ("$19.99", "price"),
    ("12/16-12/23", "number"),
    ("07:06", "number"),
    ("2399", "number"),
    ("120W", "number"),
    ("1-3CM", "number"),
    ("1000000:1", "number"),
    ("www.example.com", "url"),
    ("shop123.taobao.com", "url"),
    ("店铺：abc.tmall.com", "url"),
    ("service@shop.cn", "url"),
    ("@vivo官方", "url"),
    ("Tel:13641330944", "phone"),
    ("客服电话 400-820-8820", "phone"),
    ("ZARA北京专柜正品代购", "watermark"),
    ("盗图必究", "watermark"),
    ("OPPO官方旗舰店", "watermark"),
    ("★", "no_text"),
])
def test_kept_for_an_english_target(text: str, reason: str) -> None:
    assert keep_reason(text, "zh", "en") == reason


@pytest.mark.parametrize("text", [
    "满199减80",  # Chinese with numbers: translated (the numbers are protected by the service)
    "199元",  # 元 is a word
    "¥4999起立即抢购",
    "容量500ml",
    "PLUS赠影音耳机",
    "Gillette吉列",  # Latin brand + its Chinese name: translated, see core.keep's docstring
    "进入旗舰店",  # a button, not a shop-name watermark
    "新品上市",
    "12月24日10点闪耀开售",
])
def test_mixed_and_chinese_lines_are_translated(text: str) -> None:
    assert keep_reason(text, "zh", "en") is None
    assert keep_reason(text, "zh", "ko") is None


def test_latin_lines_kept_for_a_korean_target_and_korean_lines_for_any_korean_target() -> None:
    assert keep_reason("LUXURY EXPERIENCE", "zh", "ko") == "latin_brand"
    assert keep_reason("THE DETAILS SHOW", "ja", "ko") == "latin_brand"
    assert keep_reason("신제품 출시", "zh", "ko") == "target_script"
    assert keep_reason("신제품 출시", "en", "ko") == "target_script"
    assert keep_reason("New arrival", "en", "ko") is None  # Latin is the source's script here
    assert keep_reason("GT-AX6000", "en", "ko") == "model_number"
    assert keep_reason("限时特价", "en", "ko") == "foreign_script"
    assert keep_reason("신제품 출시", "ko", "en") is None
    assert keep_reason("SALE", "ko", "en") == "target_script"
    with pytest.raises(ValueError, match="resolved"):
        keep_reason("x", "auto", "en")


def test_split_translatable_sets_reasons_and_keeps_order() -> None:
    blocks = [_block(t) for t in ["LUXURY EXPERIENCE", "新品上市", "¥199", "vivo X9", "满199减80",
                                  "www.shop.com", "12/16-12/23"]]
    to_translate, kept = split_translatable(blocks, "zh", "en")
    assert [b.text for b in to_translate] == ["新品上市", "满199减80"]
    assert [(b.text, b.keep_reason) for b in kept] == [
        ("LUXURY EXPERIENCE", "target_script"), ("¥199", "price"), ("vivo X9", "target_script"),
        ("www.shop.com", "url"), ("12/16-12/23", "number")]
    assert all(b.keep_reason is None for b in to_translate)
    assert kept[0].to_dict()["keep_reason"] == "target_script"
    assert "keep_reason" not in to_translate[0].to_dict()


def test_tilted_lines_are_kept_as_watermarks() -> None:
    diagonal = _block("北京专柜正品", tilt=-0.9)  # ~42 degrees, as a diagonal watermark across a photo
    slight = _block("北京专柜正品", tilt=-0.05)  # ~3 degrees: a slightly skewed photo, still translated
    assert polygon_tilt(diagonal.regions[0].polygon) == pytest.approx(42.0, abs=0.1)
    _, kept = split_translatable([diagonal, slight], "zh", "en")
    assert [b.keep_reason for b in kept] == ["rotated"]
    assert slight.keep_reason is None
    assert polygon_tilt([(0, 0)]) == 0.0 and polygon_tilt([(1, 1), (1, 1)]) == 0.0  # degenerate polygons


def test_small_lines_tilted_past_a_level_lines_jitter_are_product_print() -> None:
    """Print on a pack standing at an angle (zh07's "加送15%" at 7 degrees) stays as photographed; a slanted
    headline, a level line and a line tilted within the detector's jitter are translated."""
    headline = _block("全场五折", y=10, w=400, h=80, tilt=-0.12)  # ~7 degrees, the page's tallest line
    pack = _block("加送15%", y=200, w=120, h=22, tilt=-0.12)
    jitter = _block("新品上市", y=300, w=120, h=22, tilt=-0.05)  # ~3 degrees
    level = _block("预定享豪礼", y=400, w=160, h=22)
    to_translate, kept = split_translatable([headline, pack, jitter, level], "zh", "en")
    assert [(b.text, b.keep_reason) for b in kept] == [("加送15%", "product_print")]
    assert [b.text for b in to_translate] == ["全场五折", "新品上市", "预定享豪礼"]
    assert line_height(pack.regions[0].polygon) == pytest.approx(22.0, abs=0.5)
    assert line_height([]) == 0.0 and line_height([(0, 0), (10, 4), (2, 9)]) == 9
