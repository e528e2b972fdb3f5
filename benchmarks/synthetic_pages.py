"""Seeded synthetic product images with known clean plates and per-line ground truth.

What real product images have, drawn procedurally (no downloads): photographic backgrounds (multi-octave noise,
bokeh, fabric weave, vignette), gradients, a product shape with a soft shadow, price bands and label bars with
rounded corners, slanted stripes, round badges, translucent caption panels, icon rows, spec tables; text in a
headline / subline / body hierarchy, plain, outlined or shadowed, bold or regular; Latin brand lines, prices and
URLs that the pipeline must keep untouched. ``detail`` pages are 790x6000 detail pages made of stacked sections.

Everything is drawn on a float canvas: the decorated background first (that is the clean plate), then the text
layer by layer with exact alpha. So outside ``glyph_mask`` the page equals the clean plate bit for bit, and the
clean plate holds no text at all. Same seed, same pixels.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

CJK_REGULAR = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
CJK_BOLD = "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"
SC_INDEX = 2  # Simplified Chinese face in the collections
LATIN_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"

HEADLINES = [
    "新品上市", "限时特惠", "夏季清凉", "透气清爽", "一切皆有可能", "品质之选", "匠心打造", "舒适随行", "焕新登场",
    "年终盛典", "爆款直降", "轻奢质感", "自然好物", "极速快充", "智享生活", "温暖过冬", "经典永不过时", "柔软亲肤",
    "大牌同款", "源头好货", "超值套装", "专业护理", "一机多用", "静享好眠",
]
SUBLINES = [
    "摆脱闷热感 轻薄透气", "精选优质面料 柔软亲肤", "预定享豪礼 限量发售", "第二件半价 多买多省", "官方正品 假一赔十",
    "七天无理由退换货", "全国包邮 极速发货", "下单即送精美礼品", "高清大屏 畅快体验", "天然成分 温和不刺激",
    "加厚保暖 轻松过冬", "防水防尘 户外无忧", "一键操作 简单易用", "大容量 长续航", "立体剪裁 修身显瘦",
    "新老客户同享优惠", "买二送一 数量有限", "工厂直供 品质保障",
]
BODY = [
    "采用高密度纯棉面料，透气吸汗不闷热", "立体剪裁设计，贴合身形更显气质", "加厚保暖内里，寒冬也能轻松应对",
    "精细走线工艺，耐穿耐洗不变形", "大容量电池，一次充电持续使用两天", "防水防尘设计，户外使用更放心",
    "天然植物成分，温和不刺激", "多色可选，满足不同场合搭配需求", "人体工学手柄，长时间握持不累",
    "食品级材质，安全无异味", "静音电机运行，夜间使用不打扰", "可拆卸设计，清洗更方便",
    "细腻触感，贴身穿着更舒适", "智能温控，恒温保持最佳口感", "轻巧机身，随身携带毫无负担",
    "升级加粗面料，不起球不褪色", "双层防漏结构，倒置也不漏水", "每一件都经过严格质检",
]
LABELS = [
    "限时抢购", "满减优惠", "全场包邮", "会员专享", "领券立减", "今日特价", "爆款推荐", "细节展示", "产品参数",
    "尺码建议", "洗涤说明", "面料成分", "产品卖点", "品牌故事", "售后保障", "使用方法",
]
BADGES = ["新品", "热卖", "爆款", "包邮", "推荐", "特价", "限量", "正品"]
PRICE_LABELS = ["到手价", "券后价", "活动价", "特惠价", "限时价"]
FEATURES = ["清凉冰爽", "舒适透气", "不易褪色", "防水防污", "轻薄便携", "快速充电", "静音设计", "安全无毒",
            "抗菌防臭", "耐磨耐用", "柔软亲肤", "持久留香"]
SPEC_KEYS = ["面料", "产地", "颜色", "尺码", "重量", "功率", "容量", "材质", "款式", "适用季节"]
SPEC_VALUES = ["纯棉", "浙江杭州", "黑色 白色 灰色", "均码", "约三百五十克", "一百二十瓦", "五百毫升", "不锈钢",
               "宽松休闲", "春夏秋季"]
BRANDS = ["AURORA", "LUMINA", "NOVA", "VELOUR", "KASTEN", "MERIDIAN", "SOLENNE", "TERRA", "ORBIS", "HALDEN"]
BRAND_SUFFIXES = ["", " Pro", " X9", " Neo 8", " SPORT", " Classic", " Air", " Max"]
LATIN_TAGLINES = ["THE DETAILS SHOW", "DESIGN FOR LIFE", "NEW COLLECTION", "PREMIUM QUALITY", "SUMMER 2024"]
URL_HOSTS = ["lumina-store.com", "aurora-shop.cn", "novahome.com", "terra-living.cn"]

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]


@dataclass
class TruthLine:
    """One drawn line of text: what, where (ink box incl. outline, without shadow), how big, and whether the
    pipeline should keep it untouched (Latin brand lines, prices, URLs) rather than translate it."""

    text: str
    box: Box
    font_px: int
    bold: bool
    keep: bool
    kind: str  # "zh" | "brand" | "price" | "url"
    role: str  # "headline" | "sub" | "body" | "label" | "badge" | "price" | "caption" | "brand" | "spec"
    style: str  # "plain" | "outline" | "shadow"
    fill: RGB = (0, 0, 0)


@dataclass
class SyntheticPage:
    name: str
    kind: str  # "main" (800x800) | "detail" (790x6000)
    seed: int
    pixels: np.ndarray  # HxWx3 uint8 RGB
    clean: np.ndarray  # the same page with no text
    glyph_mask: np.ndarray  # HxW bool: pixels any text layer (fill, outline, shadow) touched
    lines: list[TruthLine] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    def truth(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "seed": self.seed, "width": self.size[0],
                "height": self.size[1], "lines": [asdict(line) for line in self.lines]}

    def save(self, folder: Path) -> dict[str, str]:
        """Write ``<name>.png``, ``<name>.clean.png``, ``<name>.glyphs.png`` and ``<name>.json``; their paths."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"page": folder / f"{self.name}.png", "clean": folder / f"{self.name}.clean.png",
                 "glyphs": folder / f"{self.name}.glyphs.png", "truth": folder / f"{self.name}.json"}
        Image.fromarray(self.pixels).save(paths["page"])
        Image.fromarray(self.clean).save(paths["clean"])
        Image.fromarray(self.glyph_mask.astype(np.uint8) * 255).save(paths["glyphs"])
        paths["truth"].write_text(json.dumps(self.truth(), ensure_ascii=False, indent=1), encoding="utf-8")
        return {k: str(v) for k, v in paths.items()}


