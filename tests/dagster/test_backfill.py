"""Scheduled backfills over stored image hashes: what the schedule asks for, and the asset runs it launches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dagster import DagsterInstance, Definitions, SkipReason, build_schedule_context, instance_for_test

import imgtrans_pipeline.pipeline.dedupe as dedupe_module
import imgtrans_pipeline.pipeline.stages as stages_module
from imgtrans_pipeline.catalogue import missing_translations
from imgtrans_pipeline.cli import main as imgtrans
from imgtrans_pipeline.names import BACKFILL_JOB, TRANSLATE_JOB, partition_key
from imgtrans_pipeline.orchestration.assets import TRANSLATION_ASSETS, translate_stored_images
from imgtrans_pipeline.orchestration.definitions import build_resources
from imgtrans_pipeline.orchestration.jobs import translate_images
from imgtrans_pipeline.orchestration.recording import TRANSLATIONS
from imgtrans_pipeline.orchestration.schedules import translate_catalogue_schedule
from imgtrans_pipeline.storage import create_artifact_store
from tests.support.dagster_services import pipeline_settings, run_config
from tests.support.imagegen import text_image

PROJECT = Path(__file__).resolve().parents[2]


def _defs(tmp: Path) -> Definitions:
    settings = pipeline_settings(tmp / "artifacts", fetch__allow_private_urls=False, render__fonts_dir=None)
    return Definitions(assets=TRANSLATION_ASSETS, jobs=[translate_images, translate_stored_images],
                       schedules=[translate_catalogue_schedule], resources=build_resources(settings))


@pytest.fixture
def catalogue(tmp_path, monkeypatch) -> tuple[Path, DagsterInstance, list[str]]:
    """Two images translated zh -> en by an *older* pipeline version (0), through the intake job."""
    lines = (["全新升级"], ["免费送货上门"])
    requests = []
    for i, text in enumerate(lines):
        path = text_image(text, width=360, height=140, font_size=40, top=40).save(tmp_path / f"p{i}.png")
        requests.append({"request_id": f"old-{i}", "image_url": str(path), "source_lang": "zh", "target_lang": "en"})
    with instance_for_test() as instance:
        for module in (stages_module, dedupe_module):
            monkeypatch.setattr(module, "PIPELINE_VERSION", "0")
        job = _defs(tmp_path).resolve_job_def(TRANSLATE_JOB)
        result = job.execute_in_process(run_config=run_config(*requests),
                                        instance=instance)
        assert result.success
        for module in (stages_module, dedupe_module):
            monkeypatch.setattr(module, "PIPELINE_VERSION", "1")
        hashes = [json.loads((tmp_path / "artifacts" / f"old-{i}" / "meta.json").read_text())["content_hash"]
                  for i in range(2)]
        yield tmp_path, instance, hashes


def test_catalogue_knows_what_is_missing(catalogue):
    tmp, _, hashes = catalogue
    store = create_artifact_store(str(tmp / "artifacts"))
    missing = missing_translations(store, ["en", "ko", "zh"], pipeline_version="1")
    found = sorted((m.content_hash, m.source_lang, m.target_lang, m.reason) for m in missing)
    assert found == sorted([(h, "zh", "en", "older pipeline version") for h in hashes]
                           + [(h, "zh", "ko", "new target") for h in hashes])  # never zh -> zh
    assert not missing_translations(store, ["en"], pipeline_version="0")


def test_schedule_requests_one_range_run_over_the_missing_partitions(catalogue, setenv):
    tmp, instance, hashes = catalogue
    setenv(IMGTRANS_BACKFILL_TARGETS="en")
    defs = _defs(tmp)
    context = build_schedule_context(instance=instance, resources={"artifacts": defs.resources["artifacts"]})
    requests = translate_catalogue_schedule(context)
    keys = sorted(partition_key(h, "zh", "en") for h in hashes)
    assert len(requests) == 1
    tags = requests[0].tags
    assert sorted([tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]]) == keys
    assert tags["imgtrans/translations"] == "2"
    assert set(keys) <= set(instance.get_dynamic_partitions(TRANSLATIONS.name))


def test_backfill_run_retranslates_stored_images_and_then_nothing_is_missing(catalogue, setenv):
    tmp, instance, hashes = catalogue
    setenv(IMGTRANS_BACKFILL_TARGETS="en")
    defs = _defs(tmp)
    context = build_schedule_context(instance=instance, resources={"artifacts": defs.resources["artifacts"]})
    [request] = translate_catalogue_schedule(context)
    job = defs.resolve_job_def(BACKFILL_JOB)
    result = job.execute_in_process(instance=instance, tags=request.tags)
    assert result.success
    materialized = {m.partition for m in result.get_asset_materialization_events()
                    if m.asset_key.to_user_string() == "imgtrans/rendered_image"}
    assert materialized == {partition_key(h, "zh", "en") for h in hashes}  # one run, both partitions
    assert all(c.passed for c in result.get_asset_check_evaluations())
    for content_hash in hashes:
        key = partition_key(content_hash, "zh", "en")
        meta = json.loads((tmp / "artifacts" / key / "meta.json").read_text())
        assert meta["status"] == "succeeded" and meta["pipeline_version"] == "1"
        assert meta["content_hash"] == content_hash
        assert (tmp / "artifacts" / key / "result.png").exists()
    again = translate_catalogue_schedule(context)
    assert isinstance(again, SkipReason) and "every stored image" in again.skip_message
    # Each asset keeps one slim item per partition (no images: those are in the artifact store), which the next
    # asset of the chain loaded back (the run succeeded) with its images read from the store.
    stored = list((Path(instance.storage_directory()) / "translations").rglob("*.pkl"))
    assert len(stored) == 2 * 5 and max(p.stat().st_size for p in stored) < 20_000  # 5 assets x 2 partitions


def test_backfill_cli_runs_the_same_plan(catalogue, monkeypatch, setenv, capsys):
    tmp, instance, _ = catalogue
    setenv(IMGTRANS_ARTIFACTS=str(tmp / "artifacts"),
           IMGTRANS_TRANSLATION_CACHE=str(tmp / "artifacts" / "cache.sqlite"),
           IMGTRANS_TRANSLATION_MEMORY=str(tmp / "artifacts" / "memory.sqlite"))
    monkeypatch.setattr("imgtrans_pipeline.cli.dagster_instance", lambda: instance)
    assert imgtrans(["backfill", "--to", "en", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 translation(s) missing" in out and "older pipeline version" in out
    assert imgtrans(["backfill", "--to", "en"]) == 0
    assert "backfilled 2 translation(s) in 1 run(s)" in capsys.readouterr().out
    assert not missing_translations(create_artifact_store(str(tmp / "artifacts")), ["en"], pipeline_version="1")
