"""Wrap a translation into a box and find the largest font size at which it fits.

Chinese and Japanese have no spaces between words, so they wrap between any two characters, with simple kinsoku
(no line may start with closing punctuation, none may end with opening punctuation). Korean and Latin scripts wrap
between words; a word wider than the box is broken between characters only as a last resort.

Vertical metrics use the ink of the text (first line's top, last line's bottom) rather than the font's ascent/descent:
Noto Sans CJK declares ~1.45 em of ascent+descent, which would make every box look a third fuller than it is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import ImageFont

from ...core.languages import CHARACTER_WRAPPED, CJK_LANGUAGES

# Characters that must not start a line (closing brackets, stops, small kana, prolonged sound mark).
NO_LINE_START = set(
    "，。．、！？：；）」』】〕〉》〗〙〛｝］,.!?:;)]}%'\"’”…‥・ー〜～ゝゞヽヾ々"
    "ぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶ"
)
# Characters that must not end a line (opening brackets, quotes).
NO_LINE_END = set("（「『【〔〈《〖〘〚｛［([{‘“")

LINE_SPACING = 1.15
MIN_FONT_PX = 10
MAX_FONT_PX = 400

FontGetter = Callable[[int], ImageFont.FreeTypeFont]

_LATIN_RUN = re.compile(r"[0-9A-Za-z\u00C0-\u024F\u0400-\u04FF'’\-_.,%/:]+")


@dataclass
class TextLayout:
    """Lines at one font size, with the block's measured size (ink-based height, advance-based width)."""

    lines: list[str]
    font_px: int
    width: float  # widest line (advance width)
    height: float  # from the first line's ink top to the last line's ink bottom
    line_pitch: float  # baseline-to-baseline distance
    ascent: float  # ink top above the baseline (first line)
    descent: float  # ink bottom below the baseline (last line)
    line_widths: list[float] = field(default_factory=list)
    broke_words: bool = False  # a word had to be split between characters

    def fits(self, box_w: float, box_h: float, pad: float = 0.0) -> bool:
        return self.width + 2 * pad <= box_w + 1e-6 and self.height + 2 * pad <= box_h + 1e-6


def reference_text(lang: str) -> str:
    """Characters whose ink spans a script's usual vertical extent (cap height, descenders, CJK em box)."""
    if lang in {"ko"}:
        return "Agy한국"
    if lang in CJK_LANGUAGES or lang in CHARACTER_WRAPPED:
        return "Agy国あ"
    return "ÀAgjy"


def vertical_metrics(font: ImageFont.FreeTypeFont, lang: str) -> tuple[float, float]:
    """(ascent, descent) of the ink of the reference string, relative to the baseline, in pixels."""
    _, top, _, bottom = font.getbbox(reference_text(lang), anchor="ls")
    return float(-top), float(max(bottom, 0))


def _tokens(text: str, lang: str) -> list[tuple[str, bool]]:
    """Split one paragraph into (token, space_before) pairs, the units wrapping never splits (unless too wide)."""
    out: list[tuple[str, bool]] = []
    if lang in CHARACTER_WRAPPED:
        # Per character, but keep embedded Latin words / numbers ("iPhone 15", "30%") whole.
        pos = 0
        space = False
        while pos < len(text):
            ch = text[pos]
            if ch.isspace():
                space = True
                pos += 1
                continue
            m = _LATIN_RUN.match(text, pos)
            if m and m.end() - pos > 1:
                out.append((m.group(0), space))
                pos = m.end()
            else:
                out.append((ch, space))
                pos += 1
            space = False
        return out
    return [(word, True) for word in text.split()]


def _split_wide(token: str, font: ImageFont.FreeTypeFont, max_width: float) -> list[str]:
    """Break a token wider than the box into pieces that fit (at least one character per piece)."""
    pieces: list[str] = []
    cur = ""
    for ch in token:
        # Cached: the same prefixes are measured again at every wrap width tried at this size.
        if cur and _width(font, cur + ch) > max_width:
            pieces.append(cur)
            cur = ch
        else:
            cur += ch
    if cur:
        pieces.append(cur)
    return pieces


_WIDTHS: dict[tuple[str, int, int, str], float] = {}
_INK: dict[tuple[str, int, int, str], tuple[int, int, int, int]] = {}


def _font_key(font: ImageFont.FreeTypeFont) -> tuple[str, int, int]:
    return str(getattr(font, "path", "")), int(getattr(font, "index", 0) or 0), int(font.size)


def _width(font: ImageFont.FreeTypeFont, piece: str) -> float:
    """Advance width of a word or character, cached per face and size (wrapping asks for the same ones often)."""
    key = (*_font_key(font), piece)
    width = _WIDTHS.get(key)
    if width is None:
        if len(_WIDTHS) > 200_000:
            _WIDTHS.clear()
        width = _WIDTHS[key] = float(font.getlength(piece))
    return width


def _ink(font: ImageFont.FreeTypeFont, line: str) -> tuple[int, int, int, int]:
    """Ink box of a line on its baseline, cached like ``_width`` (a size is laid out at several wrap widths)."""
    key = (*_font_key(font), line)
    box = _INK.get(key)
    if box is None:
        if len(_INK) > 50_000:
            _INK.clear()
        box = _INK[key] = font.getbbox(line, anchor="ls")
    return box


