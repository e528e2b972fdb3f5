"""Korean OCR quality: the pipeline's Korean path vs plain ``tesseract IMG - -l kor+eng``, scored the same way.

    .venv/bin/python benchmarks/ocr_korean.py [--json out.json] [--sets real,generated] [--dump DIR]
        [--option glyph_px=32 --option layout=page ...]

Two sets of images with line truth:

* ``real``: the Korean images (``ko*``) of ``../shared/datasets/real-product-images/`` (read by path, skipped when
  the folder is absent) with their ``truth.json`` lines;
* ``generated``: seeded Korean pages drawn with Noto Sans CJK KR (``tests/support/korean_pages.py``): paragraphs, small
  ingredient print, spec tables, banners, a tall detail page; the truth is every drawn line.

For each image, ``plain`` is the text of ``tesseract IMG - -l kor+eng`` (the tool's defaults: page layout analysis,
psm 3) and ``pipeline`` is ``run_ocr`` with the tesseract engine, source language ``ko``, its blocks' text in
reading order (what translation sees). Both are scored by ``benchmarks/ocr_score.py``: edit errors per truth
character (NFKC, case folded, whitespace runs collapsed; each truth line against its best matching substring of the
output, so inserted spaces between syllables count and extra output text does not). Lower is better. ``--option``
passes constructor options to the tesseract engine (to compare settings). ``s`` is wall time per image, ``cpu s``
the CPU seconds of this process (all threads) plus its tesseract children: the fairer figure on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.ocr_score import Score, score_text  # noqa: E402

REAL_DIR = PROJECT.parent / "shared" / "datasets" / "real-product-images"


@dataclass
class Sample:
    set: str
    name: str
    truth: list[str]
    pixels: np.ndarray
    path: Path | None = None  # the file itself, when there is one (plain tesseract reads it as given)


def real_samples(folder: Path) -> list[Sample]:
    truth_file = folder / "truth.json"
    if not truth_file.is_file():
        print(f"real set skipped: {truth_file} not found", file=sys.stderr)
        return []
    truth = json.loads(truth_file.read_text("utf-8"))
    samples = []
    for name in sorted(truth):
        path = folder / name
        if name.startswith("ko") and path.is_file():
            pixels = np.asarray(Image.open(path).convert("RGB"))
            samples.append(Sample("real", name, truth[name], pixels, path))
    return samples


def generated_samples(seed: int) -> list[Sample]:
    from tests.support.korean_pages import benchmark_set, fonts_available

    if not fonts_available():
        print("generated set skipped: Noto Sans CJK not installed", file=sys.stderr)
        return []
    return [Sample("generated", page.name, page.lines, page.pixels) for page in benchmark_set(seed)]


def plain_tesseract(sample: Sample, tmp: Path) -> str:
    path = sample.path
    if path is None:
        path = tmp / f"{sample.name}.png"
        Image.fromarray(sample.pixels).save(path)
    proc = subprocess.run(["tesseract", str(path), "-", "-l", "kor+eng"], capture_output=True, check=False,
                          timeout=600)
    return proc.stdout.decode("utf-8", "replace")


def _cpu() -> float:
    """CPU seconds used so far by this process (all threads) and its finished children (tesseract runs)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _option(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="real,generated", help="comma list of: real, generated")
    parser.add_argument("--real-dir", type=Path, default=REAL_DIR)
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated pages")
    parser.add_argument("--option", action="append", default=[], help="tesseract engine option KEY=VALUE")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain tesseract column")
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument("--dump", type=Path, help="write each image's two outputs as text files here")
    args = parser.parse_args()

    from imgtrans_pipeline.engines.ocr import create_ocr_engine, run_ocr

    sets = {s.strip() for s in args.sets.split(",") if s.strip()}
    samples: list[Sample] = []
    if "real" in sets:
        samples += real_samples(args.real_dir)
    if "generated" in sets:
        samples += generated_samples(args.seed)
    if not samples:
        print("no images to score", file=sys.stderr)
        return 1
    options = dict(_option(o) for o in args.option)
    engine = create_ocr_engine("tesseract", **options)
    if args.dump:
        args.dump.mkdir(parents=True, exist_ok=True)

    rows: list[dict] = []
    totals: dict[tuple[str, str], Score] = {}
    with tempfile.TemporaryDirectory(prefix="ocr-korean-") as tmp:
        for sample in samples:
            row: dict = {"set": sample.set, "image": sample.name, "size": list(sample.pixels.shape[1::-1])}
            outputs: dict[str, str] = {}
            if not args.no_plain:
                start, cpu = time.perf_counter(), _cpu()
                outputs["plain"] = plain_tesseract(sample, Path(tmp))
                row["plain_s"] = round(time.perf_counter() - start, 2)
                row["plain_cpu_s"] = round(_cpu() - cpu, 2)
            start, cpu = time.perf_counter(), _cpu()
            result = run_ocr(engine, sample.pixels, "ko")
            row["pipeline_s"] = round(time.perf_counter() - start, 2)
            row["pipeline_cpu_s"] = round(_cpu() - cpu, 2)
            outputs["pipeline"] = "\n".join(block.text for block in result.blocks)
            for kind, text in outputs.items():
                score = score_text(sample.truth, text)
                row[kind] = round(score.rate, 4)
                row[f"{kind}_exact_lines"] = score.exact_lines
                row["truth_chars"] = score.chars
                row["truth_lines"] = len(score.lines)
                totals[(sample.set, kind)] = totals.get((sample.set, kind), Score()) + score
                if args.dump:
                    (args.dump / f"{sample.name}.{kind}.txt").write_text(text, "utf-8")
            rows.append(row)
            print(f"{sample.set:9s} {sample.name:34s} " + " ".join(
                f"{k} {row[k]:.3f} ({row[k + '_s']:.1f}s)" for k in outputs), file=sys.stderr, flush=True)

    kinds = [k for k in ("plain", "pipeline") if any(k in r for r in rows)]
    header = f"{'set':10s} {'image':34s} {'chars':>6s} " + " ".join(
        f"{k + ' err/ch':>16s} {'s':>6s} {'cpu s':>6s}" for k in kinds)
    print(header)
    print("-" * len(header))
    for row in rows:
        cells = " ".join(f"{row[k]:16.3f} {row[k + '_s']:6.1f} {row[k + '_cpu_s']:6.1f}" for k in kinds)
        print(f"{row['set']:10s} {row['image']:34s} {row['truth_chars']:6d} {cells}")
    summary: dict[str, dict] = {}
    for set_name in sorted({r["set"] for r in rows}):
        members = [r for r in rows if r["set"] == set_name]
        entry: dict = {"images": len(members), "truth_chars": sum(r["truth_chars"] for r in members)}
        cells = []
        for kind in kinds:
            score = totals[(set_name, kind)]
            seconds = sum(r[kind + "_s"] for r in members) / len(members)
            cpu = sum(r[kind + "_cpu_s"] for r in members) / len(members)
            entry[kind] = round(score.rate, 4)
            entry[f"{kind}_exact_lines"] = score.exact_lines
            entry[f"{kind}_s_per_image"] = round(seconds, 2)
            entry[f"{kind}_cpu_s_per_image"] = round(cpu, 2)
            cells.append(f"{score.rate:16.3f} {seconds:6.1f} {cpu:6.1f}")
        entry["truth_lines"] = len(totals[(set_name, kinds[0])].lines)
        summary[set_name] = entry
        print(f"{set_name:10s} {'TOTAL (s: mean per image)':34s} {entry['truth_chars']:6d} " + " ".join(cells))
    print(f"engine: {engine.version()}")
    if args.json:
        args.json.write_text(json.dumps({"engine": engine.version(), "options": options, "summary": summary,
                                         "images": rows}, ensure_ascii=False, indent=2), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
