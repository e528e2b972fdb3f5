"""The Papago engine against a local HTTP server speaking the NAVER Cloud Papago Text Translation wire format."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from imgtrans_pipeline.core.errors import EngineError, TranslationError, UnsupportedLanguagePair
from imgtrans_pipeline.core.settings import get_settings
from imgtrans_pipeline.engines.translate import PapagoTranslator, TranslationCache, TranslationService
from imgtrans_pipeline.orchestration.resources import TranslatorResource
from tests.support.servers import serve_aiohttp

CLIENT_ID = "test-client-id"
SECRET = "test-client-secret"
CODES = {"ko", "en", "ja", "zh-CN", "zh-TW", "vi", "th", "id", "fr", "es", "ru", "de", "it"}


class PapagoWireServer:
    """``POST /nmt/v1/translation`` as NCP documents it (form or JSON body; ``message.result.translatedText``).

    Each request pops one action from ``script``: "ok", "merge_lines" (the lines of a multi-line text come back
    as one), "not_json", "no_result", or ``("status", code, error_code, message)`` for an NCP error body.
    Each line is translated on its own through ``dictionary`` (substring replacement), prefixed "[ko] " etc.
    for targets other than English; honorific requests get a " (polite)" suffix per line.
    """

    def __init__(self) -> None:
        self.base = ""
        self.script: deque[Any] = deque()
        self.requests: list[dict[str, Any]] = []
        self.dictionary = {"全新升级": "Brand-new upgrade", "限时特价": "Limited-time offer", "耐克": "Nick",
                           "新款运动鞋": "new sneakers", "天然棉麻面料": "natural cotton-linen fabric"}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/nmt/v1/translation", self._translate)
        return app

    def reset(self, *actions: Any) -> None:
        self.script = deque(actions)
        self.requests = []

    @staticmethod
    def _error(status: int, code: str, message: str) -> web.Response:
        return web.json_response({"error": {"errorCode": code, "message": message}}, status=status)

    async def _translate(self, request: web.Request) -> web.Response:
        json_body = request.content_type == "application/json"
        form = dict(await request.json()) if json_body else dict(await request.post())
        self.requests.append({"headers": dict(request.headers), "form": form, "content_type": request.content_type})
        if (request.headers.get("X-NCP-APIGW-API-KEY-ID") != CLIENT_ID
                or request.headers.get("X-NCP-APIGW-API-KEY") != SECRET):
            return self._error(401, "200", "Authentication Failed")
        source, target, text = form.get("source"), form.get("target"), form.get("text")
        if source not in CODES:
            return self._error(400, "N2MT02", "Unsupported source language")
        if target not in CODES:
            return self._error(400, "N2MT04", "Unsupported target language")
        if not text:
            return self._error(400, "N2MT07", "text parameter is needed")
        if len(text) > 5000:
            return self._error(400, "N2MT08", "text parameter exceeds max length")
        action = self.script.popleft() if self.script else "ok"
        if isinstance(action, tuple):
            _, status, code, message = action
            return self._error(status, code, message)
        if action == "not_json":
            return web.Response(text="<html>gateway error</html>", content_type="text/html")
        if action == "no_result":
            return web.json_response({"message": {"@type": "response", "result": {}}})
        lines = [self._line(line, target, form.get("honorific") == "true") for line in text.split("\n")]
        translated = " ".join(lines) if action == "merge_lines" else "\n".join(lines)
        return web.json_response({"message": {
            "@type": "response", "@service": "naverservice.nmt.proxy", "@version": "1.0.0",
            "result": {"srcLangType": source, "tarLangType": target, "translatedText": translated,
                       "engineType": "N2MT"}}})

    def _line(self, line: str, target: str, honorific: bool) -> str:
        out = line
        for src in sorted(self.dictionary, key=len, reverse=True):
            out = out.replace(src, f" {self.dictionary[src]} ")
        out = re.sub(r"\s+", " ", out).strip()
        out = out if target == "en" else f"[{target}] {out}"
        return out + (" (polite)" if honorific else "")


@pytest.fixture(scope="module")
def _papago_server() -> Iterator[PapagoWireServer]:
    server = PapagoWireServer()
    with serve_aiohttp(server.app()) as base:
        server.base = base
        yield server


@pytest.fixture
def papago(_papago_server: PapagoWireServer) -> PapagoWireServer:
    _papago_server.reset()
    return _papago_server


def engine(server: PapagoWireServer, **options: Any) -> PapagoTranslator:
    options.setdefault("backoff_base", 0.01)
    options.setdefault("client_id", CLIENT_ID)
    options.setdefault("api_key", SECRET)
    return PapagoTranslator(base_url=server.base, **options)


# ------------------------------------------------------------------------------------------------ wire format


def test_all_blocks_go_in_one_call_with_both_credentials(papago: PapagoWireServer) -> None:
    out = engine(papago).translate_batch(["全新升级", "", "限时特价", "耐克新款运动鞋"], "zh", "ko")
    assert out == ["[ko] Brand-new upgrade", "", "[ko] Limited-time offer", "[ko] Nick new sneakers"]
    (call,) = papago.requests
    assert call["headers"]["X-NCP-APIGW-API-KEY-ID"] == CLIENT_ID
    assert call["headers"]["X-NCP-APIGW-API-KEY"] == SECRET
    assert call["content_type"] == "application/x-www-form-urlencoded"
    assert call["form"] == {"source": "zh-CN", "target": "ko", "text": "全新升级\n限时特价\n耐克新款运动鞋"}


@pytest.mark.parametrize(("source", "target", "codes"), [
    ("zh", "ko", ("zh-CN", "ko")), ("zh-Hant", "en", ("zh-TW", "en")), ("ko", "ja", ("ko", "ja")),
    ("en", "vi", ("en", "vi")),
])
def test_language_codes(papago: PapagoWireServer, source: str, target: str, codes: tuple[str, str]) -> None:
    engine(papago).translate_batch(["全新升级"], source, target)
    (call,) = papago.requests
    assert (call["form"]["source"], call["form"]["target"]) == codes


def test_unsupported_pairs_and_missing_credentials(papago: PapagoWireServer) -> None:
    translator = engine(papago)
    assert not translator.supports("zh", "pt") and not translator.supports("ko", "ko")
    with pytest.raises(UnsupportedLanguagePair):
        translator.translate_batch(["全新升级"], "zh", "pt")
    papago.reset(("status", 400, "N2MT06", "There is no source-to-target translator"))
    with pytest.raises(UnsupportedLanguagePair, match="no source-to-target translator"):
        translator.translate_batch(["全新升级"], "th", "vi")  # a pair Papago itself refuses
    with pytest.raises(EngineError, match="IMGTRANS_PAPAGO_CLIENT_ID and IMGTRANS_PAPAGO_CLIENT_SECRET") as info:
        PapagoTranslator()
    assert info.value.transient is False
    with pytest.raises(EngineError, match=r"set IMGTRANS_PAPAGO_CLIENT_SECRET$"):
        PapagoTranslator(client_id="id")


def test_honorific_korean_is_asked_for_korean_targets_only(papago: PapagoWireServer) -> None:
    polite = engine(papago, honorific=True)
    assert polite.model != engine(papago).model  # a different output: a different cache key
    assert polite.translate_batch(["全新升级"], "zh", "ko") == ["[ko] Brand-new upgrade (polite)"]
    polite.translate_batch(["全新升级"], "zh", "en")
    assert [r["form"].get("honorific") for r in papago.requests] == ["true", None]


def test_a_reply_that_does_not_split_back_falls_back_to_one_call_per_block(papago: PapagoWireServer) -> None:
    papago.reset("merge_lines")
    out = engine(papago).translate_batch(["全新升级", "限时特价"], "zh", "en")
    assert out == ["Brand-new upgrade", "Limited-time offer"]
    assert [r["form"]["text"] for r in papago.requests] == ["全新升级\n限时特价", "全新升级", "限时特价"]


def test_long_batches_stay_under_5000_characters_per_call(papago: PapagoWireServer) -> None:
    texts = ["全新升级" * 500, "限时特价" * 500, "耐克" * 900]  # 2000 + 2000 + 1800 characters
    out = engine(papago).translate_batch(texts, "zh", "en")
    assert out[2] == " ".join(["Nick"] * 900)
    assert [len(r["form"]["text"]) for r in papago.requests] == [4001, 1800]


def test_glossary_terms_go_as_placeholders(papago: PapagoWireServer) -> None:
    service = TranslationService(engine(papago), TranslationCache(":memory:"))
    result = service.translate(["耐克新款运动鞋", "全新升级"], "zh", "en", glossary={"耐克": "Nike"})
    assert result.translations == ["Nike new sneakers", "Brand-new upgrade"]
    (call,) = papago.requests
    assert call["form"]["text"] == "[0]新款运动鞋\n全新升级"


# --------------------------------------------------------------------------------------------------- failures


def test_rate_limit_then_success_is_retried(papago: PapagoWireServer) -> None:
    papago.reset(("status", 429, "410", "Throttle Limited"), ("status", 503, "500", "Endpoint Error"))
    assert engine(papago).translate_batch(["全新升级"], "zh", "en") == ["Brand-new upgrade"]
    assert len(papago.requests) == 3


def test_quota_exceeded_is_permanent(papago: PapagoWireServer) -> None:
    papago.reset(("status", 429, "400", "Quota Exceeded"))
    with pytest.raises(EngineError, match=r"Quota Exceeded.*not enabled for this application") as info:
        engine(papago).translate_batch(["全新升级"], "zh", "en")
    assert info.value.transient is False and len(papago.requests) == 1


def test_rejected_credentials_fail_at_once_with_the_reason(papago: PapagoWireServer) -> None:
    with pytest.raises(EngineError, match=r"HTTP 401 \(check IMGTRANS_PAPAGO_CLIENT_ID.*Authentication Failed") as info:
        engine(papago, api_key="wrong").translate_batch(["全新升级", "限时特价"], "zh", "en")
    assert info.value.transient is False and info.value.stage == "translate"
    assert len(papago.requests) == 1, "rejected credentials are not retried"


@pytest.mark.parametrize(("action", "reason"), [
    ("not_json", "no message.result.translatedText"),
    ("no_result", "no message.result.translatedText"),
])
def test_malformed_replies_are_retried_then_fail(papago: PapagoWireServer, action: str, reason: str) -> None:
    papago.reset(action, action, action)
    with pytest.raises(TranslationError) as info:
        engine(papago, max_attempts=3).translate_batch(["全新升级"], "zh", "en")
    assert reason in info.value.reason and "after 3 attempts" in info.value.reason
    assert info.value.transient is True and len(papago.requests) == 3


def test_service_with_papago_from_the_settings(papago: PapagoWireServer, setenv: Any, tmp_path: Path) -> None:
    """The resource builds the engine from the environment's credentials (never from run config)."""
    setenv(IMGTRANS_PAPAGO_CLIENT_ID=CLIENT_ID, IMGTRANS_PAPAGO_CLIENT_SECRET=SECRET, IMGTRANS_PAPAGO_HONORIFIC="1")
    assert get_settings().translate.engine_options("papago") == {"api_key": SECRET, "client_id": CLIENT_ID,
                                                                 "honorific": True}
    resource = TranslatorResource(engine="naver", base_url=papago.base, cache_path=str(tmp_path / "c.sqlite"))
    result = resource.service().translate(["限时特价", "全新升级"], "zh", "ko")
    assert result.translations == ["[ko] Limited-time offer (polite)", "[ko] Brand-new upgrade (polite)"]
    assert result.engine == "papago" and result.model == "nmt+honorific" and len(papago.requests) == 1
