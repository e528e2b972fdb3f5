"""The Dagster UI and GraphQL API, driven for real: webserver + daemon subprocesses, Debian's Chromium via Playwright.

A person launching a translation from the Launchpad and finding the result on the asset page is the flow this
project promises; this test does exactly that in a headless browser and keeps screenshots in
``test-artifacts/ui/``. Playwright's own browser download (``playwright install``) is never used: it cannot work
offline, so the test drives ``/usr/bin/chromium`` (apt package ``chromium``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterRunStatus

from tests.support.dagster_services import TEST_ARTIFACTS, DagsterServices, dagster_services, run_config
from tests.support.imagegen import text_image

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = TEST_ARTIFACTS / "ui"
RUN_TIMEOUT_MS = 120_000
pytestmark = pytest.mark.slow  # webserver + daemon + browser processes

if os.environ.get("CI"):  # CI installs the test extras: a missing playwright is a broken set-up, not a skip
    import playwright.sync_api as playwright_api
else:
    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install -e .[test] installs playwright")


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterServices]:
    with dagster_services(tmp_path_factory.mktemp("ui")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing (make installs the apt package `chromium`)")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _image_request(services: DagsterServices, request_id: str, lines: list[str]) -> dict[str, str]:
    path = text_image(lines, width=480, height=200, font_size=40).save(services.tmp / f"{request_id}.png")
    return {"request_id": request_id, "image_url": str(path), "source_lang": "zh", "target_lang": "en"}


def _launchpad_yaml(request: dict[str, str]) -> str:
    """The Launchpad config exactly as README "Running it in Dagster" shows it."""
    lines = ["ops:", "  download:", "    config:", "      requests:"]
    lines += [f"        {'- ' if i == 0 else '  '}{key}: {value}" for i, (key, value) in enumerate(request.items())]
    return "\n".join(lines) + "\n"


def test_launch_from_launchpad_and_find_the_result_on_the_asset_page(services: DagsterServices, browser: Any):
    expect = playwright_api.expect
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    request = _image_request(services, "ui-launchpad-1", ["限时特价 买一送一"])
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=services.url)
    page = context.new_page()
    try:
        # Jobs list -> translate_images -> Launchpad, as a person would click through.
        page.goto(f"{services.url}/jobs")
        page.get_by_role("link", name="translate_images").first.click()
        page.get_by_role("tab", name="Launchpad").click()
        editor = page.locator(".CodeMirror").first
        expect(editor).to_be_visible()
        editor.click()
        # Paste through the real clipboard, like a user pasting the README snippet.
        page.evaluate("text => navigator.clipboard.writeText(text)", _launchpad_yaml(request))
        page.keyboard.press("Control+A")
        page.keyboard.press("Control+V")
        page.keyboard.press("Escape")  # close the editor's autocompletion popup
        expect(editor).to_contain_text(request["image_url"])
        expect(page.get_by_text("No errors", exact=True)).to_be_visible()  # the Launchpad validated the config
        page.screenshot(path=str(SCREENSHOTS / "1-launchpad.png"))

        page.get_by_role("button", name="Launch Run").click()
        page.wait_for_url(re.compile(r".*/runs/[0-9a-f-]{36}$"), timeout=30_000)
        run_id = page.url.rsplit("/", 1)[-1]
        # The run's status tag: a "Success" label next to the run_success icon.
        status = page.locator("div:has(> [aria-label='run_success'])").filter(has_text=re.compile(r"^Success$"))
        expect(status.first).to_be_visible(timeout=RUN_TIMEOUT_MS)
        expect(page.get_by_text("RUN_SUCCESS").first).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "2-run-success.png"))

        page.goto(f"{services.url}/assets/imgtrans/rendered_image?view=events")
        expect(page.get_by_text(f"rendered_image of request {request['request_id']}").first).to_be_visible()
        expect(page.get_by_text(f"materialized in run {run_id[:8]}").first).to_be_visible()
        body = page.inner_text("body")
        assert "request_id" in body and request["request_id"] in body
        assert f"{request['request_id']}/result.png" in body
        page.screenshot(path=str(SCREENSHOTS / "3-asset-rendered-image.png"))
    except Exception:
        page.screenshot(path=str(SCREENSHOTS / "failure.png"))
        raise
    finally:
        context.close()

    with services.instance() as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == DagsterRunStatus.SUCCESS
        # The config pasted into the editor is what the run received.
        assert run.run_config["ops"]["download"]["config"]["requests"] == [request]
    assert (services.tmp / "artifacts" / request["request_id"] / "result.png").is_file()


def test_graphql_client_submits_and_watches_a_run(services: DagsterServices):
    client = services.graphql_client()
    request = _image_request(services, "ui-graphql-1", ["天然棉麻面料 透气舒适"])
    run_id = client.submit_job_execution("translate_images", run_config=run_config(request),
                                         tags={"imgtrans/source": "graphql-test"})
    seen: list[DagsterRunStatus] = []
    deadline = time.monotonic() + RUN_TIMEOUT_MS / 1000
    while (status := client.get_run_status(run_id)) not in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE,
                                                             DagsterRunStatus.CANCELED):
        if not seen or seen[-1] != status:
            seen.append(status)
        assert time.monotonic() < deadline, f"run stuck in {status}\n{services.log_tail()}"
        services.check_alive()
        time.sleep(0.5)
    assert status == DagsterRunStatus.SUCCESS, services.log_tail()
    # Queued by the webserver, then started by the daemon's run coordinator (not executed in the webserver).
    assert seen and seen[0] in (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
                                DagsterRunStatus.STARTED)
    with services.instance() as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.tags["imgtrans/source"] == "graphql-test"
    assert (services.tmp / "artifacts" / request["request_id"] / "meta.json").is_file()
