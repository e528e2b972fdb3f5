"""DeepL through its REST API v2: ``POST /v2/translate`` with all of one image's texts in one call.

- Auth: ``Authorization: DeepL-Auth-Key <key>``. A key ending in ``:fx`` belongs to a free plan, whose endpoint is
  ``https://api-free.deepl.com``; other keys use ``https://api.deepl.com`` (``base_url`` overrides both).
- Batching: the ``text`` array carries every block, split only where DeepL's limits require it (50 texts and
  128 KiB per request), and DeepL answers one translation per text, in order.
- Languages: our codes map onto DeepL's (``zh`` → ``ZH`` / ``ZH-HANS``, ``ko`` → ``KO``...); English and
  Portuguese targets need a variant (``EN-US`` by default, ``EN-GB``; ``PT-BR`` / ``PT-PT``).
- Glossaries: DeepL applies a glossary itself (and inflects its entries), so the translation service hands the
  request's glossary to the engine instead of swapping terms for placeholders. The engine keeps one v2 glossary
  per (source, target, entries): named after a hash of its entries, looked up among the account's glossaries
  first (another worker or an earlier run may have made it), created (``POST /v2/glossaries``, TSV entries) only
  when missing, and remembered for the life of the process. Thai has no glossary support: the service falls
  back to placeholders there.
- Failures (``api_base``): 429/5xx/connection errors retried with backoff; a reply with the wrong number of
  translations or an empty one retried, then a transient ``TranslationError``; 403 (key rejected), 456 (character
  quota used up) and other 4xx are permanent ``EngineError``s carrying DeepL's message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import aiohttp

from ...core.errors import EngineError, TranslationError, UnsupportedLanguagePair
from ...core.http import Retryable, is_retryable_status
from .api_base import ApiTranslator, Reply, send, translate_nonblank
from .base import check_translations

logger = logging.getLogger(__name__)

FREE_URL = "https://api-free.deepl.com"
PRO_URL = "https://api.deepl.com"
MAX_TEXTS = 50  # DeepL: at most 50 texts per translate request
MAX_BODY_BYTES = 100 * 1024  # DeepL refuses bodies over 128 KiB; keep a margin for the JSON framing

# Our canonical codes -> DeepL source codes (no variants on the source side).
SOURCE_CODES = {"zh": "ZH", "zh-Hant": "ZH", "en": "EN", "ja": "JA", "ko": "KO", "fr": "FR", "de": "DE", "es": "ES",
                "it": "IT", "pt": "PT", "ru": "RU", "id": "ID", "vi": "VI", "th": "TH"}
TARGET_CODES = {**SOURCE_CODES, "zh": "ZH-HANS", "zh-Hant": "ZH-HANT"}  # en / pt: the configured variant
NO_GLOSSARY = {"th"}  # DeepL glossaries cover every language but Thai


def _valid_entry(source: str, target: str) -> bool:
    """DeepL's TSV rules: both sides non-empty, no tab or line break, at most 1024 UTF-8 bytes each."""
    return all(text and not any(c in text for c in "\t\r\n") and len(text.encode("utf-8")) <= 1024
               for text in (source, target))


