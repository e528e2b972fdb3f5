"""Terminology across a catalogue through the real Dagster job and the CLI: a phrase shared by two images reaches
the engine once, memory entries (scoped, then global) win, meta.json says per block where each translation came
from, a memory change makes a stored result stale, and ``imgtrans tm export|import`` round-trips and reports bad
rows. Engine calls are counted with a wrapper around the real OPUS-MT engine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, Definitions

from imgtrans_pipeline.cli import main
from imgtrans_pipeline.engines.translate import OpenAICompatibleTranslator, TranslationCache, TranslationService
from imgtrans_pipeline.engines.translate.base import PageBlock, PageText
from imgtrans_pipeline.engines.translate.memory import TranslationMemory
from imgtrans_pipeline.names import TRANSLATE_JOB, run_config
from imgtrans_pipeline.orchestration.definitions import build_resources
from imgtrans_pipeline.orchestration.jobs import translate_images
from imgtrans_pipeline.orchestration.resources import TranslatorResource
from tests.support.dagster_services import pipeline_settings
from tests.support.fixtures.translate import LLMWireServer
from tests.support.imagegen import text_image
from tests.unit.test_translation_memory import CountingTranslator

# Every batch the real engine is asked for during the pipeline runs below (the resource's service wraps it).
ENGINE_CALLS: list[list[str]] = []


class CountingTranslatorResource(TranslatorResource):
    """The configured resource's service (engine, cache, memory, glossary file), its engine calls counted."""

    def service(self) -> TranslationService:
        real = super().service()
        return TranslationService(CountingTranslator(real.translator, ENGINE_CALLS), cache=real.cache,
                                  glossary=real.glossary, memory=real.memory,
                                  scoped_glossaries=real.scoped_glossaries)


def _sent(text: str) -> int:
    return sum(batch.count(text) for batch in ENGINE_CALLS)


def test_page_aware_engines_get_only_what_the_memory_does_not_know(llm_wire_server: LLMWireServer,
                                                                     tmp_path: Path) -> None:
    memory = TranslationMemory(tmp_path / "tm.sqlite")
    memory.add("限时特价", "Flash sale", "zh", "en", scope="shop-a", origin="reviewer")
    engine = OpenAICompatibleTranslator(model="qwen2.5-vl", base_url=f"{llm_wire_server.base}/v1",
                                        api_key=llm_wire_server.OPENAI_KEY, backoff_base=0.01)
    service = TranslationService(engine, TranslationCache(":memory:"), memory=memory)
    texts = ["全新升级", "限时特价"]
    page = PageText(blocks=tuple(PageBlock(f"b{i + 1}", t, budget=30) for i, t in enumerate(texts)))
    result = service.translate(texts, "zh", "en", page=page, scope="shop-a")
    [request] = llm_wire_server.requests
    body = json.dumps(request["json"], ensure_ascii=False)
    assert "全新升级" in body and "限时特价" not in body  # the page call carries only the unknown block
    assert result.translations == ["Brand-new upgrade", "Flash sale"]
    assert [s["origin"] for s in result.sources] == ["engine", "memory"]
    assert result.sources[0]["engine"] == "openai" and result.sources[0]["model"] == "qwen2.5-vl"
    assert result.sources[1]["scope"] == "shop-a"
    llm_wire_server.reset()
    again = service.translate(texts, "zh", "en", page=page)  # no scope: the shop's entry does not apply
    assert [s["origin"] for s in again.sources] == ["cache", "engine"]
    assert again.translations == ["Brand-new upgrade", "Limited-time offer"]


def test_an_invalid_glossary_scope_is_a_usage_error() -> None:
    assert main(["translate", "x.png", "--to", "en", "--glossary-scope", "shop/a"]) == 2


# ------------------------------------------------------------------------------------------------ the catalogue


@pytest.fixture(scope="module")
def instance() -> DagsterInstance:
    with DagsterInstance.ephemeral() as inst:
        yield inst


