"""The translation interface: one batched call per image translates all its texts.

Engines translate a list of texts in one call because every engine here is cheaper per text in a batch
(CTranslate2 pads and decodes them together; an LLM API answers a whole list for the price of one round trip).
``check_translations`` is the reply validation every engine and the service share, so a wrong count or an
empty translation for a non-empty input is always caught, whichever engine produced it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from ...core.errors import TranslationError


@runtime_checkable
class Translator(Protocol):
    """A translation engine.

    ``name`` is the engine family ("ctranslate2", "gemini", "openai", "deepl", "papago"); ``model`` identifies
    the weights/model so a cache never serves one model's output as another's. Engines that hold several models
    (one per language pair) may also define ``model_for(source_lang, target_lang) -> str``; callers prefer it
    when present.

    Engines that apply a glossary themselves (DeepL) also define ``glossary_supported(source_lang, target_lang)
    -> bool`` and accept ``translate_batch(..., glossary={term: translation})``; for every other engine the
    service swaps glossary terms for placeholders before the call and restores them after (see ``service``).
    """

    name: str
    model: str

    def supports(self, source_lang: str, target_lang: str) -> bool:
        """Whether this engine translates the pair (canonical codes from core.languages)."""
        ...

    def translate_batch(self, texts: list[str], source_lang: str, target_lang: str) -> list[str]:
        """Return exactly one translation per input text, in order. Raise PipelineError subclasses on failure.

        Raises ``UnsupportedLanguagePair`` for a pair the engine does not translate: never translate into a
        different language silently.
        """
        ...


def model_id(translator: Translator, source_lang: str, target_lang: str) -> str:
    """The model identifier for a pair: ``model_for`` when the engine has one, else ``model``."""
    model_for = getattr(translator, "model_for", None)
    if callable(model_for):
        return str(model_for(source_lang, target_lang))
    return str(translator.model)


def native_glossary(translator: Translator, source_lang: str, target_lang: str) -> bool:
    """Whether ``translator`` applies a glossary itself for this pair (``glossary_supported`` says so)."""
    supported = getattr(translator, "glossary_supported", None)
    return bool(callable(supported) and supported(source_lang, target_lang))


def glossary_digest(glossary: Mapping[str, str]) -> str:
    """A short stable hash of a glossary's entries (order-independent), for cache keys and names."""
    canonical = json.dumps(sorted(glossary.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def check_translations(texts: list[str], translations: object, engine: str) -> list[str]:
    """Validate an engine reply: a list of strings, one per input, non-empty where the input is non-empty.

    Returns the translations stripped of surrounding whitespace. Raises a transient ``TranslationError`` naming
    what was wrong, because a garbled reply from a model is usually not repeated on a second try.
    """
    if not isinstance(translations, list):
        raise TranslationError(
            f"{engine}: expected a list of translations, got {type(translations).__name__}", transient=True
        )
    if len(translations) != len(texts):
        raise TranslationError(
            f"{engine}: wrong number of translations: expected {len(texts)}, got {len(translations)}",
            transient=True,
        )
    cleaned: list[str] = []
    for index, (source, target) in enumerate(zip(texts, translations, strict=True)):
        if not isinstance(target, str):
            raise TranslationError(
                f"{engine}: translation #{index + 1} is {type(target).__name__}, not a string", transient=True
            )
        target = target.strip()
        if source.strip() and not target:
            raise TranslationError(
                f"{engine}: empty translation #{index + 1} for non-empty input {source[:40]!r}", transient=True
            )
        cleaned.append(target)
    return cleaned