# --- fonts -----------------------------------------------------------------------------------------------------

_FONTS: dict[tuple[str, int, int], ImageFont.FreeTypeFont] = {}


def _font(size: int, bold: bool, latin: bool = False) -> ImageFont.FreeTypeFont:
    if latin and bold and Path(LATIN_BOLD).is_file():
        key = (LATIN_BOLD, 0, size)
    else:
        key = (CJK_BOLD if bold else CJK_REGULAR, SC_INDEX, size)
    if key not in _FONTS:
        _FONTS[key] = ImageFont.truetype(key[0], size, index=key[1])
    return _FONTS[key]


def fonts_available() -> bool:
    return Path(CJK_REGULAR).is_file() and Path(CJK_BOLD).is_file()


# --- colour helpers --------------------------------------------------------------------------------------------


def _luminance(rgb: np.ndarray | RGB) -> float:
    c = np.asarray(rgb, dtype=np.float64)[:3] / 255.0
    lin = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return float(0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2])


def _contrast(a: np.ndarray | RGB, b: np.ndarray | RGB) -> float:
    la, lb = _luminance(a), _luminance(b)
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


DARK_INKS: list[RGB] = [(24, 24, 28), (40, 40, 48), (150, 20, 30), (20, 50, 120), (70, 40, 20), (10, 70, 60)]
LIGHT_INKS: list[RGB] = [(255, 255, 255), (250, 246, 230), (255, 226, 120), (255, 240, 200)]
ACCENTS: list[RGB] = [(214, 38, 44), (232, 84, 24), (226, 40, 110), (30, 90, 200), (20, 130, 90), (40, 40, 46),
                      (176, 120, 40), (120, 60, 170)]


def _pick_ink(rng: np.random.Generator, background: np.ndarray) -> RGB:
    """An ink with contrast >= 3.5 on ``background`` (the mean plate colour under the line)."""
    options = [c for c in DARK_INKS + LIGHT_INKS if _contrast(c, background) >= 3.5]
    if not options:
        options = [(0, 0, 0) if _luminance(background) > 0.3 else (255, 255, 255)]
    return options[int(rng.integers(len(options)))]


def _jitter(rng: np.random.Generator, color: RGB, amount: int = 18) -> RGB:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in color)  # type: ignore[return-value]


# --- backgrounds (float32 HxWx3, 0..255) -----------------------------------------------------------------------


def _value_noise(rng: np.random.Generator, height: int, width: int, octaves: int = 5, base: int = 3) -> np.ndarray:
    out = np.zeros((height, width), np.float32)
    amp, total = 1.0, 0.0
    for octave in range(octaves):
        gw = max(2, int(base * 2 ** octave))
        gh = max(2, int(gw * height / width))
        grid = rng.random((gh, gw)).astype(np.float32)
        out += amp * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    out /= total
    return (out - out.min()) / max(1e-6, float(out.max() - out.min()))


def _palette_map(values: np.ndarray, colors: list[RGB]) -> np.ndarray:
    stops = np.linspace(0, 1, len(colors))
    channels = [np.interp(values, stops, [c[k] for c in colors]) for k in range(3)]
    return np.stack(channels, axis=-1).astype(np.float32)


