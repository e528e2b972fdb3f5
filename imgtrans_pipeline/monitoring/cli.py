"""``imgtrans status`` and ``imgtrans metrics-server``.

``imgtrans_pipeline.cli.main`` registers these with :func:`add_status_commands`; ``python -m
imgtrans_pipeline.monitoring.cli`` runs them on their own (same arguments).

Both read the Dagster instance the CLI and ``dagster dev`` use (``$DAGSTER_HOME``, else ``./.dagster_home``), the
Redis intake named by ``IMGTRANS_REDIS_URL`` / ``IMGTRANS_QUEUE`` / ... (skipped when ``IMGTRANS_REDIS_URL`` is
unset) and the artifact store ``IMGTRANS_ARTIFACTS`` for per-stage timings; ``metrics-server`` also reads
``IMGTRANS_REVIEW_TOKEN`` (required with a non-loopback ``--host``), all through ``core.settings``. The
``_cmd_*`` functions take them from there; :func:`run_status` and :func:`run_metrics_server` take everything as
parameters.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, TextIO

from ..core.settings import get_settings
from ..orchestration.instance import dagster_instance
from .collect import DEFAULT_MIN_QUALITY, DEFAULT_WINDOW_S, StatusSnapshot, collect_status

logger = logging.getLogger(__name__)


def _minutes(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number of minutes")
    return value


def add_status_commands(subparsers: Any) -> None:
    """Register ``status`` and ``metrics-server`` on the ``imgtrans`` sub-command parser."""
    st = subparsers.add_parser("status", help="queue depth, in-flight, dead letters, throughput, stage timings")
    st.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    st.add_argument("--window", type=_minutes, default=DEFAULT_WINDOW_S / 60, metavar="MINUTES",
                    help="throughput and finished-run window in minutes (default 15)")
    st.set_defaults(func=_cmd_status)
    ms = subparsers.add_parser("metrics-server", help="serve /metrics (Prometheus), /health and /status over HTTP")
    ms.add_argument("--host", default="127.0.0.1",
                    help="address to bind (default 127.0.0.1; any other needs IMGTRANS_REVIEW_TOKEN)")
    ms.add_argument("--port", type=int, default=9464, help="port (default 9464; 0 picks a free one)")
    ms.add_argument("--window", type=_minutes, default=DEFAULT_WINDOW_S / 60, metavar="MINUTES",
                    help="throughput window in minutes (default 15)")
    ms.add_argument("--cache-seconds", type=float, default=5.0,
                    help="reuse a snapshot for this long across scrapes (default 5)")
    ms.set_defaults(func=_cmd_metrics_server)


# --- formatting -------------------------------------------------------------------------------------------------


def _count(value: int | None, error: str | None) -> str:
    return str(value) if value is not None else f"n/a ({error or 'unknown'})"


def format_status(snapshot: StatusSnapshot) -> str:
    """The snapshot as a readable plain-text table."""
    minutes = snapshot.window_s / 60
    window = f"{minutes:g} min"
    lines = [f"imgtrans status at {snapshot.collected_at} (window {window})", ""]

    where = f"redis {snapshot.queue_kind} {snapshot.queue_key} at {snapshot.redis_url}" if snapshot.queue_key \
        else "redis"
    lines.append(f"Queue ({where})")
    if snapshot.queue_key is None or not snapshot.redis_ok:
        lines.append(f"  {'unavailable:':<22}{snapshot.redis_error}")
    else:
        lines += [f"  {'waiting':<22}{snapshot.queue_depth}",
                  f"  {'claimed (processing)':<22}{snapshot.in_processing}",
                  f"  {'dead letters':<22}{snapshot.dead_letters}",
                  f"  {'results list':<22}{snapshot.results}"]
    lines.append("")

    lines.append(f"Runs ({snapshot.job})")
    if snapshot.runs is None:
        lines.append(f"  {'unavailable:':<22}{snapshot.dagster_error}")
    else:
        runs = snapshot.runs
        lines += [f"  {'queued':<22}{runs['queued']}",
                  f"  {'in progress':<22}{runs['in_progress']}",
                  f"  {'succeeded':<22}{runs['succeeded']}  (ended in the last {window})",
                  f"  {'failed':<22}{runs['failed']}  (ended in the last {window})",
                  f"  {'canceled':<22}{runs['canceled']}  (ended in the last {window})",
                  f"  {'requests in flight':<22}{snapshot.requests_in_flight}",
                  f"  {'throughput':<22}{snapshot.throughput_per_min:.2f} requests/min "
                  f"({snapshot.requests_finished} finished in {window})"]
        if snapshot.runs_truncated:
            lines.append("  (run records truncated: counts are lower bounds)")
    if snapshot.gpu_pool is not None:
        pool = snapshot.gpu_pool
        limit = "no limit" if pool.limit is None else f"limit {pool.limit}"
        lines.append(f"  {'gpu pool ' + repr(pool.pool):<22}{pool.in_use} slot(s) in use, {pool.pending} step(s) "
                     f"waiting, {limit}")
    elif snapshot.gpu_pool_error:
        lines.append(f"  {'gpu pool':<22}n/a ({snapshot.gpu_pool_error})")
    lines.append("")

    lines.append(f"Stage timings (seconds, last {snapshot.timing_requests} finished request(s))")
    if snapshot.timings_error:
        lines.append(f"  unavailable: {snapshot.timings_error}")
    elif not snapshot.stage_timings:
        lines.append("  no finished requests with meta.json yet")
    else:
        lines.append(f"  {'stage':<12}{'p50':>10}{'p95':>10}{'max':>10}{'n':>6}")
        for stage, timing in snapshot.stage_timings.items():
            lines.append(f"  {stage:<12}{timing.p50:>10.3f}{timing.p95:>10.3f}{timing.max:>10.3f}{timing.count:>6}")
    quality = snapshot.quality
    if quality is not None:
        lines += ["", f"Quality score (0..1, last {quality.count} scored request(s))",
                  f"  {'median':<22}{quality.p50:.2f}",
                  f"  {'lowest':<22}{quality.min:.2f}",
                  f"  {'below ' + format(quality.minimum, 'g'):<22}{quality.below_minimum}  (IMGTRANS_MIN_QUALITY)"]
    inspection = snapshot.inspection
    if inspection is not None:
        lines += ["", f"Content inspection (last {inspection.inspected} inspected request(s))"]
        lines += [f"  {verdict:<22}{inspection.verdicts.get(verdict, 0)}"
                  for verdict in ("pass", "flag", "review", "reject")]
        lines += [f"  rule {rule:<17}{count}  ({inspection.rule_categories.get(rule, '')})"
                  for rule, count in sorted(inspection.rules.items(), key=lambda kv: -kv[1])[:10]]
    return "\n".join(lines) + "\n"


# --- commands ---------------------------------------------------------------------------------------------------


def run_status(instance: Any, intake_settings: Any | None, *, window_minutes: float = DEFAULT_WINDOW_S / 60,
               as_json: bool = False, store: Any | None = None, out: TextIO | None = None,
               min_quality: float = DEFAULT_MIN_QUALITY) -> int:
    """Print one snapshot. Exit status 1 when a configured source (Dagster, Redis) could not be read."""
    out = out or sys.stdout
    snapshot = collect_status(instance, intake_settings, window_s=window_minutes * 60, store=store,
                              min_quality=min_quality)
    if as_json:
        out.write(json.dumps(snapshot.to_dict(), ensure_ascii=False, indent=2) + "\n")
    else:
        out.write(format_status(snapshot))
    redis_down = intake_settings is not None and not snapshot.redis_ok
    return 1 if redis_down or not snapshot.dagster_ok else 0


# --- what the commands take from the settings ------------------------------------------------------------------


def configured_intake() -> Any | None:
    """The intake's configuration when Redis intake is configured (``IMGTRANS_REDIS_URL`` set), else None."""
    from ..intake import IntakeConfig

    section = get_settings().intake
    return IntakeConfig.from_settings(section) if section.enabled else None


