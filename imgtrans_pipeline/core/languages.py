"""Language codes: one normalised spelling per language, and the script facts rendering and OCR need."""

from __future__ import annotations

from .errors import InvalidRequest

AUTO = "auto"

# Canonical code -> English name. Aliases below map common spellings onto these.
LANGUAGES: dict[str, str] = {
    "zh": "Chinese (Simplified)",
    "zh-Hant": "Chinese (Traditional)",
    "en": "English",
    "ja": "Japanese",
    "ko": "Korean",
    "fr": "French",
    "de": "German",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "ru": "Russian",
    "vi": "Vietnamese",
    "th": "Thai",
    "id": "Indonesian",
}

_ALIASES: dict[str, str] = {
    "zh-cn": "zh",
    "zh-hans": "zh",
    "zh_cn": "zh",
    "cn": "zh",
    "chinese": "zh",
    "zh-tw": "zh-Hant",
    "zh-hant": "zh-Hant",
    "zh_tw": "zh-Hant",
    "english": "en",
    "en-us": "en",
    "en-gb": "en",
    "jp": "ja",
    "japanese": "ja",
    "kr": "ko",
    "korean": "ko",
    "ko-kr": "ko",
}

# Scripts written without spaces between words: wrap per character, not per word.
CHARACTER_WRAPPED = {"zh", "zh-Hant", "ja"}
CJK_LANGUAGES = {"zh", "zh-Hant", "ja", "ko"}


def normalize_language(code: str, *, field: str, allow_auto: bool = False) -> str:
    """Return the canonical code for ``code`` or raise ``InvalidRequest`` naming ``field``."""
    if not isinstance(code, str) or not code.strip():
        raise InvalidRequest(field, "must be a non-empty language code")
    raw = code.strip()
    if raw.lower() == AUTO:
        if allow_auto:
            return AUTO
        raise InvalidRequest(field, "'auto' is only allowed for source_lang")
    if raw in LANGUAGES:
        return raw
    lowered = raw.lower()
    if lowered in _ALIASES:
        return _ALIASES[lowered]
    if lowered in LANGUAGES:
        return lowered
    known = ", ".join(sorted(LANGUAGES))
    raise InvalidRequest(field, f"unknown language '{raw}' (known: {known})")


def detect_script_language(text: str) -> str | None:
    """Guess the language of OCR'd text from its script (used when source_lang is 'auto').

    Hangul -> ko, kana -> ja, Han without kana -> zh, Latin letters -> en. Returns None when no letters.
    """
    counts = {"ko": 0, "ja": 0, "zh": 0, "en": 0}
    for ch in text:
        cp = ord(ch)
        if 0xAC00 <= cp <= 0xD7A3 or 0x1100 <= cp <= 0x11FF or 0x3130 <= cp <= 0x318F:
            counts["ko"] += 1
        elif 0x3040 <= cp <= 0x30FF:
            counts["ja"] += 1
        elif 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF:
            counts["zh"] += 1
        elif ch.isascii() and ch.isalpha():
            counts["en"] += 1
    if counts["ja"]:
        return "ja"
    best = max(counts, key=lambda k: counts[k])
    return best if counts[best] else None


def needs_translation(text: str, source_lang: str) -> bool:
    """False for text with nothing to translate: no letters (prices, numbers), or, for a CJK source, no CJK
    letters (brand names, model numbers, a round shape misread as "O"). Such text is left in the image as it is.
    """
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return False
    if source_lang in CJK_LANGUAGES:
        return any(ord(ch) >= 0x2E80 for ch in letters)
    return True
