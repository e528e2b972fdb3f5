"""Terminology across a catalogue, plain Python: the translation memory (scoped, curated, before any engine),
scoped glossaries, and per-block provenance of the service's results. Engine calls are counted with a wrapper
around the real OPUS-MT engine. The pipeline and CLI side: tests/dagster/test_translation_memory_catalogue.py.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from imgtrans_pipeline.core.errors import InvalidRequest
from imgtrans_pipeline.core.request import parse_request, request_from_config, to_config
from imgtrans_pipeline.engines.translate import CTranslate2Translator, TranslationCache, TranslationService, model_id
from imgtrans_pipeline.engines.translate.glossary import parse_glossary
from imgtrans_pipeline.engines.translate.memory import TranslationMemory, normalise_text
from imgtrans_pipeline.intake import parse_message

_CALLS_LOCK = threading.Lock()


class CountingTranslator:
    """The real engine, recording each batch it translates."""

    def __init__(self, inner: Any, calls: list[list[str]]) -> None:
        self.inner, self.calls = inner, calls
        self.name, self.model = inner.name, inner.model

    def supports(self, source_lang: str, target_lang: str) -> bool:
        return self.inner.supports(source_lang, target_lang)

    def model_for(self, source_lang: str, target_lang: str) -> str:
        return model_id(self.inner, source_lang, target_lang)

    def translate_batch(self, texts: list[str], source_lang: str, target_lang: str) -> list[str]:
        with _CALLS_LOCK:
            self.calls.append(list(texts))
        return self.inner.translate_batch(texts, source_lang, target_lang)


# ------------------------------------------------------------------------------------------------ the memory


def test_scoped_entries_win_over_global_ones_and_texts_match_normalised(tmp_path: Path) -> None:
    memory = TranslationMemory(tmp_path / "tm.sqlite")
    memory.add("全场包邮", "Free shipping", "zh", "en", origin="reviewer")
    memory.add("全场包邮", "Free shipping on everything", "zh", "en", scope="shop-a", origin="reviewer")
    memory.add("100%桑蚕丝", "100% mulberry silk", "zh", "en", scope="shop-b")

    assert memory.lookup("全场包邮", "zh", "en").translation == "Free shipping"  # type: ignore[union-attr]
    scoped = memory.lookup("全场包邮", "zh", "en", scope="shop-a")
    assert scoped is not None and scoped.translation == "Free shipping on everything" and scoped.scope == "shop-a"
    fallback = memory.lookup("全场包邮", "zh", "en", scope="shop-b")  # shop-b has no entry of its own
    assert fallback is not None and fallback.scope == "" and fallback.translation == "Free shipping"
    assert memory.lookup("100%桑蚕丝", "zh", "en") is None  # another shop's entry is not global
    # OCR variants of the same text: full-width digits/percent sign, surrounding and repeated spaces.
    assert normalise_text(" １００％桑蚕丝 ") == normalise_text("100%桑蚕丝")
    assert memory.lookup(" １００％桑蚕丝", "zh", "en", "shop-b").translation == "100% mulberry silk"  # type: ignore[union-attr]
    assert memory.lookup("全场包邮", "zh", "ko") is None and memory.lookup("全场包邮", "ja", "en") is None

    # Replacing keeps the creation time; the same text again changes nothing.
    before = memory.lookup("全场包邮", "zh", "en")
    assert memory.put_many([]) == (0, 0, 0)
    memory.add("全场包邮", "Free delivery", "zh", "en", origin="reviewer")
    after = memory.lookup("全场包邮", "zh", "en")
    assert after.translation == "Free delivery" and after.created_at == before.created_at  # type: ignore[union-attr]
    assert len(memory) == 3
    with pytest.raises(ValueError, match="scope"):
        memory.add("x", "y", "zh", "en", scope="shop a")
    with pytest.raises(ValueError, match="both zh"):
        memory.add("x", "y", "zh", "zh")


def test_service_takes_memory_then_glossary_then_cache_then_engine(zh_en_translator: CTranslate2Translator,
                                                                    tmp_path: Path) -> None:
    calls: list[list[str]] = []
    memory = TranslationMemory(tmp_path / "tm.sqlite")
    memory.add("全场包邮", "Free shipping", "zh", "en", origin="reviewer")
    service = TranslationService(CountingTranslator(zh_en_translator, calls), TranslationCache(":memory:"),
                                 glossary={"耐克": "Nike"}, memory=memory,
                                 scoped_glossaries={"shop-a": {"桑蚕丝": "mulberry silk", "限时特价": "Flash sale"}})
    texts = ["全场包邮", "100%桑蚕丝", "耐克运动鞋", "限时特价", "¥99"]
    plain = service.translate(texts, "zh", "en")
    assert calls == [["100%桑蚕丝", "[0]运动鞋", "限时特价"]]  # the memory's text never reaches the engine
    assert [s["origin"] for s in plain.sources] == ["memory", "engine", "engine", "engine", "passthrough"]
    assert plain.translations[0] == "Free shipping"
    assert plain.sources[0] == {"origin": "memory", "scope": "", "entry_origin": "reviewer",
                                "entry_updated_at": plain.sources[0]["entry_updated_at"]}
    assert plain.sources[1] == {"origin": "engine", "engine": "ctranslate2", "model": "argos-zh_en-1.9"}
    assert plain.sources[2]["glossary_terms"] == [{"term": "耐克", "translation": "Nike", "glossary": "global"}]
    assert plain.sources[4] == {"origin": "passthrough", "reason": "keep:price"}

    shop = service.translate(texts, "zh", "en", scope="shop-a")
    # The scope's glossary changes two texts; the third engine text is served from the cache.
    assert calls[1:] == [["100%[0]"]]
    assert shop.translations[1] == "100% mulberry silk" and shop.translations[3] == "Flash sale"
    assert [s["origin"] for s in shop.sources] == ["memory", "engine", "cache", "glossary", "passthrough"]
    assert shop.sources[1]["glossary_terms"][0]["glossary"] == "scope:shop-a"
    assert shop.sources[3] == {"origin": "glossary", "glossary": "scope:shop-a"}
    assert shop.to_dict()["pairs"][0]["via"]["origin"] == "memory"
    assert shop.to_dict()["origins"] == {"cache": 1, "engine": 1, "glossary": 1, "memory": 1, "passthrough": 1}


def test_glossary_files_flat_or_with_scopes() -> None:
    assert parse_glossary({"耐克": "Nike"}) == {"": {"耐克": "Nike"}}
    assert parse_glossary({"*": {"耐克": "Nike"}, "shop-a": {"包邮": "Free shipping"}}) == {
        "": {"耐克": "Nike"}, "shop-a": {"包邮": "Free shipping"}}
    with pytest.raises(ValueError, match="mixes terms and scope sections"):
        parse_glossary({"耐克": "Nike", "shop-a": {"包邮": "Free shipping"}})
    with pytest.raises(ValueError, match="not a scope id"):
        parse_glossary({"shop a": {"包邮": "Free shipping"}})
    with pytest.raises(ValueError, match="non-empty term"):
        parse_glossary({"*": {"包邮": 3}})


def test_glossary_scope_travels_in_messages_and_config() -> None:
    message = {"request_id": "r1", "image_url": "https://example.com/a.png", "source_lang": "zh",
               "target_lang": "en", "options": {"glossary_scope": "shop-a"}}
    request = parse_request(message)
    assert request.options.glossary_scope == "shop-a"
    assert request_from_config(to_config(request)).options.glossary_scope == "shop-a"
    assert parse_message(json.dumps(message)).options.glossary_scope == "shop-a"
    with pytest.raises(InvalidRequest, match=r"options\.glossary_scope"):
        parse_request({**message, "options": {"glossary_scope": "shop a"}})


def test_a_reviewers_corrected_block_says_so_after_the_re_render_reads_it_back() -> None:
    from imgtrans_pipeline.core.types import OcrResult, TextBlock, TranslationResult
    from imgtrans_pipeline.pipeline import WorkItem
    from imgtrans_pipeline.review.rerender import BlockEdit, apply_edits, translation_from_dict

    stored = TranslationResult(["全场包邮", "限时特价"], ["Full mail package", "Flash sale"], "zh", "en", "ctranslate2",
                               "argos-zh_en-1.9", sources=[{"origin": "engine", "engine": "ctranslate2"},
                                                           {"origin": "memory", "scope": "shop-a"}])
    loaded = translation_from_dict(json.loads(json.dumps(stored.to_dict())))
    assert loaded.sources == stored.sources
    blocks = [TextBlock([], text, (0, 0, 10, 10)) for text in stored.source_texts]
    item = WorkItem(parse_request({"request_id": "r1", "image_url": "https://example.com/a.png",
                                   "source_lang": "zh", "target_lang": "en"}),
                    ocr=OcrResult([], blocks, "rapidocr"), translation=loaded)
    apply_edits(item, [BlockEdit(0, text="Free shipping")], {})
    assert item.translation is not None and item.translation.translations[0] == "Free shipping"
    assert [s["origin"] for s in item.translation.sources] == ["reviewer", "memory"]
