"""The DeepL engine against a local HTTP server speaking the DeepL API v2 wire format (translate, glossaries),
and one full pipeline request translated through it."""

from __future__ import annotations

import json
import re
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from dagster import DagsterInstance, Definitions

from imgtrans_pipeline.core.errors import EngineError, TranslationError, UnsupportedLanguagePair
from imgtrans_pipeline.core.settings import get_settings
from imgtrans_pipeline.engines.translate import (
    TRANSLATE_ENGINES,
    DeepLTranslator,
    TranslationCache,
    TranslationService,
)
from imgtrans_pipeline.engines.translate.deepl_engine import FREE_URL, PRO_URL
from imgtrans_pipeline.names import TRANSLATE_JOB, run_config
from imgtrans_pipeline.orchestration.definitions import build_resources
from imgtrans_pipeline.orchestration.jobs import translate_images
from imgtrans_pipeline.orchestration.resources import TranslatorResource
from tests.support.dagster_services import pipeline_settings
from tests.support.imagegen import text_image
from tests.support.servers import serve_aiohttp

KEY = "test-deepl-key:fx"
LANGS = {"ZH", "EN", "JA", "KO", "FR", "DE", "ES", "IT", "PT", "RU", "ID", "VI", "TH"}
TARGETS = (LANGS - {"EN", "PT", "ZH"}) | {"EN-US", "EN-GB", "PT-BR", "PT-PT", "ZH-HANS", "ZH-HANT"}


