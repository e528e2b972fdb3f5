"""The in-process modes, each run in its own child process: ``bare``, ``job`` and ``batched``.

A fresh child per mode (and per batch size) means every mode loads its models exactly once, starts from an empty
artifact store and translation cache, and its peak RSS (``VmHWM``) is its own. Models are loaded and one warm-up
request is processed *before* the timed window, as in a long-lived worker; the load times are reported apart.

Burst semantics: all requests of the workload are considered submitted at the start of the window (a backlog),
so a request's latency is the time until its result is stored. Single-request latency is measured separately, on
an idle system, one request at a time.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.procmon import own_cpu_s, peak_rss_mib, rss_mib, system_busy_s
from benchmarks.workload import WorkloadImage, load_manifest

logger = logging.getLogger("benchmarks")


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def request_dict(request_id: str, image: WorkloadImage) -> dict[str, Any]:
    return {"request_id": request_id, "image_url": image.path, "source_lang": "zh", "target_lang": "en"}


def read_meta(artifacts: Path, request_id: str) -> dict[str, Any] | None:
    try:
        return json.loads((artifacts / request_id / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def request_record(artifacts: Path, request_id: str, image: WorkloadImage, submitted: float, done: float,
                   service_s: float | None) -> dict[str, Any]:
    meta = read_meta(artifacts, request_id) or {}
    return {"request_id": request_id, "kind": image.kind, "submitted": submitted, "done": done,
            "latency_s": done - submitted, "service_s": service_s, "status": meta.get("status", "missing"),
            "timings_s": meta.get("timings_s", {}), "reused_from": meta.get("reused_from"),
            "error": meta.get("error")}


class Harness:
    """Engines built through the same resources (and process cache) the Dagster ops use."""

    def __init__(self, mode_dir: Path, ocr_threads: int | None = None) -> None:
        from imgtrans_pipeline.core.settings import get_settings
        from imgtrans_pipeline.orchestration.definitions import build_resources
        from imgtrans_pipeline.orchestration.resources import OcrResource

        self.mode_dir = mode_dir
        self.artifacts = mode_dir / "artifacts"
        base = get_settings()
        self.settings = base.model_copy(update={
            "artifacts": str(self.artifacts),
            "translate": base.translate.model_copy(update={"cache": str(mode_dir / "translation-cache.sqlite")})})
        self.resources: dict[str, Any] = build_resources(self.settings)
        if ocr_threads is not None:  # experiment knob: onnxruntime intra-op threads of the OCR engine
            ocr = self.resources["ocr_engine"]
            self.resources["ocr_engine"] = OcrResource(**{**ocr.model_dump(), "threads": ocr_threads})
        self.load_times: dict[str, float] = {}

    def load_engines(self, warm_image: WorkloadImage) -> dict[str, float]:
        """Build each engine and run it once on real input, timing construction and first call separately."""
        import numpy as np
        from PIL import Image

        r = self.resources
        pixels = np.asarray(Image.open(warm_image.path).convert("RGB"))
        times: dict[str, float] = {}

        start = time.perf_counter()
        router = r["ocr_engine"].router()
        router.check_language("zh")  # constructs the engine (process-cached)
        times["ocr_load_s"] = time.perf_counter() - start
        start = time.perf_counter()
        ocr = router.recognize(pixels, "zh")
        times["ocr_first_call_s"] = time.perf_counter() - start

        start = time.perf_counter()
        service = r["translator"].service()
        service.check_pair("zh", "en")
        times["translate_load_s"] = time.perf_counter() - start
        start = time.perf_counter()
        service.translator.translate_batch(["预热"], "zh", "en")  # loads the pair's model (bypasses the cache)
        times["translate_first_call_s"] = time.perf_counter() - start

        start = time.perf_counter()
        engine = r["inpainting"].inpainter()
        times["inpaint_load_s"] = time.perf_counter() - start
        from imgtrans_pipeline.engines.inpaint.mask import build_mask

        mask = build_mask(pixels.shape[:2], [reg.polygon for reg in ocr.translatable_regions()], image=pixels)
        start = time.perf_counter()
        engine.inpaint(pixels, mask)
        times["inpaint_first_call_s"] = time.perf_counter() - start

        start = time.perf_counter()
        r["renderer"].renderer()
        times["render_load_s"] = time.perf_counter() - start
        start = time.perf_counter()
        r["fetcher"].downloader()
        r["artifacts"].store()
        times["fetch_store_load_s"] = time.perf_counter() - start
        times["engines_ready_s"] = sum(v for k, v in times.items() if k.endswith("_load_s") or "first" in k)
        self.load_times = {k: round(v, 4) for k, v in times.items()}
        return self.load_times

    # -- bare -----------------------------------------------------------------------------------------------
    def bare_one(self, request: dict[str, Any]) -> None:
        """The seeds' worker loop body: every stage in order through the stage runner, no Dagster."""
        from imgtrans_pipeline.core.request import parse_request
        from imgtrans_pipeline.orchestration.resources import stage_runner
        from imgtrans_pipeline.pipeline import new_items

        stage_runner(self.resources).run_all(new_items([parse_request(request)]))

    # -- job / batched ------------------------------------------------------------------------------------------
    def job_runner(self) -> Any:
        from dagster import DagsterInstance, Definitions

        from imgtrans_pipeline import names
        from imgtrans_pipeline.orchestration.jobs import translate_images

        # The project's definitions (build_definitions) with these very resource objects, so a knob such as
        # --ocr-threads reaches the job too; without knobs this equals build_definitions(self.settings).
        job = Definitions(jobs=[translate_images], resources=self.resources).resolve_job_def(names.TRANSLATE_JOB)
        instance = DagsterInstance.get()  # $DAGSTER_HOME, set by the parent to a fresh home with dagster.yaml

        def run(requests: list[dict[str, Any]]) -> dict[str, Any]:
            start = time.perf_counter()
            result = job.execute_in_process(
                run_config=names.run_config(requests, log_level="WARNING"),
                instance=instance, raise_on_error=False, tags={names.TAG_SOURCE: names.SOURCE_BENCHMARK},
            )
            return {"run_id": result.run_id, "requests": len(requests), "success": result.success,
                    "wall_s": time.perf_counter() - start}

        return run


