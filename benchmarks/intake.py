"""The ``intake`` mode: the production path, end to end, on real processes.

``redis-server`` (ours, on a free port, no persistence) ← requests are ``LPUSH``ed by this process →
``dagster-daemon`` (the ``redis_intake`` sensor claims them in batches of ``IMGTRANS_BATCH_SIZE`` and creates runs;
the run launcher starts one ``dagster api execute_run`` worker process per run) → the ``publish`` op writes
``meta.json`` and ``LPUSH``es a message to ``imgtrans:results`` → this process ``BRPOP``s it and stamps the time.

Latency of a request = its result's arrival − its push. The daemon's process tree (daemon, code server, run
workers) is polled for peak RSS per process while the work runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.inproc import read_meta, request_dict
from benchmarks.procmon import TreeMonitor, system_busy_s
from benchmarks.workload import WorkloadImage
from tests.support.dagster_services import _stop, free_port, patched_environ  # the tests' helpers, reused

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS_KEY = "imgtrans:results"
QUEUE_KEY = "imgtrans:requests"


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class ResultCollector:
    """A thread that BRPOPs the results list and stamps each message's arrival time."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.arrived: dict[str, tuple[float, dict[str, Any]]] = {}
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="results", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                item = self.client.brpop([RESULTS_KEY], timeout=1)
            except Exception:  # redis going away at shutdown
                if self._stop.is_set():
                    return
                time.sleep(0.2)
                continue
            if item is None:
                continue
            now = time.perf_counter()
            message = json.loads(item[1])
            with self._cond:
                self.arrived.setdefault(message.get("request_id", "?"), (now, message))
                self._cond.notify_all()

    def wait_for(self, ids: set[str], timeout: float, on_tick: Any = None) -> bool:
        deadline = time.perf_counter() + timeout
        with self._cond:
            while not ids.issubset(self.arrived):
                left = deadline - time.perf_counter()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 10.0))
                if on_tick is not None:
                    on_tick(len(ids & set(self.arrived)))
        return True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _runs_summary(home: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run counts, statuses and timings from the daemon's instance (opened read-only here, after the daemon)."""
    try:
        from dagster import DagsterInstance

        with patched_environ(env), DagsterInstance.from_config(str(home)) as instance:
            records = instance.get_run_records()
            statuses: dict[str, int] = {}
            durations, queue_delays = [], []
            for rec in records:
                statuses[rec.dagster_run.status.value] = statuses.get(rec.dagster_run.status.value, 0) + 1
                if rec.start_time and rec.end_time:
                    durations.append(rec.end_time - rec.start_time)
                if rec.start_time and rec.create_timestamp:
                    queue_delays.append(rec.start_time - rec.create_timestamp.timestamp())
            return {"runs": len(records), "statuses": statuses, "run_durations_s": durations,
                    "create_to_start_s": queue_delays}
    except Exception as error:  # the numbers above are extras; the benchmark stands without them
        return {"error": f"{type(error).__name__}: {error}"}


def run_intake(images: list[WorkloadImage], singles: list[WorkloadImage], warm: WorkloadImage, mode_dir: Path,
               batch_size: int, *, per_image_timeout: float = 30.0, instance_yaml: Path | None = None,
               workspace: Path | None = None, workers: int = 0) -> dict[str, Any]:
    """Run the intake mode; returns the same record layout as the in-process children.

    ``workers`` > 0: the production setup, ``imgtrans serve --run-workers N`` (code server, daemon and N warm
    Celery run workers on ``dagster.workers.yaml``); 0: ``dagster-daemon`` alone on ``dagster.yaml`` (one new
    process per run).
    """
    import redis

    mode_dir.mkdir(parents=True, exist_ok=True)
    artifacts = mode_dir / "artifacts"
    home = mode_dir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    default_yaml = PROJECT / ("dagster.workers.yaml" if workers else "dagster.yaml")
    instance_yaml = instance_yaml or default_yaml
    shutil.copyfile(instance_yaml, home / "dagster.yaml")
    port = free_port()
    redis_proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=mode_dir, stdout=(mode_dir / "redis.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    env = {
        "IMGTRANS_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "DAGSTER_HOME": str(home),
        "IMGTRANS_ARTIFACTS": str(artifacts),
        "IMGTRANS_TRANSLATION_CACHE": str(mode_dir / "translation-cache.sqlite"),
        "IMGTRANS_BATCH_SIZE": str(batch_size),
    }
    if workers:
        env["IMGTRANS_CELERY_BROKER"] = f"redis://127.0.0.1:{port}/1"  # the broker's keys apart from the intake's
    daemon: subprocess.Popen[bytes] | None = None
    collector: ResultCollector | None = None
    monitor: TreeMonitor | None = None
    variant = "+".join(p.stem.split(".", 1)[-1] for p in (instance_yaml, workspace)
                       if p is not None and p != default_yaml)
    if workers:
        variant = "+".join(filter(None, [f"{workers}w", variant]))
    result: dict[str, Any] = {"mode": "intake", "batch_size": batch_size, "images": len(images), "env": env,
                              "instance_yaml": str(instance_yaml), "run_workers": workers,
                              "workspace": str(workspace or PROJECT / "workspace.yaml"), "variant": variant}
    try:
        client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            time.sleep(0.1)
        # Open the instance once before the daemon and its code server do (concurrent first opens of a fresh
        # SQLite home can stamp the schema twice).
        _runs_summary(home, env)
        if workers:
            command = [str(BIN / "imgtrans"), "serve", "--no-webserver", "--run-workers", str(workers),
                       "--code-port", str(free_port()), "--log-dir", str(mode_dir / "serve-logs")]
        else:
            command = [str(BIN / "dagster-daemon"), "run", "-w",
                       str((workspace or PROJECT / "workspace.yaml").resolve())]
        daemon = subprocess.Popen(command, cwd=PROJECT, env={**os.environ, **env},
                                  stdout=(mode_dir / "daemon.log").open("wb"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        monitor = TreeMonitor(daemon.pid).start()
        collector = ResultCollector(redis.Redis(host="127.0.0.1", port=port, decode_responses=True))

        def push(request_id: str, image: WorkloadImage) -> float:
            client.lpush(QUEUE_KEY, json.dumps(request_dict(request_id, image)))
            return time.perf_counter()

        def alive() -> None:
            if daemon is not None and daemon.poll() is not None:
                raise RuntimeError(f"{'imgtrans serve' if workers else 'dagster-daemon'} exited with "
                                   f"{daemon.returncode}; see {mode_dir / 'daemon.log'}")

        # Warm-up: daemon start, first sensor tick, first run worker (cold). Timed, not part of the numbers.
        t0 = time.perf_counter()
        push("intake-warmup", warm)
        if not collector.wait_for({"intake-warmup"}, 240, on_tick=lambda n: alive()):
            raise RuntimeError(f"no result for the warm-up request after 240 s; see {mode_dir / 'daemon.log'}")
        result["warmup_s"] = time.perf_counter() - t0
        _progress(f"intake: daemon up, first result after {result['warmup_s']:.1f}s")

        single_records = []
        # Single requests arrive at independent moments on an idle system: a seeded random pause before each one,
        # so the arrivals fall at random phases of the sensor loop (pushing each one the instant the previous result
        # arrives would land every one at the same phase, right after a tick).
        pauses = random.Random(len(singles)).sample([2.0 + 0.5 * i for i in range(11)], k=min(len(singles), 11))
        for index, image in enumerate(singles):
            rid = f"intake-single-{index}"
            time.sleep(pauses[index % len(pauses)])
            t_push = push(rid, image)
            if not collector.wait_for({rid}, 180, on_tick=lambda n: alive()):
                raise RuntimeError(f"no result for {rid} after 180 s")
            single_records.append(_record(artifacts, rid, image, t_push, collector.arrived[rid]))
        result["singles"] = single_records
        if single_records:
            _progress("intake: single-request latencies " + ", ".join(f"{r['latency_s']:.1f}s" for r in single_records))

        monitor.reset()
        since = time.monotonic()
        busy0, load0 = system_busy_s(), os.getloadavg()[0]
        ids = [(f"intake-{img.name}", img) for img in images]
        pushed: dict[str, float] = {}
        t0 = time.perf_counter()
        with client.pipeline(transaction=False) as pipe:
            for rid, img in ids:
                pipe.lpush(QUEUE_KEY, json.dumps(request_dict(rid, img)))
            pipe.execute()
        t_pushed = time.perf_counter()
        for rid, _ in ids:
            pushed[rid] = t0
        last = [time.perf_counter()]

        def tick(n: int) -> None:
            alive()
            if time.perf_counter() - last[0] > 15:
                last[0] = time.perf_counter()
                elapsed = last[0] - t0
                _progress(f"intake: {n}/{len(ids)} in {elapsed:.0f}s ({n / elapsed * 60:.1f} img/min)")

        complete = collector.wait_for({rid for rid, _ in ids}, 120 + per_image_timeout * len(ids), on_tick=tick)
        wall = max((collector.arrived[rid][0] for rid, _ in ids if rid in collector.arrived), default=t0) - t0
        result.update(wall_s=wall, push_s=t_pushed - t0, complete=complete,
                      requests=[_record(artifacts, rid, img, pushed[rid], collector.arrived.get(rid))
                                for rid, img in ids])
        _progress(f"intake: {sum(r['status'] != 'missing' for r in result['requests'])}/{len(ids)} in {wall:.0f}s")
        monitor.stop()
        busy = system_busy_s() - busy0
        result["processes"] = monitor.summary(since=since)
        own = float(result["processes"]["cpu_s"])
        result["cpu"] = {"own_cpu_s": own, "machine_busy_s": busy, "foreign_cpu_s": max(0.0, busy - own),
                         "loadavg_1m_before": load0, "loadavg_1m_after": os.getloadavg()[0]}
        result["peak_rss_mib"] = {role: info["peak_rss_mib"] for role, info in result["processes"]["roles"].items()}
        result["status_hashes"] = _status_states(client, [rid for rid, _ in ids])
    finally:
        if collector is not None:
            collector.stop()
        if monitor is not None:
            monitor.stop()
        if daemon is not None:
            _stop(daemon, "imgtrans serve" if workers else "dagster-daemon", timeout=90)
        _stop(redis_proc, "redis-server", timeout=5)
    result["dagster"] = _runs_summary(home, env)
    return result


def _status_states(client: Any, ids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for rid in ids:
        state = client.hget(f"imgtrans:request:{rid}", "state") or "none"
        counts[state] = counts.get(state, 0) + 1
    return counts


def _record(artifacts: Path, rid: str, image: WorkloadImage, pushed: float,
            arrived: tuple[float, dict[str, Any]] | None) -> dict[str, Any]:
    meta = read_meta(artifacts, rid) or {}
    done = arrived[0] if arrived else None
    return {"request_id": rid, "kind": image.kind, "submitted": pushed, "done": done,
            "latency_s": (done - pushed) if done is not None else None, "service_s": None,
            "status": (arrived[1].get("status") if arrived else None) or meta.get("status", "missing"),
            "timings_s": meta.get("timings_s", {}), "reused_from": meta.get("reused_from"),
            "error": meta.get("error") or (arrived[1].get("error") if arrived else None)}
