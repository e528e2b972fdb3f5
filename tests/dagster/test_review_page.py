"""The review page over real held requests (CLI translations with IMGTRANS_REVIEW_BELOW=1.01, no Redis): the queue
lists them and filters, the request page shows the blocks, a re-render posted from it makes revision 2 (a real
``rerender_request`` run), approve / reject decide, and bad input, unknown ids, stale revisions and missing tokens
are answered with the right status and a message."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from imgtrans_pipeline import names
from imgtrans_pipeline.cli import main
from imgtrans_pipeline.monitoring.monitor import Monitor
from imgtrans_pipeline.review.service import ReviewService
from imgtrans_pipeline.storage import get_json
from imgtrans_pipeline.web.review import create_review_app
from tests.support.review import held_by_cli

TOKEN = "s3cret-review-token"


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    from dagster import DagsterInstance

    with held_by_cli(tmp_path_factory.mktemp("review_page")) as code:
        assert code == 0
        with DagsterInstance.get() as instance:
            service = ReviewService(instance=instance)
            yield service, sorted(e["request_id"] for e in service.pending())


def _monitor() -> Monitor:
    return Monitor(lambda: None, lambda: (True, {}), cache_seconds=0)  # type: ignore[arg-type, return-value]


@pytest.fixture(scope="module")
def client(held):
    service, _ = held
    with TestClient(create_review_app(service, _monitor())) as test_client:
        yield test_client


def test_queue_lists_the_held_requests_and_filters(held, client):
    service, ids = held
    assert len(ids) == 3
    page = client.get("/review/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for rid in ids:
        assert f'data-request-id="{rid}"' in page.text
        assert f"/review/requests/{rid}/image/result" in page.text  # the thumbnail
    for entry in service.pending():  # score and reasons shown
        assert f"{entry['score']:.2f}" in page.text
        assert all(str(reason) in page.text for reason in entry["reasons"])
    assert client.get("/review/", params={"q": ids[0]}).text.count("data-request-id=") == 1
    assert client.get("/review/", params={"min": "1.5"}).text.count("data-request-id=") == 0
    assert client.get("/review/", params={"max": "1.0"}).text.count("data-request-id=") == 3
    assert client.get("/review/", params={"state": "approved"}).text.count("data-request-id=") == 0
    assert client.get("/review/", params={"state": "bogus"}).status_code == 400
    assert client.get("/review/", params={"min": "abc"}).status_code == 400
    assert 'href="/review/"' in client.get("/").text  # linked from the index
    thumb = client.get(f"/review/requests/{ids[0]}/image/result")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(thumb.content)).size == (380, 140)


def test_request_page_shows_source_result_and_blocks(held, client):
    service, ids = held
    details = service.details(ids[0])
    page = client.get(f"/review/requests/{ids[0]}")
    assert page.status_code == 200
    assert 'viewBox="0 0 380 140"' in page.text  # block boxes drawn in image pixels, scaled with the image
    assert len(details["blocks"]) >= 1
    for block in details["blocks"]:
        assert f'<rect data-block="{block["block"]}"' in page.text
        assert block["source"] in page.text
        assert f'name="text-{block["block"]}"' in page.text
    assert page.text.count("<rect ") == 2 * len(details["blocks"])  # on source and result
    for button in ("Re-render", "Approve", "Reject"):
        assert f">{button}</button>" in page.text
    source = client.get(f"/review/requests/{ids[0]}/image/source")
    assert source.status_code == 200 and source.content == service.store.get(ids[0], names.SOURCE_PNG)
    as_json = client.get(f"/review/requests/{ids[0]}/details").json()
    assert as_json["revision"] == 1 and as_json["blocks"][0]["source"] == details["blocks"][0]["source"]


def test_unknown_requests_and_images_are_404(client):
    assert client.get("/review/requests/no-such-request").status_code == 404
    assert "unknown request" in client.get("/review/requests/no-such-request").text
    assert client.get("/review/requests/bad..id").status_code == 404
    assert client.get("/review/requests/no-such-request/details").status_code == 404
    assert client.get("/review/requests/no-such-request/image/result").status_code == 404
    response = client.post("/review/requests/no-such-request/rerender",
                           json={"expected_revision": 1, "edits": [{"block": 0, "text": "x"}]})
    assert response.status_code == 404 and response.json()["kind"] == "unknown_request"
    assert client.post("/review/requests/no-such-request/approve", json={}).status_code == 404


@pytest.mark.parametrize(("body", "message"), [
    ({"edits": [{"block": 0, "text": "x"}]}, "expected_revision is required"),
    ({"expected_revision": "one", "edits": []}, "expected_revision must be a whole number"),
    ({"expected_revision": 1, "edits": "x"}, "edits must be a list"),
    ({"expected_revision": 1, "edits": [{"text": "x"}]}, "lacks its block index"),
    ({"expected_revision": 1, "edits": [{"block": 0, "text": "  "}]}, "translation is empty"),
    ({"expected_revision": 1, "edits": [{"block": 0, "color": "red"}]}, "#rrggbb"),
    ({"expected_revision": 1, "edits": [{"block": 0, "font_px": 2000}]}, "out of range"),
    ({"expected_revision": 1, "edits": [{"block": 99, "text": "x"}]}, "has no block 99"),
])
def test_bad_input_is_400_with_a_message(held, client, body, message):
    _, ids = held
    response = client.post(f"/review/requests/{ids[2]}/rerender", json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert held[0].details(ids[2])["revision"] == 1  # nothing changed


def test_bad_bodies_and_cross_site_posts_are_refused(held, client):
    _, ids = held
    url = f"/review/requests/{ids[2]}/rerender"
    response = client.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    assert client.post(url, content=b"x", headers={"Content-Type": "text/plain"}).status_code == 400
    assert client.post(f"/review/requests/{ids[2]}/reject", json={"reason": " "}).json()["error"] \
        == "a rejection needs a reason"
    evil = client.post(f"/review/requests/{ids[2]}/approve", data={"by": "x"},
                       headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403
    assert held[0].details(ids[2])["state"] == names.STATE_NEEDS_REVIEW


def test_rerender_from_the_page_makes_revision_2_then_approve(held, client, render_reader):
    service, ids = held
    rid = ids[0]
    response = client.post(f"/review/requests/{rid}/rerender", json={
        "expected_revision": 1, "by": "eve", "edits": [{"block": 0, "text": "Brand New Upgrade", "font_px": 30}]})
    assert response.status_code == 200, response.text
    outcome = response.json()
    assert outcome["revision"] == 2 and outcome["changed"] and outcome["message"] == "revision 2 rendered"
    meta = get_json(service.store, rid, names.META_JSON)
    assert meta["revision"]["number"] == 2 and meta["revision"]["by"] == "eve"
    result = client.get(f"/review/requests/{rid}/image/result")
    assert result.content == service.store.get(rid, "result.png")
    assert client.get(f"/review/requests/{rid}/image/result", params={"revision": 1}).content \
        == service.store.get(rid, "rev-1.result.png")
    assert "upgrade" in render_reader(np.asarray(Image.open(io.BytesIO(result.content)).convert("RGB"))).lower()
    page = client.get(f"/review/requests/{rid}").text
    assert 'id="revision">2<' in page and "Brand New Upgrade" in page and 'value="30"' in page

    # A page still at revision 1 gets a conflict, for a re-render and for a decision.
    stale = client.post(f"/review/requests/{rid}/rerender",
                        json={"expected_revision": 1, "edits": [{"block": 0, "text": "Other"}]})
    assert stale.status_code == 409 and stale.json()["kind"] == "revision_conflict"
    assert "revision 2" in stale.json()["error"]
    assert client.post(f"/review/requests/{rid}/approve", json={"expected_revision": 1}).status_code == 409

    done = client.post(f"/review/requests/{rid}/approve", json={"expected_revision": 2, "by": "eve"})
    assert done.status_code == 200 and done.json()["state"] == "approved" and done.json()["revision"] == 2
    again = client.post(f"/review/requests/{rid}/approve", json={"expected_revision": 2})
    assert again.status_code == 409 and again.json()["kind"] == "wrong_state"
    assert get_json(service.store, rid, names.META_JSON)["status"] == "succeeded"
    assert client.get("/review/").text.count("data-request-id=") == 2
    assert rid in client.get("/review/", params={"state": "approved"}).text


def test_form_posts_work_without_javascript_and_reject_needs_a_reason(held, client):
    service, ids = held
    rid = ids[1]
    response = client.post(f"/review/requests/{rid}/reject", data={"reason": "wrong product name", "by": "bob",
                                                                  "expected_revision": "1"},
                           follow_redirects=False)
    assert response.status_code == 303 and re.search(rf"/review/requests/{rid}\?message=rejected",
                                                     response.headers["location"])
    assert service.details(rid)["state"] == "rejected"
    refused = client.post(f"/review/requests/{rid}/rerender", data={"expected_revision": "1", "text-0": "New"})
    assert refused.status_code == 409 and "rejected" in refused.text and "text/html" in refused.headers["content-type"]


def test_the_token_is_required_when_configured(held):
    service, ids = held
    app = create_review_app(service, _monitor(), host="0.0.0.0", token=TOKEN)
    with TestClient(app) as client:
        assert client.get("/review/").status_code == 401
        assert client.get("/review/", headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert client.post(f"/review/requests/{ids[2]}/approve", json={"expected_revision": 1}).status_code == 401
        page = client.get("/review/", params={"token": TOKEN})
        assert page.status_code == 200
        # Links and images carry the token the page was opened with, so a browser can follow them.
        assert f"/review/requests/{ids[2]}?token={TOKEN}" in page.text
        assert f"/review/requests/{ids[2]}/image/result?v=1&amp;token={TOKEN}" in page.text
        assert client.get(f"/review/requests/{ids[2]}/image/result", params={"token": TOKEN}).status_code == 200
    with pytest.raises(ValueError, match="requires a token"):
        create_review_app(service, _monitor(), host="0.0.0.0", token=None)


def test_review_command_serves_the_page_and_refuses_a_public_address_without_token(held, tmp_path, capsys):
    service, ids = held
    assert main(["review", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "requires a token (IMGTRANS_REVIEW_TOKEN)" in capsys.readouterr().err
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "imgtrans_pipeline.cli", "review", "--port", "0"], env=env,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        match = re.search(r"on (http://127\.0\.0\.1:\d+)/review/", line)
        assert match, line
        with urllib.request.urlopen(f"{match.group(1)}/review/", timeout=30) as page:
            body = page.read().decode()
        assert all(f'data-request-id="{rid}"' in body for rid in ids if service.details(rid)["state"]
                   == names.STATE_NEEDS_REVIEW)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