def run_child(mode: str, manifest: Path, mode_dir: Path, out: Path, batch_size: int, singles: int,
              workers: int = 1, ocr_threads: int | None = None, gc_after_run: bool = True) -> None:
    """Entry point of a child process: run one in-process mode over the workload and write its JSON."""
    import warnings

    warnings.filterwarnings("ignore", module=r"dagster\b.*")
    warnings.filterwarnings("ignore", message=r".*is currently in (beta|preview)")  # Dagster API notices
    logging.getLogger("imgtrans_pipeline").setLevel(logging.WARNING)
    workload = load_manifest(manifest)
    images, single_images, warm = workload["burst"], workload["single"], workload["warmup"][0]
    process_start = time.perf_counter()
    import_start = time.perf_counter()
    if mode == "bare" and ocr_threads is None:
        # The seeds' worker model at its best: a sequential loop has one request at a time, so its OCR engine
        # gets every core (the project's default of one OCR thread per request assumes requests in parallel).
        ocr_threads = os.cpu_count() or 1
    harness = Harness(mode_dir, ocr_threads=ocr_threads)
    import_s = time.perf_counter() - import_start
    load = harness.load_engines(warm)
    _progress(f"{mode}{'/' + str(batch_size) if mode == 'batched' else ''}: engines ready "
              f"(ocr {load['ocr_load_s']:.2f}s + first call {load['ocr_first_call_s']:.2f}s, "
              f"translate {load['translate_load_s'] + load['translate_first_call_s']:.2f}s, "
              f"inpaint {load['inpaint_load_s'] + load['inpaint_first_call_s']:.2f}s)")

    runner = harness.job_runner() if mode in ("job", "batched") else None
    runs: list[dict[str, Any]] = []

    def process(batch: list[tuple[str, WorkloadImage]]) -> dict[str, Any] | None:
        requests = [request_dict(rid, img) for rid, img in batch]
        if runner is None:
            for request in requests:
                harness.bare_one(request)
            return None
        info = runner(requests)
        if gc_after_run:  # what the CLI and the warm run workers do after each run
            from imgtrans_pipeline.orchestration.memory import release_run_memory

            start = time.perf_counter()
            info["gc_collected"] = release_run_memory()
            info["gc_s"] = time.perf_counter() - start
        runs.append(info)
        return info

    # Warm-up request through the mode's own path (first run pays Dagster's one-time costs), not timed.
    start = time.perf_counter()
    process([(f"{mode}-warmup", warm)])
    warmup_s = time.perf_counter() - start

    # Single requests on an idle process, one at a time.
    single_records: list[dict[str, Any]] = []
    if mode != "batched":
        # `singles` 800x800 requests, then the one tall page (the manifest's last single image).
        for index, image in enumerate(single_images[:singles] + single_images[-1:]):
            rid = f"{mode}-single-{index}"
            t0 = time.perf_counter()
            process([(rid, image)])
            t1 = time.perf_counter()
            single_records.append(request_record(harness.artifacts, rid, image, t0, t1, t1 - t0))
    runs.clear()

    # Burst: the whole workload queued at t0.
    size = batch_size if mode == "batched" else 1
    ids = [(f"{mode}{size if mode == 'batched' else ''}-{img.name}", img) for img in images]
    records: list[dict[str, Any]] = []
    if workers > 1:  # experiment: W threads take batches from one shared queue (overlap of I/O and CPU stages)
        return _run_threaded(mode, harness, process, ids, size, workers, load, warmup_s, import_s, single_records,
                             runs, process_start, out, len(images), ocr_threads)
    rss_trace: list[tuple[float, float | None]] = [(0.0, rss_mib())]  # RSS after each batch: growth across runs?
    cpu0, busy0, load0 = own_cpu_s(), system_busy_s(), os.getloadavg()[0]
    t0 = time.perf_counter()
    last_report = t0
    for start_index in range(0, len(ids), size):
        batch = ids[start_index:start_index + size]
        b0 = time.perf_counter()
        process(batch)
        b1 = time.perf_counter()
        rss_trace.append((round(b1 - t0, 2), rss_mib()))
        for rid, img in batch:
            records.append(request_record(harness.artifacts, rid, img, t0, b1, (b1 - b0) if size == 1 else None))
        if b1 - last_report > 15 or start_index + size >= len(ids):
            last_report = b1
            done = min(start_index + size, len(ids))
            _progress(f"{mode}{'/' + str(size) if mode == 'batched' else ''}: {done}/{len(ids)} "
                      f"in {b1 - t0:.0f}s ({done / (b1 - t0) * 60:.1f} img/min)")
    wall = time.perf_counter() - t0
    cpu, busy = own_cpu_s() - cpu0, system_busy_s() - busy0
    result = {
        "cpu": {"own_cpu_s": cpu, "machine_busy_s": busy, "foreign_cpu_s": max(0.0, busy - cpu),
                "loadavg_1m_before": load0, "loadavg_1m_after": os.getloadavg()[0]},
        "mode": mode, "batch_size": size, "images": len(images), "wall_s": wall, "import_s": import_s,
        "load_times": load, "warmup_s": warmup_s, "process_total_s": time.perf_counter() - process_start,
        "peak_rss_mib": {"run_process": peak_rss_mib()}, "requests": records, "singles": single_records,
        "runs": runs, "pid": os.getpid(), "workers": 1, "ocr_threads": ocr_threads, "rss_trace_mib": rss_trace,
        "gc_after_run": gc_after_run,
    }
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")


