"""Test session set-up. Engines are expensive to load, so each is loaded once per session in tests/fixtures/."""

from __future__ import annotations

import pytest

from tests.servers import S3Server, moto_s3_server

pytest_plugins = [
    "tests.fixtures.ocr",
    "tests.fixtures.translate",
    "tests.fixtures.imaging",
    "tests.redis_server",
]


@pytest.fixture(scope="session")
def s3_server() -> S3Server:
    with moto_s3_server() as server:
        yield server
