"""`imgtrans serve`, the production intake on one host: real code server, daemon and warm Celery run workers.

Proven here: requests pushed to Redis come back translated with no other command; the runs execute on the warm
workers (the second run loads no engine); daemon and webserver share one long-lived code server; the gpu pool
has one slot per worker on a host without GPU; the review page and /metrics are served by the same command;
SIGTERM stops every process it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from dagster import DagsterInstance

from imgtrans_pipeline import names
from imgtrans_pipeline.scaleout.serve import LOCATION, thread_split
from tests.support.dagster_services import BIN, PROJECT, free_port, initialize_instance, pipeline_env, prepare_home
from tests.support.imagegen import text_image

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("cores", "workers", "split"), [(2, 2, (1, 1)), (2, 1, (2, 1)), (8, 2, (4, 1)),
                                                         (8, 3, (2, 1)), (1, 4, (1, 1))])
def test_threads_are_split_to_about_one_per_core(cores, workers, split):
    assert thread_split(cores, workers) == split


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.NoSuchProcess:  # a short-lived child (e.g. a health check) ended since the tree was listed
        return ""


def _wait_results(client, ids: set[str], proc: subprocess.Popen[bytes], logs: Path, timeout: float) -> dict:
    results: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while not ids <= results.keys():
        if proc.poll() is not None or time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in logs.glob("*.log"))
            pytest.fail(f"results {sorted(results)} of {sorted(ids)}; serve exit {proc.poll()}\n{tails}")
        item = client.brpop(["imgtrans:results"], timeout=1)
        if item:
            message = json.loads(item[1])
            results[message["request_id"]] = message
    return results


def test_serve_translates_queued_requests_on_warm_workers_and_stops_cleanly(tmp_path, redis_server, redis_client):
    home = prepare_home(tmp_path / "home", PROJECT / "dagster.workers.yaml")
    initialize_instance(home)
    logs = tmp_path / "logs"
    env = {**os.environ, "DAGSTER_HOME": str(home), **pipeline_env(tmp_path),
           "IMGTRANS_REDIS_URL": redis_server.url, "IMGTRANS_ALLOW_PRIVATE_URLS": "true",
           "IMGTRANS_CELERY_BROKER": redis_server.url.rsplit("/", 1)[0] + "/1", "IMGTRANS_BATCH_SIZE": "2"}
    images = [text_image([line], width=320, height=120, font_size=40, top=30).save(tmp_path / f"s{i}.png")
              for i, line in enumerate(["全新升级", "限时特价", "天然棉麻面料"])]
    review_port = free_port()
    proc = subprocess.Popen([str(BIN / "imgtrans"), "serve", "--no-webserver", "--run-workers", "1",
                             "--code-port", str(free_port()), "--log-dir", str(logs),
                             "--review-port", str(review_port)],
                            cwd=PROJECT, env=env, start_new_session=True)
    try:
        # One request first (its run warms nothing: the pool process preloaded the engines), then two together.
        redis_client.lpush("imgtrans:requests", json.dumps({"request_id": "sv-0", "image_url": str(images[0]),
                                                            "source_lang": "zh", "target_lang": "en"}))
        first = _wait_results(redis_client, {"sv-0"}, proc, logs, timeout=240)
        for i in (1, 2):
            redis_client.lpush("imgtrans:requests", json.dumps({"request_id": f"sv-{i}", "image_url": str(images[i]),
                                                                "source_lang": "zh", "target_lang": "en"}))
        rest = _wait_results(redis_client, {"sv-1", "sv-2"}, proc, logs, timeout=180)
        results = {**first, **rest}
        assert {rid: r["status"] for rid, r in results.items()} == dict.fromkeys(("sv-0", "sv-1", "sv-2"), "succeeded")
        assert all(Path(r["result_url"].removeprefix("file://")).exists() for r in results.values())

        # One app in the serve process: the review page beside /metrics and /status.
        review = f"http://127.0.0.1:{review_port}"
        with urllib.request.urlopen(f"{review}/review/", timeout=30) as page:
            assert page.status == 200 and "Review queue" in page.read().decode()
        with urllib.request.urlopen(f"{review}/metrics", timeout=30) as metrics:
            assert metrics.status == 200 and b"imgtrans_up" in metrics.read()
        with urllib.request.urlopen(f"{review}/status", timeout=30) as status:
            assert status.status == 200

        workspace = (home / "workspace.serve.yaml").read_text()
        assert "grpc_server" in workspace and LOCATION in workspace
        tree = psutil.Process(proc.pid).children(recursive=True)
        (code_server,) = [p for p in tree if "code-server start" in _cmdline(p)]
        under_code_server = {p.pid for p in code_server.children(recursive=True)}
        grpc = [p for p in tree if "api grpc" in _cmdline(p)]
        # The daemon manages no code server of its own: the one gRPC process is the one the code server runs.
        assert grpc and all(p.pid in under_code_server for p in grpc)
        with DagsterInstance.from_config(str(home)) as instance:
            runs = [r for r in instance.get_runs() if r.tags.get("imgtrans/source") == "redis"]
            # publish delivers the results a moment before the run ends; the worker tags the run after that.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not all(
                    r.is_finished and names.TAG_ENGINES_LOADED in r.tags for r in runs):
                time.sleep(0.5)
                runs = [instance.get_run_by_id(r.run_id) for r in runs]
            assert len(runs) == 2 and all(r.is_success for r in runs)
            assert {r.tags[names.TAG_ENGINES_LOADED] for r in runs} == {"0"}  # warm from the start
            assert instance.event_log_storage.get_concurrency_info("gpu").slot_count == 1  # no GPU: 1 per worker
    finally:
        descendants = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=90)
    assert proc.returncode == 0
    _gone, alive = psutil.wait_procs(descendants, timeout=30)
    assert not alive, [" ".join(p.cmdline()) for p in alive]


def _start_serve(env: dict, logs: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(BIN / "imgtrans"), "serve", "--no-webserver", "--run-workers", "1",
                             "--code-port", str(free_port()), "--log-dir", str(logs)],
                            cwd=PROJECT, env=env, start_new_session=True)


def _push(client, request_id: str, image: Path) -> None:
    client.lpush("imgtrans:requests", json.dumps({"request_id": request_id, "image_url": str(image),
                                                  "source_lang": "zh", "target_lang": "en"}))


def test_stop_file_stops_serve_gracefully_and_nothing_claimed_is_lost(tmp_path, redis_server, redis_client):
    home = prepare_home(tmp_path / "home", PROJECT / "dagster.workers.yaml")
    initialize_instance(home)
    logs, stop_file = tmp_path / "logs", tmp_path / "control" / "imgtrans.stop"
    stop_file.parent.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), **pipeline_env(tmp_path), "IMGTRANS_STOP_FILE": str(stop_file),
           "IMGTRANS_REDIS_URL": redis_server.url, "IMGTRANS_ALLOW_PRIVATE_URLS": "true",
           "IMGTRANS_CELERY_BROKER": redis_server.url.rsplit("/", 1)[0] + "/1", "IMGTRANS_BATCH_SIZE": "1"}
    images = [text_image([line], width=320, height=120, font_size=40, top=30).save(tmp_path / f"s{i}.png")
              for i, line in enumerate(["全新升级", "限时特价", "天然棉麻面料", "免费送货"])]
    ids = [f"st-{i}" for i in range(len(images))]
    proc = _start_serve(env, logs)
    try:
        _push(redis_client, ids[0], images[0])
        _wait_results(redis_client, {ids[0]}, proc, logs, timeout=240)
        for request_id, image in zip(ids[1:], images[1:], strict=True):
            _push(redis_client, request_id, image)
        # Stop while the backlog is being worked on: a request is claimed and in a run.
        deadline = time.monotonic() + 120
        while not any(redis_client.hget(f"imgtrans:request:{rid}", "state") == "running" for rid in ids[1:]):
            assert time.monotonic() < deadline and proc.poll() is None, "no request reached a run"
            time.sleep(0.2)
        stop_file.touch()
        assert proc.wait(timeout=180) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=90)
    assert not stop_file.exists()  # honoured and removed: the next start runs
    # Start again: whatever was claimed, queued or launched when it stopped is finished, each request once.
    proc = _start_serve(env, logs)
    try:
        results = _wait_results(redis_client, set(ids[1:]), proc, logs, timeout=300)
        assert {r["status"] for r in results.values()} == {"succeeded"}
        assert redis_client.llen("imgtrans:dead") == 0
        # Each request was delivered once (the results list held one message per request: all popped above).
        assert redis_client.llen("imgtrans:results") == 0
        assert {redis_client.hget(f"imgtrans:request:{rid}", "state") for rid in ids} == {"succeeded"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=90)
    # Dated log files per process, each line with the request id it names.
    day_files = sorted(p.name for p in logs.glob("*_[0-9]*.log"))
    assert {name.rsplit("_", 1)[0] for name in day_files} >= {"code-server", "run-workers", "daemon"}
    lines = [line for p in logs.glob("*.log") for line in p.read_text(errors="replace").splitlines()]
    assert any("request_id=st-" in line for line in lines)
    assert all(" request_id=" in line for line in lines)
