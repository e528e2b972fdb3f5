"""The `imgtrans` CLI runs the Dagster job in-process, records runs in the instance and prints result paths."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from PIL import Image

from imgtrans_pipeline.cli import main
from tests.support.imagegen import text_image


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(Path(__file__).resolve().parents[2] / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("IMGTRANS_TRANSLATION_CACHE", str(tmp_path / "cache.sqlite"))
    monkeypatch.setenv("IMGTRANS_TRANSLATION_MEMORY", str(tmp_path / "memory.sqlite"))
    return tmp_path


def test_translate_two_files_prints_results_and_records_runs(cli_env, capsys):
    tmp = cli_env
    first = text_image(["全新升级"], width=360, height=140, font_size=44).save(tmp / "first.png")
    second = text_image(["免费送货上门"], width=400, height=140, font_size=40).save(tmp / "second.jpg", "JPEG")
    code = main(["translate", str(first), str(second), "--to", "en", "--from", "zh", "--out", str(tmp / "out"),
                 "--artifacts", str(tmp / "artifacts"), "--batch-size", "1"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [f"{first} -> {tmp / 'out' / 'first.en.png'}", f"{second} -> {tmp / 'out' / 'second.en.png'}"]
    for name in ("first.en.png", "second.en.png"):
        assert Image.open(tmp / "out" / name).size in {(360, 140), (400, 140)}
    with DagsterInstance.get() as instance:
        runs = instance.get_runs(RunsFilter(job_name="translate_images"))
    assert len(runs) == 2 and all(run.status == DagsterRunStatus.SUCCESS for run in runs)


def test_failed_input_exits_nonzero_with_reason(cli_env, capsys):
    tmp = cli_env
    broken = tmp / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    code = main(["translate", str(broken), "--to", "en", "--artifacts", str(tmp / "artifacts"), "--json"])
    assert code == 1
    [line] = capsys.readouterr().out.strip().splitlines()
    outcome = json.loads(line)
    assert outcome["status"] == "failed" and outcome["input"] == str(broken)
    assert "[download]" in outcome["error"] and "png" in outcome["error"].lower()


def test_missing_target_language_is_a_usage_error(cli_env):
    with pytest.raises(SystemExit) as exit_info:
        main(["translate", "x.png"])
    assert exit_info.value.code == 2


def test_cli_inputs_resolve_relative_to_cwd(cli_env, monkeypatch, capsys):
    monkeypatch.chdir(cli_env)
    text_image(["全新升级"], width=360, height=140, font_size=44).save(Path("rel.png"))
    assert main(["translate", "rel.png", "--to", "en", "--from", "zh", "--artifacts", "artifacts"]) == 0
    assert "rel.png -> " in capsys.readouterr().out


def test_inspect_only_prints_findings_and_needs_no_target(cli_env, capsys):
    from tests.support.imagegen import text_image

    image = text_image(["全网第一"], width=320, height=120, font_size=44, top=30).save(cli_env / "claim.png")
    assert main(["translate", str(image), "--from", "zh", "--inspect-only", "--artifacts", str(cli_env / "a")]) == 0
    out = capsys.readouterr().out
    assert f"{image} INSPECTED reject: zh-absolute-banned (reject): '全网第一' block 0" in out