def _run(tmp: Path, instance: DagsterInstance, requests: list[dict[str, Any]]) -> Any:
    settings = pipeline_settings(tmp / "artifacts", translate__glossary_file=str(tmp / "glossary.json"))
    resources = build_resources(settings)
    base = resources["translator"]
    resources["translator"] = CountingTranslatorResource(**{name: getattr(base, name) for name in (
        "engine", "models_dir", "cache_path", "glossary_file", "memory_path")})
    job = Definitions(jobs=[translate_images], resources=resources).resolve_job_def(TRANSLATE_JOB)
    result = job.execute_in_process(run_config=run_config(requests), instance=instance, raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def _meta(tmp: Path, request_id: str) -> dict[str, Any]:
    return json.loads((tmp / "artifacts" / request_id / "meta.json").read_text(encoding="utf-8"))


def _request(request_id: str, path: Path, **options: Any) -> dict[str, Any]:
    return {"request_id": request_id, "image_url": str(path), "source_lang": "zh", "target_lang": "en", **options}


def test_a_catalogue_translates_a_phrase_once_and_meta_says_where_each_translation_came_from(
        tmp_path: Path, instance: DagsterInstance) -> None:
    ENGINE_CALLS.clear()
    (tmp_path / "glossary.json").write_text(json.dumps({"*": {}, "shop-a": {"限时特价": "Flash sale"}},
                                                       ensure_ascii=False), encoding="utf-8")
    first = text_image(["全场包邮", "纯棉T恤"], width=480, height=300, font_size=48, line_gap=110).save(
        tmp_path / "first.png")
    second = text_image(["全场包邮", "限时特价"], width=520, height=320, font_size=44, line_gap=120, left=70,
                        background="textured").save(tmp_path / "second.png")

    # Two product images of one catalogue, translated one after the other: the shared phrase reaches the engine once.
    _run(tmp_path, instance, [_request("cat-1", first)])
    result = _run(tmp_path, instance, [_request("cat-2", second)])
    assert _sent("全场包邮") == 1 and _sent("纯棉T恤") == 1 and _sent("限时特价") == 1, ENGINE_CALLS
    meta = _meta(tmp_path, "cat-2")
    assert meta["translation_origins"] == {"cache": 1, "engine": 1}
    shared, fresh = meta["translation_sources"]
    assert shared["source"] == "全场包邮" and shared["origin"] == "cache"
    assert shared["engine"] == "ctranslate2" and shared["model"] == "argos-zh_en-1.9"
    assert fresh == {"block": 1, "source": "限时特价", "translation": fresh["translation"], "origin": "engine",
                     "engine": "ctranslate2", "model": "argos-zh_en-1.9"}
    assert shared["translation"] == _meta(tmp_path, "cat-1")["translation_sources"][0]["translation"]
    translation_json = json.loads((tmp_path / "artifacts" / "cat-2" / "translation.json").read_text("utf-8"))
    assert [pair["via"]["origin"] for pair in translation_json["pairs"]] == ["cache", "engine"]
    materialization = result.asset_materializations_for_node("translate")[0]
    assert materialization.metadata["origins"].value == "cache 1, engine 1"

    # A reviewer fixes the phrase for shop A: that shop's requests take it, with the shop's glossary, and nothing
    # reaches the engine; the same image without the scope is a different request (its result is not reused).
    memory = TranslationMemory(tmp_path / "artifacts" / "memory.sqlite")
    memory.add("全场包邮", "Free shipping", "zh", "en", scope="shop-a", origin="reviewer")
    calls_before = len(ENGINE_CALLS)
    _run(tmp_path, instance, [_request("cat-3", second, glossary_scope="shop-a")])
    assert len(ENGINE_CALLS) == calls_before
    meta = _meta(tmp_path, "cat-3")
    assert meta["reused_from"] is None and meta["request"]["options"]["glossary_scope"] == "shop-a"
    assert [(s["origin"], s["translation"]) for s in meta["translation_sources"]] == [
        ("memory", "Free shipping"), ("glossary", "Flash sale")]
    assert meta["translation_sources"][0]["scope"] == "shop-a"
    assert meta["translation_sources"][0]["entry_origin"] == "reviewer"
    assert meta["translation_sources"][1]["glossary"] == "scope:shop-a"

    # A global entry made after cat-1's result: the same image again is translated anew, not answered from cat-1.
    memory.add("纯棉T恤", "Pure cotton T-shirt", "zh", "en", origin="reviewer")
    _run(tmp_path, instance, [_request("cat-4", first)])
    meta = _meta(tmp_path, "cat-4")
    assert meta["reused_from"] is None
    assert [(s["origin"], s["translation"]) for s in meta["translation_sources"]][1] == (
        "memory", "Pure cotton T-shirt")
    assert len(ENGINE_CALLS) == calls_before  # 全场包邮 from the cache again


# ------------------------------------------------------------------------------------------------ tm export/import


def test_tm_export_import_round_trip_through_the_cli(tmp_path: Path, setenv, capsys) -> None:
    setenv(IMGTRANS_TRANSLATION_MEMORY=str(tmp_path / "a.sqlite"))
    assert main(["tm", "add", "全场包邮", "Free shipping", "--from", "zh", "--to", "en", "--origin", "reviewer"]) == 0
    assert main(["tm", "add", "全场包邮", "Free shipping, all items", "--from", "zh", "--to", "en",
                 "--scope", "shop-a"]) == 0
    assert main(["tm", "add", "限时特价", "기간 한정 특가", "--from", "zh", "--to", "ko"]) == 0
    for name in ("a.jsonl", "a.csv"):
        assert main(["tm", "export", str(tmp_path / name)]) == 0
    capsys.readouterr()
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text("utf-8").splitlines()]
    assert [(r["source"], r["target_lang"], r["scope"], r["origin"]) for r in rows] == [
        ("全场包邮", "en", "", "reviewer"), ("全场包邮", "en", "shop-a", "api"), ("限时特价", "ko", "", "api")]
    assert '"Free shipping, all items"' in (tmp_path / "a.csv").read_text("utf-8")  # CSV quoting of the comma

    for name in ("a.jsonl", "a.csv"):  # into an empty memory, then compared by exporting it again
        target = tmp_path / f"from-{name}.sqlite"
        setenv(IMGTRANS_TRANSLATION_MEMORY=str(target))
        assert main(["tm", "import", str(tmp_path / name)]) == 0
        assert "3 added, 0 updated, 0 unchanged" in capsys.readouterr().out
        assert main(["tm", "export", str(tmp_path / f"again-{name}.jsonl")]) == 0
        assert (tmp_path / f"again-{name}.jsonl").read_text("utf-8") == (tmp_path / "a.jsonl").read_text("utf-8")
        assert main(["tm", "import", str(tmp_path / name)]) == 0
        assert "0 added, 0 updated, 3 unchanged" in capsys.readouterr().out
    assert main(["tm", "export", "-", "--to", "ko"]) == 0
    assert json.loads(capsys.readouterr().out)["translation"] == "기간 한정 특가"


