"""Quality benchmark: how well the pipeline erases, keeps, lays out and reads back, and what the score costs.

    .venv/bin/python benchmarks/quality.py --synthetic 12 --json /tmp/quality.json
    .venv/bin/python benchmarks/quality.py --synthetic 4 --real 6 --no-throughput       # a quick look
    .venv/bin/python benchmarks/quality.py --synthetic 12 --baseline d6eadf0             # throughput vs a git ref

Two image sets: seeded synthetic product pages with known clean plates and line truth (``synthetic_pages.py``),
and the real images of ``../shared/datasets/real-product-images/`` (read by path, skipped when absent). Every
image goes through the pipeline in-process (``run_pipeline``), is scored (``imgtrans_pipeline.quality``), and is
then measured thoroughly: full OCR passes of the erased image and of the result, PSNR against the clean plate,
pixel checks of the lines to keep. Throughput runs in child processes over the same images: the current
checkout with the quality score off and on (interleaved batches), and ``--baseline REF`` (a temporary
``git worktree`` in /tmp) with the same loop, the two alternating for ``--rounds`` rounds. benchmarks/README.md
explains every figure.

Only base dependencies (numpy, opencv, pillow, rapidocr, ctranslate2; no psutil).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
REAL_DIR = PROJECT.parent / "shared" / "datasets" / "real-product-images"
DEFAULT_BASELINE = "d6eadf0"
SOURCE_LANGS = {"zh": "zh", "ko": "ko"}  # real image name prefix -> source language
TARGET_LANG = "en"
LEFTOVER_SIMILARITY = 0.5  # a line of the erased image this similar to a source line = that line is left
# Lines the pipeline leaves in place by design (core/keep.py): they are not "left after erasing".
KEPT_ON_PURPOSE = frozenset({"watermark", "rotated", "product_print"})
# Measured source sizes this close (relative) are one size: lines set in one size measure up to ~±3 % apart, and
# a reader does not tell 4 % apart either. Ranking that noise against a renderer's equal sizes is no hierarchy.
SIZE_TOLERANCE = 0.04
READBACK_SIMILARITY = 0.6  # a translation read back from the result at least this similar = readable


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the pipeline: the one place that calls into it ------------------------------------------------------------


def build_engines(workdir: Path) -> dict[str, Any]:
    """The project's engines as its Dagster resources build them, with a private store and no translation cache
    (a cache would make whichever run comes second cheaper)."""
    from imgtrans_pipeline.orchestration.definitions import build_resources

    try:
        from imgtrans_pipeline.core.settings import get_settings
    except ImportError:  # a baseline ref from before the settings object (``--baseline``)
        from imgtrans_pipeline.core.config import Settings  # type: ignore[import-not-found]

        return build_resources(replace(Settings.from_env(), artifacts_url=str(workdir / "artifacts"),
                                       translation_cache=""))
    return build_resources(get_settings().replace(artifacts=str(workdir / "artifacts"), translate__cache=""))


def run_pipeline(engines: dict[str, Any], requests: list[dict[str, Any]], *, score: bool = False) -> list[Any]:
    """Every call into the pipeline, for one batch of requests; returns the work items (scored when ``score``).

    The stage runner, as the ops and the bare loop use it. Older checkouts (``--baseline`` refs from before the
    stage runner) are driven through their stage functions instead, without scoring.
    """
    from imgtrans_pipeline.core.request import parse_request

    try:
        from imgtrans_pipeline.orchestration.resources import stage_runner
        from imgtrans_pipeline.pipeline import new_items
    except ImportError:
        return _run_old_stages(engines, [parse_request(request) for request in requests])
    runner = stage_runner(engines)
    runner.quality_score = score
    return runner.run_all(new_items([parse_request(request) for request in requests]))


def _run_old_stages(r: dict[str, Any], requests: list[Any]) -> list[Any]:
    """The stage functions of a checkout from before the stage runner, as its own bare loop called them."""
    from imgtrans_pipeline import stages  # type: ignore[attr-defined]

    store = r["artifacts"].store()
    variant = r["translator"].variant()
    items = stages.new_items(requests)

    def supports(source: str, target: str) -> None:
        r["ocr_engine"].check_language(source)
        r["translator"].check_pair(source, target)

    stages.check_languages(items, supports)
    stages.fetch_stage(items, r["fetcher"].fetch_images, store)
    stages.reuse_stage(items, store, variant)
    stages.ocr_stage(items, r["ocr_engine"].recognize, store)
    stages.translate_stage(items, r["translator"].translate, store)
    inpainter = r["inpainting"].inpainter()
    stages.inpaint_stage(items, inpainter.inpaint, inpainter.name, store, r["renderer"].encode_png)
    stages.render_stage(items, r["renderer"].render, store)
    versions: dict[str, str] = {}
    for key in ("ocr_engine", "translator", "inpainting"):
        versions.update(r[key].versions())
    stages.publish_stage(items, store, versions)
    stages.record_results(items, store, variant)
    return items


def scores_of(items: list[Any]) -> dict[str, Any]:
    """request id -> its quality record (``meta.json``'s ``quality``) for every scored item."""
    return {item.request_id: item.quality for item in items if getattr(item, "quality", None)}


def request_for(request_id: str, path: str, source_lang: str) -> dict[str, Any]:
    # force: the same image is sent once per mode; the dedupe index must not answer the second from the first.
    return {"request_id": request_id, "image_url": path, "source_lang": source_lang, "target_lang": TARGET_LANG,
            "options": {"force": True}}


# --- throughput (child process) -------------------------------------------------------------------------------


def _peak_rss_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def throughput_child(manifest: Path, out: Path, modes: list[str], batch_size: int, workdir: Path) -> None:
    """Process every image of ``manifest`` once per mode ("off": pipeline; "on": pipeline + quality score), the
    modes interleaved batch by batch so that load from other processes hits both alike. Writes JSON to ``out``."""
    import logging

    import imgtrans_pipeline

    logging.getLogger("imgtrans_pipeline").setLevel(logging.WARNING)
    images = json.loads(manifest.read_text(encoding="utf-8"))
    engines = build_engines(workdir)
    warm = images[0]
    t0 = time.perf_counter()
    run_pipeline(engines, [request_for("warmup", warm["path"], warm["lang"])], score="on" in modes)
    load_s = time.perf_counter() - t0
    totals = {mode: {"wall_s": 0.0, "cpu_s": 0.0, "score_wall_s": 0.0, "images": 0,
                     "failed": 0} for mode in modes}
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        # Alternate which mode goes first, so neither always runs on a warmer cache.
        order = modes if (start // batch_size) % 2 == 0 else list(reversed(modes))
        for mode in order:
            requests = [request_for(f"{mode}-{img['name']}", img["path"], img["lang"]) for img in batch]
            w0, c0 = time.perf_counter(), time.process_time()
            items = run_pipeline(engines, requests, score=mode == "on")
            # The quality stage's time per item, summed (items of a batch are scored in parallel threads).
            totals[mode]["score_wall_s"] += sum(getattr(item, "timings", {}).get("quality", 0.0) for item in items)
            totals[mode]["wall_s"] += time.perf_counter() - w0
            totals[mode]["cpu_s"] += time.process_time() - c0
            totals[mode]["images"] += len(items)
            totals[mode]["failed"] += sum(1 for item in items if not item.ok)
        done = min(start + batch_size, len(images))
        _progress(f"throughput ({Path(imgtrans_pipeline.__file__).parents[1].name}): {done}/{len(images)}")
    result = {"package": str(Path(imgtrans_pipeline.__file__).resolve().parents[1]), "modes": totals,
              "warmup_s": load_s, "batch_size": batch_size, "peak_rss_mib": _peak_rss_mib(),
              "loadavg": os.getloadavg()}
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")


def run_throughput_child(checkout: Path, manifest: Path, out: Path, modes: list[str], batch_size: int,
                         workdir: Path, models_dir: str, timeout: float) -> dict[str, Any] | None:
    env = {**os.environ, "PYTHONPATH": str(checkout), "IMGTRANS_MODELS_DIR": models_dir,
           "IMGTRANS_HOME": str(workdir)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(manifest), "--out", str(out),
           "--modes", ",".join(modes), "--batch-size", str(batch_size), "--workdir", str(workdir)]
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(cmd, env=env, cwd=workdir, timeout=timeout, stdout=subprocess.PIPE,
                              stderr=None, text=True)
    except subprocess.TimeoutExpired:
        _progress(f"throughput child for {checkout} timed out after {timeout:.0f}s")
        return None
    if proc.returncode != 0 or not out.exists():
        _progress(f"throughput child for {checkout} failed (exit {proc.returncode})")
        return None
    result = json.loads(out.read_text(encoding="utf-8"))
    if Path(result["package"]).resolve() != checkout.resolve():
        _progress(f"warning: child imported imgtrans_pipeline from {result['package']}, not {checkout}")
    return result


def _merged(runs: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The throughput children of several rounds as one: per mode, times and counts summed."""
    done = [run for run in runs if run]
    if not done:
        return None
    modes: dict[str, dict[str, float]] = {}
    for run in done:
        for mode, totals in run["modes"].items():
            into = modes.setdefault(mode, dict.fromkeys(totals, 0.0))
            for key, value in totals.items():
                into[key] += value
    return {**done[-1], "modes": modes}


def baseline_worktree(ref: str) -> Path:
    """A detached ``git worktree`` of ``ref`` under /tmp (removed again by ``remove_worktree``)."""
    path = Path(tempfile.mkdtemp(prefix=f"imgtrans-baseline-{ref[:12]}-"))
    path.rmdir()
    subprocess.run(["git", "-C", str(PROJECT), "worktree", "add", "--detach", "--quiet", str(path), ref], check=True)
    return path


def remove_worktree(path: Path) -> None:
    subprocess.run(["git", "-C", str(PROJECT), "worktree", "remove", "--force", str(path)], check=False)


# --- measurements ------------------------------------------------------------------------------------------------


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float | None:
    """PSNR (dB) of ``a`` against ``b`` over the pixels where ``mask``; None for an empty mask."""
    if not mask.any():
        return None
    diff = a[mask].astype(np.float64) - b[mask].astype(np.float64)
    mse = float(np.mean(diff ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties); None with fewer than 3 pairs or a constant side."""
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None

    def ranks(values: list[float]) -> np.ndarray:
        order = np.argsort(values, kind="mergesort")
        out = np.empty(len(values))
        sorted_vals = np.asarray(values)[order]
        i = 0
        while i < len(values):
            j = i
            while j + 1 < len(values) and sorted_vals[j + 1] == sorted_vals[i]:
                j += 1
            out[order[i:j + 1]] = (i + j) / 2
            i = j + 1
        return out

    rx, ry = ranks(x), ranks(y)
    return float(np.corrcoef(rx, ry)[0, 1])


def size_classes(values: list[float], tolerance: float = SIZE_TOLERANCE) -> list[float]:
    """``values`` with each run of sizes that are within ``tolerance`` of their neighbour (sorted) replaced by the
    run's mean: the sizes a reader sees as one."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    runs: list[list[int]] = []
    for i in order:
        if runs and values[i] <= values[runs[-1][-1]] * (1.0 + tolerance):
            runs[-1].append(i)
        else:
            runs.append([i])
    out = list(values)
    for run in runs:
        mean = statistics.mean(values[j] for j in run)
        for j in run:
            out[j] = mean
    return out


def _center(box: tuple[float, float, float, float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _inside(point: tuple[float, float], box: tuple[float, float, float, float], pad: float = 0.0) -> bool:
    return box[0] - pad <= point[0] <= box[2] + pad and box[1] - pad <= point[1] <= box[3] + pad


def _has_cjk(text: str) -> bool:
    from imgtrans_pipeline.quality.text import HAN, HANGUL, KANA, script_of

    return any(script_of(ch) in (HAN, KANA, HANGUL) for ch in text)


def source_letters(text: str, lang: str) -> str:
    """The letters of ``text`` in ``lang``'s own script: what erasing must remove. The Latin brand names, model
    codes and numbers inside a source line are kept by design and are no leftover when read again."""
    from imgtrans_pipeline.quality.text import script_of, scripts_of

    own = scripts_of(lang)
    return "".join(ch for ch in text if script_of(ch) in own)


def left_in(text: str, lang: str, regions: list[Any], threshold: float = LEFTOVER_SIMILARITY) -> bool:
    """Is ``text``'s source-script part still readable in one of ``regions`` (OCR lines of the erased image)?"""
    from imgtrans_pipeline.quality import text_similarity

    letters = source_letters(text, lang)
    return bool(letters) and any(text_similarity(letters, source_letters(r.text, lang)) >= threshold
                                 for r in regions)


def _drawn_blocks(extra: dict[str, Any]) -> list[dict[str, Any]]:
    """Per drawn block: index, box, font_px (and source_px when the renderer gives it), either record format."""
    record = extra.get("layout") if isinstance(extra.get("layout"), dict) else None
    blocks = (record or {}).get("blocks") if record else extra.get("blocks")
    out = []
    for i, block in enumerate(blocks or []):
        box = block.get("box") if record else block.get("drawn_box", block.get("box"))
        if not box:
            continue
        out.append({"index": int(block.get("index", i)), "box": [float(v) for v in box],
                    "font_px": block.get("font_px"), "source_px": block.get("source_px"),
                    "in_container": bool(block.get("in_container"))})
    return out


def read_back(ocr_result: Any, translations: list[str], extra: dict[str, Any]) -> dict[str, Any]:
    """How many drawn translations a full OCR of the result reads back (lines whose centre is in the drawn box)."""
    from imgtrans_pipeline.quality import text_similarity

    drawn = _drawn_blocks(extra)
    ok = 0
    misses = []
    for block in drawn:
        text = translations[block["index"]] if block["index"] < len(translations) else ""
        box = block["box"]
        pad = 0.15 * (box[3] - box[1])
        found = [r for r in ocr_result.regions if _inside(_center(r.bbox()), box, pad)]
        found.sort(key=lambda r: (round(r.bbox()[1] / 8), r.bbox()[0]))
        sim = text_similarity(text, " ".join(r.text for r in found))
        if sim >= READBACK_SIMILARITY:
            ok += 1
        else:
            misses.append({"translation": text, "read": " ".join(r.text for r in found), "similarity": round(sim, 3)})
    return {"drawn": len(drawn), "read_back": ok, "misses": misses}


def font_sizes(extra: dict[str, Any], ocr: Any, truth_lines: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Rendered and source font size per drawn block. Source size: the renderer's ``source_px`` when it reports
    it, else the synthetic truth (median font px of the truth lines whose centre lies in the block), else the
    estimate from the OCR line boxes the score uses (``quality.score.source_font_px``)."""
    from imgtrans_pipeline.quality.score import source_font_px

    pairs = []
    for block in _drawn_blocks(extra):
        rendered = block["font_px"]
        if not isinstance(rendered, int | float) or block["index"] >= len(ocr.blocks):
            continue
        source_block = ocr.blocks[block["index"]]
        source = block["source_px"]
        how = "renderer"
        if not isinstance(source, int | float) and truth_lines is not None:
            inside = [t["font_px"] for t in truth_lines
                      if not t["keep"] and _inside(_center(t["box"]), source_block.bbox, 2)]
            if inside:
                source, how = float(statistics.median(inside)), "truth"
        if not isinstance(source, int | float):
            source, how = source_font_px(source_block), "ocr"
        if isinstance(source, int | float) and source > 0:
            pair = {"index": block["index"], "rendered_px": float(rendered), "source_px": float(source),
                    "source_from": how, "in_container": block["in_container"]}
            if truth_lines is not None:  # the size the line was set in, beside the renderer's measurement
                inside = [t["font_px"] for t in truth_lines
                          if not t["keep"] and _inside(_center(t["box"]), source_block.bbox, 2)]
                pair["truth_px"] = float(statistics.median(inside)) if inside else None
            pairs.append(pair)
    ratios = [p["rendered_px"] / p["source_px"] for p in pairs]
    # The page-wide size order holds for text outside containers: a label in a pill is sized by its pill.
    free = [p for p in pairs if not p["in_container"]]
    rho_raw = spearman([p["source_px"] for p in free], [p["rendered_px"] for p in free])
    rho = spearman(size_classes([p["source_px"] for p in free]), [p["rendered_px"] for p in free])
    known = [p for p in free if p.get("truth_px")]
    rho_truth = spearman([p["truth_px"] for p in known], [p["rendered_px"] for p in known]) if known else None
    return {"pairs": pairs, "median_ratio": statistics.median(ratios) if ratios else None, "spearman": rho,
            "spearman_raw": rho_raw, "spearman_truth": rho_truth}


def measure_synthetic(page: Any, item: Any, quality: Any, ocr_engine: Any) -> dict[str, Any]:
    import cv2

    from imgtrans_pipeline.quality import layout_summary

    source, clean = page.pixels, page.clean
    H, W = source.shape[:2]
    erased, result = item.inpainted.pixels, item.rendered.pixels
    truth = [{"text": t.text, "box": list(t.box), "font_px": t.font_px, "keep": t.keep, "kind": t.kind}
             for t in page.lines]
    # Text zone: the translatable lines' boxes, padded by a fifth of the font size.
    zone = np.zeros((H, W), bool)
    for t in page.lines:
        if t.keep:
            continue
        pad = max(3, t.font_px // 5)
        x0, y0, x1, y1 = t.box
        zone[max(0, y0 - pad):min(H, y1 + pad), max(0, x0 - pad):min(W, x1 + pad)] = True
    glyphs = cv2.dilate(page.glyph_mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    near = zone & ~glyphs
    outside = ~glyphs
    diff = np.abs(erased.astype(np.int16) - clean.astype(np.int16)).max(axis=2)
    # Glyph area not restored: glyph pixels of translatable lines that still differ from the plate by over half the
    # text's own contrast there (OCR-free: sees a leftover character or outline, and a wrong fill, alike).
    src_diff = np.abs(source.astype(np.int16) - clean.astype(np.int16)).max(axis=2)
    ink_total = ink_left = 0
    lines_with_ink = []
    for t in page.lines:
        if t.keep:
            continue
        x0, y0, x1, y1 = t.box
        ink = page.glyph_mask[y0:y1, x0:x1] & (src_diff[y0:y1, x0:x1] > 48)
        left = ink & (diff[y0:y1, x0:x1] > 0.5 * src_diff[y0:y1, x0:x1])
        ink_total += int(ink.sum())
        ink_left += int(left.sum())
        if ink.sum() and left.sum() > 0.2 * ink.sum():
            lines_with_ink.append(t.text)
    record: dict[str, Any] = {
        "name": page.name, "kind": page.kind, "size": [W, H],
        "erase_psnr_zone_db": psnr(erased, clean, zone),
        "ink_left": ink_left / ink_total if ink_total else 0.0,
        "lines_with_ink_left": lines_with_ink,
        "bg_mad_near_text": float(diff[near].mean()) if near.any() else None,
        "bg_changed_near_text": float((diff[near] > 8).mean()) if near.any() else None,
        "bg_changed_page": float((diff[outside] > 8).mean()),
    }
    # Leftover source lines: a full OCR of the erased image, matched to truth by position and text.
    erased_ocr = ocr_engine.recognize(erased, "zh")
    translatable = [t for t in page.lines if not t.keep]
    left = []
    for t in translatable:
        pad = 0.3 * t.font_px
        if left_in(t.text, "zh", [r for r in erased_ocr.regions if _inside(_center(r.bbox()), t.box, pad)]):
            left.append(t.text)
    record["truth_lines"] = len(translatable)
    record["leftover_lines"] = left
    # Translations read back from a full OCR of the result.
    result_ocr = ocr_engine.recognize(result, "en")
    record["read_back"] = read_back(result_ocr, list(item.translation.translations), item.rendered.extra)
    summary = layout_summary(item.rendered.extra, (W, H))
    record["layout"] = {k: summary[k] for k in ("blocks", "overflow", "min_font", "overlaps", "outside")}
    record["fonts"] = font_sizes(item.rendered.extra, item.ocr, truth)
    # Lines to keep (brand, price, URL): their ink box must be pixel-identical in the result.
    kept = [t for t in page.lines if t.keep]
    identical = []
    for t in kept:
        x0, y0, x1, y1 = t.box
        identical.append(bool(np.array_equal(result[y0:y1, x0:x1], source[y0:y1, x0:x1])))
    record["keep_lines"] = len(kept)
    record["keep_identical"] = sum(identical)
    record["keep_changed"] = [t.text for t, same in zip(kept, identical, strict=True) if not same]
    record["truth"] = truth
    record["quality"] = quality
    record["ocr_blocks"] = [b.text for b in item.ocr.blocks]
    record["kept_blocks"] = [b.text for b in item.ocr.kept_blocks]
    record["translations"] = list(item.translation.translations)
    return record


def measure_real(name: str, lang: str, truth_lines: list[str], item: Any, quality: Any, ocr_engine: Any
                 ) -> dict[str, Any]:
    from imgtrans_pipeline.quality import layout_summary, text_similarity

    source, erased, result = item.source.pixels, item.inpainted.pixels, item.rendered.pixels
    H, W = source.shape[:2]
    source_ocr = ocr_engine.recognize(source, lang)
    erased_ocr = ocr_engine.recognize(erased, lang)
    result_ocr = ocr_engine.recognize(result, "en")

    def found(text: str, ocr: Any, threshold: float) -> bool:
        return any(text_similarity(text, r.text) >= threshold for r in ocr.regions)

    # Truth lines to translate hold CJK/Hangul letters; Latin lines (brands, models, slogans) are to be kept.
    to_translate = [t for t in truth_lines if _has_cjk(t)]
    latin = [t for t in truth_lines if not _has_cjk(t) and any(ch.isalpha() for ch in t)]
    readable = [t for t in to_translate if found(t, source_ocr, READBACK_SIMILARITY)]
    # Lines the pipeline keeps on purpose (a shop watermark) are counted apart, not as left after erasing.
    on_purpose = [b.text for b in item.ocr.kept_blocks if b.keep_reason in KEPT_ON_PURPOSE]
    kept = [t for t in readable if any(text_similarity(t, b) >= READBACK_SIMILARITY for b in on_purpose)]
    left = [t for t in readable if t not in kept and left_in(t, lang, erased_ocr.regions)]
    latin_read = [t for t in latin if found(t, source_ocr, READBACK_SIMILARITY)]
    latin_kept = [t for t in latin_read if found(t, result_ocr, READBACK_SIMILARITY)]
    summary = layout_summary(item.rendered.extra, (W, H))
    return {
        "name": name, "lang": lang, "size": [W, H],
        "truth_lines": len(to_translate), "truth_read_in_source": len(readable), "leftover_lines": left,
        "kept_on_purpose": kept,
        "read_back": read_back(result_ocr, list(item.translation.translations), item.rendered.extra),
        "layout": {k: summary[k] for k in ("blocks", "overflow", "min_font", "overlaps", "outside")},
        "fonts": font_sizes(item.rendered.extra, item.ocr, None),
        "latin_truth": len(latin), "latin_read_in_source": len(latin_read), "latin_kept": len(latin_kept),
        "latin_lost": [t for t in latin_read if t not in latin_kept],
        "quality": quality,
        "ocr_blocks": [b.text for b in item.ocr.blocks], "kept_blocks": [b.text for b in item.ocr.kept_blocks],
        "translations": list(item.translation.translations),
    }


def side_by_side(path: Path, *images: np.ndarray, max_height: int = 1400) -> None:
    """Source | erased | result next to each other (scaled down for tall pages), as PNG."""
    from PIL import Image

    h, w = images[0].shape[:2]
    scale = min(1.0, max_height / h)
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    sheet = Image.new("RGB", (size[0] * len(images) + 8 * (len(images) - 1), size[1]), (255, 255, 255))
    for k, img in enumerate(images):
        sheet.paste(Image.fromarray(img).resize(size, Image.Resampling.LANCZOS), (k * (size[0] + 8), 0))
    sheet.save(path)


# --- summaries and the table ----------------------------------------------------------------------------------


def _pct(a: int, b: int) -> str:
    return f"{a}/{b} ({100 * a / b:.0f}%)" if b else "-"


def _dist(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    q = np.percentile(values, [0, 25, 50, 75, 100])
    return {"min": float(q[0]), "p25": float(q[1]), "median": float(q[2]), "p75": float(q[3]), "max": float(q[4]),
            "n": len(values)}


def _reason_counts(records: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for rec in records:
        for reason in (rec.get("quality") or {}).get("reasons", []):
            key = reason.split(":")[0].split("(")[0].strip()
            key = " ".join(w for w in key.split() if not w.isdigit())
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def summarize(records: list[dict[str, Any]], synthetic: bool) -> dict[str, Any]:
    s: dict[str, Any] = {"images": len(records)}
    if not records:
        return s
    if synthetic:
        psnrs = [r["erase_psnr_zone_db"] for r in records if r["erase_psnr_zone_db"] is not None]
        s["erase_psnr_zone_db"] = {"median": statistics.median(psnrs), "worst": min(psnrs)} if psnrs else None
        mads = [r["bg_mad_near_text"] for r in records if r["bg_mad_near_text"] is not None]
        changed = [r["bg_changed_near_text"] for r in records if r["bg_changed_near_text"] is not None]
        s["bg_mad_near_text"] = statistics.mean(mads) if mads else None
        s["bg_changed_near_text"] = statistics.mean(changed) if changed else None
        s["bg_changed_page"] = statistics.mean(r["bg_changed_page"] for r in records)
        inks = [r["ink_left"] for r in records]
        s["ink_left"] = {"median": statistics.median(inks), "worst": max(inks)}
        s["lines_with_ink_left"] = sum(len(r["lines_with_ink_left"]) for r in records)
        s["leftover"] = [sum(len(r["leftover_lines"]) for r in records), sum(r["truth_lines"] for r in records)]
        s["keep"] = [sum(r["keep_identical"] for r in records), sum(r["keep_lines"] for r in records)]
    else:
        s["kept_on_purpose"] = sum(len(r.get("kept_on_purpose", [])) for r in records)
        s["leftover"] = [sum(len(r["leftover_lines"]) for r in records),
                         sum(r["truth_read_in_source"] for r in records) - s["kept_on_purpose"]]
        s["truth_lines"] = sum(r["truth_lines"] for r in records)
        s["keep"] = [sum(r["latin_kept"] for r in records), sum(r["latin_read_in_source"] for r in records)]
    s["read_back"] = [sum(r["read_back"]["read_back"] for r in records), sum(r["read_back"]["drawn"] for r in records)]
    s["overlaps"] = sum(r["layout"]["overlaps"] for r in records)
    s["outside"] = sum(r["layout"]["outside"] for r in records)
    s["overflow"] = sum(r["layout"]["overflow"] for r in records)
    s["min_font"] = sum(r["layout"]["min_font"] for r in records)
    s["drawn_blocks"] = sum(r["layout"]["blocks"] for r in records)
    ratios = [p["rendered_px"] / p["source_px"] for r in records for p in r["fonts"]["pairs"]]
    s["font_ratio_median"] = statistics.median(ratios) if ratios else None
    rhos = [r["fonts"]["spearman"] for r in records if r["fonts"]["spearman"] is not None]
    s["font_spearman_median"] = statistics.median(rhos) if rhos else None
    s["font_spearman_pages"] = len(rhos)
    raw = [r["fonts"].get("spearman_raw") for r in records]
    raw = [v for v in raw if v is not None]
    s["font_spearman_raw_median"] = statistics.median(raw) if raw else None
    s["font_spearman_raw_pages"] = len(raw)
    truth_rhos = [r["fonts"].get("spearman_truth") for r in records]
    truth_rhos = [v for v in truth_rhos if v is not None]
    s["font_spearman_truth_median"] = statistics.median(truth_rhos) if truth_rhos else None
    s["font_spearman_truth_pages"] = len(truth_rhos)
    s["quality"] = _dist([r["quality"]["score"] for r in records if r.get("quality")])
    s["reasons"] = _reason_counts(records)
    return s


def _f(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def print_table(summaries: dict[str, dict[str, Any]], throughput: dict[str, Any] | None) -> None:
    syn, real = summaries.get("synthetic", {}), summaries.get("real", {})
    rows: list[tuple[str, str, str]] = []

    def both(label: str, fn: Any) -> None:
        rows.append((label, fn(syn) if syn.get("images") else "-", fn(real) if real.get("images") else "-"))

    both("images", lambda s: str(s["images"]))
    both("erase PSNR in text zone dB (median / worst)",
         lambda s: f"{s['erase_psnr_zone_db']['median']:.1f} / {s['erase_psnr_zone_db']['worst']:.1f}"
         if s.get("erase_psnr_zone_db") else "-")
    both("glyph area not restored (median / worst page)",
         lambda s: f"{s['ink_left']['median']:.1%} / {s['ink_left']['worst']:.1%}" if "ink_left" in s else "-")
    both("lines with >20% of their glyph area not restored",
         lambda s: _pct(s["lines_with_ink_left"], s["leftover"][1]) if "lines_with_ink_left" in s else "-")
    both("bg near text: mean abs diff / share changed >8",
         lambda s: f"{_f(s.get('bg_mad_near_text'))} / {_f(s.get('bg_changed_near_text'), '{:.1%}')}"
         if "bg_mad_near_text" in s else "-")
    both("bg changed, whole page outside glyphs",
         lambda s: _f(s.get("bg_changed_page"), "{:.2%}") if "bg_changed_page" in s else "-")
    both("source lines left after erasing (re-OCR)", lambda s: _pct(*s["leftover"]))
    both("source lines kept on purpose (watermarks, product print)", lambda s: str(s.get("kept_on_purpose", "-")))
    both("drawn translations read back (re-OCR)", lambda s: _pct(*s["read_back"]))
    both("drawn blocks: overlapping pairs / outside", lambda s: f"{s['overlaps']} / {s['outside']}")
    both("drawn blocks: overflow / at min font", lambda s: f"{s['overflow']} / {s['min_font']} of {s['drawn_blocks']}")
    both("font px rendered/source (median)", lambda s: _f(s["font_ratio_median"]))
    both("font size Spearman per page, free text (median, n)",
         lambda s: f"{_f(s['font_spearman_median'])} ({s['font_spearman_pages']})")
    both("  the same, measured sizes not tied within 4%",
         lambda s: f"{_f(s.get('font_spearman_raw_median'))} ({s.get('font_spearman_raw_pages', 0)})")
    both("font size Spearman vs set size (truth; median, n)",
         lambda s: f"{_f(s['font_spearman_truth_median'])} ({s['font_spearman_truth_pages']})"
         if s.get("font_spearman_truth_pages") else "-")
    rows.append(("brand/price/URL lines kept", _pct(*syn["keep"]) + " identical" if syn.get("images") else "-",
                 _pct(*real["keep"]) + " read" if real.get("images") else "-"))
    both("quality score min / p25 / median / p75",
         lambda s: "{min:.2f} / {p25:.2f} / {median:.2f} / {p75:.2f}".format(**s["quality"]) if s["quality"] else "-")
    width = max(len(r[0]) for r in rows) + 2
    print(f"\n{'':{width}}{'synthetic':>26}{'real':>26}")
    for label, a, b in rows:
        print(f"{label:{width}}{a:>26}{b:>26}")
    for name, s in (("synthetic", syn), ("real", real)):
        if s.get("reasons"):
            top = ", ".join(f"{k} ({v})" for k, v in list(s["reasons"].items())[:5])
            print(f"top score reasons ({name}): {top}")
    if throughput:
        print("\nthroughput (same images, in-process stage loop, child processes)")
        print(f"{'run':34}{'img/min':>10}{'CPU s/img':>11}{'x off':>8}{'x baseline':>12}")
        base = throughput.get("baseline", {}).get("modes", {}).get("off") if throughput.get("baseline") else None
        cur = (throughput.get("current") or {}).get("modes", {})
        off = cur.get("off")

        def line(label: str, m: dict[str, Any] | None) -> None:
            if not m or not m["images"]:
                print(f"{label:34}{'-':>10}")
                return
            ipm = m["images"] / m["wall_s"] * 60
            cpu = m["cpu_s"] / m["images"]
            x_off = f"{ipm / (off['images'] / off['wall_s'] * 60):.2f}" if off and m is not off else ""
            x_base = f"{ipm / (base['images'] / base['wall_s'] * 60):.2f}" if base and m is not base else ""
            print(f"{label:34}{ipm:>10.1f}{cpu:>11.2f}{x_off:>8}{x_base:>12}")

        line("current, quality score off", off)
        line("current, quality score on", cur.get("on"))
        if base is not None:
            line(f"baseline {throughput.get('baseline_ref', '')}, (no score)", base)
        per_round = []
        for r in throughput.get("rounds", []):
            mine = ((r.get("current") or {}).get("modes") or {}).get("on")
            theirs = ((r.get("baseline") or {}).get("modes") or {}).get("off")
            if mine and theirs and mine["wall_s"] and theirs["wall_s"]:
                per_round.append((mine["images"] / mine["wall_s"]) / (theirs["images"] / theirs["wall_s"]))
        if per_round:
            print("score on x baseline, round by round: " + ", ".join(f"{x:.2f}" for x in per_round))
        on = cur.get("on")
        if on and off and off["images"]:
            share = 1 - (on["images"] / on["wall_s"]) / max(1e-9, off["images"] / off["wall_s"])
            print(f"quality stage: {on['score_wall_s'] / on['images']:.3f} s per image (summed over the items of "
                  f"a batch); throughput cost of scoring {share:.1%} (budget 15%)")


# --- main ----------------------------------------------------------------------------------------------------


def _real_images(limit: int, name_filter: str) -> list[tuple[Path, str, list[str]]]:
    if not REAL_DIR.is_dir() or limit == 0:
        return []
    truth = json.loads((REAL_DIR / "truth.json").read_text(encoding="utf-8"))
    out = []
    for path in sorted(REAL_DIR.iterdir()):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png", ".webp") or name_filter not in path.name:
            continue
        lang = SOURCE_LANGS.get(path.name[:2])
        if lang is None:
            continue
        out.append((path, lang, list(truth.get(path.name, []))))
    return out if limit < 0 else out[:limit]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", type=int, default=12, help="synthetic pages (every 4th a 790x6000 page)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", type=int, default=-1, help="real images to use (-1 all, 0 none)")
    parser.add_argument("--real-filter", default="", help="only real images whose name contains this (e.g. zh)")
    parser.add_argument("--json", type=Path, help="write every figure, per image, here")
    parser.add_argument("--workdir", type=Path, help="keep images, artifacts and side-by-side PNGs here")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git ref to compare throughput with ('' = none)")
    parser.add_argument("--no-throughput", action="store_true", help="skip the throughput runs")
    parser.add_argument("--throughput-images", type=int, default=0,
                        help="images for the throughput runs (default: every synthetic page)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per throughput child")
    parser.add_argument("--rounds", type=int, default=2, help="throughput rounds (current and baseline alternate)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--modes", default="off,on", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import warnings

    warnings.filterwarnings("ignore", module=r"dagster\b.*")
    warnings.filterwarnings("ignore", message=r".*is currently in (beta|preview)")  # Dagster API notices
    if args.child is not None:  # a throughput child: imgtrans_pipeline comes from PYTHONPATH (maybe the baseline)
        throughput_child(args.child, args.out, args.modes.split(","), args.batch_size, args.workdir)
        return 0

    if str(PROJECT) not in sys.path:
        sys.path.insert(0, str(PROJECT))
    import logging

    logging.getLogger("imgtrans_pipeline").setLevel(logging.WARNING)
    from benchmarks.synthetic_pages import generate_set
    from imgtrans_pipeline.core.settings import get_settings

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="imgtrans-quality-"))
    workdir.mkdir(parents=True, exist_ok=True)
    pages_dir, views = workdir / "pages", workdir / "views"
    views.mkdir(parents=True, exist_ok=True)
    models_dir = str(Path(get_settings().models_dir).resolve())
    started = time.time()

    _progress(f"generating {args.synthetic} synthetic pages (seed {args.seed}) in {pages_dir}")
    pages = generate_set(args.synthetic, seed=args.seed)
    page_paths = {page.name: page.save(pages_dir)["page"] for page in pages}
    real = _real_images(args.real, args.real_filter)
    if args.real != 0 and not real:
        _progress(f"no real images ({REAL_DIR} absent or filtered out): synthetic only")

    engines = build_engines(workdir / "measure")
    records: dict[str, list[dict[str, Any]]] = {"synthetic": [], "real": []}
    ocr = engines["ocr_engine"].router()  # measuring re-reads images with the engine the pipeline used

    for start in range(0, len(pages), args.batch_size):
        batch = pages[start:start + args.batch_size]
        items = run_pipeline(engines, [request_for(p.name, page_paths[p.name], "zh") for p in batch], score=True)
        scores = scores_of(items)
        for page, item in zip(batch, items, strict=True):
            if not item.ok:
                records["synthetic"].append({"name": page.name, "failed": item.failure})
                continue
            rec = measure_synthetic(page, item, scores.get(item.request_id), ocr)
            records["synthetic"].append(rec)
            side_by_side(views / f"{page.name}.png", page.pixels, item.inpainted.pixels, item.rendered.pixels)
        _progress(f"synthetic: {min(start + args.batch_size, len(pages))}/{len(pages)} measured")

    for start in range(0, len(real), args.batch_size):
        batch = real[start:start + args.batch_size]
        items = run_pipeline(engines, [request_for(path.stem, str(path), lang) for path, lang, _ in batch],
                             score=True)
        scores = scores_of(items)
        for (path, lang, truth), item in zip(batch, items, strict=True):
            if not item.ok:
                records["real"].append({"name": path.name, "failed": item.failure})
                continue
            records["real"].append(measure_real(path.name, lang, truth, item, scores.get(item.request_id), ocr))
            side_by_side(views / f"real-{path.stem}.png", item.source.pixels, item.inpainted.pixels,
                         item.rendered.pixels)
        _progress(f"real: {min(start + args.batch_size, len(real))}/{len(real)} measured")

    ok = {k: [r for r in v if "failed" not in r] for k, v in records.items()}
    summaries = {"synthetic": summarize(ok["synthetic"], True), "real": summarize(ok["real"], False)}
    failures = {k: [r for r in v if "failed" in r] for k, v in records.items()}

    throughput: dict[str, Any] | None = None
    if not args.no_throughput and pages:
        del engines  # the children load their own
        chosen = pages if not args.throughput_images else pages[:args.throughput_images]
        manifest = workdir / "throughput-manifest.json"
        manifest.write_text(json.dumps([{"name": p.name, "path": page_paths[p.name], "lang": "zh"} for p in chosen]),
                            encoding="utf-8")
        throughput = {"images": len(chosen), "rounds": []}
        tree = baseline_worktree(args.baseline) if args.baseline else None
        try:
            # Current and baseline alternate, round after round: a machine whose speed drifts (other tenants) then
            # slows both alike, where one long run of each would charge the drift to whichever ran second.
            for number in range(1, args.rounds + 1):
                _progress(f"throughput round {number}/{args.rounds}: current checkout, score off/on, "
                          f"{len(chosen)} images")
                current = run_throughput_child(PROJECT, manifest, workdir / f"tp-current-{number}.json",
                                               ["off", "on"], args.batch_size, workdir / "tp-current", models_dir,
                                               args.timeout)
                baseline = None
                if tree is not None:
                    _progress(f"throughput round {number}/{args.rounds}: baseline {args.baseline} ({tree})")
                    baseline = run_throughput_child(tree, manifest, workdir / f"tp-baseline-{number}.json", ["off"],
                                                    args.batch_size, workdir / "tp-baseline", models_dir,
                                                    args.timeout)
                throughput["rounds"].append({"current": current, "baseline": baseline})
        finally:
            if tree is not None:
                remove_worktree(tree)
        throughput["current"] = _merged([r["current"] for r in throughput["rounds"]])
        if tree is not None:
            throughput["baseline_ref"] = args.baseline
            throughput["baseline"] = _merged([r["baseline"] for r in throughput["rounds"]])

    print_table(summaries, throughput)
    for kind, failed in failures.items():
        for rec in failed:
            print(f"FAILED ({kind}) {rec['name']}: {rec['failed']}")
    print(f"\nside-by-side PNGs (source | erased | result): {views}")
    if args.json:
        args.json.write_text(json.dumps({"config": vars(args) | {"json": str(args.json), "workdir": str(workdir),
                                                                  "child": None, "out": None},
                                         "duration_s": time.time() - started, "summaries": summaries,
                                         "records": records, "throughput": throughput},
                                        ensure_ascii=False, indent=1, default=str), encoding="utf-8")
        print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
