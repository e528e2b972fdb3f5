"""Scale-out on Celery, for real: two Celery worker processes, a private redis-server as broker and result backend,
webserver + daemon on an instance configured by the project's ``dagster.celery.yaml`` (PostgreSQL storage).

Runs are submitted through GraphQL like the Launchpad does; the daemon dequeues them and the run launcher turns
each into a Celery task. The assertions read what the instance and Celery stored: which worker process executed
each run (our run tags, cross-checked against Dagster's own "Started process for run (pid …)" event and Celery's
result backend), that runs tagged for the ``gpu`` queue only went to the worker listening on it, that both workers
got work, and that a worker's second run loaded no engine (the process-wide engine cache stayed warm).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

from imgtrans_pipeline import names
from imgtrans_pipeline.names import TRANSLATE_JOB
from imgtrans_pipeline.scaleout import celery_config as scaleout
from tests.support.dagster_services import (
    BIN,
    PROJECT,
    DagsterServices,
    _spawn,
    _stop,
    dagster_services,
    patched_environ,
    postgres_database,
    run_config,
)
from tests.support.imagegen import text_image
from tests.support.redis_server import RedisServer

try:
    import dagster_celery  # noqa: F401  (the scale-out engine: setup.py extra "celery", part of the test extras)
except ImportError:
    if os.environ.get("CI"):
        raise  # CI installs the test extras: a missing dagster-celery is a broken set-up, not a reason to skip
    pytest.skip("dagster-celery not installed (pip install -e '.[celery]')", allow_module_level=True)

TERMINAL = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
GPU_WORKER, CPU_WORKER = "gpu1", "cpu1"
# Different images per run: a request whose image was already translated is answered from the stored result
# without touching any engine, which would make "loaded no engine" trivially true.
LINES = [
    ["限时特价 买一送一"], ["天然棉麻面料"], ["新品上市 全场包邮"], ["透气舒适"], ["正品保证"], ["七天无理由退货"],
]
GPU_RUNS = 2  # the first runs carry the dagster-celery/queue=gpu tag


@dataclass
class Cluster:
    services: DagsterServices
    redis: RedisServer
    workers: dict[str, Any]
    env: dict[str, str]
    extra_env: dict[str, str]  # what the instance config reads ({env: …}); needed to open it in this process


def _worker_command(name: str, queues: list[str]) -> list[str]:
    """The documented worker start command (docs/scale-out.md), one pool process per worker.

    Queues go in ONE comma-separated ``-q``: dagster-celery turns each ``-q`` into a Celery ``-Q``, and Celery 5
    keeps only the last ``-Q`` (measured: ``-q gpu -q dagster`` listened on ``dagster`` alone).
    """
    return [str(BIN / "dagster-celery"), "worker", "start", "-A", "imgtrans_pipeline.scaleout.app", "-n", name,
            "-q", ",".join(queues), "--", "--concurrency", "1"]


def _wait_for_workers(broker: str, names: set[str], cluster_check: Any, timeout: float = 60.0) -> None:
    """Until every named worker answers a broadcast ping over the broker."""
    from celery import Celery

    control = Celery(broker=broker)
    deadline = time.monotonic() + timeout
    try:
        while True:
            replies = control.control.ping(timeout=1.0) or []
            answered = {host.split("@", 1)[0] for reply in replies for host in reply}
            if names <= answered:
                return
            cluster_check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers {names - answered} did not answer in {timeout:.0f} s")
    finally:
        control.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("scaleout")
    with postgres_database() as database, RedisServer() as redis:
        extra = {
            **database.env(),
            "IMGTRANS_CELERY_BROKER": redis.url,
            "IMGTRANS_CELERY_BACKEND": redis.url.rsplit("/", 1)[0] + "/1",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # dagster-celery execs `celery`
        }
        with dagster_services(tmp, config=PROJECT / "dagster.celery.yaml", extra_env=extra) as services:
            workers: dict[str, Any] = {}
            try:
                workers[GPU_WORKER] = _spawn(f"worker-{GPU_WORKER}",
                                             _worker_command(GPU_WORKER, ["gpu", "dagster"]), services.env,
                                             services.logs)
                workers[CPU_WORKER] = _spawn(f"worker-{CPU_WORKER}", _worker_command(CPU_WORKER, ["dagster"]),
                                             services.env, services.logs)

                def alive() -> None:
                    services.check_alive()
                    for name, proc in workers.items():
                        if proc.poll() is not None:
                            raise RuntimeError(f"worker {name} exited with {proc.returncode}\n{services.log_tail()}")

                _wait_for_workers(redis.url, set(workers), alive)
                # As docs/scale-out.md says: the gpu pool's limit is the number of GPU worker processes (here the
                # two CPU-only ones), else every OCR/inpaint step of the cluster waits for one slot.
                services.cli("instance", "concurrency", "set", "gpu", str(len(workers)))
                yield Cluster(services=services, redis=redis, workers=workers, env=services.env, extra_env=extra)
            finally:
                for name, proc in workers.items():
                    _stop(proc, f"worker {name}")


def _request(tmp: Path, request_id: str, lines: list[str]) -> dict[str, Any]:
    image = text_image(lines, width=360, height=120, font_size=36, top=30)
    path = image.save(tmp / f"{request_id}.png")
    return {"request_id": request_id, "image_url": str(path), "source_lang": "zh", "target_lang": "en"}


def _wait(instance: DagsterInstance, run_ids: list[str], cluster: Cluster, timeout: float) -> dict[str, Any]:
    """Until every run is terminal and its worker has written the engine tags (after the run ends)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = {run_id: instance.get_run_by_id(run_id) for run_id in run_ids}
        done = all(r is not None and r.status in TERMINAL and (r.status != DagsterRunStatus.SUCCESS
                                                               or names.TAG_ENGINES_LOADED in r.tags)
                   for r in runs.values())
        if done or time.monotonic() > deadline:
            return runs
        cluster.services.check_alive()
        time.sleep(0.5)


