"""``imgtrans serve``: the production intake on one host, as one command.

It starts the standard processes and nothing home-made in between:

1. a **code server** (``dagster code-server start``) that serves the definitions for as long as it lives. Why not
   let the daemon manage one: the daemon reloads its workspace every 60 s and each reload starts a new managed code
   server (measured: a new ``dagster api grpc`` process a minute, ~3-4 CPU-s each to import the pipeline, and a
   sensor tick in flight on the old one is cut off). Daemon and webserver reach this one through a ``grpc_server``
   workspace entry, and a reload only re-reads its snapshot;
2. the **run workers**: one Celery worker (``dagster-celery worker start``) with ``--run-workers`` pool processes
   that keep the engines loaded across runs (``dagster.workers.yaml`` sends every run to them);
3. ``dagster-daemon run`` (the Redis sensors, the run queue, run monitoring and retries);
4. ``dagster-webserver`` (unless ``--no-webserver``);
5. in this process, the imgtrans web app (unless ``--no-review``): ``/review`` (the review page), ``/metrics``,
   ``/health`` and ``/status`` on ``--review-host`` (127.0.0.1) ``--review-port`` (8765), the same app as
   ``imgtrans review``; any address but loopback needs ``IMGTRANS_REVIEW_TOKEN``.

Threads are split so that workers x requests in parallel x OCR threads is about the number of cores (two requests
on one OCR thread each beat one request on two threads, README "Performance"). On a host without a GPU, the ``gpu``
pool gets one slot per run worker: there is no device to protect, and one slot would make the workers take turns
for OCR and inpainting. With a GPU it stays at one (or ``--gpu-slots``).

If any process exits, the others are stopped and the command fails; SIGINT/SIGTERM, or the stop file
``IMGTRANS_STOP_FILE`` appearing (the seed services' way: ``touch`` it from a deploy script or a systemd
``ExecStop``), stop all of them gracefully: first the daemon and the webserver (nothing new is claimed or launched),
then the run workers (a Celery worker finishes the run it is executing), then the code server. Requests claimed
but not yet in a run stay claimed in Redis and are submitted by the next start (the sensor's crash safety); runs
queued in Dagster or in Celery start when the workers are back. The stop file is removed once honoured.

``--log-dir DIR`` writes each process's output to ``DIR/<name>_YYYYMMDD.log``, a new file every midnight (older
than ``--log-days`` days removed), each line stamped with the time, the process and the request id it names.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..core.logs import dated_line_logger, log_line
from ..core.settings import get_settings

logger = logging.getLogger(__name__)

LOCATION = "imgtrans_pipeline"
DEFINITIONS_MODULE = "imgtrans_pipeline.orchestration.definitions"
WORKERS_INSTANCE_YAML = "dagster.workers.yaml"


@dataclass(frozen=True)
class ServePlan:
    """What ``serve`` starts: process command lines, their environment and the thread split."""

    home: Path
    workspace: Path
    env: dict[str, str]
    commands: dict[str, list[str]] = field(default_factory=dict)
    gpu_slots: int = 1


def thread_split(cores: int, run_workers: int) -> tuple[int, int]:
    """(requests in parallel per run, OCR threads per request) for ``run_workers`` on ``cores`` cores."""
    item_threads = max(1, cores // max(1, run_workers))
    ocr_threads = max(1, cores // (max(1, run_workers) * item_threads))
    return item_threads, ocr_threads


def has_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None


def workspace_yaml(code_port: int) -> str:
    return ("# Written by `imgtrans serve`: daemon and webserver load the definitions from its code server.\n"
            "load_from:\n"
            "  - grpc_server:\n"
            "      host: 127.0.0.1\n"
            f"      port: {code_port}\n"
            f"      location_name: {LOCATION}\n")


def plan(*, home: Path, run_workers: int, code_port: int, web_port: int | None, queues: str,
         gpu_slots: int | None = None, cores: int | None = None) -> ServePlan:
    bin_dir = Path(sys.executable).parent
    cores = cores or os.cpu_count() or 1
    item_threads, ocr_threads = thread_split(cores, run_workers)
    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(home)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"  # dagster-celery runs `celery` from PATH
    env.setdefault("IMGTRANS_CELERY_PRELOAD", "1")  # pool processes load the engines when they start
    env.setdefault("IMGTRANS_ITEM_THREADS", str(item_threads))
    env.setdefault("IMGTRANS_OCR_THREADS", str(ocr_threads))
    workspace = home / "workspace.serve.yaml"
    commands = {
        "code-server": [str(bin_dir / "dagster"), "code-server", "start", "-m", DEFINITIONS_MODULE, "-a", "defs",
                        "-h", "127.0.0.1", "-p", str(code_port), "--location-name", LOCATION],
        "run-workers": [str(bin_dir / "dagster-celery"), "worker", "start", "-A", "imgtrans_pipeline.scaleout.app",
                        "-n", "run-workers", "-q", queues, "--", "--concurrency", str(run_workers),
                        "--loglevel", "WARNING"],
        "daemon": [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)],
    }
    if web_port is not None:
        commands["webserver"] = [str(bin_dir / "dagster-webserver"), "-w", str(workspace), "-h", "127.0.0.1",
                                 "-p", str(web_port)]
    slots = gpu_slots if gpu_slots is not None else (1 if has_gpu() else run_workers)
    return ServePlan(home=home, workspace=workspace, env=env, commands=commands, gpu_slots=slots)


def _wait_for_code_server(port: int, env: dict[str, str], proc: subprocess.Popen[bytes], timeout: float) -> None:
    bin_dir = Path(sys.executable).parent
    deadline = time.monotonic() + timeout
    while True:
        check = subprocess.run([str(bin_dir / "dagster"), "api", "grpc-health-check", "-p", str(port)], env=env,
                               capture_output=True)
        if check.returncode == 0:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"the code server exited with {proc.returncode} before serving")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the code server did not answer on port {port} within {timeout:.0f} s")
        time.sleep(0.5)


# Stopped in this order: nothing new is claimed or launched while the workers finish their runs.
STOP_ORDER = (("daemon", "webserver"), ("run-workers",), ("code-server",))


def _stop_all(procs: dict[str, subprocess.Popen[bytes]], timeout: float = 60.0) -> None:
    """SIGTERM the process groups wave by wave (``STOP_ORDER``; warm shutdown for Celery), then SIGKILL what is
    still alive after ``timeout`` seconds per wave."""
    waves = [[name for name in wave if name in procs] for wave in STOP_ORDER]
    waves.append([name for name in procs if not any(name in wave for wave in STOP_ORDER)])
    for wave in waves:
        for name in wave:
            if procs[name].poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(procs[name].pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name in wave:
            proc = procs[name]
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in %.0f s: killing it", name, timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _pump(stream: IO[bytes], name: str, log_dir: Path, days: int) -> threading.Thread:
    """Copy a child's output line by line into its dated log file (one writer per file: rotation never races)."""
    dated = dated_line_logger(log_dir, name, backup_count=days)

    def run() -> None:
        with stream:
            for raw in iter(stream.readline, b""):
                log_line(dated, name, raw.decode("utf-8", errors="replace").rstrip("\n"))

    thread = threading.Thread(target=run, name=f"imgtrans-log-{name}", daemon=True)
    thread.start()
    return thread


