"""Image-aware LLM translation: the page input (roles, length budgets, image, context), the Gemini and OpenAI page
calls against a local server speaking their wire formats, the reply check with its one retry, and the pipeline
recording a failure with the reasons."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dagster import DagsterInstance, Definitions
from PIL import Image

from imgtrans_pipeline.core.errors import TranslationError
from imgtrans_pipeline.core.request import parse_request, request_from_config, to_config
from imgtrans_pipeline.core.types import TextBlock, TextRegion
from imgtrans_pipeline.engines.render.measure import average_advance_em
from imgtrans_pipeline.engines.translate import (
    GeminiTranslator,
    OpenAICompatibleTranslator,
    TranslationCache,
    TranslationService,
)
from imgtrans_pipeline.engines.translate.base import PageBlock, PageText
from imgtrans_pipeline.engines.translate.llm_engines import parse_page_reply
from imgtrans_pipeline.engines.translate.page import (
    MAX_IMAGE_SIDE,
    build_page_text,
    check_page_reply,
    classify_role,
    length_budget,
    region_width,
)
from imgtrans_pipeline.names import TRANSLATE_JOB, run_config
from imgtrans_pipeline.orchestration.definitions import build_resources
from imgtrans_pipeline.orchestration.jobs import translate_images
from imgtrans_pipeline.orchestration.resources import TranslatorResource
from tests.support.dagster_services import pipeline_settings
from tests.support.fixtures.translate import LLMWireServer
from tests.support.imagegen import text_image

CONTEXT = {"title": "Mulberry silk scarf", "brand": "Nimbus"}
GLOSSARY = {"耐克": "Nike"}


# ------------------------------------------------------------------------------------------------ budget, roles


def test_length_budget_counts_lines_and_characters_at_a_readable_size() -> None:
    # 40 px source, readable at 30 px: a 300 x 50 box holds one line of 300 / (30 * 1.0) = 10 CJK characters.
    assert length_budget(300, 50, 40, 1.0) == 10
    # Twice the height: three lines (one em plus two 1.15-em pitches = 99 px <= 100 px).
    assert length_budget(300, 100, 40, 1.0) == 30
    assert length_budget(300, 98, 40, 1.0) == 20
    # Latin text wraps between words, so a multi-line box is not filled to the last character.
    assert length_budget(300, 100, 40, 0.5) == 60
    assert length_budget(300, 100, 40, 0.5, word_wrapped=True) == 3 * int(20 * 0.85)
    assert length_budget(300, 50, 40, 0.5, word_wrapped=True) == 20  # one line: no wrapping loss
    # Small print is not shrunk below 12 px, and text already smaller keeps its size.
    assert length_budget(120, 14, 14, 1.0) == 10
    assert length_budget(100, 10, 10, 1.0) == 10
    # Degenerate boxes still allow a character.
    assert length_budget(5, 5, 40, 1.0) == 1
    assert length_budget(0, 50, 40, 1.0) == 1


def test_region_grows_into_the_room_beside_the_block_as_its_alignment_allows() -> None:
    box, page_w, size = (100, 0, 200, 40), 1000, 32  # margin 0.35 em = 11.2 px, gap 0.3 em = 9.6 px
    assert region_width(box, "left", [], page_w, size) == 200  # capped at twice the box
    assert region_width(box, "left", [(260, 10, 400, 30)], page_w, size) == pytest.approx(150.4)  # text beside it
    assert region_width(box, "left", [(260, 100, 400, 130)], page_w, size) == 200  # text on other rows: no limit
    assert region_width((800, 0, 900, 40), "right", [(0, 0, 700, 40)], page_w, size) == pytest.approx(190.4)
    assert region_width((890, 0, 990, 40), "left", [], page_w, size) == 100  # no room to the right: the box
    assert region_width((450, 0, 550, 40), "center", [(0, 0, 420, 40)], page_w, size) == pytest.approx(140.8)


def test_average_advance_comes_from_the_target_font() -> None:
    assert 0.8 <= average_advance_em(None, "zh") <= 1.05  # ideographs are about one em wide
    assert 0.6 <= average_advance_em(None, "ko") <= 1.0  # Hangul plus the spaces between words
    assert 0.35 <= average_advance_em(None, "en") <= 0.65
    assert average_advance_em(None, "en") < average_advance_em(None, "ko") < average_advance_em(None, "zh")


def test_roles_from_size_content_and_shape() -> None:
    page = {"page_w": 750, "page_h": 1000, "dense_source": True}
    assert classify_role("到手价¥99", 30, 30, **page) == "price"
    assert classify_role("满300减50", 30, 30, **page) == "price"
    assert classify_role("全新升级 品质之选", 60, 30, page_max_px=80, **page) == "headline"
    assert classify_role("6纹顺", 15, 11, page_max_px=49, **page) == "body"  # large only next to small print
    assert classify_role("包邮", 24, 30, **page) == "badge"
    assert classify_role("新品", 30, 30, on_container=True, **page) == "badge"
    assert classify_role("天然材质", 30, 30, **page) == "body"  # short, but neither on a patch nor small print
    assert classify_role("天然棉麻面料 透气舒适 亲肤柔软", 30, 30, **page) == "body"
    assert classify_role("限时特价", 56, 56, page_w=480, page_h=160, dense_source=True,
                         lone=True) == "headline"


def _block(text: str, box: tuple[float, float, float, float], keep: str | None = None) -> TextBlock:
    x0, y0, x1, y1 = box
    region = TextRegion([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], text, 0.99)
    return TextBlock([region], text, box, keep_reason=keep)


def test_page_text_of_a_product_card() -> None:
    pixels = np.full((1600, 800, 3), 245, np.uint8)
    pixels[1000:1060, 40:160] = (220, 30, 30)  # a red pill behind the badge
    blocks = [_block("桑蚕丝围巾 轻薄透气", (40, 40, 760, 140)),  # 80 px headline
              _block("¥199", (40, 300, 200, 350)),
              _block("天然桑蚕丝面料 亲肤柔软 四季可用", (40, 600, 700, 650)),
              _block("天然材质", (40, 700, 300, 750)),
              _block("新品", (40, 1000, 160, 1060))]
    kept = [_block("NIMBUS", (600, 1500, 760, 1540), keep="latin_brand")]
    page = build_page_text(blocks, pixels, "zh", "ko", advance_em=0.75, kept_blocks=kept, context=CONTEXT,
                           glossary={"桑蚕丝": "뽕나무 실크", "NIMBUS": "NIMBUS"})
    assert [b.id for b in page.blocks] == ["b1", "b2", "b3", "b4", "b5"]
    assert [b.role for b in page.blocks] == ["headline", "price", "body", "body", "badge"]
    assert page.blocks[0].size_px == 80.0 and page.blocks[0].box == (40, 40, 760, 140)
    # Left-aligned, the headline may reach the page margin (0.35 em): 800 - 28 - 40 = 732 px wide.
    assert page.blocks[0].budget == length_budget(732, 100, 80, 0.75)
    assert all(b.budget >= 1 for b in page.blocks)
    assert page.do_not_translate == ("NIMBUS",)
    assert page.context == CONTEXT and "위안" in page.conventions
    image = Image.open(io.BytesIO(page.image_jpeg or b""))
    assert image.format == "JPEG" and max(image.size) == MAX_IMAGE_SIDE and image.size == (512, 1024)
    assert build_page_text(blocks, pixels, "zh", "ko", advance_em=0.75, send_image=False).image_jpeg is None


def test_reply_check_names_every_problem() -> None:
    page = PageText(blocks=(PageBlock("b1", "全新升级", budget=12), PageBlock("b2", "耐克跑鞋", budget=20),
                            PageBlock("b3", "限时特价", budget=12)), glossary=GLOSSARY)
    ok = check_page_reply(page, parse_page_reply('{"translations": {"b1": "New", "b2": "Nike runners", '
                                                 '"b3": "Sale"}}'), "zh", "en")
    assert ok.translations == {"b1": "New", "b2": "Nike runners", "b3": "Sale"} and not ok.problems
    bad = check_page_reply(page, parse_page_reply(
        '{"translations": {"b1": "Brand-new upgrade for all", "b1": "x", "b2": "跑鞋 runners", "b9": "?"}}'),
        "zh", "en")
    assert any(e.startswith("b1: translated more than once") for e in bad.errors)
    assert any(e.startswith("b9: no such block id") for e in bad.errors)
    assert any(e.startswith("b3: missing") for e in bad.errors)
    assert any(e.startswith("b2: still contains Chinese (Simplified) text '跑鞋'") for e in bad.errors)
    assert bad.soft == {"b1": ["over_budget:25/12"], "b2": ["glossary_missing:耐克"]}
    assert check_page_reply(page, parse_page_reply("no JSON at all"), "zh", "en").errors
    # The same letters shared by source and target (kanji in Japanese) are not "source script left".
    assert not check_page_reply(PageText(blocks=(PageBlock("b1", "限时特价"),)),
                                [("b1", "期間限定特価")], "zh", "ja").errors


# ------------------------------------------------------------------------------------------------ wire format


def _gemini(server: LLMWireServer, **options: Any) -> GeminiTranslator:
    return GeminiTranslator(model="gemini-2.5-flash", base_url=f"{server.base}/v1beta", api_key=server.GEMINI_KEY,
                            backoff_base=0.01, **options)


def _openai(server: LLMWireServer, **options: Any) -> OpenAICompatibleTranslator:
    return OpenAICompatibleTranslator(model="qwen2.5-vl", base_url=f"{server.base}/v1", api_key=server.OPENAI_KEY,
                                      backoff_base=0.01, **options)


def _page(image: bool = True) -> PageText:
    jpeg = None
    if image:
        buf = io.BytesIO()
        Image.fromarray(np.full((200, 100, 3), 250, np.uint8)).save(buf, "JPEG")
        jpeg = buf.getvalue()
    return PageText(blocks=(PageBlock("b1", "全新升级", "headline", 64.0, (40, 40, 400, 120), 20),
                            PageBlock("b2", "耐克新款运动鞋", "body", 28.0, (40, 300, 600, 340), 30),
                            PageBlock("b3", "限时特价", "badge", 24.0, (40, 500, 160, 540), 20)),
                    width=700, height=1400, image_jpeg=jpeg, context=CONTEXT, glossary=GLOSSARY,
                    do_not_translate=("AIR-MAX 90",), conventions="Keep ¥ as ¥.")


def _user_turns(req: dict[str, Any], kind: str) -> list[Any]:
    if kind == "gemini":
        return [c["parts"] for c in req["json"]["contents"] if c["role"] == "user"]
    return [m["content"] for m in req["json"]["messages"] if m["role"] == "user"]


def _prompt(req: dict[str, Any], kind: str) -> dict[str, Any]:
    first = _user_turns(req, kind)[0]
    if kind == "gemini":
        return json.loads(next(p["text"] for p in first if "text" in p))
    return json.loads(first if isinstance(first, str) else next(p["text"] for p in first if p["type"] == "text"))


def _image_bytes(req: dict[str, Any], kind: str) -> bytes | None:
    first = _user_turns(req, kind)[0]
    if kind == "gemini":
        data = [p["inline_data"] for p in first if "inline_data" in p]
        if not data:
            return None
        assert data[0]["mime_type"] == "image/jpeg"
        return base64.b64decode(data[0]["data"])
    if isinstance(first, str):
        return None
    urls = [p["image_url"]["url"] for p in first if p["type"] == "image_url"]
    if not urls:
        return None
    assert urls[0].startswith("data:image/jpeg;base64,")
    return base64.b64decode(urls[0].split(",", 1)[1])


@pytest.mark.parametrize("kind", ["gemini", "openai"])
def test_one_call_per_page_with_image_blocks_budgets_context_and_glossary(llm_wire_server: LLMWireServer,
                                                                        kind: str) -> None:
    engine = _gemini(llm_wire_server) if kind == "gemini" else _openai(llm_wire_server)
    result = engine.translate_page(_page(), "zh", "en")
    assert result.translations == {"b1": "Brand-new upgrade", "b2": "Nick new sneakers", "b3": "Limited-time offer"}
    assert result.flags == {"b2": ["glossary_missing:耐克"]}  # the server ignores the glossary: asked again, flagged
    first, retry = llm_wire_server.requests
    image = _image_bytes(first, kind)
    assert image is not None and Image.open(io.BytesIO(image)).format == "JPEG"
    prompt = _prompt(first, kind)
    assert prompt["target_language"] == "English" and prompt["context"] == CONTEXT
    assert prompt["glossary"] == GLOSSARY and prompt["do_not_translate"] == ["AIR-MAX 90"]
    assert prompt["conventions"] == "Keep ¥ as ¥." and prompt["page"] == {"width": 700, "height": 1400}
    assert [(b["id"], b["text"], b["role"], b["size_px"], b["box"], b["max_chars"]) for b in prompt["blocks"]] == [
        ("b1", "全新升级", "headline", 64.0, [40, 40, 400, 120], 20),
        ("b2", "耐克新款运动鞋", "body", 28.0, [40, 300, 600, 340], 30),
        ("b3", "限时特价", "badge", 24.0, [40, 500, 160, 540], 20)]
    if kind == "gemini":
        config = first["json"]["generationConfig"]
        assert config["responseMimeType"] == "application/json"
        schema = config["responseSchema"]["properties"]["translations"]
        assert schema["required"] == ["b1", "b2", "b3"] and set(schema["properties"]) == {"b1", "b2", "b3"}
    else:
        fmt = first["json"]["response_format"]
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
        schema = fmt["json_schema"]["schema"]["properties"]["translations"]
        assert schema["required"] == ["b1", "b2", "b3"] and schema["additionalProperties"] is False
    # The follow-up repeats the conversation (no second image) and says what to fix.
    turns = _user_turns(retry, kind)
    assert len(turns) == 2 and _image_bytes(retry, kind) == image
    follow_up = turns[1] if kind == "openai" else turns[1][0]["text"]
    assert "b2: must use 'Nike' for '耐克' (glossary)" in follow_up


@pytest.mark.parametrize("kind", ["gemini", "openai"])
def test_image_part_is_left_out_when_turned_off(llm_wire_server: LLMWireServer, kind: str) -> None:
    engine = (_gemini if kind == "gemini" else _openai)(llm_wire_server, send_image=False)
    page = PageText(blocks=(PageBlock("b1", "全新升级", budget=20),), image_jpeg=_page().image_jpeg)
    assert engine.translate_page(page, "zh", "en").translations == {"b1": "Brand-new upgrade"}
    [req] = llm_wire_server.requests
    assert _image_bytes(req, kind) is None
    assert "image is attached" not in json.dumps(req["json"])


@pytest.mark.parametrize(("action", "error"), [
    ("not_json", "the reply is not the JSON object asked for"),
    ("missing_id", "b2: missing; translate '限时特价'"),
    ("empty_item", "b1: empty translation of '全新升级'"),
    ("source_script", "b1: still contains Chinese (Simplified) text '全新升级'"),
    ("duplicate_id", "b1: translated more than once"),
])
@pytest.mark.parametrize("kind", ["gemini", "openai"])
def test_bad_reply_is_retried_once_with_its_errors_then_fails_clearly(llm_wire_server: LLMWireServer, kind: str,
                                                                     action: str, error: str) -> None:
    engine = _gemini(llm_wire_server) if kind == "gemini" else _openai(llm_wire_server)
    page = PageText(blocks=(PageBlock("b1", "全新升级", budget=30), PageBlock("b2", "限时特价", budget=30)))
    llm_wire_server.reset(action)  # once: the follow-up is answered well
    assert engine.translate_page(page, "zh", "en").translations == {"b1": "Brand-new upgrade",
                                                                    "b2": "Limited-time offer"}
    first, retry = llm_wire_server.requests
    assert error in json.dumps(retry["json"], ensure_ascii=False)
    assert error not in json.dumps(first["json"], ensure_ascii=False)

    llm_wire_server.reset(action, action, action)  # wrong twice: no third call, a permanent error with the reason
    with pytest.raises(TranslationError) as info:
        engine.translate_page(page, "zh", "en")
    assert len(llm_wire_server.requests) == 2
    assert error in info.value.reason and "still invalid after a retry" in info.value.reason
    assert info.value.transient is False


def test_over_budget_is_retried_then_flagged(llm_wire_server: LLMWireServer) -> None:
    engine = _openai(llm_wire_server)
    page = PageText(blocks=(PageBlock("b1", "全新升级", budget=18), PageBlock("b2", "限时特价", budget=30)))
    llm_wire_server.reset("over_budget")
    assert engine.translate_page(page, "zh", "en").flags == {}
    assert "b1: " in llm_wire_server.requests[1]["json"]["messages"][-1]["content"]
    assert "over its budget of 18" in llm_wire_server.requests[1]["json"]["messages"][-1]["content"]
    llm_wire_server.reset("over_budget", "over_budget")
    result = engine.translate_page(page, "zh", "en")
    assert len(llm_wire_server.requests) == 2
    assert result.translations["b1"].startswith("Brand-new upgrade extra words")
    [flag] = result.flags["b1"]
    assert flag.startswith("over_budget:") and flag.endswith("/18")


def test_transport_errors_keep_their_retries(llm_wire_server: LLMWireServer) -> None:
    llm_wire_server.reset(("status", 503, {}, {"error": {"message": "overloaded"}}), "list_form")
    engine = _gemini(llm_wire_server)
    page = PageText(blocks=(PageBlock("b1", "全新升级"),))
    assert engine.translate_page(page, "zh", "en").translations == {"b1": "Brand-new upgrade"}
    assert len(llm_wire_server.requests) == 2


# ------------------------------------------------------------------------------------------------ service


def test_service_takes_the_page_path_and_caches_per_block_and_context(llm_wire_server: LLMWireServer) -> None:
    service = TranslationService(_openai(llm_wire_server), TranslationCache(":memory:"))
    assert service.page_aware and service.wants_image
    texts = ["全新升级", "¥99", "限时特价", "全新升级"]
    page = PageText(blocks=tuple(PageBlock(f"b{i + 1}", t, budget=30) for i, t in enumerate(texts)),
                    context={"title": "Running shoes"})
    result = service.translate(texts, "zh", "en", page=page)
    assert result.translations == ["Brand-new upgrade", "¥99", "Limited-time offer", "Brand-new upgrade"]
    [req] = llm_wire_server.requests
    sent = _prompt(req, "openai")
    assert [b["text"] for b in sent["blocks"]] == ["全新升级", "限时特价"]  # no price, no repeat
    assert sent["context"] == {"title": "Running shoes"}

    llm_wire_server.reset()
    again = service.translate(texts, "zh", "en", page=page)
    assert again.translations == result.translations and again.cache_hits == 3 and not llm_wire_server.requests
    # Another product: the context changes the translation, so the cache does not answer for it.
    other = service.translate(texts, "zh", "en", page=PageText(blocks=page.blocks, context={"title": "Scarf"}))
    assert other.cache_hits == 0 and len(llm_wire_server.requests) == 1
    # The bare-text path (no page) is unchanged for the same engine.
    llm_wire_server.reset()
    assert service.translate(["限时特价"], "zh", "en").translations == ["Limited-time offer"]
    assert "items" in _prompt(llm_wire_server.requests[0], "openai")


def test_context_travels_in_messages_config_and_cli() -> None:
    request = parse_request({"request_id": "c1", "image_url": "/tmp/a.png", "target_lang": "ko",
                             "options": {"context": "Mulberry silk scarf, 100% silk"}})
    assert request.options.context == {"text": "Mulberry silk scarf, 100% silk"}
    config = to_config(request)
    assert config["context"] == {"text": "Mulberry silk scarf, 100% silk"}
    assert request_from_config(config) == request
    with pytest.raises(Exception, match="unknown key"):
        parse_request({"image_url": "/tmp/a.png", "target_lang": "ko", "options": {"context": {"sku": "1"}}})

    import argparse

    from imgtrans_pipeline.cli import _request

    args = argparse.Namespace(to="ko", source="zh", format="png", context="Silk scarf")
    assert _request("/tmp/a.png", args, "cli-1")["context"] == {"text": "Silk scarf"}


# ------------------------------------------------------------------------------------------------ pipeline


@pytest.fixture(scope="module")
def instance() -> DagsterInstance:
    with DagsterInstance.ephemeral() as inst:
        yield inst


def _run(tmp: Path, instance: DagsterInstance, request: dict[str, Any], translator: TranslatorResource | None,
         **overrides: Any) -> Any:
    resources = build_resources(pipeline_settings(tmp / "artifacts", **overrides))
    if translator is not None:
        resources["translator"] = translator
    job = Definitions(jobs=[translate_images], resources=resources).resolve_job_def(TRANSLATE_JOB)
    return job.execute_in_process(run_config=run_config([request]), instance=instance, raise_on_error=False)


def _meta(tmp: Path, request_id: str) -> dict[str, Any]:
    return json.loads((tmp / "artifacts" / request_id / "meta.json").read_text(encoding="utf-8"))


def test_pipeline_sends_the_page_with_image_and_context(tmp_path: Path, instance: DagsterInstance,
                                                        llm_wire_server: LLMWireServer, setenv: Any) -> None:
    setenv(GEMINI_API_KEY=LLMWireServer.GEMINI_KEY)
    image = text_image(["全新升级", "限时特价"], width=720, height=300, font_size=48, left=60, top=50)
    path = image.save(tmp_path / "card.png")
    translator = TranslatorResource(engine="gemini", base_url=f"{llm_wire_server.base}/v1beta", model="gemini-x")
    result = _run(tmp_path, instance, {"request_id": "page-1", "image_url": str(path), "target_lang": "en",
                                       "source_lang": "zh", "context": {"title": "Sneakers", "brand": "Nimbus"}},
                  translator)
    assert result.success, _meta(tmp_path, "page-1")["error"]
    [req] = llm_wire_server.requests
    sent = _image_bytes(req, "gemini")
    assert sent is not None and Image.open(io.BytesIO(sent)).size == (720, 300)
    prompt = _prompt(req, "gemini")
    assert prompt["context"] == {"title": "Sneakers", "brand": "Nimbus"}
    assert [b["text"] for b in prompt["blocks"]] == ["全新升级", "限时特价"]
    assert all(b["max_chars"] >= 8 and b["role"] in ("headline", "badge", "body") for b in prompt["blocks"])
    pairs = json.loads((tmp_path / "artifacts" / "page-1" / "translation.json").read_text("utf-8"))["pairs"]
    assert [p["translation"] for p in pairs] == ["Brand-new upgrade", "Limited-time offer"]
    assert _meta(tmp_path, "page-1")["request"]["options"]["context"] == {"title": "Sneakers", "brand": "Nimbus"}


def test_pipeline_records_a_reply_still_wrong_after_the_retry(tmp_path: Path, instance: DagsterInstance,
                                                              llm_wire_server: LLMWireServer, setenv: Any) -> None:
    setenv(OPENAI_API_KEY=LLMWireServer.OPENAI_KEY, IMGTRANS_TRANSLATE_SEND_IMAGE="false")
    llm_wire_server.reset("source_script", "source_script")
    image = text_image(["全新升级"], width=420, height=150, font_size=48, left=50, top=40)
    path = image.save(tmp_path / "up.png")
    result = _run(tmp_path, instance, {"request_id": "page-bad", "image_url": str(path), "target_lang": "en",
                                       "source_lang": "zh"}, None, translate__engine="openai",
                  translate__base_url=f"{llm_wire_server.base}/v1")
    assert not result.success
    assert len(llm_wire_server.requests) == 2  # the first call and the one follow-up, no op retries
    assert all(_image_bytes(req, "openai") is None for req in llm_wire_server.requests)  # setting off
    meta = _meta(tmp_path, "page-bad")
    assert meta["status"] == "failed"
    assert meta["error"]["stage"] == "translate" and meta["error"]["transient"] is False
    assert "still contains Chinese (Simplified) text '全新升级'" in meta["error"]["reason"]
    assert "still invalid after a retry" in meta["error"]["reason"]