def _dagster_run_pid(instance: DagsterInstance, run_id: str) -> int:
    """The pid from Dagster's own engine event 'Started process for run (pid: N).'"""
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        match = re.search(r"Started process for run \(pid: (\d+)\)", entry.dagster_event.message or "")
        if match:
            return int(match.group(1))
    raise AssertionError(f"no 'Started process for run' event in run {run_id}")


def test_runs_spread_over_two_celery_workers_gpu_runs_routed_and_models_stay_warm(cluster: Cluster):
    from celery import Celery

    services = cluster.services
    client = services.graphql_client()
    requests = [_request(services.tmp, f"celery-{i}", lines) for i, lines in enumerate(LINES)]
    started = time.monotonic()
    run_ids = []
    for i, request in enumerate(requests):
        tags = {scaleout.QUEUE_TAG: scaleout.GPU_QUEUE} if i < GPU_RUNS else {}
        run_ids.append(client.submit_job_execution(TRANSLATE_JOB, run_config=run_config(request), tags=tags))

    with patched_environ(cluster.extra_env), services.instance() as instance:
        runs = _wait(instance, run_ids, cluster, timeout=90)
        elapsed = time.monotonic() - started
        assert all(r.status == DagsterRunStatus.SUCCESS for r in runs.values()), (
            {k: r.status for k, r in runs.items()}, services.log_tail())

        # Where each run went: our tags, Dagster's run-process pid, and Celery's own record of the task.
        backend = Celery(broker=cluster.redis.url, backend=cluster.env["IMGTRANS_CELERY_BACKEND"])
        try:
            celery_workers = {run_id: backend.AsyncResult(run.tags["dagster-celery/task_id"]).worker
                              for run_id, run in runs.items()}
        finally:
            backend.close()
        placed: dict[str, tuple[str, int]] = {}
        for run_id, run in runs.items():
            worker, pid = run.tags[names.TAG_WORKER], int(run.tags[names.TAG_WORKER_PID])
            assert pid == _dagster_run_pid(instance, run_id)
            assert celery_workers[run_id] == worker
            placed[run_id] = (worker.split("@", 1)[0], pid)
        records = {r.dagster_run.run_id: r for r in instance.get_run_records()}
        queues = [_celery_queues(instance, run_id)["run"] for run_id in run_ids]

    worker_names = [placed[run_id][0] for run_id in run_ids]
    # Routing: runs tagged for the gpu queue were sent to it, and went to the only worker listening on it.
    assert queues == ["gpu"] * GPU_RUNS + ["dagster"] * (len(run_ids) - GPU_RUNS), queues
    assert worker_names[:GPU_RUNS] == [GPU_WORKER] * GPU_RUNS, worker_names
    # Spread: both worker processes executed runs, and no run ran inside a daemon-spawned process.
    assert set(worker_names) == {GPU_WORKER, CPU_WORKER}, worker_names
    assert len({pid for _, pid in placed.values()}) == 2
    assert all(pid not in (p.pid for p in services.processes.values()) for _, pid in placed.values())

    # Warm models: per worker process, in start order, the first run loaded the engines, every later one none.
    by_pid: dict[int, list[str]] = {}
    for run_id in sorted(run_ids, key=lambda r: records[r].start_time or 0):
        by_pid.setdefault(placed[run_id][1], []).append(run_id)
    report = []
    for pid, ids in by_pid.items():
        loaded = [int(runs[r].tags[names.TAG_ENGINES_LOADED]) for r in ids]
        seconds = [float(runs[r].tags[names.TAG_TASK_SECONDS]) for r in ids]
        report.append(f"{placed[ids[0]][0]} pid {pid}: engines loaded {loaded}, task seconds {seconds}")
        assert loaded[0] > 0, report
        assert all(n == 0 for n in loaded[1:]), report
        assert len({runs[r].tags[names.TAG_ENGINES_CACHED] for r in ids}) == 1, report
    assert any(len(ids) > 1 for ids in by_pid.values()), report  # 2 gpu runs share one worker at least
    print(f"\n{len(run_ids)} runs in {elapsed:.1f} s over 2 Celery workers; " + "; ".join(report))

    # The pipeline really ran: every request has its result and a succeeded meta.json with an English text.
    for request in requests:
        folder = services.tmp / "artifacts" / request["request_id"]
        assert (folder / "result.png").is_file()
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["status"] == "succeeded", meta
        translation = json.loads((folder / "translation.json").read_text())
        text = " ".join(pair["translation"] for pair in translation["pairs"])
        assert re.search(r"[A-Za-z]{2,}", text), translation