def wrap_text(text: str, font: ImageFont.FreeTypeFont, max_width: float, lang: str) -> tuple[list[str], bool]:
    """Greedy wrap of ``text`` to ``max_width`` pixels with ``font``; returns (lines, broke_words).

    Explicit newlines in the translation are kept as hard breaks. Widths are measured on whole candidate lines
    (kerning and spaces included), so every returned line fits unless a single unbreakable character is wider.
    """
    lines: list[str] = []
    broke = False
    word_wrapped = lang not in CHARACTER_WRAPPED
    kinsoku = lang in CJK_LANGUAGES

    def text_of(parts: list[tuple[str, str]]) -> str:
        return "".join((sep if i else "") + tok for i, (tok, sep) in enumerate(parts))

    def fits(parts: list[tuple[str, str]]) -> bool:
        # Sum of cached piece widths first; only a line within a hair of the limit is measured whole (kerning).
        estimate = sum(_width(font, tok) + (_width(font, sep) if i and sep else 0.0)
                       for i, (tok, sep) in enumerate(parts))
        slack = max(2.0, 0.02 * max_width)
        if estimate < max_width - slack:
            return True
        if estimate > max_width + slack:
            return False
        return _width(font, text_of(parts)) <= max_width

    for paragraph in text.splitlines() or [""]:
        # (token, separator before it when it is not the first on its line)
        units: list[tuple[str, str]] = []
        for tok, space in _tokens(paragraph, lang):
            sep = " " if (word_wrapped or space) else ""
            if len(tok) > 1 and _width(font, tok) > max_width:
                pieces = _split_wide(tok, font, max_width)
                broke = broke or len(pieces) > 1
                units.append((pieces[0], sep))
                units.extend((p, "") for p in pieces[1:])  # glued: no space inside a split word
            else:
                units.append((tok, sep))
        if not units:
            continue
        cur: list[tuple[str, str]] = []
        for unit in units:
            candidate = [*cur, unit]
            if not cur or fits(candidate):
                cur = candidate
                continue
            # Line full. Kinsoku: no line starts with closing punctuation or ends with opening punctuation;
            # move characters down to the next line (oidashi) rather than overflowing the box.
            carry: list[tuple[str, str]] = []
            if kinsoku:
                if unit[0][0] in NO_LINE_START:
                    while len(cur) > 1 and (not carry or carry[0][0][0] in NO_LINE_START):
                        carry.insert(0, cur.pop())
                while len(cur) > 1 and cur[-1][0][-1] in NO_LINE_END:
                    carry.insert(0, cur.pop())
            lines.append(text_of(cur))
            cur = [*carry, unit]
            while len(cur) > 1 and not fits(cur):  # carried text plus this unit too wide: give up on kinsoku here
                lines.append(text_of(cur[:1]))
                cur = cur[1:]
        lines.append(text_of(cur))
    return lines, broke


def layout_at(text: str, font: ImageFont.FreeTypeFont, max_width: float, lang: str,
              line_spacing: float = LINE_SPACING) -> TextLayout:
    """Wrap ``text`` at this font and measure the block."""
    lines, broke = wrap_text(text, font, max_width, lang)
    widths = [_width(font, line) for line in lines]
    # The block's real ink: a caption without descenders needs no room for them (reference ink if a line is blank).
    first = _ink(font, lines[0]) if lines else (0, 0, 0, 0)
    last = _ink(font, lines[-1]) if lines else (0, 0, 0, 0)
    if first[3] > first[1] and last[3] > last[1]:
        ascent, descent = float(-first[1]), float(max(last[3], 0))
    else:
        ascent, descent = vertical_metrics(font, lang)
    size = int(font.size)
    pitch = size * line_spacing
    height = ascent + descent + pitch * (len(lines) - 1) if lines else 0.0
    return TextLayout(lines=lines, font_px=size, width=max(widths, default=0.0), height=height, line_pitch=pitch,
                      ascent=ascent, descent=descent, line_widths=widths, broke_words=broke)


def fit_text(
    text: str,
    box_w: float,
    box_h: float,
    get_font: FontGetter,
    lang: str,
    *,
    min_px: int = MIN_FONT_PX,
    max_px: int | None = None,
    line_spacing: float = LINE_SPACING,
    stroke_ratio: float = 0.0,
) -> tuple[TextLayout, bool]:
    """Largest font size in [min_px, max_px] whose wrapped layout fits the box; returns (layout, fits).

    Binary search: fitting is (nearly) monotone in the size. Breaking a word between characters counts as not
    fitting unless even ``min_px`` needs it, so a smaller size that keeps words whole wins. ``stroke_ratio`` reserves
    room for an outline of ``ratio * size`` pixels on each side. When nothing fits, the ``min_px`` layout is returned
    with ``fits=False`` and the caller decides whether to grow the box.
    """
    upper = int(max_px) if max_px else MAX_FONT_PX
    upper = max(min_px, min(upper, math.ceil(box_h * 1.2) + 1, MAX_FONT_PX))

    def attempt(size: int, allow_break: bool) -> TextLayout | None:
        font = get_font(size)
        pad = _stroke_px(size, stroke_ratio)
        layout = layout_at(text, font, max(1.0, box_w - 2 * pad), lang, line_spacing)
        if layout.broke_words and not allow_break:
            return None
        return layout if layout.fits(box_w, box_h, pad) else None

    for allow_break in (False, True):
        best: TextLayout | None = None
        lo, hi = min_px, upper
        while lo <= hi:
            mid = (lo + hi) // 2
            layout = attempt(mid, allow_break)
            if layout is not None:
                best = layout
                lo = mid + 1
            else:
                hi = mid - 1
        if best is not None:
            return best, True
    font = get_font(min_px)
    pad = _stroke_px(min_px, stroke_ratio)
    return layout_at(text, font, max(1.0, box_w - 2 * pad), lang, line_spacing), False


def _stroke_px(size: int, ratio: float) -> int:
    return max(1, round(size * ratio)) if ratio > 0 else 0


def stroke_px(size: int, ratio: float) -> int:
    """Outline width in pixels for a font size (0 when no outline)."""
    return _stroke_px(size, ratio)