def _run_threaded(mode: str, harness: Harness, process: Any, ids: list[tuple[str, WorkloadImage]], size: int,
                  workers: int, load: dict[str, float], warmup_s: float, import_s: float,
                  single_records: list[dict[str, Any]], runs: list[dict[str, Any]], process_start: float, out: Path,
                  n_images: int, ocr_threads: int | None) -> None:
    """The burst with ``workers`` threads pulling batches from one queue; same record layout as the loop."""
    import queue
    import threading

    batches: queue.Queue[list[tuple[str, WorkloadImage]]] = queue.Queue()
    for start_index in range(0, len(ids), size):
        batches.put(ids[start_index:start_index + size])
    records: list[dict[str, Any]] = []
    lock = threading.Lock()
    cpu0, busy0, load0 = own_cpu_s(), system_busy_s(), os.getloadavg()[0]
    t0 = time.perf_counter()

    def worker() -> None:
        while True:
            try:
                batch = batches.get_nowait()
            except queue.Empty:
                return
            b0 = time.perf_counter()
            process(batch)
            b1 = time.perf_counter()
            with lock:
                for rid, img in batch:
                    records.append(request_record(harness.artifacts, rid, img, t0, b1,
                                                  (b1 - b0) if size == 1 else None))

    threads = [threading.Thread(target=worker, name=f"bench-worker-{i}") for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    cpu, busy = own_cpu_s() - cpu0, system_busy_s() - busy0
    _progress(f"{mode} x{workers} threads: {len(records)}/{len(ids)} in {wall:.0f}s "
              f"({len(records) / wall * 60:.1f} img/min)")
    result = {
        "cpu": {"own_cpu_s": cpu, "machine_busy_s": busy, "foreign_cpu_s": max(0.0, busy - cpu),
                "loadavg_1m_before": load0, "loadavg_1m_after": os.getloadavg()[0]},
        "mode": mode, "batch_size": size, "workers": workers, "ocr_threads": ocr_threads, "images": n_images,
        "wall_s": wall, "import_s": import_s, "load_times": load, "warmup_s": warmup_s,
        "process_total_s": time.perf_counter() - process_start, "peak_rss_mib": {"run_process": peak_rss_mib()},
        "requests": records, "singles": single_records, "runs": runs, "pid": os.getpid(),
    }
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")