def _celery_queues(instance: DagsterInstance, run_id: str) -> dict[str, str]:
    """Where dagster-celery sent each task: "run" -> queue (run launcher), step key -> queue (celery executor)."""
    queues: dict[str, str] = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        message = (event.message if event else "") or ""
        if "forwarded to the broker" in message:
            metadata = {key: getattr(value, "value", value) for key, value in event.engine_event_data.metadata.items()}
            queues["run"] = str(metadata["Celery Queue"])
        match = re.search(r'Submitting celery task for step "(\w+)" to queue "(\w+)"', message)
        if match:
            queues[match.group(1)] = match.group(2)
    return queues


def _step_workers(instance: DagsterInstance, run_id: str) -> dict[str, str]:
    """step key -> Celery worker, from dagster-celery's own 'Executing steps … in celery worker' events."""
    workers: dict[str, str] = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        if event is None or "in celery worker" not in (event.message or ""):
            continue
        metadata = {key: getattr(value, "value", value) for key, value in event.engine_event_data.metadata.items()}
        workers[str(metadata["step_keys"])] = str(metadata["Celery worker"]).split("@", 1)[0]
    return workers


def test_step_level_executor_sends_ocr_and_inpaint_to_the_gpu_queue(cluster: Cluster):
    """translate_images_celery_steps: each op a Celery task; OCR and inpaint only on the worker with the gpu queue.

    The run's coordinator is this test process (as it would be a run process under the default run launcher);
    the steps execute in the two workers, which already hold their engines from the test above or load them once.
    """
    from dagster import execute_job
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from imgtrans_pipeline.scaleout.jobs import CELERY_STEPS_JOB

    services = cluster.services
    requests = [_request(services.tmp, f"celery-steps-{i}", lines)
                for i, lines in enumerate([["柔软亲肤"], ["经典款式 夏季新款"]])]
    repository = ReconstructableRepository.for_module("imgtrans_pipeline.scaleout.definitions", "defs",
                                                      working_directory=str(PROJECT))
    with patched_environ(cluster.extra_env), services.instance() as instance:
        result = execute_job(repository.get_reconstructable_job(CELERY_STEPS_JOB), instance=instance,
                             run_config=run_config(*requests))
        assert result.success, services.log_tail()
        placed = _step_workers(instance, result.run_id)
        queues = _celery_queues(instance, result.run_id)
    assert queues == {"download": "dagster", "ocr": "gpu", "translate": "dagster", "inpaint": "gpu",
                      "render": "dagster", "publish": "dagster"}, queues
    assert set(placed) == {"download", "ocr", "translate", "inpaint", "render", "publish"}, placed
    assert placed["ocr"] == placed["inpaint"] == GPU_WORKER, placed
    for request in requests:
        meta = json.loads((services.tmp / "artifacts" / request["request_id"] / "meta.json").read_text())
        assert meta["status"] == "succeeded", meta


