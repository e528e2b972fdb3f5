"""Content inspection and the trust boundary on the Redis intake path (real redis-server, the real sensor's run
requests executed in-process as the daemon would launch them): a request whose image text hits a reject rule is
dead-lettered naming the rule; a queued ``file:///etc/passwd`` is dead-lettered by the URL policy without being
read; an inspect-only request's results message carries its findings; a clean one is translated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dagster import DagsterInstance, build_sensor_context

from imgtrans_pipeline import names
from imgtrans_pipeline.orchestration.definitions import build_definitions
from imgtrans_pipeline.orchestration.resources import IntakeResource
from imgtrans_pipeline.orchestration.sensors import redis_intake_sensor
from tests.support.imagegen import text_image


def test_queued_requests_are_inspected_and_kept_inside_the_file_roots(tmp_path, setenv, redis_server, redis_client):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(Path(__file__).resolve().parents[2] / "dagster.yaml", home / "dagster.yaml")
    images = tmp_path / "images"
    images.mkdir()
    setenv(DAGSTER_HOME=str(home), IMGTRANS_REDIS_URL=redis_server.url, IMGTRANS_INSPECTION_RULES="builtin",
           IMGTRANS_FILE_ROOTS=str(images), IMGTRANS_ARTIFACTS=str(tmp_path / "artifacts"),
           IMGTRANS_TRANSLATION_CACHE=str(tmp_path / "c.sqlite"))
    banned = text_image(["限时特价", "全网第一"], width=420, height=200, font_size=44).save(images / "banned.png")
    clean = text_image(["天然棉麻面料"], width=420, height=140, font_size=44).save(images / "clean.png")
    messages = [
        {"request_id": "q-banned", "image_url": str(banned), "source_lang": "zh", "target_lang": "en"},
        {"request_id": "q-passwd", "image_url": "file:///etc/passwd", "source_lang": "zh", "target_lang": "en"},
        {"request_id": "q-inspect", "image_url": f"file://{banned}", "source_lang": "zh", "target_lang": "en",
         "options": {"mode": "inspect"}},
        {"request_id": "q-clean", "image_url": str(clean), "source_lang": "zh", "target_lang": "en"},
    ]
    intake = IntakeResource(batch_size=8, claim_wait_seconds=0)
    for message in messages:
        intake.queue().push(json.dumps(message))
    with DagsterInstance.get() as instance:
        tick = redis_intake_sensor(build_sensor_context(instance=instance, resources={"intake": intake}))
        (run_request,) = tick.run_requests
        assert run_request.tags[names.TAG_SOURCE] == names.SOURCE_REDIS
        job = build_definitions().resolve_job_def(names.TRANSLATE_JOB)
        result = job.execute_in_process(run_config=run_request.run_config, instance=instance,
                                        tags=run_request.tags, raise_on_error=False)
    assert not result.success  # two requests failed

    status = intake.status()
    letters = {letter["request_id"]: letter for letter in intake.dead_letters().list()}
    assert set(letters) == {"q-banned", "q-passwd"}
    assert letters["q-banned"]["stage"] == "inspect" and "rule zh-absolute-banned" in letters["q-banned"]["reason"]
    assert "'全网第一'" in letters["q-banned"]["reason"]
    assert letters["q-passwd"]["stage"] == "download"
    assert "outside the allowed file roots" in letters["q-passwd"]["reason"]
    passwd_meta = json.loads((tmp_path / "artifacts" / "q-passwd" / "meta.json").read_text(encoding="utf-8"))
    assert "source.png" not in passwd_meta["artifacts"]  # nothing was read or stored
    assert status.get("q-banned")["state"] == "dead" and status.get("q-passwd")["state"] == "dead"

    results = {m["request_id"]: m for m in map(json.loads, redis_client.lrange("imgtrans:results", 0, -1))}
    assert results["q-clean"]["status"] == "succeeded" and results["q-clean"]["inspection"]["verdict"] == "pass"
    inspected = results["q-inspect"]
    assert inspected["status"] == "succeeded" and inspected["result_url"] is None
    assert inspected["inspection"]["verdict"] == "reject"
    assert [(m["rule"], m["text"]) for m in inspected["inspection"]["matches"]] == [("zh-absolute-banned", "全网第一")]
    assert results["q-banned"]["status"] == "failed" and "zh-absolute-banned" in results["q-banned"]["error"]
