"""``imgtrans``: translate images from the command line through the same Dagster job the UI and sensor run.

Each batch of inputs becomes one in-process run of ``translate_images`` recorded in the Dagster instance
(``$DAGSTER_HOME``, or ``./.dagster_home`` when unset), so CLI runs show up in ``dagster dev`` like any other.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from . import names
from .core.logs import JsonFormatter
from .core.settings import get_settings
from .monitoring.cli import add_status_commands
from .orchestration.instance import dagster_instance
from .orchestration.memory import release_run_memory
from .scaleout.serve import add_serve_command

logger = logging.getLogger("imgtrans")


def _configure_logging(verbose: bool) -> None:
    if not verbose:
        # Dagster's beta/preview notices about its own API are for developers, not for CLI users.
        warnings.filterwarnings("ignore", module=r"dagster\b.*")
    handler = logging.StreamHandler(sys.stderr)
    if get_settings().runtime.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("imgtrans_pipeline")
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)


@dataclass
class Outcome:
    input: str
    request_id: str
    status: str
    result: str | None
    error: str | None
    run_id: str
    inspection: dict[str, Any] | None = None  # verdict, categories and matches of the content inspection


def _request(input_ref: str, args: argparse.Namespace, request_id: str) -> dict[str, Any]:
    """One input as a request in the run config's shape (validated by the download op)."""
    from .core.request import RequestOptions, TranslationRequest, parse_context, to_config

    options = RequestOptions(output_format=args.format, context=parse_context(getattr(args, "context", None)),
                             glossary_scope=getattr(args, "glossary_scope", None) or "",
                             mode="inspect" if getattr(args, "inspect_only", False) else "translate")
    return to_config(TranslationRequest(request_id=request_id, image_url=input_ref, target_lang=args.to,
                                        source_lang=args.source, options=options))


def _read_meta(store: Any, request_id: str) -> dict[str, Any] | None:
    from .storage import get_json

    try:
        return get_json(store, request_id, names.META_JSON)
    except Exception:
        return None


def translate_inputs(inputs: list[str], args: argparse.Namespace) -> list[Outcome]:
    """Run the Dagster job in-process over ``inputs`` in batches; return one outcome per input."""
    from .orchestration.definitions import build_definitions, build_resources

    # The instance first: Dagster loads definitions against the current instance's state storage.
    instance = dagster_instance()
    settings = get_settings()
    if args.artifacts:
        settings = settings.model_copy(update={"artifacts": args.artifacts})
    job = build_definitions(settings).resolve_job_def(names.TRANSLATE_JOB)
    store = build_resources(settings)["artifacts"].store()  # type: ignore[attr-defined]
    outcomes: list[Outcome] = []
    batches = [inputs[i:i + args.batch_size] for i in range(0, len(inputs), args.batch_size)]
    progress = _progress(len(inputs), enabled=len(inputs) > 1 and not args.json)
    for batch in batches:
        ids = {ref: f"cli-{uuid.uuid4().hex[:12]}" for ref in batch}
        # Dagster's console logger prints every event at DEBUG; the CLI prints results, -v shows the events.
        run_config = names.run_config((_request(ref, args, ids[ref]) for ref in batch),
                                      log_level="DEBUG" if args.verbose else "WARNING")
        result = job.execute_in_process(run_config=run_config, instance=instance, raise_on_error=False,
                                        tags={names.TAG_SOURCE: names.SOURCE_CLI})
        release_run_memory()
        for ref in batch:
            meta = _read_meta(store, ids[ref])
            if meta is None:
                error = _run_error(result) or "the run failed before the request was recorded"
                outcomes.append(Outcome(ref, ids[ref], "failed", None, error, result.run_id))
            else:
                err = meta.get("error")
                reason = f"[{err['stage']}] {err['reason']}" if err else (meta.get("review") or {}).get("why")
                inspection = meta.get("inspection")
                findings = None if inspection is None else {
                    "verdict": inspection.get("verdict", "pass"), "categories": inspection.get("categories", {}),
                    "matches": inspection.get("matches", [])}
                outcomes.append(Outcome(ref, ids[ref], meta["status"], meta.get("result"), reason, result.run_id,
                                        findings))
        progress(len(batch))
    progress(0, close=True)
    return outcomes