def test_celery_instance_config_matches_dagster_yaml_and_reads_broker_from_env(monkeypatch: pytest.MonkeyPatch,
                                                                              setenv):
    """dagster.celery.yaml: same concurrency/sensor/monitoring settings as dagster.yaml, launcher fed from env."""
    import yaml
    from dagster._serdes import ConfigurableClassData

    from imgtrans_pipeline.scaleout.launcher import ImgtransCeleryRunLauncher

    celery_cfg = yaml.safe_load((PROJECT / "dagster.celery.yaml").read_text())
    base_cfg = yaml.safe_load((PROJECT / "dagster.yaml").read_text())
    for key in ("concurrency", "sensors", "run_retries"):
        assert celery_cfg[key] == base_cfg[key], key
    assert celery_cfg["run_monitoring"] == {**base_cfg["run_monitoring"], "max_resume_run_attempts": 0}

    launcher_cfg = celery_cfg["run_launcher"]
    for name in ("IMGTRANS_CELERY_BROKER", "IMGTRANS_CELERY_BACKEND", "IMGTRANS_CELERY_QUEUE"):
        monkeypatch.delenv(name, raising=False)
    setenv(IMGTRANS_REDIS_URL="redis://127.0.0.1:6390/0")

    def launcher() -> ImgtransCeleryRunLauncher:
        data = ConfigurableClassData(launcher_cfg["module"], launcher_cfg["class"],
                                     yaml.safe_dump(launcher_cfg["config"]))
        made = data.rehydrate()
        assert isinstance(made, ImgtransCeleryRunLauncher)
        return made

    made = launcher()  # nothing set but the intake's Redis: broker and backend follow it, never rpc://
    assert (made.broker, made.backend, made.default_queue) == ("redis://127.0.0.1:6390/0",) * 2 + ("dagster",)
    assert made.celery.conf.result_extended and made.celery.conf.result_expires == 7 * 24 * 3600
    setenv(IMGTRANS_CELERY_BROKER="redis://127.0.0.1:6390/1", IMGTRANS_CELERY_QUEUE="gpu")
    made = launcher()
    assert (made.broker, made.backend, made.default_queue) == ("redis://127.0.0.1:6390/1",) * 2 + ("gpu",)
