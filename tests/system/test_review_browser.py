"""The review page in a real browser (Debian's Chromium via Playwright) over a real Redis intake: a request held by
the quality gate (IMGTRANS_REVIEW_BELOW=1.01) is opened from the queue, one block's translation is corrected,
re-rendered (revision 2 shown), approved, and the results list receives exactly one message for it.

Screenshots are kept in ``test-artifacts/review/``. As in ``test_ui.py``, Playwright's own browser download is never
used: the test drives ``/usr/bin/chromium``.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance

from imgtrans_pipeline import names
from imgtrans_pipeline.storage import get_json
from imgtrans_pipeline.web.review import review_server
from tests.support.dagster_services import TEST_ARTIFACTS
from tests.support.review import gate_env, run_as_redis_intake

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = TEST_ARTIFACTS / "review"
TOKEN = "browser-review-token"
pytestmark = pytest.mark.slow  # redis-server + Chromium

if os.environ.get("CI"):  # CI installs the test extras: a missing playwright is a broken set-up, not a skip
    import playwright.sync_api as playwright_api
else:
    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install -e .[test] installs playwright")


@pytest.fixture
def held(tmp_path, setenv, redis_server, redis_client) -> Iterator[tuple[Any, str]]:
    """Two requests translated by a run as the Redis intake sensor starts it, both held for review."""
    setenv(**gate_env(tmp_path, IMGTRANS_REDIS_URL=redis_server.url))
    with DagsterInstance.get() as instance:
        run_as_redis_intake(("page-1", "page-2"), tmp_path, instance, width=420, height=150, font_size=44)
        # Bound to every interface, as a team would share it: the token is required (and given in the URL).
        server = review_server(host="0.0.0.0", port=0, token=TOKEN, instance=instance)
        with server:
            yield server, redis_server.url


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing (make installs the apt package `chromium`)")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _results(redis_client: Any) -> list[dict]:
    return [json.loads(m) for m in redis_client.lrange("imgtrans:results", 0, -1)]


def test_edit_rerender_and_approve_in_the_browser(held, browser, redis_client):
    expect = playwright_api.expect
    server, _ = held
    base = f"http://127.0.0.1:{server.port}"
    service_store = server.app.state.review_service.store
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert urllib.request.urlopen(f"{base}/review/?token={TOKEN}", timeout=10).status == 200
    assert _results(redis_client) == []  # held: nothing delivered yet

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        page.goto(f"{base}/review/?token={TOKEN}")
        expect(page.locator("tr[data-request-id]")).to_have_count(2)
        page.screenshot(path=str(SCREENSHOTS / "1-queue.png"), full_page=True)
        page.get_by_role("link", name="page-1", exact=True).click()
        expect(page.get_by_role("heading", name="Request page-1")).to_be_visible()
        expect(page.locator("#revision")).to_have_text("1")
        expect(page.locator(".frame rect")).not_to_have_count(0)
        editor = page.get_by_label("translation of block 0")
        editor.fill("Brand New Upgrade")
        page.get_by_label("colour of block 0").fill("#c00000")
        page.get_by_role("button", name="Re-render").click()
        expect(page.locator("#message")).to_have_text("Revision 2 rendered.", timeout=60_000)
        expect(page.locator("#revision")).to_have_text("2")
        expect(page.locator("#history tr").last).to_contain_text("Brand New Upgrade")
        result = page.locator("#result-image")
        expect(result).to_have_attribute("src", f"/review/requests/page-1/image/result?token={TOKEN}&v=2")
        page.wait_for_function("() => { const i = document.querySelector('#result-image');"
                               " return i.complete && i.naturalWidth > 0 && i.src.endsWith('v=2'); }")
        shown = page.evaluate("() => fetch(document.querySelector('#result-image').src).then(r => r.arrayBuffer())"
                              ".then(b => Array.from(new Uint8Array(b)))")
        assert bytes(shown) == service_store.get("page-1", "result.png")  # the image shown is revision 2's
        assert get_json(service_store, "page-1", names.META_JSON)["revision"]["number"] == 2
        page.locator("tr[data-block='0'] textarea").focus()  # outline the edited block
        page.screenshot(path=str(SCREENSHOTS / "2-rerendered.png"), full_page=True)
        assert _results(redis_client) == []  # a correction does not deliver

        page.get_by_role("button", name="Approve").click()
        expect(page.locator("#message")).to_have_text("Approved revision 2 and delivered.")
        expect(page.locator("#state")).to_have_text("approved")
        expect(page.get_by_role("button", name="Approve")).to_be_disabled()
        page.screenshot(path=str(SCREENSHOTS / "3-approved.png"), full_page=True)

        page.goto(f"{base}/review/?token={TOKEN}")
        expect(page.locator("tr[data-request-id]")).to_have_count(1)  # page-2 is still waiting
    except Exception:
        page.screenshot(path=str(SCREENSHOTS / "failure.png"), full_page=True)
        raise
    finally:
        context.close()

    messages = [m for m in _results(redis_client) if m["request_id"] == "page-1"]
    assert len(messages) == 1 and messages[0]["status"] == "succeeded"
    assert messages[0]["result_url"].endswith("page-1/result.png")
    assert _results(redis_client) == messages  # page-2 was not delivered
