"""LLM translation engines over HTTP: Google Gemini (``generateContent``) and OpenAI-compatible chat servers.

They are the only route to pairs no offline model covers (e.g. anything → Korean). Both send the whole batch in
one request as numbered items and ask for ``{"translations": [...]}`` back, because one round trip per image is
what keeps an API engine affordable, and numbered items let us check that nothing was merged or dropped.

Failures are sorted the way the pipeline needs: 429/5xx, timeouts and connection errors are retried with
exponential backoff and jitter (a ``Retry-After`` header, or Gemini's ``RetryInfo.retryDelay``, wins over our own
schedule); a reply that is not a JSON list of the right length with non-empty items is retried too, then raised
as a transient ``TranslationError`` naming what was wrong; 400/401/403/404 and a missing API key are permanent.

``translate_page`` (the path ``TranslationService`` takes when the pipeline gives it a ``PageText``) sends one
image in one call instead: the image itself (downscaled JPEG, unless ``send_image`` is off), each block's id, text,
role, size, box and length budget, the request context, glossary, do-not-translate terms and the target's price
conventions, with a response schema keyed by block id (Gemini ``responseSchema``, OpenAI ``json_schema``). The
reply is checked (``page.check_page_reply``); a reply with problems gets exactly one follow-up message listing
them, and one still unusable after it is a permanent ``TranslationError`` with the reasons.

The HTTP calls use aiohttp but ``translate_batch`` is synchronous: it runs the coroutine with ``asyncio.run`` on
the calling thread, or on a helper thread when the caller already runs an event loop, so it works from Dagster
ops, worker threads and async code alike.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import aiohttp

from ...core.errors import EngineError, TranslationError, UnsupportedLanguagePair
from ...core.http import Retryable, RetryPolicy, is_retryable_status
from ...core.languages import LANGUAGES
from .api_base import run_sync, send, translate_nonblank
from .base import PageText, PageTranslation, check_translations
from .page import PageCheck, check_page_reply

# One turn of a page conversation: ("user" | "model", text, JPEG image bytes or None).
Turn = tuple[str, str, bytes | None]

logger = logging.getLogger(__name__)

_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


def _gemini_retry_delay(body: Any) -> float | None:
    """Gemini puts the wait in ``error.details[].retryDelay`` ("13s") rather than a header."""
    try:
        for detail in body["error"]["details"]:
            delay = detail.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s"):
                return max(0.0, float(delay[:-1]))
    except (KeyError, TypeError, ValueError):
        return None
    return None


def parse_translation_reply(text: str) -> list[Any]:
    """Extract the list of translations from a model's reply text.

    Accepts ``{"translations": [...]}`` or a bare ``[...]``, inside Markdown code fences or not, after a
    ``<think>`` block or chatter; items may be strings or objects with a ``translation``/``text`` field (ordered
    by ``id`` when they carry one). Raises a transient ``TranslationError`` saying why when nothing parses.
    """
    cleaned = _THINK.sub("", text or "").strip()
    fenced = _FENCE.match(cleaned)
    if fenced:
        cleaned = fenced.group(1).strip()
    data: Any = None
    try:
        data = json.loads(cleaned)
    except ValueError:
        # Chatter around the JSON: take the outermost object or array.
        for opener, closer in (("{", "}"), ("[", "]")):
            start, end = cleaned.find(opener), cleaned.rfind(closer)
            if 0 <= start < end:
                try:
                    data = json.loads(cleaned[start : end + 1])
                    break
                except ValueError:
                    continue
    if data is None:
        snippet = (text or "")[:120].replace("\n", " ")
        raise TranslationError(f"reply is not JSON: {snippet!r}", transient=True)
    if isinstance(data, dict):
        items = data.get("translations")
        if items is None:
            items = next((v for v in data.values() if isinstance(v, list)), None)
        if items is None:
            raise TranslationError(f"reply JSON has no 'translations' list (keys: {sorted(data)[:5]})", transient=True)
        data = items
    if not isinstance(data, list):
        raise TranslationError(f"reply JSON is a {type(data).__name__}, not a list", transient=True)
    if data and all(isinstance(item, dict) for item in data):
        if all("id" in item for item in data):
            with contextlib.suppress(TypeError, ValueError):
                data = sorted(data, key=lambda item: int(item["id"]))
        data = [next((item[k] for k in ("translation", "text", "target") if k in item), None) for item in data]
    return data


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object as its (key, value) pairs in order, so a repeated key is seen (dict() would keep one)."""


