"""The quality gate on the Redis intake path (real redis-server): a held request is not delivered; approving it
delivers the approved revision exactly once through the results list; rejecting it dead-letters it with the
reviewer's reason."""

from __future__ import annotations

import json

import pytest
from dagster import DagsterInstance

from imgtrans_pipeline import names
from imgtrans_pipeline.review import BlockEdit, WrongState
from imgtrans_pipeline.review.service import ReviewService
from imgtrans_pipeline.storage import get_json
from tests.support.review import gate_env, run_as_redis_intake


@pytest.fixture
def gated(tmp_path, setenv, redis_server, redis_client):
    setenv(**gate_env(tmp_path, IMGTRANS_REDIS_URL=redis_server.url))
    with DagsterInstance.get() as instance:
        run_id = run_as_redis_intake(("shop-1", "shop-2"), tmp_path, instance, width=380, height=140, font_size=42)
        yield ReviewService(instance=instance), run_id


def results(service: ReviewService) -> list[dict]:
    intake = service.intake
    return [json.loads(m) for m in intake.client().lrange(intake.config().results, 0, -1)]


def test_held_requests_are_delivered_once_on_approval_and_dead_lettered_on_rejection(gated):
    service, run_id = gated
    status = service.intake.status()
    for rid in ("shop-1", "shop-2"):
        state = status.get(rid)
        assert state["state"] == "needs_review" and "IMGTRANS_REVIEW_BELOW" in state["review_reason"]
        assert state["run_id"] == run_id and state["result_url"]
    assert results(service) == []  # nothing delivered before approval

    edited = service.rerender("shop-1", [BlockEdit(0, text="Brand New Upgrade")], expected_revision=1, by="eve")
    assert edited.revision == 2 and results(service) == []
    done = service.approve("shop-1", by="eve")
    assert done["delivered_through_intake"] and done["revision"] == 2
    [message] = results(service)
    assert message["request_id"] == "shop-1" and message["status"] == "succeeded"
    assert message["result_url"].endswith("shop-1/result.png")
    assert status.get("shop-1")["state"] == "succeeded"
    meta = get_json(service.store, "shop-1", names.META_JSON)
    assert meta["status"] == "succeeded" and meta["review"]["state"] == "approved" and meta["revision"]["number"] == 2
    with pytest.raises(WrongState):
        service.approve("shop-1")
    assert len(results(service)) == 1  # exactly once

    service.reject("shop-2", reason="the product name is wrong", by="eve")
    assert status.get("shop-2")["state"] == "dead"
    [letter] = service.intake.dead_letters().list()
    assert letter["request_id"] == "shop-2" and letter["stage"] == "review"
    assert letter["reason"] == "[review] rejected by eve: the product name is wrong"
    assert [(m["request_id"], m["status"]) for m in results(service)] == [("shop-2", "failed"), ("shop-1", "succeeded")]
