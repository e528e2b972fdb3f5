"""A real `dagster-daemon` for the intake system tests (Redis and Kafka): start, SIGKILL, restart, and waits that
follow progress.

Every wait follows progress (queue and request states, offsets, run statuses, each unfinished run's last event),
never the clock alone: on a loaded machine a run may take minutes, and a test that fails by timing blocks every
landing. A wait fails when no *new* state has been seen for ``STALL_TIMEOUT`` seconds (a state seen before does
not count: a reading that flips between two values is not progress), or after ``DEADLINE`` seconds whatever
moves, before pytest-timeout would end the test with a bare stack dump instead of the runs and the daemon's log.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.storage.tags import RUN_KEY_TAG

from tests.support.dagster_services import BIN, PROJECT, _spawn, _stop, initialize_instance, pipeline_env, prepare_home
from tests.support.imagegen import text_image

# No new state at all for this long means something is stuck. Well above run monitoring's start timeout plus its
# poll interval in monitored_config(), so a run left STARTING by a killed daemon has time to be failed and retried.
STALL_TIMEOUT = 420.0
# Measured: 14 min for the Redis SIGKILL test at load 25 on 2 cores, still moving. The tests' pytest-timeout is
# 1800 s; a wait ends before it, with the diagnosis.
DEADLINE = float(os.environ.get("TEST_WAIT_DEADLINE", "1500"))
RETRY_NUMBER_TAG = "dagster/retry_number"
WEBHOOK_SECRET = "webhook-secret"

Progress = Callable[[DagsterInstance], Any]


def monitored_config(tmp: Path, max_concurrent_runs: int | None = None, start_timeout: int = 180) -> Path:
    """The project's dagster.yaml, with run monitoring that looks every 5 s (not 2 min) for a run stuck in STARTING
    (failed after ``start_timeout`` s, Dagster's default 180): a daemon SIGKILLed between marking a run STARTING and
    handing it to a run worker leaves it there, and only monitoring + ``run_retries`` get its requests going again.
    Code servers may take 10 min to start (default 3; measured > 3 at load 25 on 2 cores, which failed a run retry).
    ``max_concurrent_runs=0`` lets the sensor create runs that the run queue does not launch."""
    config = yaml.safe_load((PROJECT / "dagster.yaml").read_text(encoding="utf-8"))
    config["run_monitoring"].update(start_timeout_seconds=start_timeout, poll_interval_seconds=5)
    config["code_servers"] = {**config.get("code_servers", {}), "local_startup_timeout": 600}
    if max_concurrent_runs is not None:
        config["concurrency"]["runs"]["max_concurrent_runs"] = max_concurrent_runs
    path = tmp / f"dagster.monitored.{max_concurrent_runs}.{start_timeout}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


class Daemon:
    """`dagster-daemon run` on a temporary instance, startable, SIGKILL-able and restartable."""

    def __init__(self, tmp: Path, redis_url: str, config: Path | None = None, **env: str) -> None:
        self.home = prepare_home(tmp / "dagster_home", config or monitored_config(tmp))
        self.logs = tmp / "logs"
        self.logs.mkdir(exist_ok=True)
        self.env = {**os.environ, "DAGSTER_HOME": str(self.home), **pipeline_env(tmp),
                    "IMGTRANS_REDIS_URL": redis_url, "IMGTRANS_BATCH_SIZE": "2",
                    "IMGTRANS_ALLOW_PRIVATE_URLS": "true", "IMGTRANS_WEBHOOK_SECRET": WEBHOOK_SECRET,
                    # Default 60 s. Measured at load 25 on 2 cores: the code server took 67 s to spawn a run
                    # worker, the daemon's start_run call timed out, the run was failed, retried, failed again,
                    # and its requests ended dead. These tests are about intake, not about a slow machine.
                    "DAGSTER_GRPC_TIMEOUT_SECONDS": "300", **env}
        initialize_instance(self.home)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        name = f"daemon-{len(self.procs)}"
        self.procs.append(_spawn(name, [str(BIN / "dagster-daemon"), "run", "-w", str(PROJECT / "workspace.yaml")],
                                 self.env, self.logs))

    def kill(self) -> None:
        """SIGKILL the daemon process alone, as a crash would (its children are left to fend for themselves)."""
        os.kill(self.procs[-1].pid, signal.SIGKILL)
        self.procs[-1].wait(10)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            _stop(proc, "daemon")

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-chars:]
                         for p in sorted(self.logs.glob("*.log")))

    @contextlib.contextmanager
    def instance(self) -> Iterator[DagsterInstance]:
        with DagsterInstance.from_config(str(self.home)) as instance:
            yield instance


@pytest.fixture
def daemon_factory(tmp_path) -> Iterator[Callable[..., Daemon]]:
    daemons: list[Daemon] = []

    def make(redis_url: str, config: Path | None = None, **env: str) -> Daemon:
        daemon = Daemon(tmp_path, redis_url, config, **env)
        daemons.append(daemon)
        return daemon

    yield make
    for daemon in daemons:
        daemon.stop()


@pytest.fixture
def images(tmp_path) -> list[Path]:
    lines = ["全新升级", "限时特价", "免费送货上门", "天然棉麻面料", "透气舒适"]
    return [text_image([line], width=320, height=120, font_size=40, top=30).save(tmp_path / f"img{i}.png")
            for i, line in enumerate(lines)]


def runs_progress(instance: DagsterInstance) -> tuple:
    """Each run's status and, while it is unfinished, its last event (a step can take minutes on a loaded machine
    with the gpu pool at 1)."""
    runs = []
    for run in instance.get_runs():
        last = None
        if not run.is_finished:
            records = instance.get_records_for_run(run.run_id, limit=1, ascending=False).records
            last = records[0].storage_id if records else None
        runs.append((run.run_id, run.status.value, last))
    return tuple(sorted(runs))


def wait_for(condition: Callable[[DagsterInstance], Any], what: str, daemon: Daemon, progress: Progress,
             stall_timeout: float = STALL_TIMEOUT) -> Any:
    """Poll until ``condition(instance)`` is truthy and return it; fail after ``stall_timeout`` s without a state
    of ``progress`` not seen before, or after ``DEADLINE`` s."""
    with daemon.instance() as instance:
        seen: set[Any] = set()
        started = moved = time.monotonic()
        while not (value := condition(instance)):
            now = progress(instance)
            if now not in seen:
                seen.add(now)
                moved = time.monotonic()
            waited = time.monotonic()
            if waited - moved > stall_timeout or waited - started > DEADLINE:
                why = (f"no new state for {stall_timeout:.0f} s" if waited - moved > stall_timeout
                       else f"still not done after {DEADLINE:.0f} s ({len(seen)} states seen)")
                pytest.fail(f"{what}: {why}\nlast state: {now}\n{runs_table(instance.get_runs())}\n"
                            f"{daemon.log_tail()}")
            time.sleep(0.5)
        return value


def kill_repeatedly(daemon: Daemon, progress: Progress, rng: random.Random, times: int = 3,
                    max_delay: float = 3.0) -> None:
    """Start the daemon and SIGKILL it ``times`` times, each once it has moved something, plus a seeded delay: the
    kills land inside reading, submitting or launching whatever the machine's speed. Leaves it running."""
    for _ in range(times):
        with daemon.instance() as instance:
            before = progress(instance)
        daemon.start()
        wait_for(lambda inst, before=before: progress(inst) != before, "the daemon made no progress", daemon,
                 progress)
        time.sleep(rng.uniform(0.0, max_delay))
        daemon.kill()
    daemon.start()