def _load_pairs(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_Pairs)


def parse_page_reply(text: str) -> list[tuple[object, object]] | None:
    """The (block id, translation) pairs of a page reply, in reply order; None when there are none.

    Accepts ``{"translations": {"b1": "...", ...}}`` (what the schema asks for), a bare ``{"b1": "...", ...}`` or
    ``{"translations": [{"id": "b1", "translation": "..."}, ...]}``, inside code fences or after chatter.
    """
    cleaned = _THINK.sub("", text or "").strip()
    fenced = _FENCE.match(cleaned)
    if fenced:
        cleaned = fenced.group(1).strip()
    data: Any = None
    try:
        data = _load_pairs(cleaned)
    except ValueError:
        start, end = cleaned.find("{"), cleaned.rfind("}")
        if 0 <= start < end:
            with contextlib.suppress(ValueError):
                data = _load_pairs(cleaned[start : end + 1])
    if not isinstance(data, _Pairs):
        return None
    inner = next((value for key, value in data if key == "translations"), None)
    if inner is None:
        return [(key, value) for key, value in data]
    if isinstance(inner, _Pairs):
        return [(key, value) for key, value in inner]
    if isinstance(inner, list) and all(isinstance(item, _Pairs) for item in inner):
        pairs: list[tuple[object, object]] = []
        for item in inner:
            fields = dict(item)
            if "id" not in fields:
                return None
            pairs.append((fields["id"], next((fields[k] for k in ("translation", "text") if k in fields), None)))
        return pairs
    return None


