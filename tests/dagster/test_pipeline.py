"""End to end: the real Dagster job with the real offline engines, on generated product images."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from dagster import DagsterInstance, Definitions
from PIL import Image

from imgtrans_pipeline.engines.ocr import run_ocr
from imgtrans_pipeline.names import TRANSLATE_JOB, run_config
from imgtrans_pipeline.orchestration.definitions import build_resources
from imgtrans_pipeline.orchestration.jobs import translate_images
from imgtrans_pipeline.orchestration.resources import ArtifactStoreResource, FetchResource, TranslatorResource
from tests.support.dagster_services import pipeline_settings
from tests.support.imagegen import character_error_rate, tall_image, text_image
from tests.support.servers import serve_aiohttp

PROJECT = Path(__file__).resolve().parents[2]
ZH_LINES = ["限时特价 买一送一", "天然棉麻面料 透气舒适"]
ARTIFACTS = ["source.png", "ocr.json", "translation.json", "mask.png", "inpainted.png", "result.png", "meta.json"]
STAGES = ["download", "ocr", "translate", "inpaint", "render", "publish"]


def _settings(artifacts: Path, **overrides: Any) -> Any:
    return pipeline_settings(artifacts, **overrides)


@pytest.fixture(scope="module")
def instance() -> DagsterInstance:
    with DagsterInstance.ephemeral() as inst:
        yield inst


def _run(tmp: Path, instance: DagsterInstance, requests: list[dict[str, Any]],
         resources: dict[str, Any] | None = None, **overrides: Any):
    resource_defs = {**build_resources(_settings(tmp / "artifacts", **overrides)), **(resources or {})}
    job = Definitions(jobs=[translate_images], resources=resource_defs).resolve_job_def(TRANSLATE_JOB)
    return job.execute_in_process(run_config=run_config(requests), instance=instance, raise_on_error=False)


def _meta(tmp: Path, request_id: str) -> dict[str, Any]:
    return json.loads((tmp / "artifacts" / request_id / "meta.json").read_text(encoding="utf-8"))


def _texts(ocr_engine, pixels: np.ndarray, lang: str) -> str:
    return " ".join(block.text for block in run_ocr(ocr_engine, pixels, lang).blocks)


@pytest.fixture(scope="module")
def translated(tmp_path_factory, instance):
    """One real zh->en run on a textured product image, shared by the assertions below."""
    tmp = tmp_path_factory.mktemp("e2e")
    image = text_image(ZH_LINES, width=640, height=320, font_size=44, background="textured", left=50, top=60)
    path = image.save(tmp / "product.jpg", "JPEG")
    result = _run(tmp, instance, [{"request_id": "e2e-1", "image_url": str(path), "target_lang": "en",
                                   "source_lang": "zh"}])
    return tmp, image, result


def test_run_succeeds_and_stores_every_artifact(translated):
    tmp, _, result = translated
    assert result.success, result.all_events
    folder = tmp / "artifacts" / "e2e-1"
    assert sorted(p.name for p in folder.iterdir()) == sorted(ARTIFACTS)
    meta = _meta(tmp, "e2e-1")
    assert meta["status"] == "succeeded" and meta["error"] is None
    assert re.fullmatch(r"[0-9a-f]{64}", meta["content_hash"])
    assert set(STAGES) <= set(meta["timings_s"])
    assert all(v >= 0 for v in meta["timings_s"].values())
    assert {"ocr", "translate", "inpaint"} <= set(meta["engines"])
    assert {"ocr", "translate", "inpaint"} <= set(meta["engine_versions"])
    assert meta["image"]["width"] == 640 and meta["image"]["source_format"] == "jpeg"
    assert meta["ocr"]["blocks"] >= 1
    assert meta["result"].endswith("/e2e-1/result.png")
    assert set(ARTIFACTS) <= set(meta["artifacts"])


def test_ocr_reads_the_source_text(translated):
    tmp, image, _ = translated
    ocr = json.loads((tmp / "artifacts" / "e2e-1" / "ocr.json").read_text(encoding="utf-8"))
    found = "".join(block["text"] for block in ocr["blocks"])
    assert character_error_rate("".join(image.texts), found) <= 0.05


def test_inpainted_image_has_no_source_text_left(translated, ocr_engine):
    tmp, image, _ = translated
    inpainted = np.asarray(Image.open(tmp / "artifacts" / "e2e-1" / "inpainted.png").convert("RGB"))
    left = _texts(ocr_engine, inpainted, "zh")
    for line in image.texts:
        for word in line.split():
            assert word not in left, f"'{word}' still readable after inpainting: {left!r}"


def test_result_shows_the_english_translation(translated, ocr_engine):
    tmp, image, _ = translated
    translation = json.loads((tmp / "artifacts" / "e2e-1" / "translation.json").read_text(encoding="utf-8"))
    english = " ".join(pair["translation"] for pair in translation["pairs"])
    assert re.search(r"[A-Za-z]{3}", english) and not re.search(r"[\u4e00-\u9fff]", english)
    result = np.asarray(Image.open(tmp / "artifacts" / "e2e-1" / "result.png").convert("RGB"))
    assert result.shape == image.pixels.shape
    seen = _texts(ocr_engine, result, "en").lower()
    assert not re.search(r"[\u4e00-\u9fff]", seen), f"Chinese still visible: {seen!r}"
    words = [w for w in re.findall(r"[a-z]{3,}", english.lower())]
    found = [w for w in words if w in seen]
    assert len(found) >= 0.7 * len(words), f"expected {words} in re-OCR of result, saw {seen!r}"


def test_each_stage_is_recorded_as_an_asset_materialization(translated):
    tmp, _, result = translated
    keys = {"/".join(m.asset_key.path) for m in result.asset_materializations_for_node("download")}
    for node in ("ocr", "translate", "inpaint", "render"):
        keys |= {"/".join(m.asset_key.path) for m in result.asset_materializations_for_node(node)}
    assert keys == {"imgtrans/source_image", "imgtrans/ocr_result", "imgtrans/translation",
                    "imgtrans/inpainted_image", "imgtrans/rendered_image"}
    [translation] = result.asset_materializations_for_node("translate")
    assert translation.metadata["request_id"].value == "e2e-1"
    pairs = json.loads((tmp / "artifacts" / "e2e-1" / "translation.json").read_text("utf-8"))["pairs"]
    table = [(r.data["source"], r.data["translation"]) for r in translation.metadata["text_table"].records]
    assert table == [(p["source"], p["translation"]) for p in pairs]
    [rendered] = result.asset_materializations_for_node("render")
    assert rendered.metadata["preview"].value.startswith("![preview](data:image/jpeg;base64,")
    assert {"seconds_download", "seconds_ocr", "seconds_translate", "seconds_inpaint"} <= set(rendered.metadata)
    content_hash = translation.metadata["content_hash"].value
    assert translation.partition == f"{content_hash}.zh.en"  # one partition per translation (image, languages)
    checks = {(c.asset_key.to_user_string(), c.check_name): c for c in result.get_asset_check_evaluations()}
    assert set(checks) == {("imgtrans/translation", "one_translation_per_block"),
                           ("imgtrans/rendered_image", "no_source_text_left"),
                           ("imgtrans/rendered_image", "output_decodes"),
                           ("imgtrans/rendered_image", "quality_score_above_minimum")}
    assert all(c.passed and c.partition == translation.partition for c in checks.values())
    # Every result is scored; the score is on the materialization (the /metrics histogram reads it) and meta.json.
    score = rendered.metadata["quality_score"].value
    assert 0.6 <= score <= 1.0 and _meta(tmp, "e2e-1")["quality"]["score"] == pytest.approx(score, abs=1e-3)


@pytest.mark.slow
def test_tall_detail_page_end_to_end(tmp_path, instance):
    lines = ["产品介绍", "优质材料 安全环保", "防水设计 经久耐用", "售后服务 无忧退换"]
    image = tall_image(lines)
    path = image.save(tmp_path / "tall.png")
    result = _run(tmp_path, instance, [{"request_id": "tall-1", "image_url": str(path), "target_lang": "en",
                                        "source_lang": "zh"}])
    assert result.success
    meta = _meta(tmp_path, "tall-1")
    assert meta["ocr"]["slices"] > 1
    assert meta["ocr"]["blocks"] == len(lines)
    out = Image.open(tmp_path / "artifacts" / "tall-1" / "result.png")
    assert out.size == (790, 6000)


# --- bad input: each ends as a clear recorded failure -----------------------------------------------------


@pytest.fixture(scope="module")
def http_server():
    hits: dict[str, int] = {}

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no such image")

    async def flaky(request: web.Request) -> web.Response:
        hits["flaky"] = hits.get("flaky", 0) + 1
        if hits["flaky"] <= 2:
            return web.Response(status=503, text="busy")
        image = text_image(["免费送货上门"], width=400, height=160, font_size=40)
        return web.Response(body=image.png(), content_type="image/png")

    app = web.Application()
    app.router.add_get("/missing.png", missing)
    app.router.add_get("/flaky.png", flaky)
    with serve_aiohttp(app) as base:
        yield base, hits


def _failure(tmp: Path, request_id: str) -> dict[str, Any]:
    meta = _meta(tmp, request_id)
    assert meta["status"] == "failed"
    return meta["error"]


def test_bad_inputs_fail_alone_with_clear_reasons(tmp_path, instance, http_server):
    base, _ = http_server
    good = text_image(["全新升级"], width=320, height=140, font_size=44).save(tmp_path / "good.png")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(_truncated_jpeg(good))
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not an image", encoding="utf-8")
    requests = [
        {"request_id": "good", "image_url": str(good), "target_lang": "en", "source_lang": "zh"},
        {"request_id": "corrupt", "image_url": str(corrupt), "target_lang": "en", "source_lang": "zh"},
        {"request_id": "text", "image_url": str(not_image), "target_lang": "en", "source_lang": "zh"},
        {"request_id": "gone", "image_url": f"{base}/missing.png", "target_lang": "en", "source_lang": "zh"},
        {"request_id": "pair", "image_url": str(good), "target_lang": "ko", "source_lang": "zh"},
    ]
    result = _run(tmp_path, instance, requests)
    assert not result.success  # a run with failed requests is a failed run, visible in the UI
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "publish"
    assert "4 of 5 request(s) failed" in failure.step_failure_data.error.message

    assert _meta(tmp_path, "good")["status"] == "succeeded"
    assert (tmp_path / "artifacts" / "good" / "result.png").exists()
    corrupt_err = _failure(tmp_path, "corrupt")
    assert corrupt_err["stage"] == "download" and not corrupt_err["transient"]
    assert re.search(r"corrupt|truncated|cannot|decode", corrupt_err["reason"], re.I)
    text_err = _failure(tmp_path, "text")
    assert "not an image" in text_err["reason"]
    gone_err = _failure(tmp_path, "gone")
    assert "404" in gone_err["reason"] and not gone_err["transient"]
    pair_err = _failure(tmp_path, "pair")
    assert pair_err["error"] == "UnsupportedLanguagePair" and "zh -> ko" in pair_err["reason"]
    assert not (tmp_path / "artifacts" / "pair" / "source.png").exists()  # refused before downloading


def _truncated_jpeg(source: Path) -> bytes:
    import io

    buf = io.BytesIO()
    Image.open(source).convert("RGB").save(buf, "JPEG")
    data = buf.getvalue()
    return data[: len(data) // 2]


def test_image_over_pixel_limit_is_refused(tmp_path, instance):
    big = text_image(["全新升级"], width=1200, height=1000).save(tmp_path / "big.png")
    result = _run(tmp_path, instance, [{"request_id": "big", "image_url": str(big), "target_lang": "en"}],
                  fetch__max_image_pixels=1_000_000)
    assert not result.success
    err = _failure(tmp_path, "big")
    assert err["error"] == "ImageTooLarge" and "pixel" in err["reason"]


def test_transient_download_errors_are_retried_by_the_op(tmp_path, instance, http_server):
    base, hits = http_server
    hits.clear()
    # No in-process retries: the first two 503s exhaust the downloader, so Dagster's RetryPolicy must step in.
    fetcher = FetchResource(allow_private_urls=True, retries=0)
    result = _run(tmp_path, instance, [{"request_id": "flaky", "image_url": f"{base}/flaky.png",
                                        "target_lang": "en", "source_lang": "zh"}], resources={"fetcher": fetcher})
    assert result.success, _meta(tmp_path, "flaky")
    assert hits["flaky"] == 3
    retries = [e for e in result.all_events if e.step_key == "download" and e.is_step_up_for_retry]
    assert len(retries) == 2
    assert _meta(tmp_path, "flaky")["status"] == "succeeded"


def test_invalid_request_config_names_the_field(tmp_path, instance):
    result = _run(tmp_path, instance, [{"request_id": "bad", "image_url": "ftp://example.com/a.png",
                                        "target_lang": "en"}])
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "image_url" in failure.step_failure_data.error.message


# --- the same job with API translation engines and S3 storage ----------------------------------------------


def test_chinese_to_korean_through_an_openai_compatible_server(tmp_path, instance, llm_wire_server,
                                                               tesseract_ocr_engine, monkeypatch):
    """The seeds' main use (zh -> ko) needs an API engine: here an OpenAI-compatible server on loopback."""
    monkeypatch.setenv("OPENAI_API_KEY", llm_wire_server.OPENAI_KEY)
    # Restored after the test. Short enough for the block's length budget (9 characters), so one call does it.
    monkeypatch.setitem(llm_wire_server.dictionary, "限时特价", "특가")
    image = text_image(["限时特价"], width=480, height=160, font_size=56, left=60, top=40)
    path = image.save(tmp_path / "sale.png")
    translator = TranslatorResource(engine="openai", base_url=f"{llm_wire_server.base}/v1", model="local-model")
    result = _run(tmp_path, instance, [{"request_id": "ko-1", "image_url": str(path), "target_lang": "ko",
                                        "source_lang": "zh"}], resources={"translator": translator})
    assert result.success, _meta(tmp_path, "ko-1")["error"]
    [call] = llm_wire_server.requests  # one call for the image, the image included
    assert call["path"] == "/v1/chat/completions"
    assert call["json"]["messages"][1]["content"][0]["type"] == "image_url"
    pairs = json.loads((tmp_path / "artifacts" / "ko-1" / "translation.json").read_text("utf-8"))["pairs"]
    assert [(p["source"], p["translation"]) for p in pairs] == [("限时特价", "[ko] 특가")]
    assert pairs[0]["via"] == {"origin": "engine", "engine": "openai", "model": "local-model"}
    rendered = np.asarray(Image.open(tmp_path / "artifacts" / "ko-1" / "result.png").convert("RGB"))
    seen = "".join(_texts(tesseract_ocr_engine, rendered, "ko").split())
    # Tesseract is the only offline Hangul reader and misreads a syllable now and then at large sizes.
    assert character_error_rate("[ko]특가", seen) <= 0.3, seen


