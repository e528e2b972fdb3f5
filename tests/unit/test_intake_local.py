"""Request state and tick lease in SQLite (intake without Redis): the rules of their Redis counterparts, and the
Kafka message contract (hash-only messages, offset ranges)."""

from __future__ import annotations

import json
import time

import pytest

from imgtrans_pipeline.core.errors import InvalidRequest
from imgtrans_pipeline.intake.kafka import format_offsets, hash_request_id, parse_kafka_message, parse_offsets
from imgtrans_pipeline.intake.lease import LeaseLost
from imgtrans_pipeline.intake.local import LocalRequestStatus, LocalTickLease


def test_status_rules_match_the_redis_status(tmp_path):
    status = LocalRequestStatus(tmp_path / "state.sqlite", ttl_seconds=60)
    assert status.get("r1") is None and not status.note_duplicate("r1")
    assert status.mark("r1", "queued", run_key="k", attempt=1, payload='{"a": 1}')
    assert status.mark("r1", "running", run_id="run-a", attempts_increment=True)
    assert status.mark("r1", "running", run_id="run-a", attempts_increment=True)  # repeated: counted once
    assert status.mark("r1", "succeeded", run_id="run-a", result_url="file:///r.png", error=None)
    assert not status.mark("r1", "queued")  # a stale duplicate never makes a finished request look queued
    assert status.note_duplicate("r1")
    state = status.get("r1")
    assert state["state"] == "succeeded" and state["attempts"] == 1 and state["run_ids"] == ["run-a"]
    assert state["duplicates"] == 1 and state["payload"] == '{"a": 1}' and state["attempt"] == "1"
    assert status.claim_delivery("r1", "run-a") is None
    assert status.claim_delivery("r1", "run-a") is None  # its own claim, repeated
    assert status.claim_delivery("r1", "run-b") == "run-a"
    assert not status.release_delivery("r1", "run-b")  # only the owner gives a claim back
    assert status.release_delivery("r1", "run-a")  # its delivery failed: another run may deliver
    assert status.claim_delivery("r1", "run-b") is None and status.claim_delivery("r1", "run-a") == "run-b"
    assert status.mark("r1", "queued", force=True, attempt=2)
    assert status.claim_delivery("r1", "run-b") is None  # a new attempt is delivered again
    assert 0 < status.ttl_of("r1") <= 60 and status.ttl_of("nope") == -2


def test_lease_is_held_by_one_tick_at_a_time(tmp_path):
    first = LocalTickLease(tmp_path / "state.sqlite", "kafka:tick-lease", ttl_s=30)
    second = LocalTickLease(tmp_path / "state.sqlite", "kafka:tick-lease", ttl_s=30)
    assert first.acquire() and not second.acquire()
    assert second.holder() == first.token
    first.confirm()
    assert first.release() and second.acquire()
    with pytest.raises(LeaseLost):
        first.confirm()
    expired = LocalTickLease(tmp_path / "other.sqlite", "lease", ttl_s=0.01)
    assert expired.acquire()
    time.sleep(0.05)
    assert LocalTickLease(tmp_path / "other.sqlite", "lease", ttl_s=30).acquire()  # expired: taken over
    with pytest.raises(LeaseLost):
        expired.confirm()


def test_hash_only_messages_and_offset_ranges():
    digest = "ab" * 32
    resolve = {digest: "file:///store/req-1/source.png"}.get
    request = parse_kafka_message(json.dumps({"image_hash": digest.upper(), "target_lang": "EN"}), resolve)
    assert request.image_url == "file:///store/req-1/source.png" and request.target_lang == "en"
    assert request.request_id == hash_request_id(digest, "en") == f"hash-{digest[:40]}.en"
    own = parse_kafka_message(json.dumps({"image_hash": digest, "target_lang": "ko", "request_id": "mine"}), resolve)
    assert own.request_id == "mine"
    for message, reason in (({"image_hash": "cd" * 32, "target_lang": "en"}, "no stored image has hash"),
                            ({"image_hash": "xyz", "target_lang": "en"}, "64 hex digits"),
                            ({"image_hash": digest, "image_url": "https://x/a.png", "target_lang": "en"}, "not both")):
        with pytest.raises(InvalidRequest, match=reason):
            parse_kafka_message(json.dumps(message), resolve)
    with pytest.raises(InvalidRequest, match="request_id"):  # full requests need their id, as on Redis
        parse_kafka_message(json.dumps({"image_url": "https://x/a.png", "target_lang": "en"}), resolve)
    assert format_offsets([7, 3, 5, 6, 9]) == "3,5-7,9" and parse_offsets("3,5-7,9") == {3, 5, 6, 7, 9}
