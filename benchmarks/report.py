"""Turn the raw per-request records of each mode into the numbers of the report, and print them as tables."""

from __future__ import annotations

import os
import statistics
from typing import Any

STAGES = ("download", "ocr", "translate", "inpaint", "render", "publish")


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100) of ``values``; None when empty."""
    data = sorted(v for v in values if v is not None)
    if not data:
        return None
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def _mean(values: list[float]) -> float | None:
    data = [v for v in values if v is not None]
    return statistics.fmean(data) if data else None


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _label(raw: dict[str, Any]) -> str:
    label = raw["mode"] if raw["mode"] != "batched" else f"batched/{raw['batch_size']}"
    if raw["mode"] == "intake":
        label += f"/{raw['batch_size']}"
    if (raw.get("workers") or 1) > 1:
        label += f" x{raw['workers']}thr"
    if raw.get("ocr_threads"):
        label += f" ocr{raw['ocr_threads']}t"
    if raw["mode"] in ("job", "batched") and not raw.get("gc_after_run", True):
        label += " no-gc"
    if raw["mode"] == "intake" and raw.get("variant"):
        label += f" {raw['variant']}"
    return label


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Throughput, latency, stage times and memory of one mode."""
    requests = raw.get("requests", [])
    done = [r for r in requests if r.get("done") is not None]
    ok = [r for r in requests if r.get("status") == "succeeded"]
    wall = raw.get("wall_s") or 0.0
    latencies = [r["latency_s"] for r in done]
    singles = raw.get("singles", [])
    single_regular = [r["latency_s"] for r in singles if r["kind"] == "regular" and r.get("latency_s") is not None]
    single_tall = [r["latency_s"] for r in singles if r["kind"] == "tall" and r.get("latency_s") is not None]

    stage_means: dict[str, dict[str, float | None]] = {}
    for kind in ("regular", "tall"):
        group = [r for r in ok if r["kind"] == kind]
        stage_means[kind] = {s: _r(_mean([r["timings_s"].get(s) for r in group])) for s in STAGES}
    engine_time = sum(sum(r["timings_s"].get(s, 0.0) for s in STAGES) for r in ok)

    service_regular = [r["service_s"] for r in requests if r["kind"] == "regular" and r.get("service_s")]
    service_tall = [r["service_s"] for r in requests if r["kind"] == "tall" and r.get("service_s")]
    tall_ratio_service = (_mean(service_tall) / _mean(service_regular)
                          if service_regular and service_tall else None)
    tall_ratio_single = (statistics.median(single_tall) / statistics.median(single_regular)
                         if single_regular and single_tall else None)
    runs = raw.get("runs") or []
    return {
        "mode": raw["mode"],
        "label": _label(raw),
        "batch_size": raw.get("batch_size"),
        "images": len(requests),
        "completed": len(done),
        "succeeded": len(ok),
        "failed": len(requests) - len(ok),
        "reused": sum(1 for r in requests if r.get("reused_from")),
        "wall_s": _r(wall),
        "images_per_min": _r(len(done) / wall * 60, 2) if wall else None,
        "latency_p50_s": _r(percentile(latencies, 50)),
        "latency_p95_s": _r(percentile(latencies, 95)),
        "single_p50_s": _r(statistics.median(single_regular)) if single_regular else None,
        "single_samples_s": [_r(v) for v in single_regular],
        "single_tall_s": _r(single_tall[0]) if single_tall else None,
        "tall_ratio_single": _r(tall_ratio_single, 2),
        "service_regular_mean_s": _r(_mean(service_regular)),
        "service_tall_mean_s": _r(_mean(service_tall)),
        "tall_ratio_service": _r(tall_ratio_service, 2),
        "stage_mean_s": stage_means,
        "engine_time_s": _r(engine_time),
        "overhead_per_request_s": _r((wall - engine_time) / len(ok)) if ok and wall else None,
        "runs": len(runs) if runs else (raw.get("dagster") or {}).get("runs"),
        "run_wall_mean_s": _r(_mean([r["wall_s"] for r in runs])) if runs else None,
        "peak_rss_mib": raw.get("peak_rss_mib", {}),
        "cpu_s_per_image": _r((raw.get("cpu") or {}).get("own_cpu_s", 0) / len(done)) if done and raw.get("cpu")
        else None,
        "foreign_cpu_share": _r((raw.get("cpu") or {}).get("foreign_cpu_s", 0) / ((os.cpu_count() or 1) * wall))
        if wall and raw.get("cpu")
        else None,
        "load_times": raw.get("load_times"),
        "rss_trace_mib": [round(v[1]) for v in raw.get("rss_trace_mib", []) if v[1] is not None],
        "warmup_s": _r(raw.get("warmup_s")),
        "errors": sorted({str((r.get("error") or {}).get("reason", r.get("error")))[:200]
                          for r in requests if r.get("status") != "succeeded"})[:5],
    }