class DeepLTranslator(ApiTranslator):
    """DeepL API v2 (Free or Pro). ``model`` is DeepL's ``model_type`` (e.g. ``quality_optimized``); empty =
    DeepL's default."""

    name = "deepl"

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        model: str = "",
        english_variant: str = "EN-US",
        portuguese_variant: str = "PT-BR",
        timeout: float = 30.0,
        max_attempts: int = 4,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        max_retry_after: float = 120.0,
        glossary_ready_timeout: float = 20.0,
    ) -> None:
        super().__init__(timeout=timeout, max_attempts=max_attempts, backoff_base=backoff_base,
                         backoff_max=backoff_max, max_retry_after=max_retry_after)
        if not api_key:
            raise EngineError("deepl translator needs an API key: set IMGTRANS_DEEPL_API_KEY (or DEEPL_AUTH_KEY)",
                              stage="translate", transient=False)
        self.api_key = api_key
        base = (base_url or (FREE_URL if api_key.endswith(":fx") else PRO_URL)).rstrip("/")
        self.base_url = base.removesuffix("/v2")
        self.model_type = model
        english_variant, portuguese_variant = english_variant.upper(), portuguese_variant.upper()
        if english_variant not in ("EN-US", "EN-GB") or portuguese_variant not in ("PT-BR", "PT-PT"):
            raise EngineError(f"deepl: unknown variant {english_variant!r} / {portuguese_variant!r} "
                              "(EN-US or EN-GB; PT-BR or PT-PT)", stage="translate", transient=False)
        # The model identity keys the translation cache: a non-default variant is another output for "en"/"pt".
        variants = [v for v, default in ((english_variant, "EN-US"), (portuguese_variant, "PT-BR")) if v != default]
        self.model = "/".join(["v2", *([model] if model else []), *variants])
        self.target_codes = {**TARGET_CODES, "en": english_variant, "pt": portuguese_variant}
        self.glossary_ready_timeout = glossary_ready_timeout
        self._glossaries: dict[str, str] = {}  # glossary name (pair + entries hash) -> glossary_id
        self._glossary_lock = threading.Lock()

    # -- interface -------------------------------------------------------------------------------------------

    def supports(self, source_lang: str, target_lang: str) -> bool:
        return source_lang in SOURCE_CODES and target_lang in self.target_codes and source_lang != target_lang

    def glossary_supported(self, source_lang: str, target_lang: str) -> bool:
        """Whether DeepL applies a glossary for this pair itself (the service then skips its placeholders)."""
        return self.supports(source_lang, target_lang) and not {source_lang, target_lang} & NO_GLOSSARY

    def translate_batch(self, texts: Sequence[str], source_lang: str, target_lang: str,
                        glossary: Mapping[str, str] | None = None) -> list[str]:
        """Translate every non-blank text in as few requests as DeepL's limits allow (one for an image)."""
        if not self.supports(source_lang, target_lang):
            raise UnsupportedLanguagePair(source_lang, target_lang, self.name)
        return translate_nonblank(texts, lambda batch: self._translate(batch, source_lang, target_lang, glossary))

    # -- translation -----------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"DeepL-Auth-Key {self.api_key}"}

    @staticmethod
    def chunks(texts: list[str]) -> Iterator[list[str]]:
        """Consecutive runs of ``texts`` within DeepL's per-request limits (count and body size)."""
        chunk: list[str] = []
        size = 0
        for text in texts:
            cost = len(json.dumps(text, ensure_ascii=False).encode("utf-8")) + 1
            if chunk and (len(chunk) >= MAX_TEXTS or size + cost > MAX_BODY_BYTES):
                yield chunk
                chunk, size = [], 0
            chunk.append(text)
            size += cost
        if chunk:
            yield chunk

    async def _translate(self, texts: list[str], source: str, target: str,
                         glossary: Mapping[str, str] | None) -> list[str]:
        async with self.session() as session:
            glossary_id = None
            if glossary and self.glossary_supported(source, target):
                glossary_id = await self._glossary_id(session, source, target, glossary)
            out: list[str] = []
            for chunk in self.chunks(texts):
                try:
                    out += await self.with_retries(
                        "translate", lambda c=chunk, g=glossary_id: self._attempt(session, c, source, target, g))
                except EngineError as error:
                    if not (glossary and glossary_id and "glossary" in error.reason.lower()):
                        raise
                    # The remembered glossary is gone (deleted in the account): make it again, once.
                    logger.warning("deepl: glossary %s refused (%s): creating it again", glossary_id, error.reason)
                    self._forget_glossary(glossary_id)
                    glossary_id = await self._glossary_id(session, source, target, glossary)
                    out += await self.with_retries(
                        "translate", lambda c=chunk, g=glossary_id: self._attempt(session, c, source, target, g))
            return out

    async def _attempt(self, session: aiohttp.ClientSession, texts: list[str], source: str, target: str,
                       glossary_id: str | None) -> list[str]:
        payload: dict[str, Any] = {"text": texts, "source_lang": SOURCE_CODES[source],
                                   "target_lang": self.target_codes[target]}
        if glossary_id:
            payload["glossary_id"] = glossary_id
        if self.model_type:
            payload["model_type"] = self.model_type
        reply = await send(session, "POST", f"{self.base_url}/v2/translate", json=payload, headers=self._headers())
        self._raise_for_status(reply)
        if not isinstance(reply.body, dict):
            raise TranslationError(f"{self.name}: response body is not JSON: {reply.snippet(120)!r}", transient=True)
        items = reply.body.get("translations")
        if not isinstance(items, list):
            raise TranslationError(f"{self.name}: reply has no 'translations' list: {reply.snippet(120)!r}",
                                   transient=True)
        found = [item.get("text") if isinstance(item, dict) else item for item in items]
        return check_translations(texts, found, self.name)

    def _raise_for_status(self, reply: Reply) -> None:
        if 200 <= reply.status < 300:
            return
        message = reply.snippet()
        if isinstance(reply.body, dict) and reply.body.get("message"):
            message = str(reply.body["message"])[:300]
            if reply.body.get("detail"):
                message += f" ({str(reply.body['detail'])[:200]})"
        if is_retryable_status(reply.status):
            raise Retryable(f"HTTP {reply.status}: {message}", status=reply.status, retry_after=reply.retry_after)
        hint = {403: " (key rejected: check IMGTRANS_DEEPL_API_KEY; a free key ends in ':fx' and needs "
                     "api-free.deepl.com)",
                456: " (character quota of the DeepL plan used up)"}.get(reply.status, "")
        raise EngineError(f"{self.name} API answered HTTP {reply.status}{hint}: {message}", stage="translate",
                          transient=False)

    # -- glossaries ------------------------------------------------------------------------------------------

    async def _glossary_id(self, session: aiohttp.ClientSession, source: str, target: str,
                           glossary: Mapping[str, str]) -> str | None:
        """The id of a ready DeepL glossary holding ``glossary`` for the pair: remembered, found or created."""
        entries = {k.strip(): v.strip() for k, v in glossary.items()}
        usable = {k: v for k, v in entries.items() if _valid_entry(k, v)}
        if len(usable) < len(entries):
            logger.warning("deepl: %d glossary entr(ies) left out (empty, tab/line break, or over 1024 bytes)",
                           len(entries) - len(usable))
        if not usable:
            return None
        source_code, target_code = SOURCE_CODES[source].lower(), SOURCE_CODES[target].lower()
        tsv = "\n".join(f"{k}\t{v}" for k, v in sorted(usable.items()))
        digest = hashlib.sha256(f"{source_code}\n{target_code}\n{tsv}".encode()).hexdigest()[:20]
        name = f"imgtrans-{source_code}-{target_code}-{digest}"
        with self._glossary_lock:  # one creation per glossary even when several threads ask at once
            known = self._glossaries.get(name)
            if known:
                return known
            found = await self.with_retries("glossary lookup", lambda: self._find_glossary(session, name))
            if found is None:
                glossary_id, ready = await self.with_retries(
                    "glossary create", lambda: self._create_glossary(session, name, source_code, target_code, tsv))
                logger.info("deepl: created glossary %s (%s, %d entries)", glossary_id, name, len(usable))
            else:
                glossary_id, ready = found
            if not ready:
                await self._wait_ready(session, glossary_id)
            self._glossaries[name] = glossary_id
            return glossary_id

    def _forget_glossary(self, glossary_id: str) -> None:
        with self._glossary_lock:
            for name in [n for n, known in self._glossaries.items() if known == glossary_id]:
                del self._glossaries[name]

    async def _find_glossary(self, session: aiohttp.ClientSession, name: str) -> tuple[str, bool] | None:
        reply = await send(session, "GET", f"{self.base_url}/v2/glossaries", headers=self._headers())
        self._raise_for_status(reply)
        listed = reply.body.get("glossaries") if isinstance(reply.body, dict) else None
        if not isinstance(listed, list):
            raise TranslationError(f"{self.name}: glossary list reply is malformed: {reply.snippet(120)!r}",
                                   transient=True)
        for item in listed:
            if isinstance(item, dict) and item.get("name") == name and item.get("glossary_id"):
                return str(item["glossary_id"]), bool(item.get("ready", True))
        return None

    async def _create_glossary(self, session: aiohttp.ClientSession, name: str, source_code: str,
                               target_code: str, tsv: str) -> tuple[str, bool]:
        payload = {"name": name, "source_lang": source_code, "target_lang": target_code, "entries": tsv,
                   "entries_format": "tsv"}
        reply = await send(session, "POST", f"{self.base_url}/v2/glossaries", json=payload, headers=self._headers())
        self._raise_for_status(reply)
        if not isinstance(reply.body, dict) or not reply.body.get("glossary_id"):
            raise TranslationError(f"{self.name}: glossary creation reply has no glossary_id: "
                                   f"{reply.snippet(120)!r}", transient=True)
        return str(reply.body["glossary_id"]), bool(reply.body.get("ready", True))

    async def _wait_ready(self, session: aiohttp.ClientSession, glossary_id: str) -> None:
        """A new glossary may not be usable at once (``ready: false``): poll its metadata for a short while."""
        deadline = time.monotonic() + self.glossary_ready_timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            try:
                reply = await send(session, "GET", f"{self.base_url}/v2/glossaries/{glossary_id}",
                                   headers=self._headers())
            except Retryable:
                continue
            if is_retryable_status(reply.status):
                continue
            self._raise_for_status(reply)
            if isinstance(reply.body, dict) and reply.body.get("ready"):
                return
        raise TranslationError(f"{self.name}: glossary {glossary_id} not ready after "
                               f"{self.glossary_ready_timeout:.0f}s", transient=True)
