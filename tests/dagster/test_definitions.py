"""The code location loads: what workspace.yaml names is valid, complete, and configured from the settings."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, Definitions
from pydantic import ValidationError

from imgtrans_pipeline import names
from imgtrans_pipeline.core.settings import Settings, get_settings

PROJECT = Path(__file__).resolve().parents[2]


def _workspace_definitions() -> Definitions:
    entry = yaml.safe_load((PROJECT / "workspace.yaml").read_text())["load_from"][0]["python_module"]
    return getattr(importlib.import_module(entry["module_name"]), entry["attribute"])


def test_workspace_definitions_load_and_validate():
    defs = _workspace_definitions()
    Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {job.name for job in repo.get_all_jobs()} >= {names.TRANSLATE_JOB, names.BACKFILL_JOB}
    assert [op.name for op in repo.get_job(names.TRANSLATE_JOB).graph.node_defs] == list(names.STAGES)
    assets = {key for asset in repo.asset_graph.asset_nodes for key in [asset.key]}
    assert assets == {AssetKey([names.ASSET_PREFIX, name]) for name in names.ASSET_OF_STAGE.values()}
    checks = {key.name for key in repo.asset_graph.asset_check_keys}
    assert checks == {names.CHECK_ONE_TRANSLATION_PER_BLOCK, names.CHECK_NO_SOURCE_TEXT_LEFT,
                      names.CHECK_OUTPUT_DECODES, names.CHECK_QUALITY, names.CHECK_INSPECTION}
    assert {sensor.name for sensor in repo.sensor_defs} == {"redis_intake", "redis_dead_letters", "kafka_intake",
                                                           "kafka_dead_letters"}
    assert [schedule.name for schedule in repo.schedule_defs] == ["translate_catalogue"]
    # GPU-bound steps are bounded by the Dagster pool.
    job = repo.get_job(names.TRANSLATE_JOB)
    pools = {node.name: node.definition.pool for node in job.graph.nodes}
    assert {name for name, pool in pools.items() if pool == names.GPU_POOL} == set(names.GPU_STAGES)


def test_resources_take_their_values_from_the_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGTRANS_ARTIFACTS", str(tmp_path / "store"))
    monkeypatch.setenv("IMGTRANS_OCR_ENGINE", "tesseract")
    monkeypatch.setenv("IMGTRANS_ITEM_THREADS", "3")
    monkeypatch.setenv("IMGTRANS_MAX_IN_FLIGHT", "7")
    from imgtrans_pipeline.orchestration.definitions import build_resources

    resources = build_resources()
    assert get_settings().artifacts == str(tmp_path / "store")
    assert resources["artifacts"].url == str(tmp_path / "store")  # type: ignore[attr-defined]
    assert resources["ocr_engine"].engine == "tesseract"  # type: ignore[attr-defined]
    assert resources["runtime"].item_threads == 3  # type: ignore[attr-defined]
    assert resources["intake"].max_in_flight == 7  # type: ignore[attr-defined]


def test_a_bad_variable_is_named_at_start_up(monkeypatch):
    monkeypatch.setenv("IMGTRANS_QUEUE_KIND", "kafka")
    with pytest.raises(ValidationError, match="IMGTRANS_QUEUE_KIND"):
        Settings()