def configured_artifact_store() -> Any:
    """The configured artifact store (``IMGTRANS_ARTIFACTS``: where ``meta.json`` files hold the stage timings)."""
    from ..orchestration.definitions import build_resources

    return build_resources()["artifacts"].store()  # type: ignore[attr-defined]


def _review_token() -> str | None:
    token = get_settings().web.review_token
    return token.get_secret_value() if token else None


def _store_or_none() -> Any | None:
    try:
        return configured_artifact_store()
    except Exception as exc:  # a bad IMGTRANS_ARTIFACTS: the rest of the status is still worth showing
        logger.warning("no artifact store: %s: %s", type(exc).__name__, exc)
        return None


def _cmd_status(args: argparse.Namespace) -> int:
    try:
        instance = dagster_instance()
    except Exception as exc:  # e.g. a bad DAGSTER_HOME or an unreachable Postgres: still show the Redis side
        print(f"imgtrans status: no Dagster instance: {type(exc).__name__}: {exc}", file=sys.stderr)
        instance = None
    return run_status(instance, configured_intake(), window_minutes=args.window, as_json=args.json,
                      min_quality=get_settings().runtime.min_quality,
                      store=_store_or_none())


def run_metrics_server(instance: Any, intake_settings: Any | None, *, store: Any | None, host: str, port: int,
                       token: str | None, window_minutes: float = DEFAULT_WINDOW_S / 60, cache_seconds: float = 5.0,
                       out: TextIO | None = None) -> int:
    """Serve ``/metrics``, ``/health``, ``/status`` until SIGINT/SIGTERM. Exit status 2 when it cannot listen
    (a non-loopback ``host`` without ``token``, a busy port)."""
    from ..web import WebServer, check_token_rule, create_app
    from .monitor import Monitor

    out = out or sys.stdout
    try:
        check_token_rule(host, token)  # before any connection to Dagster or Redis is made
    except ValueError as exc:
        print(f"imgtrans metrics-server: {exc}", file=sys.stderr)
        return 2
    monitor = Monitor.for_instance(instance, intake_settings, store=store, window_s=window_minutes * 60,
                                   cache_seconds=cache_seconds, min_quality=get_settings().runtime.min_quality)
    try:
        server = WebServer(create_app(monitor, host=host, token=token), port=port)
    except OSError as exc:  # port in use, address not on this host
        print(f"imgtrans metrics-server: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 2
    auth = ", token required" if token else ""

    def announce() -> None:
        # One line on stdout once it answers, so scripts (and tests) learn the port when --port 0 was given.
        print(f"imgtrans metrics server on {server.url} (/metrics /health /status{auth})", file=out, flush=True)

    server.serve_until_signalled(ready=announce)
    print("imgtrans metrics server stopped", file=out, flush=True)
    return 0


def _cmd_metrics_server(args: argparse.Namespace) -> int:
    return run_metrics_server(dagster_instance(), configured_intake(), store=_store_or_none(),
                              host=args.host, port=args.port, token=_review_token(),
                              window_minutes=args.window, cache_seconds=args.cache_seconds)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point with the same sub-commands (``python -m imgtrans_pipeline.monitoring.cli``)."""
    parser = argparse.ArgumentParser(prog="imgtrans", description="imgtrans monitoring")
    add_status_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
