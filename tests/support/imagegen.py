"""Generate product-style test images with known text, drawn with real fonts (Noto Sans CJK).

Every test that needs an image makes it here, so the expected text is known exactly and the images stay small.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CJK_FONT_CANDIDATES = [
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
]
SC_INDEX = 2  # Simplified Chinese face inside the .ttc collection


def cjk_font_path() -> str:
    for path in CJK_FONT_CANDIDATES:
        if Path(path).exists():
            return path
    raise FileNotFoundError("Noto Sans CJK not installed (make setup installs fonts-noto-cjk)")


def font(size: int, index: int = SC_INDEX) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(cjk_font_path(), size, index=index)


@dataclass
class DrawnLine:
    text: str
    bbox: tuple[int, int, int, int]


@dataclass
class TestImage:
    pixels: np.ndarray  # HxWx3 RGB uint8
    lines: list[DrawnLine]

    @property
    def texts(self) -> list[str]:
        return [line.text for line in self.lines]

    def png(self) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(self.pixels).save(buf, "PNG")
        return buf.getvalue()

    def save(self, path: Path, fmt: str | None = None) -> Path:
        Image.fromarray(self.pixels).save(path, fmt)
        return path


def _background(width: int, height: int, kind: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if kind == "plain":
        return Image.new("RGB", (width, height), (246, 244, 240))
    if kind == "textured":
        # Soft gradient + low-amplitude noise: a product photo backdrop, not a flat fill.
        y = np.linspace(0, 1, height)[:, None]
        x = np.linspace(0, 1, width)[None, :]
        base = 215 + 25 * y + 10 * x
        noise = rng.normal(0, 4, (height, width))
        gray = np.clip(base + noise, 0, 255)
        rgb = np.stack([gray, gray * 0.97, gray * 0.92], axis=-1).astype(np.uint8)
        return Image.fromarray(rgb)
    if kind == "dark":
        return Image.new("RGB", (width, height), (34, 40, 58))
    raise ValueError(kind)


def text_image(
    lines: list[str],
    *,
    width: int = 640,
    height: int = 480,
    font_size: int = 40,
    background: str = "plain",
    color: tuple[int, int, int] = (20, 20, 20),
    top: int = 40,
    line_gap: int = 60,
    left: int = 40,
    seed: int = 0,
) -> TestImage:
    """Draw each line on its own row; returns the image and each line's exact bbox."""
    img = _background(width, height, background, seed)
    draw = ImageDraw.Draw(img)
    fnt = font(font_size)
    drawn: list[DrawnLine] = []
    y = top
    for text in lines:
        x0, y0, x1, y1 = draw.textbbox((left, y), text, font=fnt)
        draw.text((left, y), text, font=fnt, fill=color)
        drawn.append(DrawnLine(text, (x0, y0, x1, y1)))
        y += font_size + line_gap
    return TestImage(np.asarray(img).copy(), drawn)


def tall_image(
    lines: list[str],
    *,
    width: int = 790,
    height: int = 6000,
    font_size: int = 44,
    seed: int = 0,
) -> TestImage:
    """A long product detail page: sections of text spread down the whole height, alternating backgrounds."""
    img = _background(width, height, "textured", seed)
    draw = ImageDraw.Draw(img)
    fnt = font(font_size)
    drawn: list[DrawnLine] = []
    step = height // (len(lines) + 1)
    for i, text in enumerate(lines):
        y = step * (i + 1) - font_size // 2
        x0, _, x1, _ = draw.textbbox((0, 0), text, font=fnt)
        x = (width - (x1 - x0)) // 2
        box = draw.textbbox((x, y), text, font=fnt)
        draw.text((x, y), text, font=fnt, fill=(25, 25, 30))
        drawn.append(DrawnLine(text, box))
    return TestImage(np.asarray(img).copy(), drawn)


def character_error_rate(expected: str, actual: str) -> float:
    """Levenshtein distance / len(expected), ignoring whitespace."""
    a = "".join(expected.split())
    b = "".join(actual.split())
    if not a:
        return 0.0 if not b else 1.0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1] / len(a)