def add_ratios(summaries: list[dict[str, Any]]) -> None:
    """Throughput ratio and single-request latency delta of every mode against ``bare``."""
    bare = next((s for s in summaries if s["mode"] == "bare"), None)
    for s in summaries:
        if bare is None or not bare.get("images_per_min") or s.get("images_per_min") is None:
            s["throughput_vs_bare"] = None
        else:
            s["throughput_vs_bare"] = _r(s["images_per_min"] / bare["images_per_min"], 3)
        if bare is not None and bare.get("single_p50_s") is not None and s.get("single_p50_s") is not None:
            s["single_p50_minus_bare_s"] = _r(s["single_p50_s"] - bare["single_p50_s"])
        else:
            s["single_p50_minus_bare_s"] = None


def _fmt(value: Any, spec: str = ".2f", suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float | int):
        return f"{value:{spec}}{suffix}"
    return str(value)


def _peak(s: dict[str, Any]) -> str:
    peaks = s.get("peak_rss_mib") or {}
    if "run_process" in peaks:
        return _fmt(peaks["run_process"], ".0f")
    if "run_worker" in peaks:
        return f"{peaks['run_worker']:.0f} (worker)"
    return "-"


def table(summaries: list[dict[str, Any]]) -> str:
    """The main table plus a stage-time table, as aligned plain text."""
    head = ["mode", "ok/n", "img/min", "x bare", "p50 s", "p95 s", "1-req p50", "1-req -bare", "tall/800",
            "ovh/req s", "CPU s/img", "other CPU", "runs", "peak RSS MiB"]
    rows = [head]
    for s in summaries:
        tall = s.get("tall_ratio_service") or s.get("tall_ratio_single")
        rows.append([s["label"], f"{s['succeeded']}/{s['images']}", _fmt(s["images_per_min"], ".1f"),
                     _fmt(s.get("throughput_vs_bare"), ".2f"), _fmt(s["latency_p50_s"], ".1f"),
                     _fmt(s["latency_p95_s"], ".1f"), _fmt(s["single_p50_s"], ".2f"),
                     _fmt(s.get("single_p50_minus_bare_s"), "+.2f"), _fmt(tall, ".2f"),
                     _fmt(s["overhead_per_request_s"], ".3f"), _fmt(s.get("cpu_s_per_image"), ".2f"),
                     _fmt(s.get("foreign_cpu_share") * 100 if s.get("foreign_cpu_share") is not None else None,
                          ".0f", "%"), _fmt(s["runs"], "d"), _peak(s)])
    out = [_align(rows), "", "mean stage time per 800x800 request, ms (tall 790x6000 in brackets)"]
    srows = [["mode", *STAGES, "sum"]]
    for s in summaries:
        reg, tall = s["stage_mean_s"]["regular"], s["stage_mean_s"]["tall"]
        cells = []
        for stage in STAGES:
            r = reg.get(stage)
            t = tall.get(stage)
            cells.append(f"{_fmt(r * 1000 if r is not None else None, '.0f')} "
                         f"[{_fmt(t * 1000 if t is not None else None, '.0f')}]")
        total_r = sum(v for v in reg.values() if v is not None)
        total_t = sum(v for v in tall.values() if v is not None)
        srows.append([s["label"], *cells, f"{total_r * 1000:.0f} [{total_t * 1000:.0f}]"])
    out.append(_align(srows))
    return "\n".join(out)


def _align(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
