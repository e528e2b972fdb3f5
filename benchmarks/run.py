"""Benchmark: bare engine loop vs the Dagster job (one request per run, N per run) vs the Redis intake path.

    .venv/bin/python benchmarks/run.py --images 200 --json bench.json
    .venv/bin/python benchmarks/run.py --quick                      # small smoke run (~12 images)

Every mode processes the same seeded workload with its own artifact store, translation cache and Dagster home;
the in-process modes each run in a fresh child process (their own model load, their own peak RSS). See
benchmarks/README.md for what each mode means and how to read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:  # run as a script from the repo root: make `benchmarks` and `tests` importable
    sys.path.insert(0, str(PROJECT))

from benchmarks import report  # noqa: E402
from benchmarks.workload import generate, load_manifest, save_manifest  # noqa: E402

ALL_MODES = ("bare", "job", "batched", "intake")
DEFAULT_INTAKE_WORKERS = "2"  # what `make serve` starts (see the Makefile)
TARGETS = {
    "intake_throughput_vs_bare_min": 0.9,
    "intake_single_p50_over_bare_max_s": 3.0,
    "run_process_peak_rss_max_mib": 1536.0,
    "tall_vs_regular_max": 3.0,
}


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None, help="images in the burst workload (default 200)")
    parser.add_argument("--modes", default=",".join(ALL_MODES), help="comma-separated subset of " + ",".join(ALL_MODES))
    parser.add_argument("--batch-sizes", default=None, help="requests per run in 'batched' mode (default 4,8,16,32)")
    parser.add_argument("--intake-batch-size", type=int, default=None,
                        help="IMGTRANS_BATCH_SIZE for the intake mode (default: the project's default, 8)")
    parser.add_argument("--singles", type=int, default=None,
                        help="800x800 requests sent one at a time on an idle system, per mode (default 5; plus one "
                             "tall)")
    parser.add_argument("--tall-fraction", type=float, default=0.1, help="share of 790x6000 images (default 0.1)")
    parser.add_argument("--seed", type=int, default=20261105)
    parser.add_argument("--quick", action="store_true", help="smoke run: 12 images, batch size 4, 2 singles")
    parser.add_argument("--json", dest="json_out", help="write every number to this JSON file")
    parser.add_argument("--workdir", help="where images, artifacts and Dagster homes go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    experiments = parser.add_argument_group("experiments (defaults = the project's defaults)")
    experiments.add_argument("--workers", type=int, default=1,
                             help="in-process modes: threads taking requests/batches from one queue (default 1)")
    experiments.add_argument("--ocr-threads", type=int, default=None,
                             help="in-process modes: onnxruntime threads of the OCR engine (default: the resource's)")
    experiments.add_argument("--no-gc-after-run", dest="gc_after_run", action="store_false",
                             help="job/batched: skip the garbage collection the CLI and the run workers do after "
                                  "each run (shows how memory grows without it)")
    experiments.add_argument("--instance-yaml", default=None,
                             help="dagster.yaml for the Dagster homes of job/batched/intake (default: the project's)")
    parser.add_argument("--intake-workers", default=None,
                        help="intake mode(s) to run, comma-separated: 0 = one new process per run (dagster.yaml), "
                             "N = N warm Celery run workers (dagster.workers.yaml, the production setup; default "
                             f"{DEFAULT_INTAKE_WORKERS})")
    experiments.add_argument("--intake-workspace", default=None,
                             help="workspace.yaml the intake daemon loads (default: the project's)")
    # internal: one in-process mode in a child process
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    parser.add_argument("--mode-dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    args.images = args.images if args.images is not None else (12 if quick else 200)
    args.batch_sizes = [int(b) for b in (args.batch_sizes or ("4" if quick else "4,8,16,32")).split(",") if b]
    args.singles = args.singles if args.singles is not None else (2 if quick else 5)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    args.intake_workers = [int(w) for w in (args.intake_workers or DEFAULT_INTAKE_WORKERS).split(",") if w.strip()]
    unknown = set(args.modes) - set(ALL_MODES)
    if unknown:
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    return args


def _intake_default_batch_size() -> int:
    from imgtrans_pipeline.core.settings import get_settings

    return get_settings().runtime.batch_size


def _fresh_home(mode_dir: Path, instance_yaml: Path) -> Path:
    home = mode_dir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(instance_yaml, home / "dagster.yaml")
    return home


def _run_child(mode: str, manifest: Path, work: Path, batch_size: int, singles: int,
               args: argparse.Namespace) -> dict[str, Any]:
    label = mode if mode != "batched" else f"batched-{batch_size}"
    mode_dir = work / label
    mode_dir.mkdir(parents=True, exist_ok=True)
    out = mode_dir / "result.json"
    instance_yaml = Path(args.instance_yaml or PROJECT / "dagster.yaml").resolve()
    env = {**os.environ, "DAGSTER_HOME": str(_fresh_home(mode_dir, instance_yaml))}
    env.pop("IMGTRANS_REDIS_URL", None)  # in-process runs never touch Redis
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--manifest", str(manifest),
           "--mode-dir", str(mode_dir), "--out", str(out), "--batch-size", str(batch_size),
           "--singles", str(singles), "--workers", str(args.workers)]
    if args.ocr_threads is not None:
        cmd += ["--ocr-threads", str(args.ocr_threads)]
    if not args.gc_after_run:
        cmd.append("--no-gc-after-run")
    _progress(f"{label}: starting child process")
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=PROJECT, env=env)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"mode {label} failed (exit {proc.returncode})")
    raw = json.loads(out.read_text(encoding="utf-8"))
    raw["child_wall_s"] = time.perf_counter() - start
    return raw


def _targets(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Each target of issue 5 against the measurement, with pass/fail (None when the mode was not run)."""
    by: dict[str, dict[str, Any]] = {}
    for s in summaries:
        by.setdefault(s["mode"], s)
    bare = by.get("bare")
    result: dict[str, Any] = {}
    for intake in (s for s in summaries if s["mode"] == "intake" and bare):
        suffix = f" [{intake['label']}]"
        ratio = intake.get("throughput_vs_bare")
        result["intake_throughput_vs_bare" + suffix] = {"value": ratio, "target": ">= 0.9",
                                                        "ok": ratio is not None and ratio >= 0.9}
        delta = intake.get("single_p50_minus_bare_s")
        result["intake_single_p50_minus_bare_s" + suffix] = {"value": delta, "target": "<= 3.0",
                                                             "ok": delta is not None and delta <= 3.0}
    peaks = []
    for s in summaries:
        p = s.get("peak_rss_mib") or {}
        value = p.get("run_worker", p.get("run_process"))
        if value is not None:
            peaks.append((s["label"], value))
    if peaks:
        label, worst = max(peaks, key=lambda x: x[1])
        result["run_process_peak_rss_mib"] = {"value": round(worst, 1), "mode": label, "target": "<= 1536",
                                              "ok": worst <= 1536}
    for name in ("bare", "job", "intake"):
        s = by.get(name)
        if not s:
            continue
        ratio = s.get("tall_ratio_service") if name != "intake" else s.get("tall_ratio_single")
        if ratio is None:
            ratio = s.get("tall_ratio_single")
        result[f"tall_vs_800_{name}"] = {"value": ratio, "target": "<= 3.0", "ok": ratio is not None and ratio <= 3}
    return result


