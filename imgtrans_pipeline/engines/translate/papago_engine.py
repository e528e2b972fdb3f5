"""NAVER Papago through the NAVER Cloud Platform Text Translation API: ``POST /nmt/v1/translation``.

- Auth: the headers ``X-NCP-APIGW-API-KEY-ID`` (the application's Client ID) and ``X-NCP-APIGW-API-KEY`` (its
  Client Secret). Body: form fields ``source``, ``target``, ``text`` (and ``honorific`` for polite Korean);
  the reply is ``{"message": {"result": {"translatedText": ...}}}``.
- Batching: the API takes one text per call, so one image's blocks go as one text, a line each, and the reply is
  split on line breaks again. Papago keeps line breaks, so the counts match; when they do not (a line merged or
  split) the blocks of that call are translated one per call instead, so a block's translation never lands on
  another block. Calls stay under Papago's 5,000 characters.
- Glossaries: Papago's own glossaries live in the NCP console, so the translation service swaps glossary terms
  for placeholders and puts the values back (as for the LLM engines).
- Languages: ``zh`` → ``zh-CN``, ``zh-Hant`` → ``zh-TW``, and ko, en, ja, vi, th, id, fr, es, ru, de, it as they
  are. Papago answers a pair it does not translate with N2MT02/04/06: that is an ``UnsupportedLanguagePair``.
- Failures (``api_base``): 429 "throttle/rate limited" and 5xx retried with backoff; 429 "Quota Exceeded"
  (error code 400: the quota is used up, or Text Translation is not enabled for the application in the console)
  and 401 (ID or secret rejected) are permanent ``EngineError``s, as is any other 4xx; a reply without a
  translation, or with an empty one, is retried, then a transient ``TranslationError``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import aiohttp

from ...core.errors import EngineError, TranslationError, UnsupportedLanguagePair
from ...core.http import Retryable, is_retryable_status
from .api_base import ApiTranslator, Reply, send, translate_nonblank
from .base import check_translations

logger = logging.getLogger(__name__)

DEFAULT_URL = "https://papago.apigw.ntruss.com"
MAX_CHARS = 5000  # Papago: at most 5,000 characters per call
LANGUAGE_CODES = {"ko": "ko", "en": "en", "ja": "ja", "zh": "zh-CN", "zh-Hant": "zh-TW", "vi": "vi", "th": "th",
                  "id": "id", "fr": "fr", "es": "es", "ru": "ru", "de": "de", "it": "it"}
_UNSUPPORTED_CODES = {"N2MT02", "N2MT04", "N2MT06"}  # unsupported source / target / pair
_QUOTA_CODE = "400"  # NCP API gateway: 429 + code 400 = quota exceeded (not a rate limit: waiting will not help)


class PapagoTranslator(ApiTranslator):
    """Papago Text Translation (NAVER Cloud Platform); ``client_id`` + ``api_key`` (the Client Secret)."""

    name = "papago"

    def __init__(
        self,
        client_id: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        honorific: bool = False,
        timeout: float = 30.0,
        max_attempts: int = 4,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        max_retry_after: float = 120.0,
    ) -> None:
        super().__init__(timeout=timeout, max_attempts=max_attempts, backoff_base=backoff_base,
                         backoff_max=backoff_max, max_retry_after=max_retry_after)
        if not client_id or not api_key:
            missing = " and ".join(name for name, value in (("IMGTRANS_PAPAGO_CLIENT_ID", client_id),
                                                            ("IMGTRANS_PAPAGO_CLIENT_SECRET", api_key)) if not value)
            raise EngineError(f"papago translator needs NCP application credentials: set {missing}",
                              stage="translate", transient=False)
        self.client_id = client_id
        self.api_key = api_key
        self.base_url = (base_url or DEFAULT_URL).rstrip("/").removesuffix("/nmt/v1")
        self.honorific = honorific
        # The honorific style changes the output, so it is part of the model identity (and the cache key).
        self.model = "nmt+honorific" if honorific else "nmt"

    # -- interface -------------------------------------------------------------------------------------------

    def supports(self, source_lang: str, target_lang: str) -> bool:
        return source_lang in LANGUAGE_CODES and target_lang in LANGUAGE_CODES and source_lang != target_lang

    def translate_batch(self, texts: Sequence[str], source_lang: str, target_lang: str) -> list[str]:
        """Translate every non-blank text, one call per image (line-joined) where the reply splits back cleanly."""
        if not self.supports(source_lang, target_lang):
            raise UnsupportedLanguagePair(source_lang, target_lang, self.name)
        return translate_nonblank(texts, lambda batch: self._translate(batch, source_lang, target_lang))

    # -- translation -----------------------------------------------------------------------------------------

    @staticmethod
    def chunks(texts: list[str]) -> Iterator[list[str]]:
        """Consecutive runs of ``texts`` whose line-joined text stays within Papago's character limit."""
        chunk: list[str] = []
        size = 0
        for text in texts:
            cost = len(text) + 1
            if chunk and size + cost > MAX_CHARS:
                yield chunk
                chunk, size = [], 0
            chunk.append(text)
            size += cost
        if chunk:
            yield chunk

    async def _translate(self, texts: list[str], source: str, target: str) -> list[str]:
        out: list[str] = []
        async with self.session() as session:
            for chunk in self.chunks(texts):
                out += await self._translate_chunk(session, chunk, source, target)
        return out

    async def _translate_chunk(self, session: aiohttp.ClientSession, texts: list[str], source: str,
                               target: str) -> list[str]:
        if len(texts) > 1 and not any("\n" in t or "\r" in t for t in texts):
            joined = await self.with_retries("translate", lambda: self._call(session, "\n".join(texts), source,
                                                                             target))
            lines = [line.strip() for line in joined.splitlines() if line.strip()]
            if len(lines) == len(texts):
                return check_translations(texts, lines, self.name)
            logger.info("papago: %d line(s) sent, %d came back: translating the %d blocks one per call",
                        len(texts), len(lines), len(texts))
        out: list[str] = []
        for text in texts:
            single = await self.with_retries("translate", lambda t=text: self._call(session, t, source, target))
            out += check_translations([text], [single], self.name)
        return out

    async def _call(self, session: aiohttp.ClientSession, text: str, source: str, target: str) -> str:
        form: dict[str, Any] = {"source": LANGUAGE_CODES[source], "target": LANGUAGE_CODES[target], "text": text}
        if self.honorific and target == "ko":
            form["honorific"] = "true"
        headers = {"X-NCP-APIGW-API-KEY-ID": self.client_id, "X-NCP-APIGW-API-KEY": self.api_key}
        reply = await send(session, "POST", f"{self.base_url}/nmt/v1/translation", data=form, headers=headers)
        self._raise_for_status(reply, source, target)
        try:
            translated = reply.body["message"]["result"]["translatedText"]
        except (KeyError, TypeError) as exc:
            raise TranslationError(f"{self.name}: reply has no message.result.translatedText: "
                                   f"{reply.snippet(120)!r}", transient=True) from exc
        if not isinstance(translated, str) or not translated.strip():
            raise TranslationError(f"{self.name}: empty translation for {text[:40]!r}", transient=True)
        return translated

    def _raise_for_status(self, reply: Reply, source: str, target: str) -> None:
        if 200 <= reply.status < 300:
            return
        code, message = "", reply.snippet()
        error = reply.body.get("error") if isinstance(reply.body, dict) else None
        if isinstance(error, dict):
            code = str(error.get("errorCode", ""))
            message = f"{error.get('message', message)} ({code})" if code else str(error.get("message", message))
        if reply.status == 429 and code == _QUOTA_CODE:
            raise EngineError(f"{self.name} API answered HTTP 429: {message}: the quota is used up, or Papago Text "
                              "Translation is not enabled for this application in the NCP console",
                              stage="translate", transient=False)
        if is_retryable_status(reply.status):
            raise Retryable(f"HTTP {reply.status}: {message}", status=reply.status, retry_after=reply.retry_after)
        if code in _UNSUPPORTED_CODES:
            raise UnsupportedLanguagePair(source, target, self.name, message)
        hint = ""
        if reply.status in (401, 403):
            hint = " (check IMGTRANS_PAPAGO_CLIENT_ID / IMGTRANS_PAPAGO_CLIENT_SECRET)"
        raise EngineError(f"{self.name} API answered HTTP {reply.status}{hint}: {message}", stage="translate",
                          transient=False)
