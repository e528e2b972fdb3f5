"""Regenerate the bundled sample product images (Chinese text, drawn with Noto Sans CJK).

Run from the project root: .venv/bin/python samples/make_samples.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.imagegen import font

HERE = Path(__file__).resolve().parent


def product_card(path: Path) -> None:
    """An 800x800 product card: a title banner, a price tag, feature lines."""
    img = Image.new("RGB", (800, 800), (250, 247, 240))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, 800, 150), fill=(200, 40, 40))
    draw.text((60, 40), "全新升级 高清画质", font=font(60), fill=(255, 255, 255))
    draw.ellipse((300, 260, 500, 460), fill=(225, 225, 232))
    draw.text((60, 520), "限时特价 买一送一", font=font(48), fill=(200, 40, 40))
    draw.text((60, 620), "天然棉麻面料 透气舒适", font=font(40), fill=(40, 40, 40))
    draw.text((60, 700), "免费送货上门", font=font(40), fill=(40, 40, 40))
    img.save(path, optimize=True)


def detail_page(path: Path) -> None:
    """A tall 790x3200 detail page with sections down its length."""
    img = Image.new("RGB", (790, 3200), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    sections = [("产品介绍", (240, 240, 245)), ("优质材料 安全环保", (255, 250, 235)),
                ("防水设计 经久耐用", (235, 245, 240)), ("售后服务 无忧退换", (245, 238, 238))]
    for i, (text, bg) in enumerate(sections):
        top = i * 800
        draw.rectangle((0, top, 790, top + 800), fill=bg)
        draw.rectangle((120, top + 320, 670, top + 700), fill=(210, 212, 220))
        draw.text((80, top + 120), text, font=font(56), fill=(30, 30, 30))
    img.save(path, optimize=True)


if __name__ == "__main__":
    product_card(HERE / "product_card.png")
    detail_page(HERE / "detail_page.png")
    print("wrote", sorted(p.name for p in HERE.glob("*.png")))