def test_tm_import_reports_bad_rows_by_line_and_imports_only_the_good_ones(tmp_path: Path, setenv,
                                                                           capsys) -> None:
    setenv(IMGTRANS_TRANSLATION_MEMORY=str(tmp_path / "tm.sqlite"))
    rows = [
        {"source": "限时特价", "translation": "Limited-time offer", "source_lang": "zh", "target_lang": "en"},
        "not json {",
        {"source": " ", "translation": "x", "source_lang": "zh", "target_lang": "en"},
        {"source": "包邮", "translation": "Free shipping", "source_lang": "xx", "target_lang": "en"},
        {"source": "包邮", "traslation": "Free shipping", "source_lang": "zh", "target_lang": "en"},
        {"source": "包邮", "translation": "Free shipping", "source_lang": "zh", "target_lang": "en",
         "scope": "shop a"},
        {"source": "限时特价", "translation": "Flash sale", "source_lang": "zh", "target_lang": "en"},
        {"source": "包邮", "translation": "Free shipping", "source_lang": "zh", "target_lang": "en",
         "updated_at": "yesterday"},
        ["a", "list"],
        {"source": "纯棉", "translation": "Pure cotton", "source_lang": "zh", "target_lang": "en", "scope": "shop-a"},
    ]
    path = tmp_path / "corrections.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
                    encoding="utf-8")
    assert main(["tm", "import", str(path), "--dry-run"]) == 1
    assert "would import (dry run) 2 row(s)" in capsys.readouterr().out
    assert len(TranslationMemory(tmp_path / "tm.sqlite")) == 0

    assert main(["tm", "import", str(path)]) == 1
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert [e.split(":")[1].strip() for e in errors] == ["line 2", "line 3", "line 4", "line 5", "line 6", "line 7",
                                                         "line 8", "line 9"]
    assert "not JSON" in errors[0] and "source is missing or empty" in errors[1]
    assert "unknown language 'xx'" in errors[2] and "unknown field(s) 'traslation'" in errors[3]
    assert "not a scope id" in errors[4] and "another translation on line 1" in errors[5]
    assert "not an ISO 8601 time" in errors[6] and "JSON object is expected" in errors[7]
    assert "imported 2 row(s): 2 added" in captured.out and "8 bad row(s) not imported" in captured.out
    memory = TranslationMemory(tmp_path / "tm.sqlite")
    assert memory.lookup("限时特价", "zh", "en").translation == "Limited-time offer"  # type: ignore[union-attr]
    assert memory.lookup("纯棉", "zh", "en", "shop-a").origin == "import"  # type: ignore[union-attr]
    assert memory.lookup("包邮", "zh", "en") is None

    # A CSV whose header lacks a required column imports nothing and says which.
    bad_csv = tmp_path / "terms.csv"
    bad_csv.write_text("source,translation\n包邮,Free shipping\n", encoding="utf-8")
    assert main(["tm", "import", str(bad_csv)]) == 2
    assert "lacks source_lang, target_lang" in capsys.readouterr().err
    assert len(memory) == 2