class _HttpLLMTranslator:
    """Shared prompt, retry and parsing logic; subclasses build the request and read the reply text."""

    name = "llm"
    default_api_key_env = "IMGTRANS_TRANSLATE_API_KEY"  # named in error messages; settings read the variables

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key: str | None = None,
        require_api_key: bool = True,
        timeout: float = 60.0,
        max_attempts: int = 4,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        max_retry_after: float = 120.0,
        temperature: float = 0.0,
        send_image: bool = True,
    ) -> None:
        self.model = model
        self.send_image = send_image  # the image part of page calls; off for text-only models
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key or None
        if require_api_key and not self.api_key:
            raise EngineError(
                f"{self.name} translator needs an API key: set {self.default_api_key_env} or "
                "IMGTRANS_TRANSLATE_API_KEY", stage="translate", transient=False
            )
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.temperature = temperature

    # -- interface -------------------------------------------------------------------------------------------

    def supports(self, source_lang: str, target_lang: str) -> bool:
        return source_lang in LANGUAGES and target_lang in LANGUAGES and source_lang != target_lang

    def translate_batch(self, texts: Sequence[str], source_lang: str, target_lang: str) -> list[str]:
        """Translate all non-blank ``texts`` in one API request (retried as described in the module docstring)."""
        if not self.supports(source_lang, target_lang):
            raise UnsupportedLanguagePair(source_lang, target_lang, self.name, "use canonical codes, source != auto")
        return translate_nonblank(texts, lambda batch: self._translate_with_retries(batch, source_lang, target_lang))

    # -- prompt ----------------------------------------------------------------------------------------------

    @staticmethod
    def build_prompt(texts: list[str], source_lang: str, target_lang: str) -> tuple[str, str]:
        """(system instruction, user message) asking for a JSON object with one translation per numbered item."""
        src, tgt = LANGUAGES[source_lang], LANGUAGES[target_lang]
        system = (
            f"You are a professional translator of text found in product and marketing images (e-commerce "
            f"banners, labels, packaging). Translate every item from {src} to {tgt}.\n"
            "Rules:\n"
            "- Translate each item on its own, faithfully and concisely: these are short captions in an image.\n"
            "- Keep numbers, prices, units, percentages, model numbers, URLs and Latin-script brand names as they"
            " are.\n"
            "- Keep placeholders such as [0], [1] exactly as written, in a natural position.\n"
            f"- Never answer in any language other than {tgt}; never add notes or explanations.\n"
            f'- Reply with only a JSON object {{"translations": [...]}} holding exactly {len(texts)} strings: '
            "the i-th string is the translation of item i."
        )
        items = [{"id": i + 1, "text": t} for i, t in enumerate(texts)]
        user = json.dumps(
            {"source_language": src, "target_language": tgt, "count": len(texts), "items": items},
            ensure_ascii=False,
        )
        return system, user

    # -- transport -------------------------------------------------------------------------------------------

    def _request(self, system: str, user: str) -> tuple[str, dict[str, str], dict[str, Any]]:
        """(url, headers, JSON body) for one call."""
        raise NotImplementedError

    def _reply_text(self, body: Any) -> str:
        """The model's text out of a successful response body; raise TranslationError if there is none."""
        raise NotImplementedError

    @property
    def retry_policy(self) -> RetryPolicy:
        # A server asking for a longer wait than max_retry_after (a daily quota, say) ends the retries at once:
        # the step's own retry, much later, is the better place to try again.
        return RetryPolicy(attempts=self.max_attempts, base_s=self.backoff_base, max_s=self.backoff_max,
                           retry_after_max_s=self.max_retry_after, give_up_on_long_retry_after=True)

    async def _attempt(self, session: aiohttp.ClientSession, texts: list[str], source: str, target: str) -> list[str]:
        system, user = self.build_prompt(texts, source, target)
        url, headers, payload = self._request(system, user)
        body = await self._post(session, url, headers, payload)
        reply = self._reply_text(body)
        return check_translations(texts, parse_translation_reply(reply), self.name)

    async def _post(self, session: aiohttp.ClientSession, url: str, headers: dict[str, str],
                    payload: dict[str, Any]) -> Any:
        """POST one request; the JSON body of a 200 answer. Raises ``Retryable`` (429/5xx, network),
        ``EngineError`` (other statuses: permanent) or ``TranslationError`` (a 200 that is not JSON)."""
        reply = await send(session, "POST", url, json=payload, headers=headers)
        status, body, raw, retry_after = reply.status, reply.body, reply.raw, reply.retry_after
        if status != 200:
            message = raw[:300].replace("\n", " ")
            if isinstance(body, dict) and isinstance(body.get("error"), dict):
                message = str(body["error"].get("message", message))[:300]
            if is_retryable_status(status):
                if retry_after is None:
                    retry_after = _gemini_retry_delay(body)
                raise Retryable(f"HTTP {status}: {message}", status=status, retry_after=retry_after)
            hint = " (check the API key)" if status in (401, 403) else ""
            raise EngineError(f"{self.name} API answered HTTP {status}{hint}: {message}", stage="translate",
                              transient=False)
        if body is None:
            raise TranslationError(f"response body is not JSON: {raw[:120]!r}", transient=True)
        return body

    async def _translate_with_retries(self, texts: list[str], source: str, target: str) -> list[str]:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        policy = self.retry_policy
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                async for attempt in policy.retrying(f"{self.name} ({self.model})",
                                                     retry_on=(Retryable, TranslationError)):
                    with attempt:
                        return await self._attempt(session, texts, source, target)
            except Retryable as exc:
                if exc.retry_after is not None and exc.retry_after > self.max_retry_after:
                    raise TranslationError(
                        f"{self.name} ({self.model}): asked to wait {exc.retry_after:.0f}s "
                        f"(> {self.max_retry_after:.0f}s): {exc.reason}", transient=True) from exc
                last_reason = exc.reason
            except TranslationError as exc:
                last_reason = exc.reason
        raise TranslationError(
            f"{self.name} ({self.model}) failed after {self.max_attempts} attempts: {last_reason}", transient=True
        )

    # -- page path: one call per image with the image, roles, budgets and context ------------------------------

    def translate_page(self, page: PageText, source_lang: str, target_lang: str) -> PageTranslation:
        """Translate every block of ``page`` in one call (plus at most one follow-up with the reply's errors).

        Raises a permanent ``TranslationError`` listing the errors when the reply is still unusable after the
        follow-up (HTTP failures stay transient, as in ``translate_batch``). Over-budget translations and unused
        glossary values still there after the follow-up are returned as flags.
        """
        if not self.supports(source_lang, target_lang):
            raise UnsupportedLanguagePair(source_lang, target_lang, self.name, "use canonical codes, source != auto")
        blank = {block.id: "" for block in page.blocks if not block.text.strip()}
        todo = [block for block in page.blocks if block.text.strip()]
        if not todo:
            return PageTranslation(blank)
        page = page.with_blocks(todo)
        if not self.send_image:
            page = replace(page, image_jpeg=None)
        result: PageTranslation = run_sync(lambda: self._translate_page(page, source_lang, target_lang))
        result.translations.update(blank)
        return result

    def build_page_prompt(self, page: PageText, source_lang: str, target_lang: str) -> tuple[str, str]:
        """(system instruction, user message): the rules, then the page as JSON."""
        src, tgt = LANGUAGES[source_lang], LANGUAGES[target_lang]
        image = ("The image is attached: look at it to see what each text refers to and how it is laid out.\n"
                 if page.image_jpeg else "")
        system = (
            f"You translate the text of an e-commerce product image (banner, detail page, label, packaging) from "
            f"{src} to {tgt}, for shoppers who read {tgt}.\n{image}"
            "Each block has an id, its source text, its role on the page (headline, price, badge or body), its font"
            " size and box in pixels on the page, and max_chars: how many characters of the translation fit its"
            " space at a readable size.\n"
            "Rules:\n"
            "- Translate every block exactly once, keyed by its id, as a native copywriter would for this product:"
            " the meaning, not word by word. Use the context and the image to pick the right terms.\n"
            "- Stay within max_chars (count every character, spaces included): headlines and badges short and"
            " punchy, body text complete but concise.\n"
            "- Use the glossary translations exactly as given; copy do_not_translate terms as written.\n"
            "- Follow the conventions for prices and units. Keep placeholders such as [0] as written.\n"
            f"- Write only {tgt}: leave no {src} characters, add no notes.\n"
            '- Reply with only a JSON object {"translations": {"<id>": "<translation>", ...}} with every id.'
        )
        blocks = [{"id": b.id, "text": b.text, "role": b.role, "size_px": b.size_px, "box": list(b.box),
                   **({"max_chars": b.budget} if b.budget else {})} for b in page.blocks]
        user: dict[str, Any] = {"source_language": src, "target_language": tgt}
        if page.context:
            user["context"] = dict(page.context)
        if page.glossary:
            user["glossary"] = dict(page.glossary)
        if page.do_not_translate:
            user["do_not_translate"] = list(page.do_not_translate)
        if page.conventions:
            user["conventions"] = page.conventions
        if page.width and page.height:
            user["page"] = {"width": page.width, "height": page.height}
        user["blocks"] = blocks
        return system, json.dumps(user, ensure_ascii=False)

    @staticmethod
    def follow_up(check: PageCheck, page: PageText) -> str:
        problems = "\n".join(f"- {p}" for p in check.problems)
        return (f"Your reply had these problems:\n{problems}\nReply again with only the complete JSON object, one"
                f" translation for each of the {len(page.blocks)} ids ({', '.join(b.id for b in page.blocks)}).")

    def _page_request(self, system: str, turns: list[Turn], ids: list[str]) -> tuple[str, dict[str, str],
                                                                                    dict[str, Any]]:
        """(url, headers, JSON body) for a page call: the conversation so far, a schema keyed by ``ids``."""
        raise NotImplementedError

    async def _post_with_retries(self, session: aiohttp.ClientSession, url: str, headers: dict[str, str],
                                 payload: dict[str, Any]) -> Any:
        """``_post`` with the transport retries (429/5xx, network) of ``translate_batch``."""
        try:
            async for attempt in self.retry_policy.retrying(f"{self.name} ({self.model})", retry_on=(Retryable,)):
                with attempt:
                    return await self._post(session, url, headers, payload)
        except Retryable as exc:
            if exc.retry_after is not None and exc.retry_after > self.max_retry_after:
                raise TranslationError(
                    f"{self.name} ({self.model}): asked to wait {exc.retry_after:.0f}s "
                    f"(> {self.max_retry_after:.0f}s): {exc.reason}", transient=True) from exc
            raise TranslationError(f"{self.name} ({self.model}) failed after {self.max_attempts} attempts: "
                                   f"{exc.reason}", transient=True) from exc
        raise AssertionError("unreachable")  # the retry loop either returns or raises

    async def _page_round(self, session: aiohttp.ClientSession, system: str, turns: list[Turn], page: PageText,
                          source: str, target: str) -> tuple[str, PageCheck]:
        url, headers, payload = self._page_request(system, turns, [b.id for b in page.blocks])
        body = await self._post_with_retries(session, url, headers, payload)
        try:
            reply = self._reply_text(body)
        except TranslationError as exc:  # no text at all (blocked, empty): a bad reply like any other
            return "", PageCheck(errors=[exc.reason])
        pairs = parse_page_reply(reply)
        check = check_page_reply(page, pairs, source, target)
        if pairs is None:
            snippet = reply[:120].replace("\n", " ")
            check.errors = [f"the reply is not the JSON object asked for: {snippet!r}"]
        return reply, check

    async def _translate_page(self, page: PageText, source: str, target: str) -> PageTranslation:
        system, user = self.build_page_prompt(page, source, target)
        turns: list[Turn] = [("user", user, page.image_jpeg)]
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            reply, check = await self._page_round(session, system, turns, page, source, target)
            if not check.problems:
                return PageTranslation(check.translations)
            logger.info("%s (%s): page reply has %d problem(s), asking once more: %s", self.name, self.model,
                        len(check.problems), "; ".join(check.problems[:5]))
            if reply:
                turns.append(("model", reply, None))
            turns.append(("user", self.follow_up(check, page), None))
            _reply, check = await self._page_round(session, system, turns, page, source, target)
        if check.errors:
            # The model was told what was wrong and got it wrong again: asking a third time rarely helps, and the
            # request is recorded as failed with the reasons (re-queue it, or try another model).
            shown = "; ".join(check.errors[:6]) + (f"; ... ({len(check.errors)} in all)" if len(check.errors) > 6
                                                   else "")
            raise TranslationError(f"{self.name} ({self.model}): reply still invalid after a retry with its "
                                   f"errors: {shown}", transient=False)
        for block_id, flags in check.soft.items():
            logger.warning("%s (%s): %s kept with %s", self.name, self.model, block_id, ", ".join(flags))
        return PageTranslation(check.translations, {k: list(v) for k, v in check.soft.items()})