def _run_error(result: Any) -> str | None:
    for event in result.all_events:
        if event.is_failure and event.step_failure_data is not None:
            return event.step_failure_data.error.message.strip().splitlines()[0]
    return None


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return lambda n, close=False: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="img", file=sys.stderr)

    def advance(n: int, close: bool = False) -> None:
        bar.update(n)
        if close:
            bar.close()

    return advance


def _local_path(uri: str | None) -> Path | None:
    if uri and uri.startswith("file://"):
        return Path(urlparse(uri).path)
    return None


def _cmd_translate(args: argparse.Namespace) -> int:
    inputs: list[str] = []
    for ref in args.inputs:
        path = Path(ref)
        if path.is_dir():
            inputs += [str(p) for p in sorted(path.iterdir())
                       if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")]
        else:
            inputs.append(ref)
    if not inputs:
        print("imgtrans: no input images", file=sys.stderr)
        return 2
    if not args.to:
        if not args.inspect_only:
            print("imgtrans translate: error: --to is required (unless --inspect-only)", file=sys.stderr)
            raise SystemExit(2)  # a usage error, as argparse reports one
        args.to = "zh" if args.source == "en" else "en"  # nothing is translated; the request still names a target
    from .core.errors import InvalidRequest
    from .core.request import parse_context

    try:
        parse_context(args.context)
    except InvalidRequest as error:
        print(f"imgtrans: --context: {error}", file=sys.stderr)
        return 2
    if args.glossary_scope:
        from .core.request import validate_scope

        try:
            validate_scope(args.glossary_scope, field="--glossary-scope")
        except InvalidRequest as error:
            print(f"imgtrans: {error}", file=sys.stderr)
            return 2
    outcomes = translate_inputs(inputs, args)
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for outcome in outcomes:
        shown = outcome.result
        local = _local_path(outcome.result)
        held = outcome.status == "needs_review"  # not delivered (not copied to --out) until approved
        if out_dir and local is not None and not held:
            dest = out_dir / f"{Path(urlparse(outcome.input).path).stem}.{args.to}{local.suffix}"
            shutil.copyfile(local, dest)
            shown = str(dest)
        elif local is not None:
            shown = str(local)
        if outcome.status not in ("succeeded", "needs_review"):
            failed += 1
        if args.json:
            print(json.dumps({**outcome.__dict__, "result": shown}, ensure_ascii=False))
        elif args.inspect_only and outcome.status == "succeeded":
            found = outcome.inspection or {}
            hits = "; ".join(f"{m['rule']} ({m['action']}): '{m['text']}' block {m['block']}"
                             for m in found.get("matches", []))
            print(f"{outcome.input} INSPECTED {found.get('verdict', 'pass')}" + (f": {hits}" if hits else ""))
        elif outcome.status == "succeeded":
            print(f"{outcome.input} -> {shown}")
        elif held:
            print(f"{outcome.input} NEEDS REVIEW {outcome.error} (request {outcome.request_id}; result {shown})")
        else:
            print(f"{outcome.input} FAILED {outcome.error} (request {outcome.request_id}, run {outcome.run_id})")
    return 1 if failed else 0


def _cmd_backfill(args: argparse.Namespace) -> int:
    """Translate stored images that lack a target language (or were made by an older pipeline version)."""
    from .catalogue import missing_translations
    from .core.languages import normalize_language
    from .orchestration.definitions import build_definitions, build_resources
    from .orchestration.schedules import plan_backfill

    settings = get_settings()
    targets = [normalize_language(code, field="--to") for code in args.to]
    missing = missing_translations(build_resources(settings)["artifacts"].store(), targets)  # type: ignore[attr-defined]
    reasons: dict[str, int] = {}
    for item in missing:
        reasons[item.reason] = reasons.get(item.reason, 0) + 1
    detail = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items())) or "nothing to do"
    print(f"{len(missing)} translation(s) missing for {', '.join(targets)}: {detail}")
    if args.dry_run or not missing:
        return 0
    instance = dagster_instance()
    job = build_definitions(settings).resolve_job_def(names.BACKFILL_JOB)
    ranges = plan_backfill(instance, missing, args.per_run)
    done = failed = 0
    progress = _progress(len(missing), enabled=len(ranges) > 1)
    for backfill_range in ranges:
        result = job.execute_in_process(instance=instance, tags=backfill_range.tags(), raise_on_error=False)
        if result.success:
            done += backfill_range.size
        else:
            failed += backfill_range.size
            print(f"run {result.run_id} failed: {_run_error(result)}", file=sys.stderr)
        progress(backfill_range.size)
    progress(0, close=True)
    print(f"backfilled {done} translation(s) in {len(ranges)} run(s)" + (f", {failed} failed" if failed else ""))
    return 1 if failed else 0


