"""Test session set-up, shared by every layer. Engines are expensive to load, so each is loaded once per session in
tests/support/fixtures/.

Tests live in one directory per layer, and each test gets that layer's marker (``pytest -m unit``):

* ``unit/`` — plain Python: engines, core, pipeline stages, storage; no Dagster. In-process HTTP servers and the
  moto S3 server (a child process from the venv) are fine.
* ``dagster/`` — Dagster executed in-process: jobs, assets, schedules, definitions, the CLI, the web app.
* ``system/`` — services outside the venv or long-lived processes: redis-server, PostgreSQL, dagster-daemon and
  -webserver, Celery workers, Chromium.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import pytest

from tests.support.servers import S3Server, moto_s3_server

pytest_plugins = [
    "tests.support.fixtures.ocr",
    "tests.support.fixtures.translate",
    "tests.support.fixtures.imaging",
    "tests.support.redis_server",
    "tests.support.kafka_broker",
]


LAYERS = ("unit", "dagster", "system")
TESTS = Path(__file__).resolve().parent

# Queued requests read local files only below IMGTRANS_FILE_ROOTS (README "Trust boundary"): the tests queue images
# they generate under the temporary directory, and the bundled samples. Tests of the boundary set their own roots.
os.environ.setdefault("IMGTRANS_FILE_ROOTS", f"{tempfile.gettempdir()}:{TESTS.parent / 'samples'}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    outside: set[str] = set()
    for item in items:
        path = Path(item.path).resolve()
        layer = path.relative_to(TESTS).parts[0] if path.is_relative_to(TESTS) else None
        if layer in LAYERS:
            item.add_marker(getattr(pytest.mark, layer))
        else:
            outside.add(str(path))
    if outside:
        # A test outside the layer directories would be left out of every `-m <layer>` run.
        warnings.warn(pytest.PytestWarning(f"tests outside tests/{{{','.join(LAYERS)}}}/ have no layer marker: "
                                           + ", ".join(sorted(outside))), stacklevel=1)


@pytest.fixture(scope="session")
def s3_server() -> S3Server:
    with moto_s3_server() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_settings():
    """The settings are read from the environment once per process: each test reads them afresh (after its own
    monkeypatched variables), and leaves none cached for the next."""
    from imgtrans_pipeline.core.settings import reset_settings

    reset_settings()
    yield
    reset_settings()


@pytest.fixture
def setenv(monkeypatch: pytest.MonkeyPatch):
    """Set environment variables for this test and have the settings read them (they are read once)."""
    from imgtrans_pipeline.core.settings import reset_settings

    def apply(**variables: str) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        reset_settings()

    return apply


@pytest.fixture(autouse=True)
def _no_stale_dagster_state_storage():
    """Each DagsterInstance registers itself as the process's current definitions-state storage and unregisters
    on close; instances closed out of order (many tests open several) can leave a closed one registered, and the
    next definitions load then reads a deleted SQLite file. Every test starts with none registered."""
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield
