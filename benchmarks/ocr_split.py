"""Where OCR time goes on an 800x800 image vs a 790x6000 page: detection, classification, recognition per call.

    .venv/bin/python benchmarks/ocr_split.py [--repeat 3] [--threads 2]

Why: the tall page is 7.4x the pixels of an 800x800 image, and issue 5 wants it end to end within 3x. This shows
how much of the tall page's OCR is detection over slices (scales with pixels) vs recognition (scales with lines),
which is what decides whether fewer/downscaled detection passes could reach the target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

import numpy as np  # noqa: E402

from benchmarks.workload import _regular, _tall  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from imgtrans_pipeline.engines.ocr import create_ocr_engine, run_ocr
    from imgtrans_pipeline.engines.ocr.slicing import plan_slices

    engine = create_ocr_engine("rapidocr", threads=args.threads)
    raw = engine._ocr  # RapidOCR instance: its result carries elapse per stage (det, cls, rec)
    rng = np.random.default_rng(7)
    regular, _ = _regular(rng, 1)
    tall, _ = _tall(rng, 2)
    run_ocr(engine, regular, "zh")  # warm-up

    def split(image: np.ndarray) -> tuple[float, float, float]:
        out = raw(np.ascontiguousarray(image[:, :, ::-1]))
        det, cls, rec = [*(getattr(out, "elapse_list", None) or []), 0, 0, 0][:3]
        return float(det or 0), float(cls or 0), float(rec or 0)

    for name, image in (("800x800", regular), ("790x6000", tall)):
        totals = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            result = run_ocr(engine, image, "zh")
            totals.append(time.perf_counter() - start)
        spans = plan_slices(*image.shape[:2]) if name != "800x800" else [(0, image.shape[0])]
        parts = [split(image[y0:y1]) for y0, y1 in spans]
        det, cls, rec = (sum(p[i] for p in parts) for i in range(3))
        print(f"{name}: run_ocr {statistics.median(totals):.2f}s (median of {args.repeat}), {len(spans)} slice(s), "
              f"{len(result.regions)} regions; det {det:.2f}s cls {cls:.2f}s rec {rec:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