def _cmd_requeue(args: argparse.Namespace) -> int:
    """Move dead letters back onto the request queue (seed 004's operator retry)."""
    from .intake import DeadLetters, IntakeConfig

    if args.kafka:
        from .intake.kafka import KafkaConfig, requeue_dead_letters

        config = KafkaConfig.from_settings(get_settings().kafka)
        moved, read = requeue_dead_letters(config, request_ids=args.ids or None, limit=args.limit)
        print(f"re-published {moved} of {read} dead letter(s) from {config.dead_topic} onto {config.topic}")
        return 0

    settings = IntakeConfig.from_settings(get_settings().intake)
    dead = DeadLetters(settings.connect(), settings)
    before = dead.count()
    moved = dead.requeue(request_ids=args.ids or None, limit=args.limit)
    print(f"re-queued {moved} of {before} dead letter(s) onto {settings.queue}")
    return 0


def _memory() -> Any:
    from .engines.translate.memory import TranslationMemory

    path = get_settings().translate.memory
    if not path:
        raise SystemExit("imgtrans tm: the translation memory is off (IMGTRANS_TRANSLATION_MEMORY=off)")
    return TranslationMemory(path)


def _cmd_tm_export(args: argparse.Namespace) -> int:
    """Write the translation memory as JSONL or CSV (``-``: standard output)."""
    from .engines.translate.memory import format_of

    memory = _memory()
    fmt = format_of(args.file, args.format)
    filters = {"source_lang": args.source, "target_lang": args.to, "scope": args.scope}
    if args.file == "-":
        count = memory.export_entries(sys.stdout, fmt, **filters)
    else:
        with open(args.file, "w", encoding="utf-8", newline="") as out:
            count = memory.export_entries(out, fmt, **filters)
        print(f"exported {count} entr{'y' if count == 1 else 'ies'} to {args.file} ({fmt}) from {memory.path}")
    return 0


def _cmd_tm_import(args: argparse.Namespace) -> int:
    """Add or update entries from a JSONL or CSV file; bad rows are reported by line and not imported."""
    from .engines.translate.memory import format_of

    memory = _memory()
    try:
        text = Path(args.file).read_text(encoding="utf-8-sig")  # a BOM from spreadsheet CSV exports is fine
        report = memory.import_entries(text, format_of(args.file, args.format), origin=args.origin,
                                       dry_run=args.dry_run)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        print(f"imgtrans tm import: {args.file}: {error}; nothing imported", file=sys.stderr)
        return 2
    for error in report.errors:
        print(f"{args.file}: {error}", file=sys.stderr)
    print(f"{args.file}: {report.summary()} ({memory.path})")
    return 1 if report.errors else 0


def _cmd_tm_add(args: argparse.Namespace) -> int:
    memory = _memory()
    try:
        entry = memory.add(args.text, args.translation, args.source, args.to, scope=args.scope or "",
                           origin=args.origin)
    except ValueError as error:
        print(f"imgtrans tm add: {error}", file=sys.stderr)
        return 2
    print(f"{entry.source} -> {entry.translation} ({entry.source_lang}->{entry.target_lang}, "
          f"scope {entry.scope or 'global'})")
    return 0


