"""Text checks the quality score needs: normalised comparison, scripts, and translation sanity."""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass

# Script classes a language is written in. A translation that still holds letters of a script its target language
# does not use came out (partly) untranslated.
HAN = "han"
KANA = "kana"
HANGUL = "hangul"
LATIN = "latin"
CYRILLIC = "cyrillic"
THAI = "thai"

LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    "zh": frozenset({HAN}),
    "zh-Hant": frozenset({HAN}),
    "ja": frozenset({HAN, KANA}),
    "ko": frozenset({HANGUL}),
    "ru": frozenset({CYRILLIC}),
    "th": frozenset({THAI}),
}
DENSE_SCRIPTS = frozenset({HAN, KANA, HANGUL, THAI})  # one letter carries about a syllable or a word

# Target letters per source letter that a sane translation lands in, by (source dense?, target dense?). Wide on
# purpose: only the implausible is flagged (a sentence turned into one letter, a word turned into a paragraph).
LENGTH_RATIO_BOUNDS: dict[tuple[bool, bool], tuple[float, float]] = {
    (True, False): (0.7, 10.0),  # zh -> en: typically 2-4 Latin letters per Han character
    (False, True): (0.08, 1.3),  # en -> zh
    (True, True): (0.3, 3.0),
    (False, False): (0.35, 3.0),
}
SHORT_SOURCE = 3  # letters; below this the ratio says little ("包邮" -> "free shipping" is 6x)

# Words no product image says, by target language: an MT engine that produces one (the offline zh->en model read
# 酷睿, Intel's "Core", as a profanity) has garbled the block. Stems match their inflections ("fucking", "shitty").
OFFENSIVE_STEMS: dict[str, tuple[str, ...]] = {
    "en": ("fuck", "shit", "cunt", "bitch", "asshole", "motherfuck", "whore", "slut", "bastard", "dickhead",
           "nigger", "nigga", "faggot", "wanker", "bollock"),
    "ko": ("씨발", "시발", "개새끼", "병신", "좆", "존나", "니미"),
}
_OFFENSIVE = {lang: re.compile(("" if lang == "ko" else r"\b") + "(?:" + "|".join(map(re.escape, stems)) + ")",
                               re.IGNORECASE)
              for lang, stems in OFFENSIVE_STEMS.items()}


def script_of(ch: str) -> str | None:
    cp = ord(ch)
    if 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0xF900 <= cp <= 0xFAFF or 0x20000 <= cp <= 0x2FA1F:
        return HAN
    if 0x3040 <= cp <= 0x30FF or 0x31F0 <= cp <= 0x31FF:
        return KANA
    if 0xAC00 <= cp <= 0xD7A3 or 0x1100 <= cp <= 0x11FF or 0x3130 <= cp <= 0x318F:
        return HANGUL
    if 0x0400 <= cp <= 0x04FF:
        return CYRILLIC
    if 0x0E00 <= cp <= 0x0E7F:
        return THAI
    if ch.isalpha() and (ch.isascii() or 0x00C0 <= cp <= 0x024F or 0x1E00 <= cp <= 0x1EFF):
        return LATIN
    return None


def scripts_of(lang: str) -> frozenset[str]:
    return LANGUAGE_SCRIPTS.get(lang, frozenset({LATIN}))


def normalize_text(text: str) -> str:
    """NFKC, case-folded, letters and digits only: what two readings of the same line share."""
    folded = unicodedata.normalize("NFKC", text or "").casefold()
    return "".join(ch for ch in folded if ch.isalnum())


def text_similarity(a: str, b: str) -> float:
    """0..1 similarity of two texts after ``normalize_text`` (difflib ratio: 2 x matched / total length)."""
    na, nb = normalize_text(a), normalize_text(b)
    if not na or not nb:
        return 0.0
    return difflib.SequenceMatcher(None, na, nb, autojunk=False).ratio()


def shorten(text: str, limit: int = 8) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class TranslationIssue:
    kind: str  # "empty" | "source_script" | "repeated" | "length_ratio" | "offensive"
    severity: float  # 0..1, how much of the block's translation it spoils
    detail: str


def _letters(text: str) -> list[str]:
    return [ch for ch in unicodedata.normalize("NFKC", text or "") if ch.isalpha()]


def _tokens(text: str, dense: bool) -> list[str]:
    if dense:
        return [ch for ch in normalize_text(text)]
    return re.findall(r"\w+", unicodedata.normalize("NFKC", text or "").casefold())


def _repeated_run(tokens: list[str], min_repeats_single: int) -> str | None:
    """The first n-gram repeated back to back: a single token ``min_repeats_single`` times, two tokens 3 times,
    a phrase of 3..8 tokens twice."""
    for n in range(1, 9):
        repeats = min_repeats_single if n == 1 else 3 if n == 2 else 2
        for start in range(0, len(tokens) - n * repeats + 1):
            gram = tokens[start:start + n]
            if all(tokens[start + k * n:start + (k + 1) * n] == gram for k in range(1, repeats)):
                return " ".join(gram)
    return None


def _has_back_to_back_repeat(text: str) -> bool:
    """Whether the source itself repeats a piece back to back ("买买买", "好好学习好好学习"): then so may the
    translation."""
    norm = normalize_text(text)
    for n in range(1, max(1, len(norm) // 2) + 1):
        for start in range(0, len(norm) - 2 * n + 1):
            if norm[start:start + n] == norm[start + n:start + 2 * n]:
                return True
    return False


def translation_issues(source: str, translation: str, source_lang: str, target_lang: str) -> list[TranslationIssue]:
    """What is implausible about one block's translation: empty, source script left, a phrase repeated back to
    back (a typical MT loop), or a length far from what the language pair gives."""
    source_letters = _letters(source)
    if not source_letters:
        return []  # nothing to translate (numbers, symbols)
    text = (translation or "").strip()
    if not normalize_text(text):
        return [TranslationIssue("empty", 1.0, "empty translation")]
    issues: list[TranslationIssue] = []

    target_scripts = scripts_of(target_lang)
    foreign = scripts_of(source_lang) - target_scripts
    letters = _letters(text)
    if foreign and letters:
        left = [ch for ch in letters if script_of(ch) in foreign]
        if left:
            share = len(left) / len(letters)
            issues.append(TranslationIssue("source_script", min(1.0, 0.3 + share), "".join(left)))

    target_dense = bool(target_scripts & DENSE_SCRIPTS)
    tokens = _tokens(text, target_dense)
    run = _repeated_run(tokens, 4 if target_dense else 3)
    if run is not None and not _has_back_to_back_repeat(source):
        issues.append(TranslationIssue("repeated", 0.7, run))

    offensive = _OFFENSIVE.get(target_lang.split("-")[0].lower())
    found = offensive.search(unicodedata.normalize("NFKC", text)) if offensive is not None else None
    if found and not offensive.search(unicodedata.normalize("NFKC", source)):  # type: ignore[union-attr]
        issues.append(TranslationIssue("offensive", 1.0, found.group(0)))  # (not the source's own word, kept)

    source_dense = bool(scripts_of(source_lang) & DENSE_SCRIPTS)
    n_source = len(normalize_text(source))
    n_target = len(normalize_text(text))
    if n_source >= SHORT_SOURCE:
        low, high = LENGTH_RATIO_BOUNDS[(source_dense, target_dense)]
        ratio = n_target / n_source
        if ratio < low or ratio > high:
            issues.append(TranslationIssue("length_ratio", 0.4, f"{ratio:.1f}x"))
    return issues