class GeminiTranslator(_HttpLLMTranslator):
    """Google Gemini via the REST ``models/{model}:generateContent`` API with a JSON response schema."""

    name = "gemini"
    default_api_key_env = "GEMINI_API_KEY"

    def __init__(
        self,
        model: str = "gemini-2.5-flash",
        base_url: str = "https://generativelanguage.googleapis.com/v1beta",
        *,
        thinking_budget: int | None = None,
        api_key: str | None = None,
        require_api_key: bool = True,
        timeout: float = 60.0,
        max_attempts: int = 4,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        max_retry_after: float = 120.0,
        temperature: float = 0.0,
        send_image: bool = True,
    ) -> None:
        super().__init__(model, base_url, api_key=api_key, require_api_key=require_api_key, timeout=timeout,
                         max_attempts=max_attempts, backoff_base=backoff_base, backoff_max=backoff_max,
                         max_retry_after=max_retry_after, temperature=temperature, send_image=send_image)
        self.thinking_budget = thinking_budget

    def _request(self, system: str, user: str) -> tuple[str, dict[str, str], dict[str, Any]]:
        generation: dict[str, Any] = {
            "temperature": self.temperature,
            "responseMimeType": "application/json",
            "responseSchema": {
                "type": "OBJECT",
                "properties": {"translations": {"type": "ARRAY", "items": {"type": "STRING"}}},
                "required": ["translations"],
            },
        }
        if self.thinking_budget is not None:
            generation["thinkingConfig"] = {"thinkingBudget": self.thinking_budget}
        payload = {
            "systemInstruction": {"parts": [{"text": system}]},
            "contents": [{"role": "user", "parts": [{"text": user}]}],
            "generationConfig": generation,
        }
        headers = {"x-goog-api-key": self.api_key or "", "Content-Type": "application/json"}
        return f"{self.base_url}/models/{self.model}:generateContent", headers, payload

    def _page_request(self, system: str, turns: list[Turn], ids: list[str]) -> tuple[str, dict[str, str],
                                                                                    dict[str, Any]]:
        contents = []
        for role, text, image in turns:
            parts: list[dict[str, Any]] = []
            if image:  # image first, then the text about it (Gemini's advice for single-image prompts)
                parts.append({"inline_data": {"mime_type": "image/jpeg",
                                              "data": base64.b64encode(image).decode("ascii")}})
            parts.append({"text": text})
            contents.append({"role": "user" if role == "user" else "model", "parts": parts})
        generation: dict[str, Any] = {
            "temperature": self.temperature,
            "responseMimeType": "application/json",
            "responseSchema": {
                "type": "OBJECT",
                "properties": {"translations": {
                    "type": "OBJECT", "properties": {i: {"type": "STRING"} for i in ids}, "required": ids,
                    "propertyOrdering": ids}},
                "required": ["translations"],
            },
        }
        if self.thinking_budget is not None:
            generation["thinkingConfig"] = {"thinkingBudget": self.thinking_budget}
        payload = {"systemInstruction": {"parts": [{"text": system}]}, "contents": contents,
                   "generationConfig": generation}
        headers = {"x-goog-api-key": self.api_key or "", "Content-Type": "application/json"}
        return f"{self.base_url}/models/{self.model}:generateContent", headers, payload

    def _reply_text(self, body: Any) -> str:
        try:
            candidates = body.get("candidates") or []
            if not candidates:
                block = (body.get("promptFeedback") or {}).get("blockReason")
                raise TranslationError(f"no candidates in reply{f' (blocked: {block})' if block else ''}",
                                       transient=True)
            candidate = candidates[0]
            parts = (candidate.get("content") or {}).get("parts") or []
            text = "".join(p.get("text", "") for p in parts if not p.get("thought"))
        except (AttributeError, TypeError) as exc:
            raise TranslationError(f"unexpected generateContent reply shape: {exc}", transient=True) from exc
        if not text.strip():
            raise TranslationError(f"empty reply (finishReason {candidate.get('finishReason')})", transient=True)
        return text


