"""Fixtures of the system tests that drive a real `dagster-daemon` (tests/support/daemon.py)."""

from tests.support.daemon import daemon_factory, images  # noqa: F401  (fixtures)