def _environment() -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for pkg in ("dagster", "rapidocr", "onnxruntime", "ctranslate2", "opencv-python-headless", "redis"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    try:
        redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        redis_version = None
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "packages": versions, "redis_server": redis_version,
            "git_head": subprocess.run(["git", "-C", str(PROJECT), "rev-parse", "--short", "HEAD"],
                                       capture_output=True, text=True).stdout.strip(),
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.child:
        from benchmarks.inproc import run_child

        run_child(args.child, Path(args.manifest), Path(args.mode_dir), Path(args.out), args.batch_size,
                  args.singles, workers=args.workers, ocr_threads=args.ocr_threads,
                  gc_after_run=args.gc_after_run)
        return 0

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="imgtrans-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        _progress(f"generating {args.images} images (+{args.singles + 2} for warm-up/singles) in {work}")
        images = work / "images"
        workload = {
            "burst": generate(images, args.images, seed=args.seed, tall_fraction=args.tall_fraction),
            "single": generate(images, args.singles, seed=args.seed + 1, tall_fraction=0, prefix="single")
            + generate(images, 1, seed=args.seed + 2, tall_fraction=1.0, prefix="single-tall"),
            "warmup": generate(images, 1, seed=args.seed + 3, tall_fraction=0, prefix="warmup"),
        }
        manifest = work / "workload.json"
        save_manifest(manifest, workload)
        n_tall = sum(1 for i in workload["burst"] if i.kind == "tall")
        _progress(f"workload: {args.images - n_tall} x 800x800, {n_tall} x 790x6000")

        raws: list[dict[str, Any]] = []
        errors: dict[str, str] = {}
        for mode in args.modes:
            sizes = args.batch_sizes if mode == "batched" else [1]
            for size in sizes:
                label = mode if mode != "batched" else f"batched/{size}"
                try:
                    if mode == "intake":
                        from benchmarks.intake import run_intake

                        loaded = load_manifest(manifest)
                        batch = args.intake_batch_size or _intake_default_batch_size()
                        for workers in args.intake_workers:
                            how = f"{workers} warm Celery run workers" if workers else "a process per run"
                            _progress(f"intake: starting redis-server and dagster-daemon (batch size {batch}, {how})")
                            raws.append(run_intake(
                                loaded["burst"], loaded["single"][: args.singles] + loaded["single"][-1:],
                                loaded["warmup"][0], work / f"intake-{workers}w", batch,
                                instance_yaml=Path(args.instance_yaml) if args.instance_yaml else None,
                                workspace=Path(args.intake_workspace) if args.intake_workspace else None,
                                workers=workers))
                    else:
                        raws.append(_run_child(mode, manifest, work, size, args.singles, args))
                except Exception as error:  # report what ran; name what did not
                    errors[label] = f"{type(error).__name__}: {error}"
                    _progress(f"{label}: FAILED: {errors[label]}")

        summaries = [report.summarize(raw) for raw in raws]
        report.add_ratios(summaries)
        targets = _targets(summaries)
        print(f"\nimgtrans-pipeline benchmark: {args.images} images ({args.images - n_tall} x 800x800, "
              f"{n_tall} x 790x6000), {os.cpu_count()} CPUs, total {time.perf_counter() - started:.0f}s\n")
        print(report.table(summaries))
        bare = next((s for s in summaries if s["mode"] == "bare"), None)
        if bare and bare.get("load_times"):
            lt = bare["load_times"]
            print(f"\nmodel load (bare): OCR {lt['ocr_load_s']:.2f}s + first call {lt['ocr_first_call_s']:.2f}s, "
                  f"translator {lt['translate_load_s']:.2f}s + first call {lt['translate_first_call_s']:.2f}s, "
                  f"inpainter {lt['inpaint_load_s']:.3f}s + first call {lt['inpaint_first_call_s']:.3f}s, "
                  f"renderer {lt['render_load_s']:.3f}s")
        for raw in (r for r in raws if r["mode"] == "intake"):
            dagster = {k: v for k, v in (raw.get("dagster") or {}).items() if k in ("runs", "statuses", "error")}
            procs = {k: v for k, v in (raw.get("processes") or {}).items() if k != "processes"}
            print(f"intake ({raw.get('variant') or 'process per run'}): batch size {raw['batch_size']}, "
                  f"processes {json.dumps(procs)}, "
                  f"status hashes {raw.get('status_hashes')}, dagster {json.dumps(dagster)}")
        if targets:
            print("\ntargets (issue 5):")
            for name, t in targets.items():
                print(f"  {name:52s} {t['value']!s:>8} (target {t['target']}) {'OK' if t['ok'] else 'MISSED'}")
        if errors:
            print("\nmodes that did not finish: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
        if args.json_out:
            Path(args.json_out).write_text(json.dumps({
                "args": {k: v for k, v in vars(args).items() if k not in ("child", "manifest", "mode_dir", "out")},
                "environment": _environment(), "workload": {"images": args.images, "tall": n_tall},
                "summaries": summaries, "targets": targets, "errors": errors, "raw": raws,
                "total_s": time.perf_counter() - started}, indent=1), encoding="utf-8")
            _progress(f"wrote {args.json_out}")
        return 1 if errors else 0
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
