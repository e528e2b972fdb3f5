"""Realistic Korean product pages drawn in code with Noto Sans CJK KR, with the exact text of every drawn line.

Used by the Korean OCR tests and ``benchmarks/ocr_korean.py``. Each builder takes a seed and draws one kind of page
seen on Korean shopping detail pages: wrapped paragraphs, small ingredient print (11-14 px), spec tables with rules,
banners on coloured bars and pills, and a tall 780-wide detail page stacking all of these between photo-like panels.
Text comes from a fixed list of product sentences; the seed picks sizes, colours, wording and layout.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIR = Path("/usr/share/fonts/opentype/noto")
KR_INDEX = 1  # Korean face inside the Noto Sans CJK .ttc collections

TITLES = [
    "제품 상세 정보", "촉촉한 수분 크림", "데일리 코튼 셔츠", "프리미엄 구스 다운", "천연 유래 성분",
    "상품 정보 고시", "사용 방법", "세탁 및 관리 방법", "배송 안내", "교환 및 반품 안내", "브랜드 스토리",
]

SENTENCES = [
    "피부 속 깊은 곳까지 수분을 채워 하루 종일 촉촉하게 유지해 줍니다.",
    "끈적임 없이 가볍게 흡수되어 메이크업 전 단계에도 부담 없이 사용할 수 있습니다.",
    "민감한 피부도 안심하고 사용할 수 있도록 피부 자극 테스트를 완료하였습니다.",
    "부드러운 면 소재를 사용하여 피부에 닿는 촉감이 편안하고 통기성이 우수합니다.",
    "세탁 후에도 형태 변형이 적어 오랫동안 새 옷처럼 입을 수 있습니다.",
    "여유로운 핏으로 다양한 체형에 잘 어울리며 활동하기 편합니다.",
    "가볍고 따뜻한 구스 다운 충전재가 겨울철 체온을 지켜 줍니다.",
    "모든 제품은 출고 전 꼼꼼한 검수 과정을 거쳐 발송됩니다.",
    "주문 후 영업일 기준 이틀 이내에 출고되며 지역에 따라 배송이 지연될 수 있습니다.",
    "상품 수령 후 칠일 이내에 교환 및 반품 신청이 가능합니다.",
    "고객 변심에 의한 반품 시 왕복 배송비는 고객님께서 부담하셔야 합니다.",
    "모니터 해상도에 따라 실제 상품과 색상이 다소 차이가 날 수 있습니다.",
    "직사광선을 피하고 서늘한 곳에 보관해 주세요.",
    "어린이의 손이 닿지 않는 곳에 보관하십시오.",
    "사용 중 이상이 있는 경우 사용을 중지하고 전문의와 상담하십시오.",
    "적당량을 덜어 얼굴 전체에 골고루 펴 바른 뒤 가볍게 두드려 흡수시켜 줍니다.",
    "천연 유래 성분으로 만들어 온 가족이 함께 사용할 수 있습니다.",
    "미세한 입자가 모공 속 노폐물을 깨끗하게 씻어 냅니다.",
    "손세탁을 권장하며 표백제 사용과 건조기 사용은 피해 주세요.",
    "첫 구매 고객님께는 특별한 할인 쿠폰을 드립니다.",
]

INGREDIENTS = [
    "정제수", "글리세린", "부틸렌글라이콜", "나이아신아마이드", "병풀추출물", "판테놀", "알란토인", "히알루론산",
    "세라마이드엔피", "스쿠알란", "카보머", "트로메타민", "마데카소사이드", "아데노신", "녹차추출물", "알로에베라잎즙",
    "토코페롤", "소듐하이알루로네이트", "베타인", "하이드록시아세토페논", "에틸헥실글리세린", "다이프로필렌글라이콜",
    "카프릴릭/카프릭트라이글리세라이드", "잔탄검", "1,2-헥산다이올", "시어버터", "호호바씨오일", "마치현추출물",
]

SPEC_ROWS = [
    ("제품명", ["데일리 수분 크림", "코튼 오버핏 셔츠", "구스 다운 패딩"]),
    ("용량", ["50ml", "100ml", "200g"]),
    ("소재", ["면 100%", "폴리에스터 65%, 면 35%", "거위털 80%, 깃털 20%"]),
    ("색상", ["블랙, 화이트, 네이비", "아이보리, 그레이", "베이지"]),
    ("사이즈", ["S / M / L", "FREE", "90 / 95 / 100 / 105"]),
    ("제조국", ["대한민국", "베트남", "중국"]),
    ("제조사", ["(주)코스메틱랩", "한빛어패럴", "리메인컴퍼니"]),
    ("사용기한", ["제조일로부터 36개월", "개봉 후 12개월"]),
    ("세탁방법", ["단독 손세탁 권장", "드라이클리닝 전용"]),
    ("품질보증기준", ["관련 법 및 소비자 분쟁해결 기준에 따름"]),
    ("고객센터", ["1588-1234", "02-123-4567"]),
]

BANNERS = [
    "신상품 출시 기념 특가", "오늘만 무료 배송", "전 상품 최대 50% 할인", "한정 수량 특별 구성", "베스트셀러 1위",
    "리뷰 이벤트 진행 중", "첫 구매 고객 사은품 증정", "봄맞이 시즌 세일", "당일 출고", "정품 보증",
]

SMALL_NOTES = [
    "본 제품은 공정거래위원회 고시 소비자분쟁해결기준에 의거 교환 또는 보상받을 수 있습니다.",
    "이미지는 이해를 돕기 위한 연출로 실제와 다를 수 있습니다.",
    "제품 개선을 위해 디자인과 사양은 예고 없이 변경될 수 있습니다.",
]


def font_path(bold: bool = False) -> Path:
    return FONT_DIR / ("NotoSansCJK-Bold.ttc" if bold else "NotoSansCJK-Regular.ttc")


def kr_font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path(bold)), size, index=KR_INDEX)


def fonts_available() -> bool:
    return font_path(False).is_file() and font_path(True).is_file()


@dataclass
class KoreanPage:
    name: str
    kind: str
    pixels: np.ndarray  # HxWx3 RGB uint8
    lines: list[str] = field(default_factory=list)  # every drawn line, in drawing (reading) order
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # each line's ink box


class _Page:
    """A page being drawn: records every line's text and box."""

    def __init__(self, width: int, height: int, background: tuple[int, int, int] = (255, 255, 255)) -> None:
        self.img = Image.new("RGB", (width, height), background)
        self.draw = ImageDraw.Draw(self.img)
        self.lines: list[str] = []
        self.boxes: list[tuple[int, int, int, int]] = []

    @property
    def width(self) -> int:
        return self.img.width

    def text(self, xy: tuple[float, float], text: str, size: int, *, bold: bool = False,
             fill: tuple[int, int, int] = (30, 30, 30), anchor: str = "la") -> tuple[int, int, int, int]:
        fnt = kr_font(size, bold)
        box = self.draw.textbbox(xy, text, font=fnt, anchor=anchor)
        self.draw.text(xy, text, font=fnt, fill=fill, anchor=anchor)
        self.lines.append(text)
        self.boxes.append(tuple(int(v) for v in box))  # type: ignore[arg-type]
        return box

    def paragraph(self, x: int, y: int, width: int, text: str, size: int, *, spacing: float = 1.6,
                  fill: tuple[int, int, int] = (40, 40, 40), bold: bool = False, separator: str = " ") -> int:
        """Draw ``text`` wrapped at spaces (or at ``separator``) to ``width``; returns the y below the last line."""
        for line in wrap(text, kr_font(size, bold), width, separator):
            self.text((x, y), line, size, bold=bold, fill=fill)
            y += round(size * spacing)
        return y

    def finish(self, name: str, kind: str, *, jpeg_quality: int | None = None) -> KoreanPage:
        img = self.img
        if jpeg_quality is not None:  # many detail pages are served as JPEG
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=jpeg_quality)
            img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        return KoreanPage(name, kind, np.asarray(img).copy(), list(self.lines), list(self.boxes))


