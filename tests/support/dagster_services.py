"""Real Dagster services for tests: a webserver and a daemon as subprocesses, and a throw-away PostgreSQL database.

The operational tests must exercise what production runs (``dagster-webserver``, ``dagster-daemon`` with the
queued run coordinator, run workers started by the default run launcher, the ``dagster`` CLI), not
``execute_in_process`` alone. Everything here starts real processes on a free port with a temporary
``DAGSTER_HOME`` holding a copy of the project's instance configuration, and stops them cleanly — or kills them
when they do not stop — so a failing test never leaves a server behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

log = logging.getLogger(__name__)

PROJECT = Path(__file__).resolve().parents[2]
# A worktree without its own models/ can point at another checkout's (make puts them into models/).
MODELS = Path(os.environ.get("IMGTRANS_MODELS_DIR") or PROJECT / "models")
BIN = Path(sys.executable).parent
TEST_ARTIFACTS = PROJECT / "test-artifacts"  # screenshots and service logs worth keeping after a run
JOB = "translate_images"
LOCATION = "imgtrans_pipeline.orchestration.definitions"  # code location name: the module workspace.yaml names


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_home(home: Path, config: Path | None = None) -> Path:
    """Make ``home`` a DAGSTER_HOME holding a copy of ``config`` (default: the project's dagster.yaml)."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(config or PROJECT / "dagster.yaml", home / "dagster.yaml")
    # Mark the UI's one-time "Join the Dagster community" dialog as seen (what its Skip button writes): it
    # pops up over the Launchpad at a random moment and swallows clicks.
    (home / ".nux").mkdir(exist_ok=True)
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n", encoding="utf-8")
    return home


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in os.environ for the block (dagster.yaml's ``{env: VAR}`` is read when an instance loads)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def initialize_instance(home: Path, env: Mapping[str, str] | None = None) -> None:
    """Create the instance's storage once, before several processes open it.

    Measured: webserver, daemon and their code servers opening a fresh SQLite DAGSTER_HOME at the same moment
    stamp the schema twice ("alembic_version has more than one head present") and the code location fails to
    load. Opening it once first avoids the race (``dagster instance migrate`` does the same from a shell).
    """
    from dagster import DagsterInstance

    with patched_environ(env or {}), DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs_count()


def pipeline_env(tmp: Path) -> dict[str, str]:
    """IMGTRANS_* variables that keep a test's artifacts and translation cache inside ``tmp``."""
    return {
        "IMGTRANS_ARTIFACTS": str(tmp / "artifacts"),
        "IMGTRANS_TRANSLATION_CACHE": str(tmp / "artifacts" / "translation-cache.sqlite"),
        "IMGTRANS_TRANSLATION_MEMORY": str(tmp / "artifacts" / "translation-memory.sqlite"),
        "IMGTRANS_MODELS_DIR": str(MODELS),
        "IMGTRANS_FONTS_DIR": str(tmp / "no-extra-fonts"),  # system Noto CJK only, like a fresh machine
    }


def run_config(*requests: Mapping[str, Any]) -> dict[str, Any]:
    """The run config of ``translate_images`` for these requests (format of README "Running it in Dagster")."""
    from imgtrans_pipeline.names import run_config as build

    return build(requests)


def pipeline_settings(artifacts: Path, **changes: Any) -> Any:
    """The process's settings with a test's artifacts and translation cache in ``artifacts``, ``MODELS``, the
    system fonts only, and loopback URLs allowed (test servers); ``changes`` as ``Settings.replace``."""
    from imgtrans_pipeline.core.settings import get_settings

    defaults = {"artifacts": str(artifacts), "translate__cache": str(Path(artifacts) / "cache.sqlite"),
                "translate__memory": str(Path(artifacts) / "memory.sqlite"),
                "models_dir": MODELS, "render__fonts_dir": "", "fetch__allow_private_urls": True}
    return get_settings().replace(**{**defaults, **changes})


def _stop(proc: subprocess.Popen[bytes], name: str, timeout: float = 20.0) -> None:
    """SIGINT (graceful), then SIGTERM, then SIGKILL to the process group we started for ``proc``.

    Each service runs in its own session, so its children (code servers, run workers) go with it and nothing
    outside that group is touched.
    """
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %s) ignored %s", name, proc.pid, sig.name)
    # Children that outlived their leader (e.g. a run worker) still share its process group id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class DagsterServices:
    """A running webserver (+ daemon) on one temporary instance."""

    home: Path
    tmp: Path
    port: int
    env: dict[str, str]
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def graphql_client(self) -> Any:
        from dagster_graphql import DagsterGraphQLClient

        return DagsterGraphQLClient("127.0.0.1", port_number=self.port, timeout=60)

    @contextlib.contextmanager
    def instance(self) -> Iterator[Any]:
        """The same instance the services use, opened in the test process (reads ``home``/dagster.yaml)."""
        from dagster import DagsterInstance

        with DagsterInstance.from_config(str(self.home)) as instance:
            yield instance

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``dagster <args>`` against this instance, as an operator would."""
        result = subprocess.run([str(BIN / "dagster"), *args], env=self.env, cwd=PROJECT, capture_output=True,
                                text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise AssertionError(f"dagster {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def log_tail(self, chars: int = 4000) -> str:
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}\n{self.log_tail()}")

    def wait_until_ready(self, timeout: float = 90.0) -> None:
        """Until ``/server_info`` answers and the code location has loaded (the Launchpad needs the job)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as response:
                    if response.status == 200 and self._location_loaded():
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"dagster-webserver not ready after {timeout:.0f} s\n{self.log_tail()}")

    def _location_loaded(self) -> bool:
        query = ('{"query": "{ workspaceOrError { ... on Workspace { locationEntries { name '
                 'locationOrLoadError { __typename } } } } }"}')
        request = urllib.request.Request(f"{self.url}/graphql", data=query.encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read().decode()
        if '"PythonError"' in body:
            raise RuntimeError(f"code location failed to load: {body}\n{self.log_tail()}")
        return '"RepositoryLocation"' in body


def _spawn(name: str, argv: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    out = (logs / f"{name}.log").open("wb")
    try:
        return subprocess.Popen(argv, env=env, cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        out.close()  # the child holds its own descriptor


@contextlib.contextmanager
def dagster_services(tmp: Path, *, config: Path | None = None, daemon: bool = True,
                     extra_env: Mapping[str, str] | None = None, ready_timeout: float = 90.0
                     ) -> Iterator[DagsterServices]:
    """Start ``dagster-webserver`` (and ``dagster-daemon``) on the project's workspace.yaml.

    ``tmp`` receives the DAGSTER_HOME (a copy of ``config``, default the project's dagster.yaml), the artifacts
    and the service logs. The services are stopped on exit whatever happened; their logs stay in ``tmp/logs``.
    """
    home = prepare_home(tmp / "dagster_home", config)
    logs = tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DAGSTER_HOME": str(home), **pipeline_env(tmp), **(extra_env or {})}
    initialize_instance(home, extra_env)
    services = DagsterServices(home=home, tmp=tmp, port=free_port(), env=env, logs=logs)
    workspace = str(PROJECT / "workspace.yaml")
    started = time.monotonic()
    try:
        services.processes["webserver"] = _spawn(
            "webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(services.port),
                          "-w", workspace], env, logs)
        if daemon:
            services.processes["daemon"] = _spawn("daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace],
                                                  env, logs)
        services.wait_until_ready(ready_timeout)
        log.info("dagster services ready on port %s after %.1f s", services.port, time.monotonic() - started)
        yield services
    finally:
        for name, proc in reversed(list(services.processes.items())):
            _stop(proc, name)


# --- PostgreSQL -------------------------------------------------------------------------------------------------

PG_ADMIN_USERS = ("postgres", "root")


@dataclass
class PostgresDatabase:
    """A fresh, uniquely named database on a real server, and how to reach it."""

    host: str
    port: int
    user: str
    password: str
    name: str

    def connect(self) -> Any:
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                                dbname=self.name, connect_timeout=5)

    def env(self) -> dict[str, str]:
        """The variables dagster.postgres.yaml reads."""
        return {"IMGTRANS_PG_HOST": self.host, "IMGTRANS_PG_PORT": str(self.port), "IMGTRANS_PG_USER": self.user,
                "IMGTRANS_PG_PASSWORD": self.password, "IMGTRANS_PG_DB": self.name}


def _admin_connection() -> tuple[Any, str]:
    """Connect to the maintenance database as the first admin user that works; the last error otherwise."""
    import psycopg2

    host = os.environ.get("IMGTRANS_PG_HOST", "127.0.0.1")
    port = int(os.environ.get("IMGTRANS_PG_PORT", "5432"))
    password = os.environ.get("IMGTRANS_PG_PASSWORD", "")
    users = [os.environ["IMGTRANS_PG_USER"]] if os.environ.get("IMGTRANS_PG_USER") else list(PG_ADMIN_USERS)
    errors = []
    for user in users:
        for dbname in (os.environ.get("IMGTRANS_PG_ADMIN_DB", "test"), "postgres"):
            try:
                conn = psycopg2.connect(host=host, port=port, user=user, password=password, dbname=dbname,
                                        connect_timeout=5)
            except psycopg2.OperationalError as error:
                errors.append(f"{user}@{host}:{port}/{dbname}: {str(error).strip()}")
                continue
            conn.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
            return conn, user
    raise ConnectionError("; ".join(errors))


@contextlib.contextmanager
def postgres_database(prefix: str = "imgtrans_test") -> Iterator[PostgresDatabase]:
    """CREATE DATABASE <prefix>_<random> for the duration of the block, then DROP it (forcing out connections).

    No reachable server skips the test, except under CI (env ``CI`` set), where it fails: CI machines have a
    PostgreSQL server, and a silently skipped storage test would hide a broken set-up.
    """
    try:
        admin, user = _admin_connection()
    except ConnectionError as error:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but no PostgreSQL server is reachable: {error}")
        pytest.skip(f"no PostgreSQL server reachable (set IMGTRANS_PG_HOST/PORT/USER): {error}")
    name = f"{prefix}_{secrets.token_hex(4)}"
    info = admin.get_dsn_parameters()
    database = PostgresDatabase(host=info.get("host", "127.0.0.1"), port=int(info.get("port", 5432)), user=user,
                                password=os.environ.get("IMGTRANS_PG_PASSWORD", ""), name=name)
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
