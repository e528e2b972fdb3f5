"""Observability: ``collect_status``, the Prometheus metrics, the quality histogram, the web app and the CLI.

Everything real: a redis-server (session fixture), a Dagster instance with runs of ``translate_images`` — two
executed in-process by the real job on small generated images (so ``meta.json`` timings are real), and a few
created the way the sensor's daemon creates them, then queued / started / canceled — materializations with
quality scores recorded by a real in-process run, and the Starlette app served by uvicorn on a free port,
scraped with urllib and read back with prometheus_client's parsers.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    MetadataValue,
    instance_for_test,
    job,
    op,
)
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from imgtrans_pipeline import names
from imgtrans_pipeline.intake import DeadLetters, IntakeConfig, create_queue, push_result
from imgtrans_pipeline.monitoring import (
    Monitor,
    QualityScores,
    StatusSnapshot,
    check_health,
    collect_status,
    quantile,
    render_prometheus,
)
from imgtrans_pipeline.monitoring import collect as collect_module
from imgtrans_pipeline.monitoring import quality as quality_module
from imgtrans_pipeline.monitoring.cli import add_status_commands, format_status, main, run_status
from imgtrans_pipeline.names import TAG_REQUEST_COUNT as REQUEST_COUNT_TAG
from imgtrans_pipeline.names import TRANSLATE_JOB, run_config
from imgtrans_pipeline.orchestration.definitions import build_resources
from imgtrans_pipeline.orchestration.jobs import translate_images
from imgtrans_pipeline.orchestration.recording import asset_key
from imgtrans_pipeline.storage import create_artifact_store
from imgtrans_pipeline.web import WebServer, create_app
from tests.support.dagster_services import pipeline_settings
from tests.support.imagegen import text_image
from tests.support.redis_server import RedisServer

WINDOW_S = 15 * 60
RENDERED = asset_key(names.RENDERED_IMAGE)
REAL_IDS = ["mon-ok-1", "mon-ok-2", "mon-ok-3", "mon-bad-1"]


# --- fixtures -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def instance() -> DagsterInstance:
    with instance_for_test() as inst:
        yield inst


def _job(artifacts: Path):
    settings = pipeline_settings(artifacts)
    return Definitions(jobs=[translate_images], resources=build_resources(settings)).resolve_job_def(TRANSLATE_JOB)


def _requests(*pairs: tuple[str, str]) -> dict[str, Any]:
    return run_config({"request_id": rid, "image_url": url, "source_lang": "zh", "target_lang": "en"}
                      for rid, url in pairs)


@pytest.fixture(scope="module")
def world(instance, tmp_path_factory) -> dict[str, Any]:
    """Runs in every state the status reports on.

    * run A (real, SUCCESS): mon-ok-1, mon-ok-2 (two different images, fully computed);
    * run B (real, FAILURE): mon-ok-3 (same image as mon-ok-1: answered from its stored result, so only the
      request/download/publish stages run) and mon-bad-1 (missing file: fails in download);
    * sensor-style runs: QUEUED (tag 3 requests), NOT_STARTED (no tag, 1 request in its config), STARTED (tag 2),
      CANCELED (tag 4).
    """
    tmp = tmp_path_factory.mktemp("monitoring")
    artifacts = tmp / "artifacts"
    img1 = text_image(["限时特价"], width=320, height=120, font_size=40, top=30).save(tmp / "one.png")
    img2 = text_image(["天然棉麻"], width=320, height=120, font_size=40, top=30).save(tmp / "two.png")
    job = _job(artifacts)
    run_a = job.execute_in_process(run_config=_requests(("mon-ok-1", str(img1)), ("mon-ok-2", str(img2))),
                                   instance=instance, raise_on_error=False, tags={"imgtrans/source": "cli"})
    assert run_a.success
    run_b = job.execute_in_process(
        run_config=_requests(("mon-ok-3", str(img1)), ("mon-bad-1", str(tmp / "missing.png"))),
        instance=instance, raise_on_error=False, tags={"imgtrans/source": "cli"})
    assert not run_b.success

    # A queued run must name the code it will be launched from (what the daemon records); nothing loads it here.
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(InProcessCodeLocationOrigin(LoadableTargetOrigin(
        module_name="imgtrans_pipeline.orchestration.definitions")), "__repository__"), TRANSLATE_JOB)

    def sensor_run(ids: list[str], status: DagsterRunStatus, tagged: bool = True):
        tags = {"imgtrans/source": "redis", **({REQUEST_COUNT_TAG: str(len(ids))} if tagged else {})}
        return instance.create_run_for_job(job, run_config=_requests(*[(i, f"https://cdn.example.com/{i}.png")
                                                                        for i in ids]),
                                           tags=tags, status=status, remote_job_origin=origin)

    sensor_run(["q-1", "q-2", "q-3"], DagsterRunStatus.QUEUED)
    sensor_run(["n-1"], DagsterRunStatus.NOT_STARTED, tagged=False)
    sensor_run(["s-1", "s-2"], DagsterRunStatus.STARTED)
    canceled = sensor_run(["c-1", "c-2", "c-3", "c-4"], DagsterRunStatus.NOT_STARTED)
    instance.report_run_canceled(canceled)
    metas = {rid: json.loads((artifacts / rid / "meta.json").read_text(encoding="utf-8")) for rid in REAL_IDS}
    return {"artifacts": artifacts, "store": create_artifact_store(str(artifacts)), "metas": metas}


def _settings(url: str, kind: str = "list") -> IntakeConfig:
    return IntakeConfig(redis_url=url, queue_kind=kind, queue="mon:requests", results="mon:results",
                          dead="mon:dead", status_prefix="mon:request:")


def _fill_redis(settings: IntakeConfig) -> None:
    """3 waiting, 2 claimed, 2 dead letters, 1 result."""
    client = settings.connect()
    queue = create_queue(client, settings)
    for i in range(5):
        queue.push(json.dumps({"request_id": f"w-{i}", "image_url": "https://cdn.example.com/a.png",
                               "target_lang": "en"}))
    assert len(queue.claim(2)) == 2
    dead = DeadLetters(client, settings)
    assert dead.add('{"request_id":"d-1"}', "[download] 404") and dead.add("not json", "message is not valid JSON")
    push_result(client, settings, {"request_id": "r-1", "status": "succeeded"})


# --- the exposition, read back with prometheus_client's own parser -------------------------------------------------


def parse_prometheus(text: str) -> tuple[dict[str, str], dict[tuple[str, frozenset], float]]:
    """Returns (family -> type, (sample name, labels) -> value); no family or sample may appear twice."""
    types: dict[str, str] = {}
    samples: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        assert family.name not in types, f"duplicate family {family.name}"
        types[family.name] = family.type
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = s.value
    return types, samples


def sample(samples: dict, name: str, **labels: str) -> float | None:
    for (n, lab), value in samples.items():
        if n == name and all(dict(lab).get(k) == v for k, v in labels.items()):
            return value
    return None


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode("utf-8")


# --- collect_status -------------------------------------------------------------------------------------------------


def test_constants_match_the_orchestration_layer():
    assert collect_module.TRANSLATE_JOB == TRANSLATE_JOB
    assert collect_module.REQUEST_COUNT_TAG == REQUEST_COUNT_TAG


def test_quantile_is_nearest_rank():
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert quantile([3.0, 1.0, 2.0], 0.95) == 3.0
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert quantile(list(map(float, range(1, 101))), 0.95) == 95.0
    with pytest.raises(ValueError):
        quantile([], 0.5)


@pytest.mark.parametrize("kind", ["list", "stream"])
def test_counts_queue_runs_throughput(instance, world, redis_server, redis_client, kind):
    settings = _settings(redis_server.url, kind)
    _fill_redis(settings)
    snap = collect_status(instance, settings, window_s=WINDOW_S, store=world["store"])
    assert snap.redis_error is None and snap.dagster_error is None
    assert (snap.queue_depth, snap.in_processing, snap.dead_letters, snap.results) == (3, 2, 2, 1)
    assert (snap.queue_key, snap.queue_kind) == ("mon:requests", kind)
    assert snap.runs == {"queued": 2, "in_progress": 1, "succeeded": 1, "failed": 1, "canceled": 1}
    assert snap.requests_in_flight == 3 + 1 + 2  # QUEUED (tag) + NOT_STARTED (run config) + STARTED (tag)
    assert snap.requests_finished == 2 + 2 + 4  # run A + run B (run config, no tag) + CANCELED (tag)
    assert snap.throughput_per_min == round(8 / 15, 4)
    json.dumps(snap.to_dict())  # JSON-serialisable as is


def test_window_only_counts_runs_that_ended_inside_it(instance, world):
    later = time.time() + 2 * WINDOW_S  # every run ended more than one window before "now"
    snap = collect_status(instance, None, window_s=WINDOW_S, store=world["store"], now=later)
    assert snap.runs == {"queued": 2, "in_progress": 1, "succeeded": 0, "failed": 0, "canceled": 0}
    assert snap.requests_in_flight == 6 and snap.requests_finished == 0 and snap.throughput_per_min == 0.0
    # A 5-minute window ending now holds the same finished runs as the 15-minute one, at 3x the rate.
    snap = collect_status(instance, None, window_s=300, store=world["store"])
    assert snap.requests_finished == 8 and snap.throughput_per_min == round(8 / 5, 4)


def test_stage_timings_come_from_the_real_meta_json_files(instance, world):
    metas = world["metas"]
    assert metas["mon-ok-3"]["reused_from"] == "mon-ok-1" and metas["mon-bad-1"]["status"] == "failed"
    snap = collect_status(instance, None, window_s=WINDOW_S, store=world["store"])
    assert snap.timing_requests == 4 and snap.timings_error is None
    timings = snap.stage_timings
    # OCR, translate, inpaint and render ran only for the two computed requests; every request was published.
    for stage in ("ocr", "translate", "inpaint", "render"):
        values = sorted(metas[rid]["timings_s"][stage] for rid in ("mon-ok-1", "mon-ok-2"))
        assert timings[stage].count == 2
        assert (timings[stage].p50, timings[stage].p95, timings[stage].max) == (values[0], values[1], values[1])
        assert timings[stage].sum == pytest.approx(sum(values))
    assert timings["ocr"].p95 > 0
    publish = sorted(metas[rid]["timings_s"]["publish"] for rid in REAL_IDS)
    assert timings["publish"].count == 4
    assert (timings["publish"].p50, timings["publish"].p95) == (publish[1], publish[3])
    assert timings["download"].count == 4
    assert set(timings) == {stage for meta in metas.values() for stage in meta["timings_s"]}


def test_timing_sample_is_bounded_to_the_newest_requests(instance, world):
    # Newest finished run first: run B (mon-ok-3 reused + mon-bad-1): no request of it ran OCR.
    snap = collect_status(instance, None, window_s=WINDOW_S, store=world["store"], timing_sample=2)
    assert snap.timing_requests == 2
    assert "ocr" not in snap.stage_timings and snap.stage_timings["publish"].count == 2
    snap = collect_status(instance, None, window_s=WINDOW_S, store=world["store"], timing_sample=3)
    assert snap.timing_requests == 3 and snap.stage_timings["ocr"].count == 1


def test_gpu_pool_slots_in_use_and_limit(world):
    with instance_for_test() as inst:
        snap = collect_status(inst, None, window_s=WINDOW_S, store=world["store"])
        assert snap.gpu_pool is not None and (snap.gpu_pool.in_use, snap.gpu_pool.pending) == (0, 0)
        inst.event_log_storage.set_concurrency_slots("gpu", 2)
        inst.event_log_storage.claim_concurrency_slot("gpu", "run-1", "ocr")
        snap = collect_status(inst, None, window_s=WINDOW_S, store=world["store"])
        assert (snap.gpu_pool.pool, snap.gpu_pool.limit, snap.gpu_pool.in_use) == ("gpu", 2, 1)
        _, samples = parse_prometheus(render_prometheus(snap))
        assert sample(samples, "imgtrans_gpu_pool_slots", state="in_use") == 1
        assert sample(samples, "imgtrans_gpu_pool_slots", state="limit") == 2


def test_unreachable_or_unconfigured_redis_is_reported_not_raised(instance, world):
    with RedisServer() as server:
        settings = _settings(server.url)
        server.stop()
        snap = collect_status(instance, settings, window_s=WINDOW_S, store=world["store"])
    assert snap.queue_depth is None and snap.in_processing is None and snap.dead_letters is None
    assert "ConnectionError" in snap.redis_error and not snap.redis_ok
    assert snap.runs["succeeded"] == 1  # the Dagster side is still reported
    snap = collect_status(instance, None, window_s=WINDOW_S, store=world["store"])
    assert snap.queue_key is None and "not configured" in snap.redis_error
    assert check_health(instance, None) == (True, {"dagster": "ok", "redis": "not configured"})


def test_redis_password_is_redacted(instance, world):
    settings = IntakeConfig(redis_url="redis://user:s3cret@127.0.0.1:1/0")
    snap = collect_status(instance, settings, window_s=WINDOW_S, store=world["store"])
    assert snap.redis_url == "redis://user:***@127.0.0.1:1/0"
    assert "s3cret" not in json.dumps(snap.to_dict()) and "s3cret" not in render_prometheus(snap)


# --- Prometheus text ---------------------------------------------------------------------------------------------


def test_prometheus_text_parses_back_to_the_snapshot(instance, world, redis_server, redis_client):
    settings = _settings(redis_server.url)
    _fill_redis(settings)
    snap = collect_status(instance, settings, window_s=WINDOW_S, store=world["store"])
    types, samples = parse_prometheus(render_prometheus(snap))
    assert types["imgtrans_stage_seconds"] == "summary" and types["imgtrans_queue_depth"] == "gauge"
    assert sample(samples, "imgtrans_up", component="dagster") == 1
    assert sample(samples, "imgtrans_up", component="redis") == 1
    assert sample(samples, "imgtrans_queue_depth", queue="mon:requests", kind="list") == 3
    assert sample(samples, "imgtrans_queue_claimed") == 2
    assert sample(samples, "imgtrans_dead_letters") == 2
    for status, count in {"queued": 2, "in_progress": 1, "succeeded": 1, "failed": 1, "canceled": 1}.items():
        assert sample(samples, "imgtrans_runs", status=status, job="translate_images") == count
    assert sample(samples, "imgtrans_requests_in_flight") == 6
    assert sample(samples, "imgtrans_throughput_requests_per_minute") == pytest.approx(8 / 15, abs=1e-4)
    for stage, timing in snap.stage_timings.items():
        assert sample(samples, "imgtrans_stage_seconds", stage=stage, quantile="0.5") == timing.p50
        assert sample(samples, "imgtrans_stage_seconds", stage=stage, quantile="0.95") == timing.p95
        assert sample(samples, "imgtrans_stage_seconds_count", stage=stage) == timing.count
        assert math.isclose(sample(samples, "imgtrans_stage_seconds_sum", stage=stage), timing.sum)
    assert sample(samples, "imgtrans_gpu_pool_slots", pool="gpu", state="in_use") == 0
    assert sample(samples, "imgtrans_gpu_pool_slots", state="limit") is None  # no limit set: no sample


def test_prometheus_leaves_out_what_could_not_be_read_and_escapes_labels():
    snap = StatusSnapshot(collected_at="2026-01-01T00:00:00Z", window_s=60, queue_key='odd"key\\x\nend',
                          queue_kind="list", redis_error="ConnectionError: refused", dagster_error="boom")
    types, samples = parse_prometheus(render_prometheus(snap))
    assert sample(samples, "imgtrans_up", component="redis") == 0
    assert sample(samples, "imgtrans_up", component="dagster") == 0
    assert "imgtrans_queue_depth" not in types and "imgtrans_runs" not in types
    snap.queue_depth, snap.in_processing, snap.dead_letters = 1, 0, 0
    _, samples = parse_prometheus(render_prometheus(snap))
    assert sample(samples, "imgtrans_queue_depth", queue='odd"key\\x\nend') == 1


# --- HTTP: the Starlette app under uvicorn, scraped over a real socket -----------------------------------------


def serve(monitor: Monitor, **kwargs: Any) -> WebServer:
    return WebServer(create_app(monitor, **kwargs), port=0)


def test_http_server_serves_metrics_health_and_status(instance, world, redis_server, redis_client):
    settings = _settings(redis_server.url)
    _fill_redis(settings)
    monitor = Monitor.for_instance(instance, settings, store=world["store"], cache_seconds=0)
    with serve(monitor) as server:
        assert server.url.startswith("http://127.0.0.1:")
        status, ctype, body = get(server.url + "/metrics")
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        types, samples = parse_prometheus(body)
        assert sample(samples, "imgtrans_queue_depth") == 3 and sample(samples, "imgtrans_runs", status="failed") == 1
        for stage, timing in world_timings(instance, world).items():
            assert sample(samples, "imgtrans_stage_seconds_count", stage=stage) == timing.count
        # The quality histogram is exported from the first scrape on, empty until a scored image is rendered.
        assert types["imgtrans_quality_score"] == "histogram"
        assert sample(samples, "imgtrans_quality_score_count") == 0
        status, ctype, body = get(server.url + "/health")
        assert status == 200 and json.loads(body) == {"status": "ok", "checks": {"dagster": "ok", "redis": "ok"}}
        status, ctype, body = get(server.url + "/status")
        data = json.loads(body)
        assert status == 200 and ctype.startswith("application/json")
        assert data["queue_depth"] == 3 and data["dead_letters"] == 2 and data["requests_in_flight"] == 6
        assert data["stage_timings"]["publish"]["count"] == 4
        assert get(server.url + "/worker/status")[0] == 200
        assert get(server.url + "/nope")[0] == 404


def world_timings(instance, world) -> dict[str, Any]:
    return collect_status(instance, None, window_s=WINDOW_S, store=world["store"]).stage_timings


def test_http_metrics_speak_openmetrics_when_asked(instance, world):
    monitor = Monitor.for_instance(instance, None, store=world["store"], cache_seconds=0)
    with serve(monitor) as server:
        request = urllib.request.Request(server.url + "/metrics",
                                         headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        with urllib.request.urlopen(request, timeout=10) as response:
            ctype, body = response.headers["Content-Type"], response.read().decode("utf-8")
    assert ctype.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith("# EOF\n")
    families = {f.name: f for f in openmetrics_families(body)}
    assert families["imgtrans_stage_seconds"].type == "summary" and families["imgtrans_runs"].type == "gauge"
    runs = {s.labels["status"]: s.value for s in families["imgtrans_runs"].samples}
    assert runs == {"queued": 2, "in_progress": 1, "succeeded": 1, "failed": 1, "canceled": 1}


def test_http_health_is_503_when_redis_is_down(instance, world):
    with RedisServer() as redis_srv:
        settings = _settings(redis_srv.url)
        monitor = Monitor.for_instance(instance, settings, store=world["store"], cache_seconds=0)
        with serve(monitor) as server:
            assert get(server.url + "/health")[0] == 200
            redis_srv.stop()
            status, _, body = get(server.url + "/health")
            assert status == 503
            data = json.loads(body)
            assert data["status"] == "unavailable" and data["checks"]["dagster"] == "ok"
            assert "ConnectionError" in data["checks"]["redis"]
            status, _, body = get(server.url + "/metrics")
            assert status == 200  # still scrapeable: up=0 is the signal
            types, samples = parse_prometheus(body)
            assert sample(samples, "imgtrans_up", component="redis") == 0 and "imgtrans_queue_depth" not in types
            assert sample(samples, "imgtrans_runs", status="succeeded") == 1
            status, _, body = get(server.url + "/status")
            assert status == 200 and json.loads(body)["queue_depth"] is None


def test_snapshot_cache_shares_one_collection():
    calls: list[int] = []

    def collector() -> StatusSnapshot:
        calls.append(1)
        return StatusSnapshot(collected_at=str(len(calls)), window_s=60)

    with serve(Monitor(collector, lambda: (True, {}), cache_seconds=60)) as server:
        for path in ("/status", "/metrics", "/status"):
            assert get(server.url + path)[0] == 200
    assert len(calls) == 1


# --- quality score histogram --------------------------------------------------------------------------------------


@op
def render_scored(context) -> None:  # annotated, Dagster would see a string under __future__.annotations
    """Records rendered images the way the render op does, with a quality_score (and a few without a usable one)."""
    for i, score in enumerate([0.05, 0.1, 0.35, 0.8, 1.0, 1.7]):
        value = MetadataValue.float(score) if i % 2 else score  # both ways metadata can be given
        context.log_event(AssetMaterialization(asset_key=RENDERED, partition=None,
                                               metadata={"request_id": f"q-{i}", "quality_score": value}))
    context.log_event(AssetMaterialization(asset_key=RENDERED, metadata={"quality_score": "n/a"}))
    context.log_event(AssetMaterialization(asset_key=RENDERED, metadata={"request_id": "unscored"}))
    context.log_event(AssetMaterialization(asset_key=AssetKey(["imgtrans", "inpainted_image"]),
                                           metadata={"quality_score": 0.5}))  # another asset: not counted


@job
def scored_renders():
    render_scored()


def buckets(samples: dict) -> dict[str, float]:
    return {dict(lab)["le"]: value for (name, lab), value in samples.items() if name == "imgtrans_quality_score_bucket"}


def report_score(inst: DagsterInstance, score: float) -> None:
    inst.report_runless_asset_event(AssetMaterialization(asset_key=RENDERED, metadata={"quality_score": score}))


def test_quality_asset_key_matches_the_orchestration_layer():
    assert tuple(RENDERED.path) == quality_module.RENDERED_IMAGE_KEY


def test_quality_score_histogram_counts_each_new_materialization_once(world):
    with instance_for_test() as inst:
        # Stored before the server started: not counted (a restart must not re-count history at once).
        report_score(inst, 0.9)
        monitor = Monitor.for_instance(inst, None, store=world["store"], cache_seconds=0)
        # Stored after the server started but before its first scrape: counted.
        report_score(inst, 0.42)
        with serve(monitor) as server:
            types, samples = parse_prometheus(get(server.url + "/metrics")[2])
            assert types["imgtrans_quality_score"] == "histogram"
            assert sample(samples, "imgtrans_quality_score_count") == 1
            assert buckets(samples) == {"0.1": 0, "0.2": 0, "0.3": 0, "0.4": 0, "0.5": 1, "0.6": 1, "0.7": 1,
                                        "0.8": 1, "0.9": 1, "1.0": 1, "+Inf": 1}

            assert scored_renders.execute_in_process(instance=inst).success
            for _ in range(2):  # the second scrape finds nothing new: no score is counted twice
                _, samples = parse_prometheus(get(server.url + "/metrics")[2])
                assert sample(samples, "imgtrans_quality_score_count") == 7
                assert sample(samples, "imgtrans_quality_score_sum") == pytest.approx(
                    0.05 + 0.1 + 0.35 + 0.8 + 1.0 + 1.7 + 0.42)
                # Cumulative buckets, upper bound inclusive: 0.1 holds 0.05 and 0.1; 1.7 only in +Inf.
                assert buckets(samples) == {"0.1": 2, "0.2": 2, "0.3": 2, "0.4": 3, "0.5": 4, "0.6": 4, "0.7": 4,
                                            "0.8": 5, "0.9": 5, "1.0": 6, "+Inf": 7}


def test_quality_scores_of_real_renders_are_read_in_bounded_pages_unscored_ones_skipped(instance, world):
    # The real translate_images run A rendered two images, each scored by the pipeline's quality stage.
    scores = QualityScores(instance, count_existing=True)
    assert scores.poll() == 2 and scores.materializations_read == 2
    with instance_for_test() as inst:
        assert scored_renders.execute_in_process(instance=inst).success
        scores = QualityScores(inst, count_existing=True, max_events_per_scrape=3)
        observed = [scores.poll() for _ in range(4)]
        assert observed == [3, 3, 0, 0] and scores.materializations_read == 8  # 6 scored, "n/a", unscored
        registry = CollectorRegistry()
        registry.register(scores)
        _, samples = parse_prometheus(generate_latest(registry).decode())
        assert sample(samples, "imgtrans_quality_score_count") == 6


# --- CLI ----------------------------------------------------------------------------------------------------------


def test_cli_registers_status_and_metrics_server():
    import argparse

    parser = argparse.ArgumentParser(prog="imgtrans")
    add_status_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["status", "--json", "--window", "5"])
    assert args.json and args.window == 5 and args.func.__name__ == "_cmd_status"
    args = parser.parse_args(["status"])
    assert not args.json and args.window == 15
    args = parser.parse_args(["metrics-server"])
    assert (args.host, args.port, args.func.__name__) == ("127.0.0.1", 9464, "_cmd_metrics_server")
    with pytest.raises(SystemExit):
        parser.parse_args(["status", "--window", "0"])


def test_status_table_and_json(instance, world, redis_server, redis_client):
    settings = _settings(redis_server.url)
    _fill_redis(settings)
    out = io.StringIO()
    assert run_status(instance, settings, store=world["store"], out=out) == 0
    table = out.getvalue()
    assert re.search(r"^  waiting\s+3$", table, re.M) and re.search(r"^  dead letters\s+2$", table, re.M)
    assert re.search(r"^  claimed \(processing\)\s+2$", table, re.M)
    assert re.search(r"^  succeeded\s+1 ", table, re.M) and re.search(r"^  failed\s+1 ", table, re.M)
    assert re.search(r"^  requests in flight\s+6$", table, re.M)
    assert "0.53 requests/min (8 finished in 15 min)" in table
    assert re.search(r"^  ocr\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+\s+2$", table, re.M)
    assert re.search(r"^  publish\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+\s+4$", table, re.M)
    out = io.StringIO()
    assert run_status(instance, settings, store=world["store"], as_json=True, window_minutes=5, out=out) == 0
    data = json.loads(out.getvalue())
    assert data["window_s"] == 300 and data["queue_depth"] == 3 and data["runs"]["canceled"] == 1


def test_status_exit_code_is_1_when_redis_is_down(instance, world):
    with RedisServer() as server:
        settings = _settings(server.url)
        server.stop()
        out = io.StringIO()
        assert run_status(instance, settings, store=world["store"], out=out) == 1
    assert "unavailable:" in out.getvalue() and "ConnectionError" in out.getvalue()
    assert "requests in flight" in format_status(collect_status(instance, None, window_s=60, store=world["store"]))


def test_status_command_reads_the_environment(instance, world, redis_server, redis_client, monkeypatch, capsys):
    # The command path: $DAGSTER_HOME (the test instance's directory), IMGTRANS_REDIS_URL, IMGTRANS_ARTIFACTS.
    _fill_redis(_settings(redis_server.url))
    monkeypatch.setenv("DAGSTER_HOME", instance.root_directory)
    monkeypatch.setenv("IMGTRANS_REDIS_URL", redis_server.url)
    monkeypatch.setenv("IMGTRANS_QUEUE", "mon:requests")
    monkeypatch.setenv("IMGTRANS_DEAD", "mon:dead")
    monkeypatch.setenv("IMGTRANS_ARTIFACTS", str(world["artifacts"]))
    assert main(["status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["queue_depth"] == 3 and data["dead_letters"] == 2
    assert data["runs"] == {"queued": 2, "in_progress": 1, "succeeded": 1, "failed": 1, "canceled": 1}
    assert data["timing_requests"] == 4


def test_metrics_server_command_stops_cleanly_on_sigterm(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGTRANS_")}
    env.update(DAGSTER_HOME=str(tmp_path), IMGTRANS_ARTIFACTS=str(tmp_path / "artifacts"))
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    proc = subprocess.Popen([sys.executable, "-m", "imgtrans_pipeline.monitoring.cli", "metrics-server", "--port",
                             "0"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        status, _, body = get(match.group(1) + "/health")
        assert status == 200 and json.loads(body)["checks"] == {"dagster": "ok", "redis": "not configured"}
        assert get(match.group(1) + "/metrics")[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert "stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(match.group(1) + "/health", timeout=2)