def test_korean_source_text_is_read_by_tesseract(tmp_path, instance, llm_wire_server, ocr_engine, monkeypatch):
    """rapidocr cannot read Hangul; a Korean source is routed to the Tesseract engine automatically."""
    monkeypatch.setenv("OPENAI_API_KEY", llm_wire_server.OPENAI_KEY)
    monkeypatch.setitem(llm_wire_server.dictionary, "무료 배송", "Free shipping")
    monkeypatch.setitem(llm_wire_server.dictionary, "무료배송", "Free shipping")
    image = text_image(["무료 배송"], width=420, height=150, font_size=52, left=50, top=40)
    path = image.save(tmp_path / "ship.png")
    translator = TranslatorResource(engine="openai", base_url=f"{llm_wire_server.base}/v1", model="local-model")
    result = _run(tmp_path, instance, [{"request_id": "ko-src", "image_url": str(path), "target_lang": "en",
                                        "source_lang": "ko"}], resources={"translator": translator})
    assert result.success, _meta(tmp_path, "ko-src")["error"]
    meta = _meta(tmp_path, "ko-src")
    assert meta["engines"]["ocr"].startswith("tesseract")
    rendered = np.asarray(Image.open(tmp_path / "artifacts" / "ko-src" / "result.png").convert("RGB"))
    assert "free shipping" in _texts(ocr_engine, rendered, "en").lower()


def test_s3_source_and_s3_artifact_store(tmp_path, instance, s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_server.region)
    client = s3_server.client()
    client.create_bucket(Bucket="catalogue")
    image = text_image(["全新升级"], width=360, height=140, font_size=44)
    client.put_object(Bucket="catalogue", Key="in/p1.png", Body=image.png())
    resources = {
        "fetcher": FetchResource(s3_endpoint_url=s3_server.endpoint_url),
        "artifacts": ArtifactStoreResource(url="s3://catalogue/translated", s3_endpoint_url=s3_server.endpoint_url),
    }
    result = _run(tmp_path, instance, [{"request_id": "s3-1", "image_url": "s3://catalogue/in/p1.png",
                                        "target_lang": "en", "source_lang": "zh"}], resources=resources)
    assert result.success
    listed = client.list_objects_v2(Bucket="catalogue", Prefix="translated/s3-1/")
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in listed["Contents"]) == sorted(ARTIFACTS)
    meta = json.loads(client.get_object(Bucket="catalogue", Key="translated/s3-1/meta.json")["Body"].read())
    assert meta["status"] == "succeeded" and meta["result"] == "s3://catalogue/translated/s3-1/result.png"
    head = client.head_object(Bucket="catalogue", Key="translated/s3-1/result.png")
    assert head["ContentType"] == "image/png"


