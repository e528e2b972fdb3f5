"""The Dagster instance as operated: PostgreSQL storage, the ``gpu`` pool across concurrent runs, runtime limits.

Everything runs for real: a fresh database on the local PostgreSQL server, ``dagster-webserver`` and
``dagster-daemon`` subprocesses launching run workers, the ``dagster`` CLI. Assertions read what the instance
stored (runs, event logs, asset materializations, concurrency slots).
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, Definitions

from imgtrans_pipeline.names import TRANSLATE_JOB
from imgtrans_pipeline.orchestration.definitions import build_resources
from imgtrans_pipeline.orchestration.jobs import translate_images
from tests.support.dagster_services import (
    PROJECT,
    DagsterServices,
    PostgresDatabase,
    dagster_services,
    pipeline_env,
    pipeline_settings,
    postgres_database,
    run_config,
)
from tests.support.imagegen import text_image

GPU_STEPS = ("ocr", "inpaint")
ALL_STEPS = ("download", "ocr", "translate", "inpaint", "render", "publish")
ASSETS = ("source_image", "ocr_result", "translation", "inpainted_image", "rendered_image")
TERMINAL = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def _request(tmp: Path, request_id: str, lines: list[str]) -> dict[str, Any]:
    image = text_image(lines, width=480, height=200, font_size=40)
    path = image.save(tmp / f"{request_id}.png")
    return {"request_id": request_id, "image_url": str(path), "source_lang": "zh", "target_lang": "en"}


# --- PostgreSQL storage -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_database() -> Iterator[PostgresDatabase]:
    with postgres_database() as database:
        yield database


@pytest.fixture(scope="module")
def pg_instance(pg_database: PostgresDatabase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterInstance]:
    """An instance loaded from dagster.postgres.yaml, as DAGSTER_HOME/dagster.yaml, pointed at the fresh database."""
    home = tmp_path_factory.mktemp("pg_home")
    shutil.copyfile(PROJECT / "dagster.postgres.yaml", home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in pg_database.env().items():
            patch.setenv(name, value)
        with DagsterInstance.from_config(str(home)) as instance:
            yield instance


@pytest.fixture(scope="module")
def pg_run(pg_instance: DagsterInstance, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The real job, in process, on a generated Chinese product image, stored in PostgreSQL."""
    tmp = tmp_path_factory.mktemp("pg_run")
    env = pipeline_env(tmp)
    settings = pipeline_settings(Path(env["IMGTRANS_ARTIFACTS"]), translate__cache=env["IMGTRANS_TRANSLATION_CACHE"],
                                 fetch__allow_private_urls=False)
    job = Definitions(jobs=[translate_images], resources=build_resources(settings)).resolve_job_def(TRANSLATE_JOB)
    config = run_config(_request(tmp, "pg-1", ["限时特价 买一送一"]))
    return job.execute_in_process(run_config=config, instance=pg_instance, raise_on_error=False)


