"""Test session set-up. Engines are expensive to load, so each is loaded once per session in tests/support/fixtures/."""

from __future__ import annotations

import pytest

from tests.support.servers import S3Server, moto_s3_server

pytest_plugins = [
    "tests.support.fixtures.ocr",
    "tests.support.fixtures.translate",
    "tests.support.fixtures.imaging",
    "tests.support.redis_server",
]


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
