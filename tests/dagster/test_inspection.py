"""Content inspection in the real translate_images job (real OCR and translation engines, generated images):
a reject rule on the image's text fails the request at stage inspect naming the rule; a rule only the translation
hits does too; a review rule holds a well-scored result for review; an inspect-only request returns its findings
with no translation and no result image; queued requests obey the file-root trust boundary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, Definitions

from imgtrans_pipeline import names
from imgtrans_pipeline.names import TRANSLATE_JOB, run_config
from imgtrans_pipeline.orchestration.definitions import build_resources
from imgtrans_pipeline.orchestration.jobs import translate_images
from tests.support.dagster_services import pipeline_settings
from tests.support.imagegen import text_image

CLEAN = "天然棉麻面料"
BANNED = "全网第一"


@pytest.fixture(scope="module")
def instance() -> DagsterInstance:
    with DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inspect-images")
    return {name: text_image(lines, width=480, height=200, font_size=44, top=40).save(folder / f"{name}.png")
            for name, lines in (("banned", ["限时特价", BANNED]), ("clean", [CLEAN]))}


def _run(tmp: Path, instance: DagsterInstance, requests: list[dict[str, Any]], *, tags: dict[str, str] | None = None,
         **overrides: Any):
    resources = build_resources(pipeline_settings(tmp / "artifacts", **overrides))
    job = Definitions(jobs=[translate_images], resources=resources).resolve_job_def(TRANSLATE_JOB)
    return job.execute_in_process(run_config=run_config(requests), instance=instance, raise_on_error=False,
                                  tags=tags or {})


def _run_clean_with_rule(tmp: Path, instance: DagsterInstance, images: dict[str, Path], request_id: str,
                         rule: str) -> tuple[Any, Path]:
    """The clean image (zh -> en) under a rules file holding ``rule`` (one YAML flow mapping); (result, its path)."""
    rules = tmp / "rules.yaml"
    rules.write_text(f"rules:\n  - {rule}\n", encoding="utf-8")
    result = _run(tmp, instance, [{"request_id": request_id, "image_url": str(images["clean"]), "source_lang": "zh",
                                   "target_lang": "en"}], runtime__inspection_rules=str(rules))
    return result, rules


def _meta(tmp: Path, request_id: str) -> dict[str, Any]:
    return json.loads((tmp / "artifacts" / request_id / "meta.json").read_text(encoding="utf-8"))


def _checks(result, check_name: str) -> list[Any]:
    return [e.event_specific_data for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.event_specific_data.check_name == check_name]


def test_reject_rule_on_the_image_text_fails_the_request_naming_the_rule(tmp_path, instance, images):
    result = _run(tmp_path, instance, [
        {"request_id": "insp-bad", "image_url": str(images["banned"]), "source_lang": "zh", "target_lang": "en"},
        {"request_id": "insp-ok", "image_url": str(images["clean"]), "source_lang": "zh", "target_lang": "en"}],
        runtime__inspection_rules="builtin")
    assert not result.success
    bad, ok = _meta(tmp_path, "insp-bad"), _meta(tmp_path, "insp-ok")
    assert bad["status"] == "failed" and bad["error"]["stage"] == "inspect"
    assert bad["error"]["rule"] == "zh-absolute-banned" and "zh-absolute-banned" in bad["error"]["reason"]
    (match,) = bad["inspection"]["matches"]
    assert (match["text"], match["on"], match["action"], match["block"]) == (BANNED, "source", "reject", 1)
    assert len(match["box"]) == 4 and match["box"][1] > 60  # the second line's box
    assert "translation.json" not in bad["artifacts"]  # stopped before it was translated
    assert ok["status"] == "succeeded" and ok["inspection"]["verdict"] == "pass"
    assert ok["inspection"]["inspected"] == ["source", "translation"]
    # Dagster: the ocr_result check fails for the rejected request, passes for the clean one.
    checks = {c.metadata["request_id"].value: c for c in _checks(result, names.CHECK_INSPECTION)
              if c.asset_key.path[-1] == names.OCR_RESULT}
    assert not checks["insp-bad"].passed and checks["insp-bad"].metadata["rejected_by"].value == "zh-absolute-banned"
    assert checks["insp-ok"].passed


def test_a_hit_only_in_the_translation_rejects_too(tmp_path, instance, images):
    # The offline model translates 天然棉麻面料 as "Natural ..."; no rule reads the Chinese text.
    _run_clean_with_rule(tmp_path, instance, images, "tr-hit", "{id: no-natural-claims, lang: en,"
                         " category: textile_claim, action: reject, patterns: ['natural']}")
    meta = _meta(tmp_path, "tr-hit")
    assert meta["status"] == "failed" and meta["error"]["stage"] == "inspect"
    assert meta["error"]["rule"] == "no-natural-claims" and "translation" in meta["error"]["reason"]
    (match,) = meta["inspection"]["matches"]
    assert match["on"] == "translation" and match["lang"] == "en" and "natural" in match["block_text"].lower()


def test_review_rule_holds_the_result_even_with_a_good_score(tmp_path, instance, images):
    result, _ = _run_clean_with_rule(tmp_path, instance, images, "rv-1", "{id: fabric-claims, lang: zh,"
                                     " category: textile_claim, action: review, phrases: [棉麻]}")
    assert result.success
    meta = _meta(tmp_path, "rv-1")
    assert meta["status"] == "needs_review" and meta["review"]["rule"] == "fabric-claims"
    assert "fabric-claims" in meta["review"]["why"] and meta["quality"]["score"] >= 0.5
    review = json.loads((tmp_path / "artifacts" / "rv-1" / "review.json").read_text(encoding="utf-8"))
    assert review["state"] == "needs_review"


def test_inspect_only_returns_findings_without_translating(tmp_path, instance, images):
    # No rules configured: an inspect-only request uses the starter set; a reject finding is its answer.
    result = _run(tmp_path, instance, [{"request_id": "io-1", "image_url": str(images["banned"]), "source_lang": "zh",
                                        "target_lang": "en", "mode": "inspect"}])
    assert result.success
    meta = _meta(tmp_path, "io-1")
    assert meta["status"] == "succeeded" and meta["mode"] == "inspect" and meta["result"] is None
    assert meta["inspection"]["verdict"] == "reject"
    assert [m["rule"] for m in meta["inspection"]["matches"]] == ["zh-absolute-banned"]
    stored = sorted(p.name for p in (tmp_path / "artifacts" / "io-1").iterdir())
    assert stored == ["meta.json", "ocr.json", "source.png"]
    assert set(meta["timings_s"]) >= {"download", "ocr", "inspect"} and "translate" not in meta["timings_s"]
    (outcome,) = result.output_for_node(names.PUBLISH)
    assert outcome["inspection"]["verdict"] == "reject" and outcome["result"] is None


def test_queued_requests_read_local_files_only_below_the_file_roots(tmp_path, instance, images):
    queued = {names.TAG_SOURCE: names.SOURCE_REDIS}
    _run(tmp_path, instance, [{"request_id": "tb-passwd", "image_url": "file:///etc/passwd", "target_lang": "en"},
                              {"request_id": "tb-img", "image_url": str(images["clean"]), "source_lang": "zh",
                               "target_lang": "en"}], tags=queued, fetch__file_roots="")
    for request_id in ("tb-passwd", "tb-img"):
        meta = _meta(tmp_path, request_id)
        assert meta["status"] == "failed" and meta["error"]["stage"] == "download"
        assert "outside the allowed file roots (" in meta["error"]["reason"]
    # Below an allowed root it works; the same file from the CLI/Launchpad (no queue tag) is not restricted.
    allowed = _run(tmp_path, instance, [{"request_id": "tb-ok", "image_url": str(images["clean"]), "source_lang": "zh",
                                         "target_lang": "en"}], tags=queued,
                   fetch__file_roots=f"/nonexistent:{images['clean'].parent}")
    assert allowed.success and _meta(tmp_path, "tb-ok")["status"] == "succeeded"
    s3 = _run(tmp_path, instance, [{"request_id": "tb-s3", "image_url": "s3://other-bucket/a.png",
                                    "target_lang": "en"}], tags=queued, fetch__s3_buckets="")
    assert not s3.success
    assert "s3 bucket 'other-bucket' is not an allowed bucket (allowed: none)" in _meta(tmp_path, "tb-s3")["error"][
        "reason"]


def test_status_and_metrics_count_verdicts_and_rules(tmp_path, images):
    from imgtrans_pipeline.monitoring.cli import format_status
    from imgtrans_pipeline.monitoring.collect import collect_status
    from imgtrans_pipeline.monitoring.prometheus import render_prometheus

    with DagsterInstance.ephemeral() as instance:
        _run(tmp_path, instance, [
            {"request_id": "st-bad", "image_url": str(images["banned"]), "source_lang": "zh", "target_lang": "en"},
            {"request_id": "st-ok", "image_url": str(images["clean"]), "source_lang": "zh", "target_lang": "en"}],
            runtime__inspection_rules="builtin")
        store = build_resources(pipeline_settings(tmp_path / "artifacts"))["artifacts"].store()
        snapshot = collect_status(instance, None, store=store)
    assert snapshot.inspection is not None and snapshot.inspection.verdicts == {"pass": 1, "reject": 1}
    assert snapshot.inspection.rules == {"zh-absolute-banned": 1}
    text = format_status(snapshot)
    assert "Content inspection (last 2 inspected request(s))" in text and "zh-absolute-banned" in text
    metrics = render_prometheus(snapshot)
    assert 'imgtrans_inspection_recent{verdict="reject"} 1.0' in metrics
    assert 'imgtrans_inspection_matches_recent{category="advertising_absolute",rule="zh-absolute-banned"} 1.0' \
        in metrics


def test_a_reviewers_correction_is_inspected_again_before_it_is_drawn(tmp_path, instance, images):
    """A correction may not bring in what the rules reject: the re-render is refused, naming the rule, and the
    request stays at its revision; an acceptable correction is drawn, and meta.json keeps the inspection."""
    from imgtrans_pipeline.orchestration.resources import stage_runner
    from imgtrans_pipeline.review import BlockEdit, ReviewError
    from imgtrans_pipeline.review.rerender import rerender

    result, rules = _run_clean_with_rule(tmp_path, instance, images, "fix-1", "{id: no-cure-claims, lang: en,"
                                         " category: medical_claim, action: reject, patterns: ['cures?']}")
    assert result.success
    before = _meta(tmp_path, "fix-1")
    assert before["inspection"]["inspected"] == ["source", "translation"]
    runner = stage_runner(build_resources(pipeline_settings(tmp_path / "artifacts",
                                                            runtime__inspection_rules=str(rules))))

    with pytest.raises(ReviewError, match="no-cure-claims"):
        rerender(runner, "fix-1", [BlockEdit(block=0, text="Linen that cures eczema")])
    assert _meta(tmp_path, "fix-1") == before  # nothing drawn, nothing published

    done = rerender(runner, "fix-1", [BlockEdit(block=0, text="Natural linen fabric")])
    assert done.revision == 2 and done.changed
    after = _meta(tmp_path, "fix-1")
    assert after["inspection"]["inspected"] == ["source", "translation"] and after["inspection"]["verdict"] == "pass"
    assert after["inspection"]["matches"] == []
