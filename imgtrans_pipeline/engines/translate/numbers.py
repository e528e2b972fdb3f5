"""Numbers and units must come through translation intact: "满199减80", "容量500ml", "超长待机72小时".

Machine translation mostly copies digits, but not always: OPUS-MT zh→en writes small numbers as words ("免费送5瓶"
-> "I'll give you five for free"), turns 元 into dollars ("预定享484元豪礼" -> "...$484"), and now and then drops a
number. The service therefore checks every translation against the numbers of its source (``missing_numbers``),
repairs what can be repaired in the text (``repair_numbers``: number words back to digits, yuan amounts written
as dollars back to ¥), re-translates what is still missing with the numbers replaced by placeholders
(``protect_numbers`` / ``restore_numbers``; "[n]" is what OPUS-MT and LLMs copy through best) and flags what is
lost even then.

What counts as the same number: the digits' value (thousands separators ignored), or the value scaled by a Chinese
multiplier (10万 = 100,000, 4800万 = "48 million"), a discount N折 as N0 % or (10-N)0 % ("5折" = "50% off"), a month
N月 as its name. A Latin unit printed after the number ("500ml", "120W", "100%") must follow it in the translation
too ("500 ml" counts; "per cent" counts for %). Units that are words (小时, 天, 元) are the engine's to translate.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Latin units whose presence after the number is checked (longest first for the regex).
CHECKED_UNITS = ("mAh", "kWh", "Wh", "kW", "W", "mV", "kV", "V", "mA", "GHz", "MHz", "kHz", "Hz", "TB", "GB", "MB",
                 "KB", "mm", "cm", "km", "nm", "mg", "kg", "g", "ml", "L", "fps", "K", "p", "%", "℃", "°C", "°")
_UNIT_ALT = "|".join(re.escape(u) for u in sorted(CHECKED_UNITS, key=len, reverse=True))
_MULTIPLIERS = {"万": 1e4, "萬": 1e4, "亿": 1e8, "億": 1e8, "千": 1e3}
_SOURCE_NUMBER = re.compile(
    r"(?:(?P<cur>[¥$€£₩])\s?)?(?P<num>(?<![\d.])(?<!\d,)\d+(?:,\d{3})*(?:\.\d+)?)"
    r"(?:(?P<mult>[万萬亿億千])|\s?(?P<unit>" + _UNIT_ALT + r")(?![A-Za-z])|(?P<cjk>[元块折月]))?",
    re.IGNORECASE,
)
_TARGET_NUMBER = re.compile(
    r"(?<![\d.])(?<!\d,)(?P<num>\d+(?:,\d{3})*(?:\.\d+)?)(?:\s?(?P<scale>thousand|million|billion|k\b|m\b))?",
    re.IGNORECASE,
)
_SCALES = {"thousand": 1e3, "k": 1e3, "million": 1e6, "m": 1e6, "billion": 1e9}

_UNITS_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS_WORDS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
             "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12}
_WORD_VALUES: dict[str, int] = {w: i for i, w in enumerate(_UNITS_WORDS)}
_WORD_VALUES.update({w: 10 * i for i, w in enumerate(_TENS_WORDS) if w})
_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december"]
_NUMBER_WORD = re.compile(
    r"\b(?P<word>(?:" + "|".join(w for w in _TENS_WORDS if w) + r")(?:-(?:" + "|".join(_UNITS_WORDS[1:10]) + r"))?"
    r"|" + "|".join(sorted(_UNITS_WORDS, key=len, reverse=True)) + r"|a dozen|dozen)"
    r"(?:\s(?P<scale>hundred|thousand|million|billion))?\b"
    r"|\b(?P<ordinal>" + "|".join(_ORDINALS) + r")\b",
    re.IGNORECASE,
)
_PLACEHOLDER = re.compile(r"\[\s*(\d+)\s*\]")


@dataclass(frozen=True)
class SourceNumber:
    """One number in a source text, with what a faithful translation may show for it."""

    text: str  # as printed (full-width folded): "500ml", "¥199", "4800万", "5折"
    start: int  # span in the source
    end: int
    values: frozenset[float]  # accepted values in the translation
    unit: str | None  # Latin unit that must follow the number ("ml", "%"), None when there is none
    yuan: bool  # a ¥/元 amount: never to be shown as dollars
    month: int | None  # 1..12 for "N月": the month's name counts


def _value(digits: str) -> float:
    return float(digits.replace(",", ""))


# Full-width digits, letters and signs to ASCII, one character for one, so spans stay valid in the original text
# (NFKC would also turn CJK punctuation into ASCII, changing what the engine is given).
_FOLD = {cp: cp - 0xFEE0 for cp in range(0xFF10, 0xFF1A)}
_FOLD.update({cp: cp - 0xFEE0 for cp in range(0xFF21, 0xFF3B)})
_FOLD.update({cp: cp - 0xFEE0 for cp in range(0xFF41, 0xFF5B)})
_FOLD.update({0xFFE5: ord("¥"), 0xFF04: ord("$"), 0xFF05: ord("%"), 0xFF0E: ord("."), 0xFF0B: ord("+")})


def _norm(text: str) -> str:
    return text.translate(_FOLD)


def source_numbers(text: str) -> list[SourceNumber]:
    """The numbers of ``text`` (full-width digits folded to ASCII) with their accepted renderings."""
    found: list[SourceNumber] = []
    norm = _norm(text)
    for m in _SOURCE_NUMBER.finditer(norm):
        base = _value(m.group("num"))
        values = {base}
        unit = m.group("unit")
        cjk = m.group("cjk")
        mult = m.group("mult")
        if mult:
            values.add(base * _MULTIPLIERS[mult])
        if cjk == "折":
            values |= {base * 10, round((10 - base) * 10, 6)}
        month = int(base) if cjk == "月" and base.is_integer() and 1 <= base <= 12 else None
        cur = m.group("cur")
        yuan = cur == "¥" if cur else cjk in ("元", "块")  # a leading sign decides ("$" included)
        found.append(SourceNumber(m.group(0).strip(), m.start(), m.end(), frozenset(values),
                                  unit, yuan, month))
    return found


def _target_values(translation: str, words: bool = True) -> list[tuple[float, int, int]]:
    """(value, start, end) of each number in a translation: digits (with an English scale word) and, with
    ``words``, English number words."""
    out: list[tuple[float, int, int]] = []
    for m in _TARGET_NUMBER.finditer(translation):
        value = _value(m.group("num"))
        out.append((value, m.start(), m.end("num")))
        if m.group("scale"):
            out.append((value * _SCALES[m.group("scale").lower()], m.start(), m.end()))
    if words:
        for m in _NUMBER_WORD.finditer(translation):
            word_value = _word_value(m)
            if word_value is not None:
                out.append((word_value, m.start(), m.end()))
    return out


def _word_value(m: re.Match[str]) -> float | None:
    if m.group("ordinal"):
        return float(_ORDINALS[m.group("ordinal").lower()])
    word = m.group("word").lower()
    if word in ("a dozen", "dozen"):
        value = 12.0
    elif "-" in word:
        tens, ones = word.split("-")
        value = float(_WORD_VALUES[tens] + _WORD_VALUES[ones])
    else:
        value = float(_WORD_VALUES[word])
    if m.group("scale"):
        value *= {"hundred": 1e2, "thousand": 1e3, "million": 1e6, "billion": 1e9}[m.group("scale").lower()]
    return value


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def _unit_follows(translation: str, end: int, unit: str) -> bool:
    tail = translation[end:end + 12]
    if unit == "%":
        return bool(re.match(r"\s?(?:%|per\s?cent|percent)", tail, re.IGNORECASE))
    return bool(re.match(r"\s?-?" + re.escape(unit) + r"(?![A-Za-z])", tail, re.IGNORECASE))


def _month_named(number: SourceNumber, translation: str) -> bool:
    return number.month is not None and bool(
        re.search(r"\b" + _MONTHS[number.month - 1][:3], translation, re.IGNORECASE))


def missing_numbers(source: str, translation: str, *, words: bool = True) -> list[SourceNumber]:
    """The numbers of ``source`` that ``translation`` does not show (by value, with their Latin unit); with
    ``words=False`` a number written out as an English word counts as missing."""
    numbers = source_numbers(source)
    if not numbers:
        return []
    norm = _norm(translation)
    found = _target_values(norm, words)
    # Each occurrence in the translation answers one source number ("满199减199" needs 199 twice).
    missing: list[SourceNumber] = []
    used: set[int] = set()
    for number in numbers:
        hit = None
        for index, (value, _start, end) in enumerate(found):
            if index in used or not any(_close(value, v) for v in number.values):
                continue
            if number.unit is None or _unit_follows(norm, end, number.unit):
                hit = index
                break
        if hit is not None:
            used.add(hit)
        elif not _month_named(number, norm):
            missing.append(number)
    return missing


def _fmt(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:g}"


_CURRENCY_NEAR = re.compile(r"¥|￥|元|yuan|rmb|cny|人民币|위안|円", re.IGNORECASE)


def repair_numbers(source: str, translation: str, target_lang: str) -> str:
    """Fix what can be fixed in the text itself: for English, a source number written out as a word ("five",
    "Forty-eight million") is put back in digits; a yuan amount shown as dollars, or with no currency at all,
    becomes "¥N"."""
    numbers = source_numbers(source)
    if not numbers:
        return translation
    out = translation
    if target_lang == "en":
        for number in missing_numbers(source, out, words=False):
            for m in _NUMBER_WORD.finditer(out):
                value = _word_value(m)
                if value is None or not any(_close(value, v) for v in number.values):
                    continue
                if m.group("ordinal"):
                    base = int(value)
                    suffix = "th" if 10 <= base % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(base % 10, "th")
                    digits = f"{base}{suffix}"
                elif m.group("scale") and m.group("scale").lower() in ("million", "billion"):
                    scale = m.group("scale").lower()
                    digits = f"{_fmt(value / _SCALES[scale])} {scale}"
                else:
                    digits = _fmt(value)
                out = out[:m.start()] + digits + out[m.end():]
                break
    if "$" in _norm(source):
        return out
    for number in numbers:
        if not number.yuan:
            continue
        for value in sorted(number.values):
            text = _fmt(value)
            amount = rf"(?:{re.escape(text)}|{re.escape(f'{value:,.0f}')})" if value.is_integer() else re.escape(text)
            out = re.sub(rf"(?:US)?\$\s?({amount})(?![\d.])", r"¥\1", out)
            out = re.sub(rf"(?<![\d.])(?<!\d,)({amount})[-\s](?:dollars?|bucks?)\b", r"¥\1", out, flags=re.IGNORECASE)
            m = re.search(rf"'?(?<![\d.¥$€£])(?<!\d,)({amount})(?![\d.,%])", out)
            if m and not _CURRENCY_NEAR.search(out[max(0, m.start() - 4):m.end() + 8]):
                out = out[:m.start()] + "¥" + m.group(1) + out[m.end():]
    return out


def _scale_of(word: str) -> float:
    return {"thousand": 1e3, "million": 1e6, "billion": 1e9}[word.lower()]


def protect_numbers(text: str, target_lang: str, first_index: int = 0) -> tuple[str, list[str]]:
    """``text`` (full-width digits folded to ASCII) with each number replaced by ``[first_index + i]``, and the
    text each placeholder is to be restored to.

    The placeholder covers what must come out unchanged: the number with its Latin unit ("500ml") or currency
    ("¥199"; "199元" becomes "¥199", since a currency sign reads in any language). For English, a Chinese
    multiplier or discount is converted too ("10万" -> "100,000", "5折" -> "50% off"); other targets keep it
    outside the placeholder, for the engine to translate.
    """
    norm = _norm(text)
    values: list[str] = []
    pieces: list[str] = []
    last = 0
    for number in source_numbers(norm):
        m = _SOURCE_NUMBER.match(norm, number.start)
        assert m is not None
        digits = m.group("num")
        end = number.end
        if number.yuan:
            replacement = f"¥{digits}"
        elif m.group("cur"):
            replacement = m.group("cur") + digits
        elif m.group("unit"):
            replacement = norm[m.start("num"):m.end("unit")]
        elif m.group("mult") and target_lang == "en":
            scaled = _value(digits) * _MULTIPLIERS[m.group("mult")]
            replacement = (f"{_fmt(scaled / 1e6)} million" if scaled >= 1e6 and (scaled / 1e6) * 100 % 1 == 0
                           else f"{scaled:,.0f}")
        elif m.group("cjk") == "折" and target_lang == "en":
            replacement = f"{_fmt(round((10 - _value(digits)) * 10, 6))}% off"
        else:
            replacement = digits
            end = m.end("num")
        pieces.append(norm[last:number.start])
        pieces.append(f"[{first_index + len(values)}]")
        values.append(replacement)
        last = end
    pieces.append(norm[last:])
    return "".join(pieces), values


def restore_numbers(translation: str, values: list[str], first_index: int = 0) -> str | None:
    """Put the protected numbers back; None when a placeholder is missing (the engine dropped it)."""
    out = translation
    for offset, value in enumerate(values):
        pattern = re.compile(rf"\[\s*{first_index + offset}\s*\]")
        if not pattern.search(out):
            return None
        out = pattern.sub(lambda _m, v=value: v, out, count=1)
    return re.sub(r"\s{2,}", " ", out).strip()


def collapse_brand_echo(source: str, translation: str) -> str:
    """Drop the engine's rendering of a transliterated brand next to the Latin brand itself: "Gillette吉列" comes
    back as "Gillette Gillet"; the second word is an echo when it shares the first four letters and is not in the
    source."""
    out = translation
    source_words = {w.casefold() for w in re.findall(r"[A-Za-z][A-Za-z'&-]{2,}", _norm(source))}
    for word in re.findall(r"[A-Za-z][A-Za-z'&-]{3,}", _norm(source)):
        pattern = re.compile(rf"\b({re.escape(word)})\s+([A-Za-z][\w'-]*)\b", re.IGNORECASE)

        def drop(m: re.Match[str]) -> str:
            echo = m.group(2)
            if echo.casefold() in source_words and echo.casefold() != m.group(1).casefold():
                return m.group(0)
            if echo[:4].casefold() == m.group(1)[:4].casefold():
                return m.group(1)
            return m.group(0)

        out = pattern.sub(drop, out)
    return out