def carried_requests(run: Any) -> list[str]:
    return [request["request_id"] for request in run.run_config["ops"]["download"]["config"]["requests"]]


def requests_per_run(runs: list[Any]) -> Counter:
    """How many runs carried each request."""
    return Counter(rid for run in runs for rid in carried_requests(run))


def runs_table(runs: list[Any]) -> str:
    """One line per run, for failure messages: what tells a run retry from a second submission."""
    return "\n".join(
        f"{run.run_id[:8]} {run.status.value:<9} key={run.tags.get(RUN_KEY_TAG)} "
        f"root={(run.root_run_id or '-')[:8]} parent={(run.parent_run_id or '-')[:8]} "
        f"retry={run.tags.get(RETRY_NUMBER_TAG, '-')} requests={carried_requests(run)}"
        for run in sorted(runs, key=lambda r: r.tags.get(RUN_KEY_TAG, "")))


def assert_exactly_once(results: list[dict[str, Any]], runs: list[Any], ids: list[str]) -> None:
    """Each request delivered once (one final result message) and submitted once: the runs carrying it are one
    submission (one run key, one root run) and that run's Dagster retries (runs with a parent, a retry number and
    the run key of their root); exactly one of them succeeded.

    What may legitimately happen: a daemon killed after marking a run STARTING but before a run worker took it
    leaves the run STARTING; run monitoring fails it and ``run_retries`` launches a retry carrying the same
    requests. That is one submission retried, not a duplicate."""
    table = runs_table(runs)
    assert Counter(r["request_id"] for r in results) == Counter(ids), (results, table)
    assert {r["status"] for r in results} == {"succeeded"}, (results, table)
    by_id = {run.run_id: run for run in runs}
    keys: dict[str, set[str]] = defaultdict(set)
    roots: dict[str, set[str]] = defaultdict(set)
    for run in runs:
        root = run.root_run_id or run.run_id
        if run.parent_run_id:
            assert run.tags.get(RETRY_NUMBER_TAG) and root in by_id, table
            assert run.tags.get(RUN_KEY_TAG) == by_id[root].tags.get(RUN_KEY_TAG), table
            assert by_id[run.parent_run_id].status == DagsterRunStatus.FAILURE, table
        for rid in carried_requests(run):
            keys[rid].add(run.tags.get(RUN_KEY_TAG, ""))
            roots[rid].add(root)
    assert sorted(keys) == sorted(ids), table
    assert all(len(v) == 1 for v in keys.values()), (dict(keys), table)  # one run key each
    assert all(len(v) == 1 for v in roots.values()), (dict(roots), table)  # one submission each
    succeeded = Counter(rid for run in runs if run.status == DagsterRunStatus.SUCCESS for rid in carried_requests(run))
    assert succeeded == Counter(ids), table