class OpenAICompatibleTranslator(_HttpLLMTranslator):
    """Any ``/v1/chat/completions`` server: OpenAI, vLLM, Ollama, llama.cpp server, LiteLLM, ...

    ``base_url`` includes the ``/v1`` part (as the OpenAI SDK's does). Local servers usually need no key, so a
    key is required only for api.openai.com (``require_api_key`` overrides). ``json_mode`` sends
    ``response_format: json_object``; turn it off for servers that reject it (the parser copes with fenced or
    chatty JSON anyway).
    """

    name = "openai"
    default_api_key_env = "OPENAI_API_KEY"

    def __init__(
        self,
        model: str = "gpt-4o-mini",
        base_url: str = "https://api.openai.com/v1",
        *,
        json_mode: bool = True,
        require_api_key: bool | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_attempts: int = 4,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        max_retry_after: float = 120.0,
        temperature: float = 0.0,
        send_image: bool = True,
    ) -> None:
        if require_api_key is None:
            require_api_key = "api.openai.com" in base_url
        super().__init__(model, base_url, api_key=api_key, require_api_key=require_api_key, timeout=timeout,
                         max_attempts=max_attempts, backoff_base=backoff_base, backoff_max=backoff_max,
                         max_retry_after=max_retry_after, temperature=temperature, send_image=send_image)
        self.json_mode = json_mode

    def _request(self, system: str, user: str) -> tuple[str, dict[str, str], dict[str, Any]]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": self.temperature,
        }
        if self.json_mode:
            payload["response_format"] = {"type": "json_object"}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return f"{self.base_url}/chat/completions", headers, payload

    def _page_request(self, system: str, turns: list[Turn], ids: list[str]) -> tuple[str, dict[str, str],
                                                                                    dict[str, Any]]:
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
        for role, text, image in turns:
            if role != "user":
                messages.append({"role": "assistant", "content": text})
            elif image:
                url = "data:image/jpeg;base64," + base64.b64encode(image).decode("ascii")
                messages.append({"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                             {"type": "text", "text": text}]})
            else:
                messages.append({"role": "user", "content": text})
        payload: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature}
        if self.json_mode:
            payload["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "page_translations", "strict": True,
                "schema": {"type": "object", "additionalProperties": False, "required": ["translations"],
                           "properties": {"translations": {
                               "type": "object", "additionalProperties": False, "required": ids,
                               "properties": {i: {"type": "string"} for i in ids}}}}}}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return f"{self.base_url}/chat/completions", headers, payload

    def _reply_text(self, body: Any) -> str:
        try:
            choice = body["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise TranslationError(f"unexpected chat.completions reply shape: {exc}", transient=True) from exc
        if not text.strip():
            raise TranslationError(f"empty reply (finish_reason {choice.get('finish_reason')})", transient=True)
        return text