def test_postgres_instance_uses_postgres_storage(pg_instance: DagsterInstance, pg_database: PostgresDatabase):
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    assert isinstance(pg_instance.run_storage, PostgresRunStorage)
    assert isinstance(pg_instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(pg_instance.schedule_storage, PostgresScheduleStorage)
    # psycopg2, not psycopg 3 (which SQLAlchemy 2.1 picks for a bare postgresql:// URL and which breaks runs).
    assert pg_instance.run_storage.postgres_url.startswith("postgresql+psycopg2://")
    assert f"/{pg_database.name}" in pg_instance.run_storage.postgres_url
    assert pg_instance.event_log_storage.supports_global_concurrency_limits


def test_run_events_and_materializations_are_stored_in_postgres(pg_run: Any, pg_instance: DagsterInstance,
                                                                 pg_database: PostgresDatabase):
    assert pg_run.success, [e.message for e in pg_run.all_events if e.is_failure]
    run_id = pg_run.run_id
    run = pg_instance.get_run_by_id(run_id)
    assert run is not None and run.status == DagsterRunStatus.SUCCESS and run.job_name == TRANSLATE_JOB

    succeeded = {e.dagster_event.step_key for e in pg_instance.all_logs(run_id, of_type=DagsterEventType.STEP_SUCCESS)}
    assert succeeded == set(ALL_STEPS)
    for asset in ASSETS:
        records = pg_instance.fetch_materializations(AssetKey(["imgtrans", asset]), limit=10).records
        assert [r.run_id for r in records] == [run_id], asset
        metadata = records[0].asset_materialization.metadata
        assert metadata["request_id"].value == "pg-1"

    # The in-process executor went through the instance's gpu pool: its first claim created the pool's slots.
    info = pg_instance.event_log_storage.get_concurrency_info("gpu")
    assert info.slot_count == 1 and not info.claimed_slots, info

    # The same facts, straight from the database with psycopg2: nothing lives in a local SQLite file.
    with pg_database.connect() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT status, pipeline_name FROM runs WHERE run_id = %s", (run_id,))
        assert cursor.fetchall() == [("SUCCESS", TRANSLATE_JOB)]
        cursor.execute("SELECT dagster_event_type, count(*) FROM event_logs WHERE run_id = %s "
                       "GROUP BY dagster_event_type", (run_id,))
        counts = dict(cursor.fetchall())
        assert counts["ASSET_MATERIALIZATION"] == len(ASSETS)
        assert counts["STEP_SUCCESS"] == len(ALL_STEPS)
        assert counts[DagsterEventType.RUN_SUCCESS.value] == 1  # stored under its legacy name PIPELINE_SUCCESS
        cursor.execute("SELECT asset_key FROM asset_keys ORDER BY asset_key")
        keys = [row[0] for row in cursor.fetchall()]
        assert keys == sorted(f'["imgtrans", "{a}"]' for a in ASSETS)
    conn.close()


@pytest.mark.slow
def test_daemon_launches_runs_on_postgres(pg_database: PostgresDatabase, tmp_path_factory: pytest.TempPathFactory):
    """Webserver + daemon + run worker, all on the Postgres instance: the path where psycopg 3 broke launching."""
    tmp = tmp_path_factory.mktemp("pg_daemon")
    request = _request(tmp, "pg-daemon-1", ["天然棉麻面料"])
    with dagster_services(tmp, config=PROJECT / "dagster.postgres.yaml", extra_env=pg_database.env()) as services:
        run_id = services.graphql_client().submit_job_execution(TRANSLATE_JOB, run_config=run_config(request))
        status = _wait_for_runs(services, [run_id], timeout=120)[run_id]
        assert status == DagsterRunStatus.SUCCESS, services.log_tail()
    with pg_database.connect() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))
        assert cursor.fetchall() == [("SUCCESS",)]
        cursor.execute("SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = "
                       "'ASSET_MATERIALIZATION'", (run_id,))
        assert cursor.fetchone() == (len(ASSETS),)
    conn.close()
    assert (tmp / "artifacts" / "pg-daemon-1" / "result.png").is_file()


# --- the gpu pool across concurrent runs (daemon, queued run coordinator, one run worker per run) ---------------


def _wait_for_runs(services: DagsterServices, run_ids: list[str], timeout: float) -> dict[str, DagsterRunStatus]:
    deadline = time.monotonic() + timeout
    with services.instance() as instance:
        while True:
            statuses = {run_id: instance.get_run_by_id(run_id).status for run_id in run_ids}  # type: ignore[union-attr]
            if all(s in TERMINAL for s in statuses.values()) or time.monotonic() > deadline:
                return statuses
            services.check_alive()
            time.sleep(0.5)


def _step_windows(instance: DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    """step key -> (STEP_START, STEP_SUCCESS) timestamps, from the run's stored event log."""
    starts: dict[str, float] = {}
    windows: dict[str, tuple[float, float]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        elif event.event_type == DagsterEventType.STEP_SUCCESS:
            windows[event.step_key] = (starts[event.step_key], entry.timestamp)
    return windows


def _blocked_steps(instance: DagsterInstance, run_id: str) -> set[str]:
    """Steps for which the run worker logged 'Step blocked by limit for pool gpu'."""
    return {
        entry.dagster_event.step_key
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)
        if entry.dagster_event and entry.dagster_event.step_key
        and "blocked by limit for pool gpu" in (entry.dagster_event.message or "")
    }


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterServices]:
    """Webserver + daemon on a SQLite instance configured by the project's own dagster.yaml."""
    with dagster_services(tmp_path_factory.mktemp("pool")) as running:
        yield running


