"""The web app: token rule, routes, threading and lifecycle of the uvicorn server.

Served for real (uvicorn on a free port, urllib as the client) over a real, empty Dagster instance; the metric
values themselves are tested against real runs in tests/system/test_monitoring.py.
"""

from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from dagster import DagsterInstance, instance_for_test
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Mount, Route

from imgtrans_pipeline.monitoring import Monitor, StatusSnapshot
from imgtrans_pipeline.monitoring.cli import run_metrics_server
from imgtrans_pipeline.web import WebServer, create_app, is_loopback

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def instance() -> DagsterInstance:
    with instance_for_test() as inst:
        yield inst


@pytest.fixture
def monitor(instance, tmp_path) -> Monitor:
    from imgtrans_pipeline.storage import create_artifact_store

    return Monitor.for_instance(instance, None, store=create_artifact_store(str(tmp_path)), cache_seconds=0)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode("utf-8")


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("10.0.0.1", False), ("metrics.example.com", False),
])
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "metrics.example.com"])
def test_a_token_is_required_off_loopback(monitor, host):
    for token in (None, ""):
        with pytest.raises(ValueError, match="requires a token"):
            create_app(monitor, host=host, token=token)
    assert create_app(monitor, host=host, token=TOKEN).state.token_required


def test_loopback_is_open_without_a_token(monitor):
    with WebServer(create_app(monitor), port=0) as server:
        assert server.url.startswith("http://127.0.0.1:")
        for path in ("/metrics", "/health", "/status", "/"):
            assert get(server.url + path)[0] == 200, path


def test_token_on_every_interface(monitor):
    with WebServer(create_app(monitor, host="0.0.0.0", token=TOKEN), port=0) as server:
        base = f"http://127.0.0.1:{server.port}"
        for path in ("/metrics", "/health", "/status", "/", "/nope"):
            status, headers, body = get(base + path)
            assert status == 401 and headers["www-authenticate"].startswith("Bearer"), path
            assert get(base + path, {"Authorization": "Bearer wrong"})[0] == 403
            assert get(base + path + "?token=wrong")[0] == 403
            assert get(base + path, {"Authorization": f"Basic {TOKEN}"})[0] == 401  # only Bearer is read
        assert get(base + "/nope", {"Authorization": f"Bearer {TOKEN}"})[0] == 404
        status, headers, body = get(base + "/metrics", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
        names = {family.name for family in text_string_to_metric_families(body)}
        assert {"imgtrans_up", "imgtrans_runs", "imgtrans_quality_score"} <= names
        status, _, body = get(base + f"/health?token={TOKEN}")
        assert status == 200 and json.loads(body) == {"status": "ok",
                                                      "checks": {"dagster": "ok", "redis": "not configured"}}
        status, _, body = get(base + "/status", {"authorization": f"bearer {TOKEN}"})
        assert status == 200 and json.loads(body)["runs"]["succeeded"] == 0


def test_a_token_given_on_loopback_is_enforced_too(monitor):
    with WebServer(create_app(monitor, token=TOKEN), port=0) as server:
        assert get(server.url + "/health")[0] == 401
        assert get(server.url + "/health", {"Authorization": "Bearer nope"})[0] == 403
        assert get(server.url + f"/health?token={TOKEN}")[0] == 200


def test_index_page_is_rendered_from_templates_and_more_routes_mount_beside(monitor):
    def hello(request: Any) -> Any:
        from starlette.responses import PlainTextResponse

        return PlainTextResponse(f"hello {request.path_params['name']}")

    app = create_app(monitor, routes=[Mount("/review", routes=[Route("/{name}", hello)])])
    with WebServer(app, port=0) as server:
        status, headers, body = get(server.url + "/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert '<a href="/metrics">' in body and "<title>imgtrans</title>" in body
        assert get(server.url + "/review/x")[2] == "hello x"
        assert get(server.url + "/metrics")[0] == 200  # the monitoring routes are still there
    # Templates escape what they are given (the review page will show OCR'd text).
    page = app.state.templates.get_template("index.html").render(links=[("/a", "<b>x</b>")])
    assert "&lt;b&gt;x&lt;/b&gt;" in page


def test_a_slow_collection_does_not_block_other_requests():
    """Blocking sources run in the thread pool: /health answers while a /metrics scrape is still collecting."""
    release = threading.Event()
    entered = threading.Event()

    def slow_collect() -> StatusSnapshot:
        entered.set()
        assert release.wait(30)
        return StatusSnapshot(collected_at="now", window_s=60)

    monitor = Monitor(slow_collect, lambda: (True, {"dagster": "ok"}), cache_seconds=0)
    with WebServer(create_app(monitor), port=0) as server:
        scrape: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: scrape.update(result=get(server.url + "/metrics")))
        worker.start()
        try:
            assert entered.wait(10)
            assert get(server.url + "/health")[0] == 200
            assert not release.is_set() and worker.is_alive()  # the scrape was still waiting meanwhile
        finally:
            release.set()
            worker.join(15)
        assert scrape["result"][0] == 200


def test_server_stops_and_frees_the_port(monitor):
    server = WebServer(create_app(monitor), port=0).start()
    url = server.url
    assert get(url + "/health")[0] == 200
    server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/health", timeout=2)
    # The same port can be bound again at once.
    with WebServer(create_app(monitor), port=server.port) as again:
        assert get(again.url + "/health")[0] == 200


def test_busy_port_fails_in_the_constructor(monitor):
    with WebServer(create_app(monitor), port=0) as server, pytest.raises(OSError):
        WebServer(create_app(monitor), port=server.port)


def test_metrics_server_refuses_a_public_address_without_token_or_a_busy_port(instance, monitor, capsys):
    out = io.StringIO()
    assert run_metrics_server(instance, None, store=None, host="0.0.0.0", port=0, token=None, out=out) == 2
    assert "requires a token" in capsys.readouterr().err and out.getvalue() == ""
    with WebServer(create_app(monitor), port=0) as busy:
        assert run_metrics_server(instance, None, store=None, host="127.0.0.1", port=busy.port, token=None,
                                  out=out) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err and out.getvalue() == ""