def wrap(text: str, fnt: ImageFont.FreeTypeFont, width: int, separator: str = " ") -> list[str]:
    """Greedy wrap after each ``separator`` (a ", " stays at the end of its line, a plain space is dropped)."""
    parts = text.split(separator)
    pieces = [part + separator for part in parts[:-1]] + [parts[-1]]
    lines: list[str] = []
    current = ""
    for piece in pieces:
        if current and fnt.getlength((current + piece).rstrip()) > width:
            lines.append(current.rstrip())
            current = piece
        else:
            current += piece
    if current.strip():
        lines.append(current.rstrip())
    return lines


def _photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A product-photo stand-in (no text): gradient backdrop, a shaded garment-like shape with knit grain, blur."""
    y = np.linspace(0, 1, height)[:, None]
    x = np.linspace(0, 1, width)[None, :]
    base = rng.uniform(60, 235, 3)
    tilt = rng.uniform(-40, 40, 3)
    rgb = base[None, None, :] + tilt[None, None, :] * (0.6 * y + 0.4 * x)[..., None]
    cx, cy = rng.uniform(0.35, 0.65), rng.uniform(0.4, 0.6)
    rx, ry = rng.uniform(0.18, 0.32), rng.uniform(0.25, 0.4)
    inside = (((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2) < 1.0
    garment = rng.uniform(40, 200, 3)
    # Cable-knit grain: braided sinusoids give the object many sharp-ish edges, as fabric photos do.
    xs, ys = np.meshgrid(np.arange(width), np.arange(height))
    period = rng.uniform(10, 22)
    knit = 18 * np.sin(2 * np.pi * xs / period + 2.5 * np.sin(2 * np.pi * ys / (period * 2.2)))
    shade = 1 - 0.35 * ((x - cx) / rx)
    obj = garment[None, None, :] * shade[..., None] + knit[..., None]
    rgb = np.where(inside[..., None], obj, rgb)
    grain = rng.normal(0, 7, (height, width))[..., None]
    img = Image.fromarray(np.clip(rgb + grain, 0, 255).astype(np.uint8))
    return img.filter(ImageFilter.GaussianBlur(0.7))


def _pick(rng: np.random.Generator, items: list, k: int) -> list:
    return [items[i] for i in rng.choice(len(items), size=min(k, len(items)), replace=False)]


def _colour(rng: np.random.Generator, dark: bool) -> tuple[int, int, int]:
    lo, hi = (15, 90) if dark else (170, 250)
    return tuple(int(v) for v in rng.integers(lo, hi, 3))  # type: ignore[return-value]


# --- sections: each draws at y and returns the y below it -------------------------------------------------------


def _paragraph_section(page: _Page, rng: np.random.Generator, y: int, *, margin: int = 50) -> int:
    title_size = int(rng.integers(30, 42))
    page.text((margin, y), str(rng.choice(TITLES)), title_size, bold=True, fill=(20, 20, 20))
    y += round(title_size * 1.8)
    size = int(rng.integers(18, 25))
    grey = int(rng.integers(30, 90))
    for _ in range(int(rng.integers(1, 3))):
        text = " ".join(_pick(rng, SENTENCES, int(rng.integers(2, 4))))
        y = page.paragraph(margin, y, page.width - 2 * margin, text, size, spacing=float(rng.uniform(1.5, 1.8)),
                           fill=(grey, grey, grey))
        y += size
    return y


def _ingredient_section(page: _Page, rng: np.random.Generator, y: int, *, margin: int = 40) -> int:
    size = int(rng.integers(11, 15))
    box_fill = (248, 246, 240) if rng.random() < 0.5 else (255, 255, 255)
    names = _pick(rng, INGREDIENTS, int(rng.integers(14, 24)))
    text = ", ".join(names)
    lines = wrap(text, kr_font(size), page.width - 2 * margin - 30, ", ")
    note = str(rng.choice(SMALL_NOTES))
    height = round(size * 2.2) + len(lines) * round(size * 1.6) + round(size * 3.2)
    page.draw.rectangle((margin, y, page.width - margin, y + height), fill=box_fill, outline=(210, 205, 195))
    inner = y + round(size * 0.8)
    page.text((margin + 15, inner), "전성분", size + 2, bold=True, fill=(40, 40, 40))
    inner += round(size * 2.0)
    for line in lines:
        page.text((margin + 15, inner), line, size, fill=(70, 70, 70))
        inner += round(size * 1.6)
    inner += round(size * 0.6)
    page.text((margin + 15, inner), note, size, fill=(110, 110, 110))
    return y + height + 30


def _table_section(page: _Page, rng: np.random.Generator, y: int, *, margin: int = 40) -> int:
    size = int(rng.integers(16, 22))
    rows = _pick(rng, SPEC_ROWS, int(rng.integers(5, 8)))
    row_h = round(size * 2.4)
    key_w = round((page.width - 2 * margin) * float(rng.uniform(0.26, 0.34)))
    head_fill = _colour(rng, dark=False)
    rule = (190, 190, 190) if rng.random() < 0.5 else (120, 120, 120)
    x0, x1 = margin, page.width - margin
    page.draw.line((x0, y, x1, y), fill=(60, 60, 60), width=2)
    for name, values in rows:
        page.draw.rectangle((x0, y + 1, x0 + key_w, y + row_h), fill=head_fill)
        page.text((x0 + 14, y + row_h / 2), name, size, bold=True, fill=(40, 40, 40), anchor="lm")
        page.text((x0 + key_w + 16, y + row_h / 2), str(rng.choice(values)), size, fill=(50, 50, 50), anchor="lm")
        y += row_h
        page.draw.line((x0, y, x1, y), fill=rule, width=1)
    page.draw.line((x0 + key_w, y - row_h * len(rows), x0 + key_w, y), fill=rule, width=1)
    return y + 40


def _banner_section(page: _Page, rng: np.random.Generator, y: int) -> int:
    kind = rng.choice(["bar", "pill", "ribbon"])
    text = str(rng.choice(BANNERS))
    size = int(rng.integers(28, 46))
    bar = _colour(rng, dark=bool(rng.random() < 0.7))
    ink = (255, 255, 255) if sum(bar) < 400 else (25, 25, 25)
    if kind == "bar":
        height = round(size * 2.2)
        page.draw.rectangle((0, y, page.width, y + height), fill=bar)
        page.text((page.width / 2, y + height / 2), text, size, bold=True, fill=ink, anchor="mm")
    else:
        fnt = kr_font(size, bold=True)
        tw = fnt.getlength(text)
        height = round(size * 1.9)
        left = (page.width - tw) / 2 - size
        radius = height // 2 if kind == "pill" else 6
        page.draw.rounded_rectangle((left, y, left + tw + 2 * size, y + height), radius=radius, fill=bar)
        page.text((page.width / 2, y + height / 2), text, size, bold=True, fill=ink, anchor="mm")
    y += height + round(size * 0.8)
    sub = str(rng.choice(SENTENCES))
    sub_size = int(rng.integers(17, 22))
    lines = wrap(sub, kr_font(sub_size), page.width - 120)
    for line in lines:
        page.text((page.width / 2, y), line, sub_size, fill=(60, 60, 60), anchor="ma")
        y += round(sub_size * 1.6)
    return y + 30


def _photo_section(page: _Page, rng: np.random.Generator, y: int, height: int, *, caption: bool = True) -> int:
    margin = int(rng.integers(0, 40))
    photo = _photo(rng, page.width - 2 * margin, height)
    page.img.paste(photo, (margin, y))
    if caption and rng.random() < 0.5:  # a white label printed on the photo's dark corner, like "겉감" / "안감"
        size = int(rng.integers(20, 28))
        x = page.width - margin - 20
        page.draw.rectangle((x - size * 3, y + height - size * 2, x + 10, y + height - 6), fill=(30, 30, 34))
        page.text((x, y + height - size), str(rng.choice(["겉감", "안감", "디테일", "원단"])), size, bold=True,
                  fill=(250, 250, 250), anchor="rm")
    y += height + 14
    if caption:
        size = int(rng.integers(15, 19))
        page.text((page.width / 2, y), str(rng.choice(SENTENCES[:8])).split(" ", 3)[-1], size, fill=(110, 110, 110),
                  anchor="ma")
        y += round(size * 2.2)
    return y + 30


def _columns_section(page: _Page, rng: np.random.Generator, y: int, *, margin: int = 40) -> int:
    """Side-by-side tiles with a bold label and a small description under each (a fit or colour guide)."""
    count = int(rng.integers(2, 4))
    gap = 24
    tile_w = (page.width - 2 * margin - gap * (count - 1)) // count
    tile_h = round(tile_w * 1.1)
    labels = _pick(rng, ["스탠다드핏", "오버핏", "베이직핏", "블랙", "아이보리", "네이비", "차콜"], count)
    notes = _pick(rng, ["몸에 알맞게 정돈된 핏", "여유있는 실루엣", "편안한 기본 핏", "어디에나 어울리는 색",
                        "은은한 광택감"], count)
    label_size, note_size = int(rng.integers(22, 28)), int(rng.integers(13, 16))
    for i in range(count):
        x = margin + i * (tile_w + gap)
        page.img.paste(_photo(rng, tile_w, tile_h), (x, y))
    for i in range(count):
        cx = margin + i * (tile_w + gap) + tile_w / 2
        page.text((cx, y + tile_h + 20), labels[i], label_size, bold=True, fill=(40, 40, 40), anchor="ma")
    for i in range(count):
        cx = margin + i * (tile_w + gap) + tile_w / 2
        page.text((cx, y + tile_h + 30 + label_size * 1.4), notes[i], note_size, fill=(90, 90, 90), anchor="ma")
    return y + tile_h + 40 + round(label_size * 1.4) + note_size * 2


# --- pages -------------------------------------------------------------------------------------------------------


def paragraph_page(seed: int = 0, width: int = 800) -> KoreanPage:
    rng = np.random.default_rng((seed, 1))
    page = _Page(width, 2400)
    y = _paragraph_section(page, rng, 50)
    y = _paragraph_section(page, rng, y + 30)
    return _crop(page, y + 40).finish(f"paragraph-{seed}", "paragraph", jpeg_quality=_quality(rng))


def ingredient_page(seed: int = 0, width: int = 760) -> KoreanPage:
    rng = np.random.default_rng((seed, 2))
    page = _Page(width, 1600)
    y = page.paragraph(40, 40, width - 80, str(rng.choice(SENTENCES)), 20, fill=(40, 40, 40))
    y = _ingredient_section(page, rng, y + 20)
    return _crop(page, y + 20).finish(f"ingredients-{seed}", "ingredients", jpeg_quality=_quality(rng))


def spec_table_page(seed: int = 0, width: int = 800) -> KoreanPage:
    rng = np.random.default_rng((seed, 3))
    page = _Page(width, 1600)
    page.text((40, 40), "상품 정보 고시", int(rng.integers(26, 34)), bold=True, fill=(20, 20, 20))
    y = _table_section(page, rng, 110)
    return _crop(page, y).finish(f"spec-table-{seed}", "table", jpeg_quality=_quality(rng))


def banner_page(seed: int = 0, width: int = 800) -> KoreanPage:
    rng = np.random.default_rng((seed, 4))
    page = _Page(width, 2400, background=(250, 248, 245))
    y = 40
    for _ in range(3):
        y = _banner_section(page, rng, y)
    return _crop(page, y).finish(f"banners-{seed}", "banner", jpeg_quality=_quality(rng))


def detail_page(seed: int = 0, width: int = 780, min_height: int = 4000) -> KoreanPage:
    """A tall detail page: banner, photos with captions, paragraphs, a spec table, ingredients, repeated."""
    rng = np.random.default_rng((seed, 5))
    page = _Page(width, min_height + 3000)
    y = 30
    sections = ["banner", "photo", "paragraph", "columns", "table", "photo", "banner", "ingredients", "paragraph"]
    for kind in sections:
        if kind == "banner":
            y = _banner_section(page, rng, y)
        elif kind == "photo":
            y = _photo_section(page, rng, y, int(rng.integers(380, 620)))
        elif kind == "paragraph":
            y = _paragraph_section(page, rng, y)
        elif kind == "table":
            y = _table_section(page, rng, y)
        elif kind == "columns":
            y = _columns_section(page, rng, y)
        else:
            y = _ingredient_section(page, rng, y)
        y += int(rng.integers(40, 120))
    while y < min_height:
        y = _photo_section(page, rng, y, int(rng.integers(300, 500)), caption=False)
    return _crop(page, y).finish(f"detail-tall-{seed}", "tall", jpeg_quality=_quality(rng))


def _quality(rng: np.random.Generator) -> int | None:
    return int(rng.integers(80, 93)) if rng.random() < 0.5 else None


def _crop(page: _Page, height: int) -> _Page:
    page.img = page.img.crop((0, 0, page.img.width, max(1, min(height, page.img.height))))
    page.draw = ImageDraw.Draw(page.img)
    return page


def benchmark_set(seed: int = 0) -> list[KoreanPage]:
    """The generated half of ``benchmarks/ocr_korean.py``: two of each page kind and one tall page."""
    return [
        paragraph_page(seed), paragraph_page(seed + 1),
        ingredient_page(seed), ingredient_page(seed + 1),
        spec_table_page(seed), spec_table_page(seed + 1),
        banner_page(seed), banner_page(seed + 1),
        detail_page(seed),
    ]