@pytest.mark.slow
def test_gpu_pool_is_never_exceeded_by_concurrent_runs(services: DagsterServices):
    """Two runs at once: IO steps proceed, OCR/inpaint steps of both runs never overlap (pool gpu, limit 1).

    The pool is first set to 0 at run time (an operator pausing GPU work), so both runs demonstrably reach their
    GPU step and wait on the same pool; then it is set to 1 and the two runs must take turns.
    """
    services.cli("instance", "concurrency", "set", "gpu", "0")
    client = services.graphql_client()
    # Different images: the stages skip work for an image hash they have already translated.
    texts = {1: ["限时特价 买一送一", "天然棉麻面料"], 2: ["新品上市 全场包邮", "透气舒适"]}
    requests = [_request(services.tmp, f"pool-{i}", lines) for i, lines in texts.items()]
    run_ids = [client.submit_job_execution(TRANSLATE_JOB, run_config=run_config(r)) for r in requests]

    with services.instance() as instance:
        deadline = time.monotonic() + 90
        while not all("ocr" in _blocked_steps(instance, r) for r in run_ids):
            assert time.monotonic() < deadline, f"runs never blocked on the gpu pool\n{services.log_tail()}"
            services.check_alive()
            time.sleep(0.5)
        # Both runs are alive and waiting for the GPU, and their IO step (download) has already finished.
        for run_id in run_ids:
            windows = _step_windows(instance, run_id)
            assert "download" in windows and "ocr" not in windows, windows
            assert instance.get_run_by_id(run_id).status == DagsterRunStatus.STARTED  # type: ignore[union-attr]
        released_at = time.time()
        services.cli("instance", "concurrency", "set", "gpu", "1")

        statuses = _wait_for_runs(services, run_ids, timeout=120)
        assert all(s == DagsterRunStatus.SUCCESS for s in statuses.values()), (statuses, services.log_tail())
        windows = {run_id: _step_windows(instance, run_id) for run_id in run_ids}
        gpu = sorted((windows[r][step], r, step) for r in run_ids for step in GPU_STEPS)
        assert len(gpu) == 4
        for (first, run_a, step_a), (second, run_b, step_b) in itertools.pairwise(gpu):
            assert first[1] <= second[0], f"{run_a}/{step_a} {first} overlaps {run_b}/{step_b} {second}"
        assert all(window[0][0] >= released_at for window in gpu), "a gpu step ran while the pool limit was 0"
        # The two runs really were concurrent: each one's run worker was alive while the other used the GPU.
        spans = {r: (min(w[0] for w in windows[r].values()), max(w[1] for w in windows[r].values())) for r in run_ids}
        (a_start, a_end), (b_start, b_end) = spans.values()
        assert a_start < b_end and b_start < a_end, spans
        info = instance.event_log_storage.get_concurrency_info("gpu")
        assert info.slot_count == 1 and not info.claimed_slots, info
    for request in requests:
        assert (services.tmp / "artifacts" / request["request_id"] / "result.png").is_file()


@pytest.mark.slow
def test_pool_limit_changes_at_run_time_without_restart(services: DagsterServices):
    """`dagster instance concurrency set gpu 2` while webserver and daemon keep running."""
    services.cli("instance", "concurrency", "set", "gpu", "2")
    with services.instance() as instance:
        assert instance.event_log_storage.get_concurrency_info("gpu").slot_count == 2
    shown = services.cli("instance", "concurrency", "get", "gpu").stdout
    assert '"gpu": 0 / 2 slots occupied' in shown
    services.check_alive()
    services.cli("instance", "concurrency", "set", "gpu", "1")
    with services.instance() as instance:
        assert instance.event_log_storage.get_concurrency_info("gpu").slot_count == 1


def test_project_instance_config_declares_the_gpu_pool_default(tmp_path: Path):
    """dagster.yaml's pool default applies to a fresh instance: an un-set pool reports limit 1."""
    from tests.support.dagster_services import prepare_home

    home = prepare_home(tmp_path / "home")
    with DagsterInstance.from_config(str(home)) as instance:
        info = instance.event_log_storage.get_concurrency_info("gpu")
        assert info.limit == 1 and info.using_default_limit
        assert instance.get_settings("concurrency")["pools"]["granularity"] == "op"
    assert os.environ.get("DAGSTER_HOME") != str(home)  # the test never touched the caller's instance
