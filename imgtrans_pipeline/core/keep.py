"""Which OCR'd blocks to leave in the image untouched (neither erased nor redrawn), and why.

Product images carry text that must not be translated: brand and model lines, prices, dates, shop URLs and
watermarks. Sending them to a translation engine garbles them ("¥99" -> "Zoom 99", a Latin slogan re-translated
into nonsense), and erasing and redrawing them only loses fidelity. ``split_translatable`` sorts one image's
blocks into the ones to translate and the ones to keep, each kept block carrying its ``keep_reason``:

- ``number``: no letters but digits, or digits with units only ("12/16-12/23", "07:06", "2399", "120W", "4K");
- ``price``: an amount with a currency sign and nothing to translate ("¥199", "$19.99"). "199元" is translated:
  元 is a word (the number survives translation, see ``engines.translate.numbers``);
- ``url``: URLs, domains, e-mail addresses and @handles, with at most a short label around them;
- ``phone``: a phone number with an optional label ("Tel:13641330944", "客服电话 400-820-8820");
- ``watermark``: seller watermarks ("...代购", "盗图必究", "©", a line that is only a shop name "XX旗舰店");
- ``rotated``: lines tilted by more than ``MAX_TILT_DEGREES`` (diagonal watermarks; the renderer draws
  horizontal text only, so redrawing a tilted line would misplace it);
- ``product_print``: smaller lines tilted by more than ``PRINT_TILT_DEGREES``: print on a photographed product
  (a pack or bottle standing at an angle: "加送15%" on a tissue pack). Designers set the text they add level, and a
  shop does not re-letter its product; the page's large lines are translated even when slanted;
- ``model_number``: model codes ("X9", "K2-300", "GT-AX6000", "S10+");
- ``target_script``: the text is already in the target's script, with no letter of the source's script
  (Latin lines in a zh image for an English target, Hangul lines for a Korean target);
- ``latin_brand``: Latin text in a CJK-source image for a non-Latin target: on these images it is a brand, model
  or slogan line that is kept as printed;
- ``foreign_script``: letters only of scripts that are neither the source's nor the target's;
- ``no_text``: symbols only.

Mixed lines are translated whenever they contain a letter of the source script: "满199减80", "PLUS赠影音耳机",
and also "Gillette吉列" (the Latin part alone would be kept, but the CJK part may carry meaning that no rule
can tell from a transliterated brand name; the translation service protects numbers and collapses the
brand echo "Gillette Gillet").
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence

from .languages import AUTO
from .types import TextBlock, TextRegion

MAX_TILT_DEGREES = 20.0
# Tilt from which a line that is not among the page's large ones is print on a photographed object. A level line's
# polygon measures up to ~3 degrees (a few pixels of detector jitter on a short line).
PRINT_TILT_DEGREES = 5.0
PRINT_MAX_HEIGHT = 0.6  # "large": lines at least this share of the page's tallest line height

# Script of each language's own letters (what marks text as written in that language).
_SOURCE_SCRIPTS: dict[str, frozenset[str]] = {
    "zh": frozenset({"han"}),
    "zh-Hant": frozenset({"han"}),
    "ja": frozenset({"han", "kana"}),
    "ko": frozenset({"hangul"}),
    "ru": frozenset({"cyrillic"}),
    "th": frozenset({"thai"}),
}
_CJK_SCRIPTS = frozenset({"han", "kana", "hangul"})

# Units that may follow a number ("500ml", "120W", "4K", "1080p"): a line of such quantities has nothing to
# translate. Longest first so "mAh" wins over "m".
UNITS = ("mAh", "kWh", "Wh", "kW", "W", "mV", "kV", "V", "mA", "A", "GHz", "MHz", "kHz", "Hz", "TB", "GB", "MB",
         "KB", "Gb", "Mb", "mm", "cm", "km", "m", "nm", "mg", "kg", "g", "ml", "mL", "L", "l", "fps", "dpi", "ppi",
         "MP", "K", "k", "p", "P", "G", "in", "inch", "ft", "lb", "lbs", "oz", "x", "X", "h", "H", "min", "s", "nits",
         "°C", "°F", "°", "%", "℃", "℉")
_UNIT_ALT = "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))
_NUMBER = r"\d+(?:[.,:]\d+)*"
_QUANTITY_TOKEN = re.compile(rf"[+\-~±]?(?:{_NUMBER})(?:\s?(?:{_UNIT_ALT}))?\+?(?![A-Za-z])", re.IGNORECASE)
CURRENCY_SIGNS = "¥$€£₩₽฿"

_URL = re.compile(
    r"(?i)(?:https?://\S+|www\.\S+"
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # e-mail
    r"|(?<![\w.])@[\w.\-]{2,}"  # @handle
    r"|\b[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.(?:com|cn|net|org|shop|top|hk|tw|kr|jp|co|io|me|cc|info|biz|xyz"
    r"|store|vip|tmall|taobao)\b(?:/\S*)?)"
)
_PHONE = re.compile(
    r"(?i)^(?:tel|phone|mobile|fax|电话|手机|热线|客服|客服电话|服务热线|咨询电话|微信|qq|wechat|vx)?\s*[:：]?\s*"
    r"\+?[\d][\d\s\-()]{5,}\d$"
)
_WATERMARK = re.compile(r"代购|盗图|盗版必究|侵权必究|版权所有|水印|©|Copyright", re.IGNORECASE)
# A line that is nothing but a shop's name: "OPPO官方旗舰店", "卡帝乐鳄鱼专卖店" (not "进入旗舰店": a button).
_SHOP_NAME = re.compile(
    r"^(?!进入|进店|关注|收藏|访问|逛)[\w·&\-. ]{2,20}?(?:官方)?(?:旗舰店|专卖店|专营店|企业店|淘宝店)$")
_CODE_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[-/.+][A-Za-z0-9]+)*\+?")


def letter_script(ch: str) -> str | None:
    """The script of a letter ("han", "kana", "hangul", "latin", "cyrillic", "thai", "other"); None for a
    non-letter."""
    cp = ord(ch)
    if 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0xF900 <= cp <= 0xFAFF or 0x20000 <= cp <= 0x2FA1F:
        return "han"
    if 0x3040 <= cp <= 0x30FF or 0x31F0 <= cp <= 0x31FF or 0xFF66 <= cp <= 0xFF9F:
        return "kana"
    if 0xAC00 <= cp <= 0xD7A3 or 0x1100 <= cp <= 0x11FF or 0x3130 <= cp <= 0x318F:
        return "hangul"
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    if name.startswith("LATIN") or ch.isascii():
        return "latin"
    if name.startswith("CYRILLIC"):
        return "cyrillic"
    if name.startswith("THAI"):
        return "thai"
    return "other"


def scripts_of(text: str) -> set[str]:
    """The set of scripts of the letters in ``text``."""
    return {s for s in (letter_script(ch) for ch in text) if s is not None}


def language_scripts(lang: str) -> frozenset[str]:
    """The scripts a language is written in (Latin for the languages not listed)."""
    return _SOURCE_SCRIPTS.get(lang, frozenset({"latin"}))


def is_quantity_text(text: str) -> bool:
    """True when ``text`` is only numbers, units, currency signs and punctuation ("12/16-12/23", "120W 4K")."""
    rest = _QUANTITY_TOKEN.sub(" ", text)
    return any(ch.isdigit() for ch in text) and not any(ch.isalnum() for ch in rest)


def _is_model_number(text: str) -> bool:
    tokens = text.split()
    if not tokens or len(tokens) > 4:
        return False
    mixed = False
    for token in tokens:
        if not _CODE_TOKEN.fullmatch(token):
            return False
        has_digit = any(ch.isdigit() for ch in token)
        has_alpha = any(ch.isalpha() for ch in token)
        if has_digit and has_alpha:
            mixed = True
        elif has_alpha and not (token.isupper() and len(token) <= 5):
            return False  # an ordinary word ("only 5") makes it a phrase, not a model code
    return mixed


def keep_reason(text: str, source_lang: str, target_lang: str) -> str | None:
    """Why ``text`` (one OCR'd line or block, source language already resolved) stays untranslated; None when it
    is to be translated. See the module docstring for the reasons."""
    if source_lang == AUTO:
        raise ValueError("source_lang must be resolved (not 'auto') before deciding what to keep")
    norm = unicodedata.normalize("NFKC", text).strip()
    if not norm:
        return "no_text"
    scripts = scripts_of(norm)
    source_scripts = language_scripts(source_lang)

    url_rest = _URL.sub(" ", norm)
    if url_rest != norm and sum(ch.isalpha() for ch in url_rest) <= 6:
        return "url"
    if _PHONE.match(norm) and sum(ch.isdigit() for ch in norm) >= 7:
        return "phone"
    if not scripts:
        if any(ch in CURRENCY_SIGNS for ch in norm) and any(ch.isdigit() for ch in norm):
            return "price"
        return "number" if any(ch.isdigit() for ch in norm) else "no_text"
    if _WATERMARK.search(norm) or _SHOP_NAME.match(norm):
        return "watermark"
    if is_quantity_text(norm):
        return "price" if any(ch in CURRENCY_SIGNS for ch in norm) else "number"
    if scripts <= {"latin"} and _is_model_number(norm):
        return "model_number"
    if scripts & source_scripts:
        return None
    if scripts <= language_scripts(target_lang):
        return "target_script"
    if scripts <= {"latin"} and source_scripts <= _CJK_SCRIPTS:
        return "latin_brand"
    return "foreign_script"


def polygon_tilt(polygon: Sequence[tuple[float, float]]) -> float:
    """Tilt of a text line's polygon in degrees (0 = horizontal), from its top edge (first two points)."""
    if len(polygon) < 2:
        return 0.0
    (x0, y0), (x1, y1) = polygon[0], polygon[1]
    if x1 == x0 and y1 == y0:
        return 0.0
    angle = abs(math.degrees(math.atan2(y1 - y0, x1 - x0)))
    return min(angle, abs(180.0 - angle))


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


def _tilted(regions: Iterable[TextRegion]) -> bool:
    return _median([polygon_tilt(r.polygon) for r in regions]) > MAX_TILT_DEGREES


def line_height(polygon: Sequence[tuple[float, float]]) -> float:
    """Height of a line across its slant: the mean of the left and right edges of a four-point polygon (what
    detectors return), else the smaller side of its bounding box."""
    if len(polygon) == 4:
        (ax, ay), (bx, by), (cx, cy), (dx, dy) = polygon
        return (math.hypot(dx - ax, dy - ay) + math.hypot(cx - bx, cy - by)) / 2.0
    if not polygon:
        return 0.0
    xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
    return float(min(max(xs) - min(xs), max(ys) - min(ys)))


def block_keep_reason(block: TextBlock, source_lang: str, target_lang: str, page_line_height: float = 0.0
                      ) -> str | None:
    """``keep_reason`` of the block's text, or ``rotated`` for a block whose lines are tilted, or ``product_print``
    for a smaller block tilted by more than a level line can measure (``page_line_height``: the tallest line on the
    page; 0 = unknown, no such rule)."""
    reason = keep_reason(block.text, source_lang, target_lang)
    if reason is not None or not block.regions:
        return reason
    if _tilted(block.regions):
        return "rotated"
    tilt = _median([polygon_tilt(r.polygon) for r in block.regions])
    height = _median([line_height(r.polygon) for r in block.regions])
    if tilt > PRINT_TILT_DEGREES and 0 < height < PRINT_MAX_HEIGHT * page_line_height:
        return "product_print"
    return None


def split_translatable(blocks: Sequence[TextBlock], source_lang: str, target_lang: str
                       ) -> tuple[list[TextBlock], list[TextBlock]]:
    """(blocks to translate, blocks to keep), each list in the input order.

    Each block's ``keep_reason`` is set: None on the ones to translate, the reason on the kept ones (it appears
    in ``ocr.json``). ``source_lang`` must be resolved (not 'auto').
    """
    to_translate: list[TextBlock] = []
    kept: list[TextBlock] = []
    page_line_height = max((line_height(r.polygon) for b in blocks for r in b.regions), default=0.0)
    for block in blocks:
        block.keep_reason = block_keep_reason(block, source_lang, target_lang, page_line_height)
        (to_translate if block.keep_reason is None else kept).append(block)
    return to_translate, kept
