"""The translation interface: one batched call per image translates all its texts.

Engines translate a list of texts in one call because every engine here is cheaper per text in a batch
(CTranslate2 pads and decodes them together; an LLM API answers a whole list for the price of one round trip).
``check_translations`` is the reply validation every engine and the service share, so a wrong count or an
empty translation for a non-empty input is always caught, whichever engine produced it.

Engines that can use more than the bare texts (the LLM engines) also implement ``PageTranslator``: one call per
image with a ``PageText`` (each block's text, role, size, box and length budget, the image itself, the request
context, glossary and locale conventions) answered by block id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
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


ROLES = ("headline", "price", "badge", "body")


@dataclass(frozen=True)
class PageBlock:
    """One text block of an image as a page-aware engine sees it."""

    id: str  # "b1", "b2", ...: what the reply is keyed by
    text: str
    role: str = "body"  # one of ROLES (engines.translate.page.classify_role)
    size_px: float = 0.0  # source font size (em) in pixels
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # x0, y0, x1, y1 on the page (source pixels)
    budget: int = 0  # target-language characters that fit the block's region at a readable size; 0 = no limit


@dataclass(frozen=True)
class PageText:
    """Everything one page-level translation call sends: the blocks and what helps translate them well."""

    blocks: tuple[PageBlock, ...]
    width: int = 0  # page size in source pixels (the boxes' frame)
    height: int = 0
    image_jpeg: bytes | None = None  # the page downscaled (longest side <= 1024), None when not sent
    context: dict[str, str] = field(default_factory=dict)  # request options.context: title, category, brand, text
    glossary: dict[str, str] = field(default_factory=dict)  # source term -> required translation
    do_not_translate: tuple[str, ...] = ()  # brand names, model numbers: copied as written
    conventions: str = ""  # the target locale's conventions for prices and units

    def with_blocks(self, blocks: list[PageBlock], glossary: dict[str, str] | None = None) -> PageText:
        return replace(self, blocks=tuple(blocks), glossary=dict(self.glossary if glossary is None else glossary))


@dataclass
class PageTranslation:
    """A validated page reply: a translation per block id, and what was still wrong after the retry."""

    translations: dict[str, str]
    flags: dict[str, list[str]] = field(default_factory=dict)  # by block id: "over_budget:23/12", ...


@runtime_checkable
class PageTranslator(Protocol):
    """An engine that translates a whole page in one call (``TranslationService`` uses it when present)."""

    def translate_page(self, page: PageText, source_lang: str, target_lang: str) -> PageTranslation:
        """One translation per block id of ``page``; raise ``TranslationError`` naming what was wrong."""
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