def stop_requested(stop_file: Path | None) -> bool:
    return stop_file is not None and stop_file.exists()


def _review_web(serve_plan: ServePlan, host: str, port: int) -> Any:
    """The review page + monitoring app over the instance ``serve`` runs (its DAGSTER_HOME), started."""
    from dagster import DagsterInstance

    from ..web.review import review_server

    settings = get_settings()
    token = settings.web.review_token.get_secret_value() if settings.web.review_token else None
    server = review_server(host=host, port=port, token=token,
                           instance=DagsterInstance.from_config(str(serve_plan.home)), settings=settings)
    return server.start()


def serve(serve_plan: ServePlan, *, code_port: int, log_dir: Path | None = None, log_days: int = 30,
          stop_file: Path | None = None, review: tuple[str, int] | None = None) -> int:
    """Start everything in ``serve_plan`` and supervise it until a signal, the stop file, or a process exits;
    ``review`` (host, port): serve the review page and monitoring endpoints from this process too."""
    if not (serve_plan.home / "dagster.yaml").exists():
        raise SystemExit(f"{serve_plan.home}/dagster.yaml is missing: link {WORKERS_INSTANCE_YAML} there "
                         "(`make serve` does)")
    if not serve_plan.env.get("IMGTRANS_REDIS_URL"):
        raise SystemExit("set IMGTRANS_REDIS_URL: the Redis the requests arrive on (also the workers' broker)")
    web = None
    if review is not None:
        try:
            web = _review_web(serve_plan, *review)
        except (ValueError, OSError) as error:  # no token off loopback, a busy port: before starting anything
            raise SystemExit(f"imgtrans serve: review page: {error}") from None
    serve_plan.workspace.write_text(workspace_yaml(code_port), encoding="utf-8")
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "dagster"), "instance", "concurrency", "set", "gpu", str(serve_plan.gpu_slots)],
                   env=serve_plan.env, check=True, capture_output=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    pumps: list[threading.Thread] = []
    stopping = {"signal": 0}
    if stop_requested(stop_file):
        assert stop_file is not None
        logger.warning("removing the stop file %s left from an earlier stop", stop_file)
        stop_file.unlink(missing_ok=True)

    def on_signal(signum: int, _frame: object) -> None:
        stopping["signal"] = signum

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for name, command in serve_plan.commands.items():
            piped = subprocess.PIPE if log_dir else None
            procs[name] = subprocess.Popen(command, env=serve_plan.env, stdout=piped,
                                           stderr=subprocess.STDOUT if log_dir else None, start_new_session=True)
            if log_dir is not None:
                assert procs[name].stdout is not None
                pumps.append(_pump(procs[name].stdout, name, log_dir, log_days))  # type: ignore[arg-type]
            logger.info("started %s (pid %d)", name, procs[name].pid)
            if name == "code-server":
                _wait_for_code_server(code_port, serve_plan.env, procs[name], timeout=180)
        print(f"imgtrans serve: {', '.join(f'{n} (pid {p.pid})' for n, p in procs.items())}; "
              f"gpu pool slots {serve_plan.gpu_slots}"
              + (f"; review page {web.url}/review/" if web is not None else "") + "; Ctrl-C"
              + (f" or the stop file {stop_file}" if stop_file else "") + " stops all", flush=True)
        while not stopping["signal"]:
            exited = {name: proc.returncode for name, proc in procs.items() if proc.poll() is not None}
            if exited:
                logger.error("stopping everything: %s exited", exited)
                return 1
            if stop_requested(stop_file):
                print(f"imgtrans serve: stop file {stop_file} found: stopping gracefully", flush=True)
                break
            time.sleep(0.5)
        return 0
    finally:
        _stop_all(procs)
        for pump in pumps:
            pump.join(timeout=5)
        if stop_requested(stop_file):
            assert stop_file is not None
            stop_file.unlink(missing_ok=True)  # honoured: the next start must not stop at once
        if web is not None:
            web.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def add_serve_command(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sv = subparsers.add_parser("serve", help="production intake on one host: code server, daemon, webserver and "
                                             "warm run workers (needs IMGTRANS_REDIS_URL and the celery extra)")
    sv.add_argument("--run-workers", type=int, default=2, help="warm run worker processes (default 2)")
    sv.add_argument("--port", type=int, default=3000, help="webserver port (default 3000)")
    sv.add_argument("--no-webserver", action="store_true", help="intake only: no UI")
    sv.add_argument("--code-port", type=int, default=4266, help="code server port (default 4266)")
    sv.add_argument("--queues", default="dagster", help="Celery queues the workers take runs from (e.g. gpu,dagster)")
    sv.add_argument("--gpu-slots", type=int, default=None,
                    help="slots of the gpu pool (default: 1 with a GPU, else one per run worker)")
    sv.add_argument("--log-dir", help="write each process's output to <name>_YYYYMMDD.log here (a new file every "
                                      "midnight; each line with the request id it names)")
    sv.add_argument("--log-days", type=int, default=30, help="dated log files kept per process (default 30)")
    sv.add_argument("--review-host", default="127.0.0.1",
                    help="address of the review page / metrics app (default 127.0.0.1; any other needs "
                         "IMGTRANS_REVIEW_TOKEN)")
    sv.add_argument("--review-port", type=int, default=8765, help="its port (default 8765)")
    sv.add_argument("--no-review", action="store_true", help="no review page / metrics app")
    sv.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    home = Path(get_settings().dagster_home or ".dagster_serve").resolve()
    serve_plan = plan(home=home, run_workers=args.run_workers, code_port=args.code_port,
                      web_port=None if args.no_webserver else args.port, queues=args.queues,
                      gpu_slots=args.gpu_slots)
    log_dir = Path(args.log_dir) if args.log_dir else None
    if log_dir:
        log_dir.mkdir(parents=True, exist_ok=True)
    stop_file = get_settings().runtime.stop_file
    return serve(serve_plan, code_port=args.code_port, log_dir=log_dir, log_days=args.log_days,
                 stop_file=Path(stop_file).expanduser().resolve() if stop_file else None,
                 review=None if args.no_review else (args.review_host, args.review_port))