def _add_tm_commands(sub: Any) -> None:
    tm = sub.add_parser("tm", help="the translation memory: curated translations used before any engine")
    tm_sub = tm.add_subparsers(dest="tm_command", required=True)
    ex = tm_sub.add_parser("export", help="write every entry as JSONL or CSV (by the file name, or --format)")
    ex.add_argument("file", help="output file (.jsonl or .csv), - for standard output")
    ex.add_argument("--format", choices=["jsonl", "csv"])
    ex.add_argument("--from", dest="source", help="only this source language")
    ex.add_argument("--to", help="only this target language")
    ex.add_argument("--scope", help="only this scope ('' = global entries)")
    ex.set_defaults(func=_cmd_tm_export)
    im = tm_sub.add_parser("import", help="add or update entries from JSONL or CSV; bad rows are reported")
    im.add_argument("file", help="a file with source, translation, source_lang, target_lang[, scope, origin, "
                    "created_at, updated_at]")
    im.add_argument("--format", choices=["jsonl", "csv"])
    im.add_argument("--origin", default="import", help="origin of rows that name none (default: import)")
    im.add_argument("--dry-run", action="store_true", help="check and count only")
    im.set_defaults(func=_cmd_tm_import)
    ad = tm_sub.add_parser("add", help="add or replace one entry")
    ad.add_argument("text", help="the source text (a whole text block)")
    ad.add_argument("translation")
    ad.add_argument("--from", dest="source", required=True, help="source language")
    ad.add_argument("--to", required=True, help="target language")
    ad.add_argument("--scope", default="", help="catalogue/shop id (default: global)")
    ad.add_argument("--origin", default="api", help="who made it (default: api)")
    ad.set_defaults(func=_cmd_tm_add)


def _review_service(args: argparse.Namespace) -> Any:
    from .review.service import ReviewService

    settings = get_settings()
    if getattr(args, "artifacts", None):
        settings = settings.model_copy(update={"artifacts": args.artifacts})
    return ReviewService(settings, instance=dagster_instance() if args.command == "import" else None)