def test_identical_request_is_answered_from_stored_artifacts(tmp_path, instance):
    """Seed 002's dedupe: same image content + languages + pipeline version + options -> no recomputation."""
    image = text_image(["全新升级"], width=360, height=140, font_size=44)
    first_path = image.save(tmp_path / "a.png")
    again_path = image.save(tmp_path / "same-pixels.bmp", "BMP")  # other file, other format, same pixels
    first = _run(tmp_path, instance, [{"request_id": "d-1", "image_url": str(first_path), "target_lang": "en",
                                       "source_lang": "zh"}])
    second = _run(tmp_path, instance, [{"request_id": "d-2", "image_url": str(again_path), "target_lang": "en",
                                        "source_lang": "zh"}])
    assert first.success and second.success
    meta = _meta(tmp_path, "d-2")
    assert meta["status"] == "succeeded" and meta["reused_from"] == "d-1"
    assert meta["result"] == _meta(tmp_path, "d-1")["result"]
    assert "ocr" not in meta["timings_s"] and "inpaint" not in meta["timings_s"]
    assert not second.asset_materializations_for_node("ocr")  # nothing recomputed
    assert not (tmp_path / "artifacts" / "d-2" / "ocr.json").exists()

    other_glossary = _run(tmp_path, instance, [{"request_id": "d-3", "image_url": str(first_path),
                                                "target_lang": "en", "source_lang": "zh",
                                                "glossary": {"全新升级": "All-new"}}])
    assert _meta(tmp_path, "d-3")["reused_from"] is None and other_glossary.success
    forced = _run(tmp_path, instance, [{"request_id": "d-4", "image_url": str(first_path), "target_lang": "en",
                                        "source_lang": "zh", "force": True}])
    assert forced.success and _meta(tmp_path, "d-4")["reused_from"] is None
    assert (tmp_path / "artifacts" / "d-4" / "ocr.json").exists()