def _photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A photographic backdrop: soft multi-colour noise, bokeh discs, film grain and a vignette."""
    hue = ACCENTS[int(rng.integers(len(ACCENTS)))]
    light = tuple(int(200 + rng.integers(0, 50)) for _ in range(3))
    dark = tuple(int(c * 0.35) for c in hue)
    mid = tuple(int((a + b) / 2) for a, b in zip(hue, light, strict=True))
    colors: list[RGB] = [dark, mid, light] if rng.random() < 0.5 else [light, mid, hue]  # type: ignore[list-item]
    img = _palette_map(_value_noise(rng, height, width, octaves=6, base=2), colors)
    bokeh = np.zeros((height, width), np.float32)
    for _ in range(int(rng.integers(6, 18))):
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        radius = int(rng.integers(12, max(13, width // 8)))
        cv2.circle(bokeh, (cx, cy), radius, float(rng.uniform(0.15, 0.45)), -1, lineType=cv2.LINE_AA)
    bokeh = cv2.GaussianBlur(bokeh, (0, 0), 6)
    img = img * (1 - bokeh[..., None]) + 255 * bokeh[..., None]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    dist = np.sqrt(((xx - width / 2) / width) ** 2 + ((yy - height / 2) / max(width, min(height, 2 * width))) ** 2)
    img *= (1 - 0.35 * np.clip(dist, 0, 1) ** 2)[..., None]
    img += rng.normal(0, 3.0, (height, width, 1)).astype(np.float32)
    return np.clip(img, 0, 255)


def _gradient(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    a = np.array(ACCENTS[int(rng.integers(len(ACCENTS)))], np.float32)
    b = np.array([int(225 + rng.integers(0, 31)) for _ in range(3)], np.float32)
    if rng.random() < 0.3:
        a, b = a * 0.3, a
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if rng.random() < 0.5:
        angle = rng.uniform(0, math.pi)
        t = (xx * math.cos(angle) + yy * math.sin(angle))
    else:
        cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.1, 0.5) * min(height, width)
        t = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
    img = a * (1 - t[..., None]) + b * t[..., None]
    img += rng.normal(0, 1.5, (height, width, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.float32)


def _fabric(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A knit / weave close-up: two crossing sine gratings warped by noise, in one garment colour."""
    base = np.array([int(rng.integers(60, 240)) for _ in range(3)], np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    warp = _value_noise(rng, height, width, octaves=3, base=4) * 6
    period = float(rng.uniform(5, 9))
    weave = np.sin((xx + warp) * 2 * math.pi / period) * np.sin((yy - warp) * 2 * math.pi / (period * 1.3))
    shade = 0.85 + 0.15 * _value_noise(rng, height, width, octaves=4, base=2)
    img = base * shade[..., None] * (1 + 0.08 * weave[..., None])
    return np.clip(img, 0, 255).astype(np.float32)


def _flat(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    color = np.array([int(232 + rng.integers(0, 24)) for _ in range(3)], np.float32)
    return np.broadcast_to(color, (height, width, 3)).astype(np.float32).copy()


BACKGROUNDS = {"photo": _photo, "gradient": _gradient, "fabric": _fabric, "flat": _flat}


# --- shapes on the plate ----------------------------------------------------------------------------------------


def _paint(canvas: np.ndarray, alpha: np.ndarray, color: np.ndarray | RGB, box: Box) -> None:
    """Alpha-blend ``color`` (RGB or an HxWx3 patch) into ``canvas`` at ``box`` with ``alpha`` (0..1, HxW)."""
    x0, y0, x1, y1 = box
    if alpha.shape != (y1 - y0, x1 - x0):
        raise ValueError(f"alpha {alpha.shape} does not match box {box}")
    H, W = canvas.shape[:2]
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
    if cx0 >= cx1 or cy0 >= cy1:
        return
    a = alpha[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0, None]
    col = np.asarray(color, np.float32)
    if col.ndim == 3:
        col = col[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    region = canvas[cy0:cy1, cx0:cx1]
    canvas[cy0:cy1, cx0:cx1] = region * (1 - a) + col * a


def _rounded_alpha(width: int, height: int, radius: int) -> np.ndarray:
    scale = 4  # supersampled for smooth corners
    img = Image.new("L", (width * scale, height * scale), 0)
    ImageDraw.Draw(img).rounded_rectangle((0, 0, width * scale - 1, height * scale - 1), radius=radius * scale,
                                          fill=255)
    return np.asarray(img.resize((width, height), Image.Resampling.LANCZOS), np.float32) / 255.0


def _panel_fill(rng: np.random.Generator, width: int, height: int, color: RGB, gradient: bool) -> np.ndarray:
    col = np.array(color, np.float32)
    if not gradient:
        return np.broadcast_to(col, (height, width, 3)).astype(np.float32)
    other = np.clip(col * rng.uniform(0.55, 0.8) + rng.uniform(0, 60), 0, 255)
    t = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    return (col * (1 - t) + other * t) * np.ones((height, 1, 1), np.float32)


def rounded_panel(canvas: np.ndarray, rng: np.random.Generator, box: Box, color: RGB, *, radius: int | None = None,
                  gradient: bool = False, opacity: float = 1.0) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if w < 2 or h < 2:
        return
    r = radius if radius is not None else h // 2
    alpha = _rounded_alpha(w, h, max(0, min(r, h // 2, w // 2))) * opacity
    _paint(canvas, alpha, _panel_fill(rng, w, h, color, gradient), box)


def slanted_stripes(canvas: np.ndarray, rng: np.random.Generator, box: Box, a: RGB, b: RGB) -> None:
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = float(rng.uniform(18, 40))
    s = np.clip(np.sin((xx + yy * rng.uniform(0.6, 1.4)) * 2 * math.pi / period) * 3, -1, 1) * 0.5 + 0.5
    patch = np.array(a, np.float32) * s[..., None] + np.array(b, np.float32) * (1 - s[..., None])
    _paint(canvas, np.ones((h, w), np.float32), patch, box)


def badge(canvas: np.ndarray, center: tuple[int, int], radius: int, color: RGB, star: bool) -> None:
    cx, cy = center
    size = 2 * radius + 4
    img = Image.new("L", (size * 4, size * 4), 0)
    draw = ImageDraw.Draw(img)
    c = size * 2
    if star:
        points = []
        for k in range(32):
            r = radius * 4 * (1.0 if k % 2 == 0 else 0.86)
            ang = math.pi * k / 16
            points.append((c + r * math.cos(ang), c + r * math.sin(ang)))
        draw.polygon(points, fill=255)
    else:
        draw.ellipse((c - radius * 4, c - radius * 4, c + radius * 4, c + radius * 4), fill=255)
    alpha = np.asarray(img.resize((size, size), Image.Resampling.LANCZOS), np.float32) / 255
    _paint(canvas, alpha, color, (cx - size // 2, cy - size // 2, cx - size // 2 + size, cy - size // 2 + size))


def product(canvas: np.ndarray, rng: np.random.Generator, box: Box) -> None:
    """A product on the backdrop: a shaded bottle or a phone/box slab, with a soft drop shadow."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if w < 20 or h < 40:
        return
    shadow = np.zeros(canvas.shape[:2], np.float32)
    cv2.ellipse(shadow, ((x0 + x1) // 2, y1 - h // 40), (w // 2, max(4, h // 16)), 0, 0, 360, 0.5, -1)
    shadow = cv2.GaussianBlur(shadow, (0, 0), max(3, w // 12))
    canvas *= (1 - shadow[..., None])
    color = np.array(ACCENTS[int(rng.integers(len(ACCENTS)))], np.float32)
    xs = np.linspace(-1, 1, w, dtype=np.float32)
    if rng.random() < 0.5:  # bottle: cylinder shading, neck and cap
        body_top = y0 + h // 4
        shade = (0.55 + 0.45 * np.sqrt(np.clip(1 - xs ** 2, 0, 1)))[None, :, None]
        hi = np.exp(-((xs + 0.45) / 0.12) ** 2)[None, :, None] * 90
        patch = np.clip(color * shade + hi, 0, 255) * np.ones((y1 - body_top, 1, 1), np.float32)
        _paint(canvas, _rounded_alpha(w, y1 - body_top, w // 5), patch, (x0, body_top, x1, y1))
        nw = max(6, w // 3)
        nx0 = x0 + (w - nw) // 2
        neck = np.clip(color * 0.8, 0, 255)
        _paint(canvas, _rounded_alpha(nw, body_top - y0 - h // 12, nw // 4), neck,
               (nx0, y0 + h // 12, nx0 + nw, body_top))
        _paint(canvas, _rounded_alpha(nw + 8, h // 10, 6), (235, 235, 240), (nx0 - 4, y0, nx0 + nw + 4, y0 + h // 10))
        # An empty white label on the bottle: real labels carry text, ours must not (clean plate).
        lw, lh = int(w * 0.7), h // 5
        lx0 = x0 + (w - lw) // 2
        _paint(canvas, _rounded_alpha(lw, lh, 8) * 0.9, (245, 245, 240),
               (lx0, body_top + h // 6, lx0 + lw, body_top + h // 6 + lh))
    else:  # slab: a phone or a box, dark body with a glossy screen gradient
        body = np.array([30, 32, 38], np.float32) if rng.random() < 0.5 else color * 0.6
        _paint(canvas, _rounded_alpha(w, h, max(6, w // 10)), body, box)
        m = max(4, w // 18)
        sw, sh = w - 2 * m, h - 2 * m
        t = np.linspace(0, 1, sh, dtype=np.float32)[:, None, None]
        screen = (color * (1 - t) + np.array([240, 240, 255], np.float32) * t) * np.ones((1, sw, 1), np.float32)
        _paint(canvas, _rounded_alpha(sw, sh, max(4, w // 14)), screen, (x0 + m, y0 + m, x0 + m + sw, y0 + m + sh))


def icon(canvas: np.ndarray, rng: np.random.Generator, center: tuple[int, int], radius: int, color: RGB) -> None:
    """A round feature icon with a simple pictogram (no letters)."""
    badge(canvas, center, radius, color, star=False)
    cx, cy = center
    glyph = np.zeros(canvas.shape[:2], np.float32)
    kind = int(rng.integers(3))
    r = radius // 2
    if kind == 0:  # snowflake-ish
        for k in range(3):
            ang = math.pi * k / 3
            dx, dy = int(r * math.cos(ang)), int(r * math.sin(ang))
            cv2.line(glyph, (cx - dx, cy - dy), (cx + dx, cy + dy), 1.0, max(2, radius // 10), cv2.LINE_AA)
    elif kind == 1:  # fan
        for k in range(4):
            cv2.ellipse(glyph, (cx, cy), (r, r // 3), 45 * k, 0, 180, 1.0, max(2, radius // 12), cv2.LINE_AA)
    else:  # drop
        cv2.circle(glyph, (cx, cy + r // 4), r // 2 + 2, 1.0, -1, cv2.LINE_AA)
        pts = np.array([[cx, cy - r], [cx - r // 2, cy + r // 4], [cx + r // 2, cy + r // 4]], np.int32)
        cv2.fillConvexPoly(glyph, pts, 1.0, cv2.LINE_AA)
    x0, y0 = max(0, cx - radius), max(0, cy - radius)
    x1, y1 = min(canvas.shape[1], cx + radius + 1), min(canvas.shape[0], cy + radius + 1)
    _paint(canvas, glyph[y0:y1, x0:x1], (255, 255, 255), (x0, y0, x1, y1))


# --- text -----------------------------------------------------------------------------------------------------


class Writer:
    """Draws text lines on the page canvas with exact alpha and records their truth."""

    def __init__(self, canvas: np.ndarray, rng: np.random.Generator) -> None:
        self.canvas = canvas
        self.rng = rng
        self.glyphs = np.zeros(canvas.shape[:2], bool)
        self.lines: list[TruthLine] = []
        self.plate = canvas.copy()  # refreshed by ``freeze`` once all decoration is drawn

    def freeze(self) -> None:
        self.plate = self.canvas.copy()

    @staticmethod
    def measure(text: str, size: int, bold: bool, latin: bool = False, stroke: int = 0) -> tuple[int, int, int, int]:
        img = ImageDraw.Draw(Image.new("L", (1, 1)))
        return img.textbbox((0, 0), text, font=_font(size, bold, latin), stroke_width=stroke)

    def fit(self, text: str, size: int, bold: bool, max_width: int, latin: bool = False) -> int:
        """The largest size <= ``size`` at which ``text`` is at most ``max_width`` wide."""
        while size > 14:
            x0, _, x1, _ = self.measure(text, size, bold, latin)
            if x1 - x0 <= max_width:
                break
            size -= 2
        return size

    def background_under(self, box: Box) -> np.ndarray:
        x0, y0, x1, y1 = box
        H, W = self.canvas.shape[:2]
        patch = self.plate[max(0, y0):min(H, y1), max(0, x0):min(W, x1)]
        return patch.reshape(-1, 3).mean(axis=0) if patch.size else np.array([128, 128, 128], np.float32)

    def write(self, text: str, xy: tuple[int, int], size: int, *, bold: bool, kind: str = "zh", role: str = "body",
              fill: RGB | None = None, style: str = "plain", latin: bool = False, anchor: str = "left",
              stroke_color: RGB | None = None) -> TruthLine:
        """Draw ``text`` with its top-left ink corner at ``xy`` (``anchor="center"``: xy is the top centre)."""
        font = _font(size, bold, latin)
        stroke = max(2, size // 14) if style == "outline" else 0
        bx0, by0, bx1, by1 = self.measure(text, size, bold, latin, stroke)
        x, y = xy
        if anchor == "center":
            x -= (bx1 - bx0) // 2
        x -= bx0
        y -= by0
        ink_box = (x + bx0, y + by0, x + bx1, y + by1)
        background = self.background_under(ink_box)
        if fill is None:
            fill = _pick_ink(self.rng, background)
        if style == "outline" and stroke_color is None:
            stroke_color = (20, 20, 24) if _luminance(fill) > 0.4 else (255, 255, 255)
        shadow_off = max(2, size // 16) if style == "shadow" else 0
        blur = max(1.0, size / 28) if style == "shadow" else 0.0
        pad = int(shadow_off + 3 * blur + stroke + 4)
        H, W = self.canvas.shape[:2]
        rx0, ry0 = max(0, ink_box[0] - pad), max(0, ink_box[1] - pad)
        rx1, ry1 = min(W, ink_box[2] + pad), min(H, ink_box[3] + pad)
        if rx1 <= rx0 or ry1 <= ry0:
            raise ValueError(f"line {text!r} at {xy} is outside the page")
        region = (rx0, ry0, rx1, ry1)

        def layer(offset: tuple[int, int], with_stroke: bool) -> np.ndarray:
            img = Image.new("L", (rx1 - rx0, ry1 - ry0), 0)
            ImageDraw.Draw(img).text((x - rx0 + offset[0], y - ry0 + offset[1]), text, font=font, fill=255,
                                     stroke_width=stroke if with_stroke else 0, stroke_fill=255)
            return np.asarray(img, np.float32)

        touched = np.zeros((ry1 - ry0, rx1 - rx0), bool)
        if style == "shadow":
            alpha = cv2.GaussianBlur(layer((shadow_off, shadow_off), False), (0, 0), blur) * 0.75
            alpha = np.round(alpha) / 255.0  # quantised: exactly 0 where the blur has faded out
            _paint(self.canvas, alpha, (0, 0, 0), region)
            touched |= alpha > 0
        if stroke:
            alpha = layer((0, 0), True) / 255.0
            _paint(self.canvas, alpha, stroke_color or (0, 0, 0), region)
            touched |= alpha > 0
        alpha = layer((0, 0), False) / 255.0
        _paint(self.canvas, alpha, fill, region)
        touched |= alpha > 0
        self.glyphs[ry0:ry1, rx0:rx1] |= touched
        line = TruthLine(text=text, box=tuple(int(v) for v in ink_box), font_px=size, bold=bold,  # type: ignore[arg-type]
                         keep=kind != "zh", kind=kind, role=role, style=style, fill=tuple(int(c) for c in fill))  # type: ignore[arg-type]
        self.lines.append(line)
        return line


def _choice(rng: np.random.Generator, items: list[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _brand(rng: np.random.Generator) -> str:
    return _choice(rng, BRANDS) + _choice(rng, BRAND_SUFFIXES)


def _price(rng: np.random.Generator) -> str:
    return f"¥{int(rng.integers(19, 3000))}"


def _style(rng: np.random.Generator, background: str) -> str:
    """Busy backgrounds get outlined or shadowed display text more often, as on real banners."""
    r = rng.random()
    if background in ("photo", "fabric"):
        return "shadow" if r < 0.4 else "outline" if r < 0.7 else "plain"
    return "outline" if r < 0.15 else "shadow" if r < 0.3 else "plain"


# --- page templates --------------------------------------------------------------------------------------------


def _main_page(rng: np.random.Generator) -> tuple[np.ndarray, Writer, str]:
    """An 800x800 main image: one of three layouts seen on marketplaces."""
    W = H = 800
    bg_kind = _choice(rng, ["photo", "gradient", "fabric", "flat", "photo", "gradient"])
    canvas = BACKGROUNDS[bg_kind](rng, H, W)
    w = Writer(canvas, rng)
    layout = int(rng.integers(3))
    accent = ACCENTS[int(rng.integers(len(ACCENTS)))]

    if layout == 0:  # text left, product right, price band at the bottom, badge in a corner
        product(canvas, rng, (470, 170, 470 + int(rng.integers(180, 260)), 640))
        band_top = int(rng.integers(640, 680))
        rounded_panel(canvas, rng, (30, band_top, 770, 780), accent, radius=18, gradient=True)
        badge(canvas, (700, 90), 58, _jitter(rng, (220, 30, 40)), star=bool(rng.random() < 0.5))
        pill_y = int(rng.integers(420, 480))
        pill_text = _choice(rng, LABELS)
        pill_size = int(rng.integers(28, 36))
        pw = Writer.measure(pill_text, pill_size, True)[2] + 2 * pill_size
        rounded_panel(canvas, rng, (48, pill_y, 48 + pw, pill_y + int(pill_size * 1.7)), _jitter(rng, (30, 30, 36)))
        w.freeze()
        w.write(_brand(rng), (50, 50), int(rng.integers(28, 44)), bold=True, kind="brand", role="brand", latin=True)
        head = w.lines[-1].box[3] + int(rng.integers(40, 70))
        text = _choice(rng, HEADLINES)
        head_size = w.fit(text, int(rng.integers(64, 92)), True, 420)
        line = w.write(text, (50, head), head_size, bold=True, role="headline", style=_style(rng, bg_kind))
        sub = _choice(rng, SUBLINES)
        sub_size = w.fit(sub, int(rng.integers(30, 42)), False, 410)
        w.write(sub, (52, line.box[3] + int(rng.integers(24, 40))), sub_size, bold=False, role="sub")
        w.write(pill_text, (48 + pill_size, pill_y + int(pill_size * 0.33)), pill_size, bold=True, role="label",
                fill=(255, 255, 255))
        w.write(_choice(rng, BADGES), (700, 90 - 22), 40, bold=True, role="badge", fill=(255, 255, 255),
                anchor="center")
        label_size = int(rng.integers(30, 38))
        w.write(_choice(rng, PRICE_LABELS), (70, band_top + 38), label_size, bold=True, role="label",
                fill=(255, 255, 255))
        w.write(_price(rng), (90 + 3 * label_size + 30, band_top + 18), int(rng.integers(58, 70)), bold=True,
                kind="price", role="price", fill=(255, 245, 200), latin=True)

    elif layout == 1:  # headline on slanted stripes, product centre, translucent caption panel, icon row
        stripe_h = int(rng.integers(130, 170))
        slanted_stripes(canvas, rng, (0, 30, W, 30 + stripe_h), _jitter(rng, accent, 10),
                        tuple(int(c * 0.8) for c in accent))  # type: ignore[arg-type]
        product(canvas, rng, (290, 230, 290 + int(rng.integers(170, 230)), 560))
        panel_top = 560
        rounded_panel(canvas, rng, (0, panel_top, W, panel_top + 110), (20, 20, 24), radius=0,
                      opacity=float(rng.uniform(0.45, 0.65)))
        icons_y = 720
        colors = [_jitter(rng, accent, 25) for _ in range(3)]
        for k in range(3):
            icon(canvas, rng, (170 + k * 230, icons_y - 36), 30, colors[k])
        w.freeze()
        text = _choice(rng, HEADLINES)
        size = w.fit(text, int(rng.integers(64, 90)), True, 700)
        w.write(text, (W // 2, 30 + (stripe_h - size) // 2 - 4), size, bold=True, role="headline",
                fill=(255, 255, 255), style=_style(rng, "photo"), anchor="center")
        w.write(_choice(rng, LATIN_TAGLINES), (W // 2, 30 + stripe_h + 18), int(rng.integers(22, 30)), bold=True,
                kind="brand", role="brand", latin=True, anchor="center")
        cap = _choice(rng, SUBLINES)
        w.write(cap, (W // 2, panel_top + 28), w.fit(cap, int(rng.integers(38, 50)), True, 720), bold=True,
                role="sub", fill=(255, 255, 255), anchor="center")
        size = int(rng.integers(24, 30))
        ink = _pick_ink(rng, w.background_under((60, icons_y, 740, icons_y + 40)))
        for k, feature in enumerate(rng.choice(FEATURES, size=3, replace=False)):
            w.write(str(feature), (170 + k * 230, icons_y + 6), size, bold=False, role="caption", anchor="center",
                    fill=ink)

    else:  # spec card: section label bar, bullet body lines in a rounded card, product at the bottom right
        card = (40, 150, 760, 560)
        rounded_panel(canvas, rng, card, (250, 250, 250), radius=26, opacity=0.92)
        bar_text = _choice(rng, LABELS)
        bar_size = int(rng.integers(30, 38))
        bw = Writer.measure(bar_text, bar_size, True)[2] + 2 * bar_size
        rounded_panel(canvas, rng, (70, 180, 70 + bw, 180 + int(bar_size * 1.7)), _jitter(rng, accent, 15), radius=10)
        product(canvas, rng, (560, 590, 560 + int(rng.integers(120, 170)), 790))
        w.freeze()
        text = _choice(rng, HEADLINES)
        w.write(text, (60, 40), w.fit(text, int(rng.integers(60, 84)), True, 520), bold=True, role="headline",
                style=_style(rng, bg_kind))
        w.write(bar_text, (70 + bar_size, 180 + int(bar_size * 0.33)), bar_size, bold=True, role="label",
                fill=(255, 255, 255))
        body_size = int(rng.integers(24, 30))
        y = 180 + int(bar_size * 1.7) + 30
        for sentence in rng.choice(BODY, size=int(rng.integers(3, 6)), replace=False):
            s = str(sentence)
            size = w.fit(s, body_size, False, 660)
            w.write(s, (80, y), size, bold=False, role="body", fill=(40, 40, 46))
            y += int(body_size * 2.0)
            if y > card[3] - body_size - 20:
                break
        w.write(f"www.{_choice(rng, URL_HOSTS)}", (60, 620), int(rng.integers(22, 28)), bold=False, kind="url",
                role="brand", latin=False)
        w.write(_brand(rng), (60, 690), int(rng.integers(34, 48)), bold=True, kind="brand", role="brand", latin=True)
    return canvas, w, bg_kind


def _detail_page(rng: np.random.Generator) -> tuple[np.ndarray, Writer, str]:
    """A 790x6000 detail page: stacked sections as sellers build them."""
    W, H = 790, 6000
    canvas = _flat(rng, H, W)
    sections: list[tuple[str, int, int]] = []
    y = 0
    accent = ACCENTS[int(rng.integers(len(ACCENTS)))]
    # Plan the sections (kind, top, height) and paint their plates.
    kinds = ["hero", "label", "body", "features", "photo", "specs", "price", "stripes", "label", "body", "photo",
             "specs", "features", "label", "body", "stripes", "photo", "body"]
    order = [kinds[0]] + [str(k) for k in rng.permutation(kinds[1:])]
    heights = {"hero": (900, 1100), "label": (150, 200), "body": (300, 420), "features": (280, 340),
               "photo": (480, 640), "specs": (380, 480), "price": (220, 260), "stripes": (200, 240)}
    for kind in order:
        lo, hi = heights[kind]
        h = int(rng.integers(lo, hi))
        if y + h > H - 40:
            break
        sections.append((kind, y, h))
        y += h
    for kind, top, h in sections:
        box = (0, top, W, top + h)
        if kind == "hero":
            bg = _choice(rng, ["photo", "gradient", "fabric"])
            _paint(canvas, np.ones((h, W), np.float32), BACKGROUNDS[bg](rng, h, W), box)
            product(canvas, rng, (460, top + 380, 460 + int(rng.integers(200, 260)), top + h - 80))
        elif kind == "photo":
            _paint(canvas, np.ones((h, W), np.float32), _photo(rng, h, W), box)
            product(canvas, rng, (260, top + 60, 260 + int(rng.integers(200, 280)), top + h - 40))
            rounded_panel(canvas, rng, (0, top + h - 110, W, top + h - 20), (20, 20, 24), radius=0,
                          opacity=float(rng.uniform(0.45, 0.6)))
        elif kind == "stripes":
            slanted_stripes(canvas, rng, (0, top + 20, W, top + h - 20), _jitter(rng, accent, 10),
                            tuple(int(c * 0.78) for c in accent))  # type: ignore[arg-type]
        elif kind == "price":
            rounded_panel(canvas, rng, (30, top + 20, W - 30, top + h - 20), accent, radius=24, gradient=True)
            badge(canvas, (W - 110, top + h // 2), 70, (255, 214, 60), star=True)
        elif kind == "specs":
            rows = int((h - 120) // 62)
            for r in range(rows):
                shade = (238, 238, 240) if r % 2 == 0 else (250, 250, 252)
                rounded_panel(canvas, rng, (40, top + 100 + r * 62, W - 40, top + 100 + r * 62 + 58), shade,
                              radius=6)
        elif kind == "features":
            for k in range(3):
                icon(canvas, rng, (140 + k * 255, top + 110), 52, _jitter(rng, accent, 25))
    w = Writer(canvas, rng)
    # Label bars are painted before freezing so the writer sees them as background.
    label_boxes: dict[int, tuple[str, int, Box]] = {}
    for index, (kind, top, _h) in enumerate(sections):
        if kind in ("label", "specs"):
            text = _choice(rng, LABELS)
            size = int(rng.integers(32, 42))
            bw = Writer.measure(text, size, True)[2] + 2 * size
            x0 = (W - bw) // 2
            bar = (x0, top + 30, x0 + bw, top + 30 + int(size * 1.7))
            rounded_panel(canvas, rng, bar, _jitter(rng, (36, 36, 42)), radius=int(rng.choice([8, size])))
            label_boxes[index] = (text, size, bar)
    w.freeze()
    for index, (kind, top, h) in enumerate(sections):
        if kind == "hero":
            w.write(_brand(rng), (60, top + 60), int(rng.integers(30, 46)), bold=True, kind="brand", role="brand",
                    latin=True)
            text = _choice(rng, HEADLINES)
            line = w.write(text, (60, top + 150), w.fit(text, int(rng.integers(72, 100)), True, 640), bold=True,
                           role="headline", style=_style(rng, "photo"))
            sub = _choice(rng, SUBLINES)
            w.write(sub, (62, line.box[3] + 40), w.fit(sub, int(rng.integers(34, 46)), False, 660), bold=False,
                    role="sub")
        elif kind in ("label", "specs"):
            text, size, bar = label_boxes[index]
            w.write(text, (bar[0] + size, bar[1] + int(size * 0.33)), size, bold=True, role="label",
                    fill=(255, 255, 255))
            if kind == "label":
                w.write(_choice(rng, LATIN_TAGLINES), (W // 2, bar[3] + 22), int(rng.integers(20, 26)), bold=True,
                        kind="brand", role="brand", latin=True, anchor="center")
            else:
                rows = int((h - 120) // 62)
                keys = rng.choice(len(SPEC_KEYS), size=min(rows, len(SPEC_KEYS)), replace=False)
                for r, k in enumerate(keys):
                    ry = top + 100 + r * 62 + 14
                    w.write(SPEC_KEYS[int(k)], (80, ry), 28, bold=True, role="spec", fill=(60, 60, 66))
                    w.write(SPEC_VALUES[int(k)], (330, ry), 28, bold=False, role="spec", fill=(40, 40, 46))
        elif kind == "body":
            size = int(rng.integers(24, 32))
            yy = top + 40
            headline = _choice(rng, SUBLINES)
            line = w.write(headline, (60, yy), w.fit(headline, size + 12, True, 670), bold=True, role="sub")
            yy = line.box[3] + 30
            ink = _pick_ink(rng, w.background_under((60, yy, 730, top + h)))  # one colour per paragraph
            for sentence in rng.choice(BODY, size=int(rng.integers(2, 5)), replace=False):
                if yy + size > top + h - 20:
                    break
                s = str(sentence)
                w.write(s, (60, yy), w.fit(s, size, False, 670), bold=False, role="body", fill=ink)
                yy += int(size * 1.9)
        elif kind == "features":
            size = int(rng.integers(26, 32))
            ink = _pick_ink(rng, w.background_under((40, top + 180, 750, top + 230)))
            for k, feature in enumerate(rng.choice(FEATURES, size=3, replace=False)):
                w.write(str(feature), (140 + k * 255, top + 190), size, bold=False, role="caption", anchor="center",
                        fill=ink)
        elif kind == "photo":
            cap = _choice(rng, SUBLINES)
            w.write(cap, (W // 2, top + h - 92), w.fit(cap, int(rng.integers(36, 46)), True, 700), bold=True,
                    role="sub", fill=(255, 255, 255), anchor="center")
        elif kind == "stripes":
            text = _choice(rng, HEADLINES)
            w.write(text, (W // 2, top + h // 2 - 45), w.fit(text, int(rng.integers(64, 84)), True, 700), bold=True,
                    role="headline", fill=(255, 255, 255), style=_style(rng, "photo"), anchor="center")
        elif kind == "price":
            w.write(_choice(rng, PRICE_LABELS), (80, top + h // 2 - 24), 40, bold=True, role="label",
                    fill=(255, 255, 255))
            w.write(_price(rng), (300, top + h // 2 - 44), int(rng.integers(70, 90)), bold=True, kind="price",
                    role="price", fill=(255, 245, 200), latin=True)
            w.write(_choice(rng, BADGES), (W - 110, top + h // 2 - 24), 44, bold=True, role="badge",
                    fill=(200, 20, 30), anchor="center")
    if sections:
        _, last_top, last_h = sections[-1]
        footer_y = last_top + last_h + 30
        if footer_y < H - 60:
            w.write(f"www.{_choice(rng, URL_HOSTS)}", (W // 2, footer_y), 24, bold=False, kind="url", role="brand",
                    anchor="center")
    return canvas, w, "detail"


def generate_page(seed: int, kind: str = "main", name: str | None = None) -> SyntheticPage:
    """One page from ``seed``: ``kind`` "main" (800x800) or "detail" (790x6000)."""
    if kind not in ("main", "detail"):
        raise ValueError(f"unknown page kind {kind!r} (main, detail)")
    if not fonts_available():
        raise FileNotFoundError(f"Noto Sans CJK not found at {CJK_REGULAR} (Debian: fonts-noto-cjk)")
    rng = np.random.default_rng([seed, 0 if kind == "main" else 1])
    canvas, writer, _ = _main_page(rng) if kind == "main" else _detail_page(rng)
    pixels = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    clean = np.clip(np.round(writer.plate), 0, 255).astype(np.uint8)
    return SyntheticPage(name=name or f"syn-{kind}-{seed:04d}", kind=kind, seed=seed, pixels=pixels, clean=clean,
                         glyph_mask=writer.glyphs.copy(), lines=list(writer.lines))


def generate_set(count: int, seed: int = 0, detail_every: int = 4) -> list[SyntheticPage]:
    """``count`` pages; every ``detail_every``-th one (the 4th, 8th, ...) a 790x6000 detail page."""
    pages = []
    for index in range(count):
        kind = "detail" if detail_every and (index + 1) % detail_every == 0 else "main"
        pages.append(generate_page(seed * 100_003 + index, kind, name=f"syn-{index:03d}-{kind}"))
    return pages