def _cmd_export(args: argparse.Namespace) -> int:
    """The blocks of the requests in a review state, one row/unit per block, for outside translators."""
    from .review.exchange import export

    state = None if args.state == "all" else args.state
    count = export(_review_service(args).store, Path(args.out), args.format, state)
    print(f"exported {count} block(s) to {args.out}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    """Apply the changed translations of an exported file: re-render exactly the requests that changed."""
    from .review.exchange import apply_import, read_file
    from .review.state import ReviewError

    try:
        rows = read_file(Path(args.file))
    except ReviewError as error:
        print(f"imgtrans import: {error.message}; nothing applied", file=sys.stderr)
        return 2
    service = _review_service(args)
    report = apply_import(service.store, rows, service.rerender, by=args.by or f"import:{Path(args.file).name}")
    for line in report.lines():
        print(line)
    print(f"{len(report.applied)} request(s) re-rendered, {len(report.unchanged)} unchanged, "
          f"{len(report.errors)} not applied")
    return 0 if report.ok else 1


def _cmd_decide(args: argparse.Namespace) -> int:
    from .review.state import ReviewError

    service = _review_service(args)
    try:
        if args.command == "approve":
            done = service.approve(args.request_id, by=args.by, note=args.note or "")
        else:
            done = service.reject(args.request_id, reason=args.reason, by=args.by)
    except ReviewError as error:
        print(f"imgtrans {args.command}: {error.message}", file=sys.stderr)
        return 1
    local = _local_path(done.get("result"))
    print(f"{done['request_id']}: {done['state']} at revision {done['revision']}"
          + (f" -> {local}" if local and done["state"] == "approved" else ""))
    return 0


def _cmd_review(args: argparse.Namespace) -> int:
    """Serve the review page (and /metrics, /status) until Ctrl-C or SIGTERM."""
    from .web import check_token_rule
    from .web.review import review_server

    settings = get_settings()
    if args.artifacts:
        settings = settings.model_copy(update={"artifacts": args.artifacts})
    token = settings.web.review_token.get_secret_value() if settings.web.review_token else None
    try:
        check_token_rule(args.host, token)  # before touching the Dagster instance
        server = review_server(host=args.host, port=args.port, token=token, instance=dagster_instance(),
                               settings=settings)
    except (ValueError, OSError) as error:  # no token off loopback, a busy port
        print(f"imgtrans review: {error}", file=sys.stderr)
        return 2

    def announce() -> None:
        hint = " (token required: add ?token=...)" if token else ""
        print(f"imgtrans review page on {server.url}/review/{hint}; Ctrl-C stops it", flush=True)

    server.serve_until_signalled(ready=announce)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imgtrans", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log every stage")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("translate", help="translate images (files, folders, URLs) through the Dagster job")
    tr.add_argument("inputs", nargs="+", help="image files, folders of images, http(s)://, file:// or s3:// URLs")
    tr.add_argument("--to", help="target language (e.g. en, ko, ja); required unless --inspect-only")
    tr.add_argument("--from", dest="source", default="auto", help="source language (default: auto)")
    tr.add_argument("--out", help="copy results here as <name>.<lang>.<ext>")
    tr.add_argument("--format", default="png", choices=["png", "jpeg", "webp"], help="output format")
    tr.add_argument("--artifacts", help="artifact store (directory or s3://bucket/prefix); default ./artifacts")
    tr.add_argument("--glossary-scope", help="catalogue/shop id: its glossary section and translation memory "
                    "entries are used before the global ones")
    tr.add_argument("--context", help="what the images show (product title, category, brand...): free text "
                    "LLM translation engines use to choose their words")
    tr.add_argument("--batch-size", type=int, default=4, help="requests per Dagster run (default 4)")
    tr.add_argument("--json", action="store_true", help="print one JSON object per input")
    tr.add_argument("--inspect-only", action="store_true",
                    help="download, OCR and content inspection only: print the findings, translate nothing "
                         "(rules: IMGTRANS_INSPECTION_RULES, else the shipped starter set)")
    tr.set_defaults(func=_cmd_translate)
    bf = sub.add_parser("backfill", help="translate stored images missing a target language or pipeline version")
    bf.add_argument("--to", action="append", required=True, help="target language (repeatable)")
    bf.add_argument("--dry-run", action="store_true", help="only say what is missing")
    bf.add_argument("--per-run", type=int, default=200, help="translations per run (default 200)")
    bf.set_defaults(func=_cmd_backfill)
    rq = sub.add_parser("requeue", help="re-queue dead letters (uses IMGTRANS_REDIS_URL, IMGTRANS_DEAD, ...)")
    rq.add_argument("--id", dest="ids", action="append", help="only this request id (repeatable)")
    rq.add_argument("--limit", type=int, help="at most this many")
    rq.add_argument("--kafka", action="store_true",
                    help="re-publish from the Kafka dead-letter topic (IMGTRANS_KAFKA_*) instead of Redis")
    rq.set_defaults(func=_cmd_requeue)
    _add_tm_commands(sub)


    ex = sub.add_parser("export", help="write the blocks of requests under review to CSV or XLIFF")
    ex.add_argument("--state", default="needs_review", choices=["needs_review", "approved", "rejected", "all"])
    ex.add_argument("--format", default="csv", choices=["csv", "xliff"])
    ex.add_argument("--out", required=True, help="file to write")
    ex.add_argument("--artifacts", help="artifact store (default: IMGTRANS_ARTIFACTS or ./artifacts)")
    ex.set_defaults(func=_cmd_export)
    im = sub.add_parser("import", help="apply changed translations of an exported CSV/XLIFF file and re-render")
    im.add_argument("file")
    im.add_argument("--artifacts", help="artifact store (default: IMGTRANS_ARTIFACTS or ./artifacts)")
    im.add_argument("--by", help="who made the changes (recorded with the revision; default import:<file>)")
    im.set_defaults(func=_cmd_import)
    for command, text in (("approve", "deliver a request held for review (latest revision)"),
                          ("reject", "reject a request held for review (dead letter with the reason)")):
        decide = sub.add_parser(command, help=text)
        decide.add_argument("request_id")
        decide.add_argument("--by", default="cli", help="reviewer name (recorded)")
        decide.add_argument("--artifacts", help="artifact store (default: IMGTRANS_ARTIFACTS or ./artifacts)")
        if command == "approve":
            decide.add_argument("--note")
        else:
            decide.add_argument("--reason", required=True)
        decide.set_defaults(func=_cmd_decide)
    rv = sub.add_parser("review", help="serve the review page (queue, correct, re-render, approve, reject) with "
                                       "/metrics and /status")
    rv.add_argument("--host", default="127.0.0.1",
                    help="address to bind (default 127.0.0.1; any other needs IMGTRANS_REVIEW_TOKEN)")
    rv.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    rv.add_argument("--artifacts", help="artifact store (default: IMGTRANS_ARTIFACTS or ./artifacts)")
    rv.set_defaults(func=_cmd_review)
    add_status_commands(sub)  # status, metrics-server
    add_serve_command(sub)
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