class DeepLWireServer:
    """``/v2/translate`` and ``/v2/glossaries`` as DeepL documents them; each translate request pops one action
    from ``script``: "ok", "wrong_count", "not_json", "empty_item", or ``("status", code, headers, body)``.

    Translation = glossary entries first (when a ``glossary_id`` is sent), then ``dictionary`` (substring
    replacement, longest first), prefixed "[KO] " etc. for targets other than English.
    """

    def __init__(self) -> None:
        self.base = ""
        self.script: deque[Any] = deque()
        self.requests: list[dict[str, Any]] = []
        self.glossaries: dict[str, dict[str, Any]] = {}
        self.polls_until_ready = 0  # > 0: new glossaries report ready: false for that many metadata reads
        self.dictionary = {"全新升级": "Brand-new upgrade", "限时特价": "Limited-time offer", "限时": "Limited-time",
                           "耐克": "Nick", "新款运动鞋": "new sneakers", "천연 면": "natural cotton"}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/translate", self._translate)
        app.router.add_get("/v2/glossaries", self._list)
        app.router.add_post("/v2/glossaries", self._create)
        app.router.add_get("/v2/glossaries/{glossary_id}", self._glossary)
        return app

    def reset(self, *actions: Any) -> None:
        self.script = deque(actions)
        self.requests = []
        self.polls_until_ready = 0

    def calls(self, method: str, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]

    # -- handlers -----------------------------------------------------------------------------------------
    async def _record(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        body = await request.json() if request.method == "POST" else None
        entry = {"method": request.method, "path": request.path, "headers": dict(request.headers), "json": body}
        self.requests.append(entry)
        if request.headers.get("Authorization") != f"DeepL-Auth-Key {KEY}":
            return entry, web.json_response({"message": "Authorization failure, check auth_key"}, status=403)
        return entry, None

    async def _translate(self, request: web.Request) -> web.Response:
        entry, denied = await self._record(request)
        if denied:
            return denied
        body = entry["json"]
        texts, target, glossary_id = body.get("text"), body.get("target_lang"), body.get("glossary_id")
        if not isinstance(texts, list) or not texts or len(texts) > 50:
            return web.json_response({"message": "Parameter 'text' must hold 1 to 50 texts"}, status=400)
        if target not in TARGETS or body.get("source_lang", "ZH") not in LANGS:
            return web.json_response({"message": f"Value for 'target_lang' not supported: {target}"}, status=400)
        entries: dict[str, str] = {}
        if glossary_id:
            if "source_lang" not in body:
                return web.json_response({"message": "Use of a glossary requires source_lang"}, status=400)
            if glossary_id not in self.glossaries:
                return web.json_response({"message": "Glossary not found"}, status=404)
            entries = self.glossaries[glossary_id]["entries"]
        action = self.script.popleft() if self.script else "ok"
        if isinstance(action, tuple):
            _, code, headers, payload = action
            return web.json_response(payload, status=code, headers=headers)
        if action == "not_json":
            return web.Response(text="<html>upstream proxy error</html>", content_type="text/html")
        out = [self._translated(t, target, entries) for t in texts]
        if action == "wrong_count":
            out = out[:-1]
        elif action == "empty_item":
            out[0] = ""
        return web.json_response({"translations": [{"detected_source_language": body.get("source_lang", "ZH"),
                                                    "text": t} for t in out]})

    def _translated(self, text: str, target: str, entries: dict[str, str]) -> str:
        out = text
        for term in sorted(entries, key=len, reverse=True):
            out = out.replace(term, f" {entries[term]} ")
        for src in sorted(self.dictionary, key=len, reverse=True):
            out = out.replace(src, f" {self.dictionary[src]} ")
        out = re.sub(r"\s+", " ", out).strip()
        return out if target.startswith("EN") else f"[{target}] {out}"

    async def _list(self, request: web.Request) -> web.Response:
        _, denied = await self._record(request)
        if denied:
            return denied
        return web.json_response({"glossaries": [self._meta(g) for g in self.glossaries.values()]})

    async def _create(self, request: web.Request) -> web.Response:
        entry, denied = await self._record(request)
        if denied:
            return denied
        body = entry["json"]
        if body.get("entries_format") != "tsv":
            return web.json_response({"message": "Unsupported entries_format"}, status=400)
        entries = dict(line.split("\t") for line in body["entries"].split("\n"))
        glossary_id = str(uuid.uuid4())
        self.glossaries[glossary_id] = {"glossary_id": glossary_id, "name": body["name"],
                                        "source_lang": body["source_lang"], "target_lang": body["target_lang"],
                                        "entries": entries, "polls_left": self.polls_until_ready}
        return web.json_response(self._meta(self.glossaries[glossary_id]), status=201)

    async def _glossary(self, request: web.Request) -> web.Response:
        _, denied = await self._record(request)
        if denied:
            return denied
        glossary = self.glossaries.get(request.match_info["glossary_id"])
        if glossary is None:
            return web.json_response({"message": "Glossary not found"}, status=404)
        meta = self._meta(glossary)
        glossary["polls_left"] = max(0, glossary["polls_left"] - 1)
        return web.json_response(meta)

    @staticmethod
    def _meta(glossary: dict[str, Any]) -> dict[str, Any]:
        return {"glossary_id": glossary["glossary_id"], "name": glossary["name"], "ready": glossary["polls_left"] == 0,
                "source_lang": glossary["source_lang"], "target_lang": glossary["target_lang"],
                "creation_time": "2024-01-01T00:00:00.000Z", "entry_count": len(glossary["entries"])}


@pytest.fixture(scope="module")
def _deepl_server() -> Iterator[DeepLWireServer]:
    server = DeepLWireServer()
    with serve_aiohttp(server.app()) as base:
        server.base = base
        yield server


@pytest.fixture
def deepl(_deepl_server: DeepLWireServer) -> DeepLWireServer:
    _deepl_server.reset()
    _deepl_server.glossaries.clear()
    return _deepl_server


def engine(server: DeepLWireServer, **options: Any) -> DeepLTranslator:
    options.setdefault("backoff_base", 0.01)
    options.setdefault("api_key", KEY)
    return DeepLTranslator(base_url=server.base, **options)


# ------------------------------------------------------------------------------------------------ wire format


def test_all_blocks_go_in_one_call_with_the_auth_key(deepl: DeepLWireServer) -> None:
    out = engine(deepl).translate_batch(["全新升级", "  ", "限时特价"], "zh", "ko")
    assert out == ["[KO] Brand-new upgrade", "", "[KO] Limited-time offer"]
    (call,) = deepl.requests
    assert call["path"] == "/v2/translate" and call["method"] == "POST"
    assert call["headers"]["Authorization"] == f"DeepL-Auth-Key {KEY}"
    assert call["json"] == {"text": ["全新升级", "限时特价"], "source_lang": "ZH", "target_lang": "KO"}


@pytest.mark.parametrize(("source", "target", "options", "codes"), [
    ("zh", "en", {}, ("ZH", "EN-US")),
    ("zh", "en", {"english_variant": "en-gb"}, ("ZH", "EN-GB")),
    ("ko", "zh", {}, ("KO", "ZH-HANS")),
    ("zh", "zh-Hant", {}, ("ZH", "ZH-HANT")),
    ("ja", "pt", {}, ("JA", "PT-BR")),
    ("en", "pt", {"portuguese_variant": "PT-PT"}, ("EN", "PT-PT")),
])
def test_language_codes(deepl: DeepLWireServer, source: str, target: str, options: dict[str, str],
                        codes: tuple[str, str]) -> None:
    engine(deepl, **options).translate_batch(["全新升级"], source, target)
    (call,) = deepl.requests
    assert (call["json"]["source_lang"], call["json"]["target_lang"]) == codes


def test_a_non_default_variant_is_another_model_for_the_cache() -> None:
    assert DeepLTranslator(api_key="k").model == "v2"
    assert DeepLTranslator(api_key="k", english_variant="EN-GB").model == "v2/EN-GB"
    assert DeepLTranslator(api_key="k", model="quality_optimized", portuguese_variant="PT-PT").model == \
        "v2/quality_optimized/PT-PT"


def test_unsupported_pairs_and_endpoints() -> None:
    free, pro = DeepLTranslator(api_key="abc:fx"), DeepLTranslator(api_key="abc")
    assert (free.base_url, pro.base_url) == (FREE_URL, PRO_URL)  # the key's ":fx" suffix marks a Free plan
    assert DeepLTranslator(api_key="abc", base_url="http://proxy.local/v2/").base_url == "http://proxy.local"
    assert not free.supports("zh", "zh") and not free.supports("zh", "xx") and free.supports("ko", "en")
    with pytest.raises(UnsupportedLanguagePair):
        free.translate_batch(["全新升级"], "zh", "zh")
    with pytest.raises(EngineError, match="IMGTRANS_DEEPL_API_KEY") as info:
        DeepLTranslator()
    assert info.value.transient is False
    assert free.glossary_supported("zh", "en") and not free.glossary_supported("zh", "th")


def test_more_than_50_texts_are_split_into_requests_of_50(deepl: DeepLWireServer) -> None:
    texts = [f"全新升级 {i}" for i in range(120)]
    out = engine(deepl).translate_batch(texts, "zh", "en")
    assert out == [f"Brand-new upgrade {i}" for i in range(120)]
    assert [len(r["json"]["text"]) for r in deepl.calls("POST", "/v2/translate")] == [50, 50, 20]


# ------------------------------------------------------------------------------------------------- glossaries


def test_glossary_is_created_once_and_reused(deepl: DeepLWireServer) -> None:
    service = TranslationService(engine(deepl), cache=None)
    glossary = {"耐克": "Nike"}
    first = service.translate(["耐克新款运动鞋", "全新升级"], "zh", "en", glossary=glossary)
    assert first.translations == ["Nike new sneakers", "Brand-new upgrade"]
    assert len(deepl.calls("GET", "/v2/glossaries")) == 1  # looked for among the account's glossaries first
    (created,) = deepl.calls("POST", "/v2/glossaries")
    assert created["json"] == {"name": created["json"]["name"], "source_lang": "zh", "target_lang": "en",
                               "entries": "耐克\tNike", "entries_format": "tsv"}
    (translate,) = deepl.calls("POST", "/v2/translate")
    glossary_id = translate["json"]["glossary_id"]
    assert glossary_id in deepl.glossaries
    assert translate["json"]["text"] == ["耐克新款运动鞋", "全新升级"], "DeepL gets the terms, not placeholders"

    deepl.reset()
    again = service.translate(["耐克全新升级"], "zh", "en", glossary=glossary)
    assert again.translations == ["Nike Brand-new upgrade"]
    (translate,) = deepl.requests  # the glossary id is remembered: no listing, no creation
    assert translate["json"]["glossary_id"] == glossary_id

    deepl.reset()
    other_process = TranslationService(engine(deepl), cache=None)  # finds the glossary among the account's
    other_process.translate(["耐克新款运动鞋"], "zh", "en", glossary=glossary)
    assert [r["method"] + " " + r["path"] for r in deepl.requests] == ["GET /v2/glossaries", "POST /v2/translate"]
    assert deepl.requests[-1]["json"]["glossary_id"] == glossary_id

    deepl.reset()
    other_process.translate(["耐克新款运动鞋"], "zh", "ko", glossary=glossary)  # another pair: its own glossary
    other_process.translate(["耐克新款运动鞋"], "zh", "en", glossary={"耐克": "NIKE"})  # other entries: too
    assert len(deepl.calls("POST", "/v2/glossaries")) == 2 and len(deepl.glossaries) == 3


def test_threads_asking_at_once_create_one_glossary(deepl: DeepLWireServer) -> None:
    translator = engine(deepl)
    with ThreadPoolExecutor(max_workers=4) as pool:
        outs = list(pool.map(lambda t: translator.translate_batch([t], "zh", "en", glossary={"耐克": "Nike"})[0],
                             ["耐克新款运动鞋", "耐克全新升级", "耐克限时特价", "耐克"]))
    assert outs == ["Nike new sneakers", "Nike Brand-new upgrade", "Nike Limited-time offer", "Nike"]
    assert len(deepl.calls("POST", "/v2/glossaries")) == 1 and len(deepl.calls("POST", "/v2/translate")) == 4


def test_a_glossary_deleted_in_the_account_is_made_again(deepl: DeepLWireServer) -> None:
    translator = engine(deepl)
    translator.translate_batch(["耐克新款运动鞋"], "zh", "en", glossary={"耐克": "Nike"})
    deepl.glossaries.clear()  # someone deleted it on DeepL's side
    deepl.reset()
    out = translator.translate_batch(["耐克新款运动鞋"], "zh", "en", glossary={"耐克": "Nike"})
    assert out == ["Nike new sneakers"]
    assert [r["method"] + " " + r["path"] for r in deepl.requests] == [
        "POST /v2/translate", "GET /v2/glossaries", "POST /v2/glossaries", "POST /v2/translate"]


def test_glossary_not_ready_yet_is_waited_for(deepl: DeepLWireServer) -> None:
    deepl.polls_until_ready = 1
    out = engine(deepl).translate_batch(["耐克新款运动鞋"], "zh", "en", glossary={"耐克": "Nike"})
    assert out == ["Nike new sneakers"]
    paths = [r["method"] + " " + r["path"].rsplit("/", 1)[0] for r in deepl.requests]
    assert paths == ["GET /v2", "POST /v2", "GET /v2/glossaries", "GET /v2/glossaries", "POST /v2"]


def test_cache_entries_are_keyed_by_the_glossary(deepl: DeepLWireServer) -> None:
    service = TranslationService(engine(deepl), TranslationCache(":memory:"))
    plain = service.translate(["耐克新款运动鞋"], "zh", "en")
    with_glossary = service.translate(["耐克新款运动鞋"], "zh", "en", glossary={"耐克": "Nike"})
    cached = service.translate(["耐克新款运动鞋"], "zh", "en", glossary={"耐克": "Nike"})
    assert plain.translations == ["Nick new sneakers"]
    assert with_glossary.translations == cached.translations == ["Nike new sneakers"]
    assert cached.cache_hits == 1 and len(deepl.calls("POST", "/v2/translate")) == 2
    # A text holding no glossary term is cached plainly: another request's glossary does not miss it.
    deepl.reset()
    mixed = service.translate(["耐克新款运动鞋", "全新升级"], "zh", "en", glossary={"耐克": "Nike", "阿迪": "Adidas"})
    assert mixed.translations == ["Nike new sneakers", "Brand-new upgrade"]
    (call,) = deepl.calls("POST", "/v2/translate")
    assert call["json"]["text"] == ["全新升级"]  # the first text holds the same entries ("耐克") as before: cached
    assert mixed.cache_hits == 1
    deepl.reset()
    again = service.translate(["全新升级"], "zh", "en", glossary={"满减": "discount"})
    assert again.cache_hits == 1 and deepl.requests == []


def test_thai_has_no_deepl_glossary_so_placeholders_are_used(deepl: DeepLWireServer) -> None:
    service = TranslationService(engine(deepl), cache=None)
    result = service.translate(["耐克新款运动鞋"], "zh", "th", glossary={"耐克": "Nike"})
    assert result.translations == ["[TH] Nike new sneakers"]
    (call,) = deepl.requests
    assert call["json"]["text"] == ["[0]新款运动鞋"] and "glossary_id" not in call["json"]


# --------------------------------------------------------------------------------------------------- failures


def test_429_then_success_is_retried(deepl: DeepLWireServer) -> None:
    deepl.reset(("status", 429, {"Retry-After": "0"}, {"message": "Too many requests"}),
                ("status", 503, {}, {"message": "Service unavailable"}))
    assert engine(deepl).translate_batch(["全新升级"], "zh", "en") == ["Brand-new upgrade"]
    assert len(deepl.requests) == 3


def test_rejected_key_fails_at_once_with_the_reason(deepl: DeepLWireServer) -> None:
    with pytest.raises(EngineError, match=r"HTTP 403 \(key rejected.*Authorization failure") as info:
        engine(deepl, api_key="wrong-key").translate_batch(["全新升级"], "zh", "en")
    assert info.value.transient is False and info.value.stage == "translate"
    assert len(deepl.requests) == 1, "a rejected key is not retried"


def test_quota_exceeded_is_permanent(deepl: DeepLWireServer) -> None:
    deepl.reset(("status", 456, {}, {"message": "Quota exceeded"}))
    with pytest.raises(EngineError, match=r"HTTP 456 \(character quota.*Quota exceeded") as info:
        engine(deepl).translate_batch(["全新升级"], "zh", "en")
    assert info.value.transient is False and len(deepl.requests) == 1


@pytest.mark.parametrize(("action", "reason"), [
    ("not_json", "response body is not JSON"),
    ("wrong_count", "wrong number of translations: expected 2, got 1"),
    ("empty_item", "empty translation #1"),
])
def test_malformed_replies_are_retried_then_fail(deepl: DeepLWireServer, action: str, reason: str) -> None:
    deepl.reset(action, action, action)
    with pytest.raises(TranslationError) as info:
        engine(deepl, max_attempts=3).translate_batch(["全新升级", "限时特价"], "zh", "en")
    assert reason in info.value.reason and "after 3 attempts" in info.value.reason
    assert info.value.transient is True and len(deepl.requests) == 3


def test_malformed_then_good_reply_recovers(deepl: DeepLWireServer) -> None:
    deepl.reset("wrong_count")
    assert engine(deepl).translate_batch(["全新升级", "限时特价"], "zh", "en") == ["Brand-new upgrade",
                                                                            "Limited-time offer"]


# ------------------------------------------------------------------------------------------ settings, pipeline


def test_settings_give_the_engine_its_key_and_variant(setenv: Any) -> None:
    setenv(DEEPL_AUTH_KEY="conventional:fx", IMGTRANS_DEEPL_ENGLISH="en-gb")
    options = get_settings().translate.engine_options("deepl")
    assert options == {"api_key": "conventional:fx", "english_variant": "EN-GB", "portuguese_variant": "PT-BR"}
    setenv(IMGTRANS_DEEPL_API_KEY="own-key", IMGTRANS_TRANSLATE_API_KEY="generic")
    assert get_settings().translate.key_for("deepl") == "own-key"  # the engine's own variable wins
    translator = TRANSLATE_ENGINES.create("deepl", **get_settings().translate.engine_options("deepl"))
    assert translator.base_url == PRO_URL and translator.target_codes["en"] == "EN-GB"
    variant = TranslatorResource(engine="deepl").variant()  # dedupe: an EN-GB result is not an EN-US one
    assert "english_variant=EN-GB" in variant and "own-key" not in variant
    assert TranslatorResource(engine="ctranslate2").variant() == "ctranslate2|||"  # unchanged for the others


@pytest.fixture(scope="module")
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as inst:
        yield inst


def _run(tmp: Path, instance: DagsterInstance, server: DeepLWireServer, requests: list[dict[str, Any]]) -> Any:
    settings = pipeline_settings(tmp / "artifacts", translate__engine="deepl")
    resources = {**build_resources(settings), "translator": TranslatorResource(
        engine="deepl", base_url=server.base, cache_path=str(tmp / "cache.sqlite"))}
    job = Definitions(jobs=[translate_images], resources=resources).resolve_job_def(TRANSLATE_JOB)
    return job.execute_in_process(run_config=run_config(requests), instance=instance, raise_on_error=False)


def test_a_pipeline_request_is_translated_by_deepl(tmp_path: Path, instance: DagsterInstance,
                                                   deepl: DeepLWireServer, setenv: Any) -> None:
    setenv(IMGTRANS_DEEPL_API_KEY=KEY)
    path = text_image(["限时特价"], width=480, height=160, font_size=56, left=60, top=40).save(tmp_path / "sale.png")
    request = {"request_id": "deepl-1", "image_url": str(path), "source_lang": "zh", "target_lang": "en",
               "glossary": {"特价": "SALE"}}  # run config: options are flat
    result = _run(tmp_path, instance, deepl, [request])
    meta = json.loads((tmp_path / "artifacts" / "deepl-1" / "meta.json").read_text("utf-8"))
    assert result.success, meta["error"]
    assert meta["engines"]["translate"] == "deepl:v2"
    (translate,) = deepl.calls("POST", "/v2/translate")  # one call for the image, with the request's glossary
    assert translate["json"]["text"] == ["限时特价"] and translate["json"]["glossary_id"] in deepl.glossaries
    assert translate["headers"]["Authorization"] == f"DeepL-Auth-Key {KEY}"
    pairs = json.loads((tmp_path / "artifacts" / "deepl-1" / "translation.json").read_text("utf-8"))["pairs"]
    assert [(p["source"], p["translation"]) for p in pairs] == [("限时特价", "Limited-time SALE")]
    assert pairs[0]["via"] == {"origin": "engine", "engine": "deepl", "model": "v2",  # DeepL applied the term
                               "glossary_terms": [{"term": "特价", "translation": "SALE", "glossary": "request"}]}


def test_a_rejected_key_is_a_recorded_pipeline_failure(tmp_path: Path, instance: DagsterInstance,
                                                       deepl: DeepLWireServer, setenv: Any) -> None:
    setenv(IMGTRANS_DEEPL_API_KEY="revoked-key")
    path = text_image(["全新升级"], width=400, height=150, font_size=52, left=50, top=40).save(tmp_path / "new.png")
    result = _run(tmp_path, instance, deepl, [{"request_id": "deepl-403", "image_url": str(path),
                                               "source_lang": "zh", "target_lang": "en"}])
    assert not result.success
    meta = json.loads((tmp_path / "artifacts" / "deepl-403" / "meta.json").read_text("utf-8"))
    assert meta["status"] == "failed"
    assert meta["error"]["stage"] == "translate" and meta["error"]["transient"] is False
    assert "HTTP 403" in meta["error"]["reason"] and "Authorization failure" in meta["error"]["reason"]
    assert len(deepl.calls("POST", "/v2/translate")) == 1
