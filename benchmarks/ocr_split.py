"""Where OCR time goes on an 800x800 image vs a 790x6000 page: detection, classification, recognition per call.

    .venv/bin/python benchmarks/ocr_split.py [--repeat 3] [--threads 2]

Why: the tall page is 7.4x the pixels of an 800x800 image, and issue 5 wants it end to end within 3x. This shows
how much of the tall page's OCR is detection (scales with the pixels handed to the detector) vs recognition
(scales with lines), side by side in one process for:

* ``800x800``: a workload product image (the unit of the ratio);
* ``790x6000 slices``: a workload detail page read the old way, 7 overlapping slices over the whole height
  (``skip_blank=False``);
* ``790x6000 bands``: the same page read the default way, only the bands that can hold text, stacked;
* ``790x6000 busy``: a page that is "photo" from top to bottom (no blank band), which still takes all 7 slices.
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


def _busy(tall: np.ndarray) -> np.ndarray:
    """The tall page with fine vertical threads every 12 px (a fabric photo): every row has sharp steps."""
    threads = np.where(np.arange(tall.shape[1]) % 12 < 2, -30, 0)[None, :, None]
    return np.clip(tall.astype(np.int16) + threads, 0, 255).astype(np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from imgtrans_pipeline.engines.ocr import create_ocr_engine, run_ocr
    from imgtrans_pipeline.engines.ocr.blocks import filter_regions
    from imgtrans_pipeline.engines.ocr.slicing import _stack, plan_passes, recognize_sliced

    engine = create_ocr_engine("rapidocr", threads=args.threads)
    raw = engine._ocr  # RapidOCR instance: its result carries elapse per stage (det, cls, rec)
    rng = np.random.default_rng(7)
    regular, _ = _regular(rng, 1)
    tall, tall_lines = _tall(rng, 2)
    run_ocr(engine, regular, "zh")  # warm-up

    def split(image: np.ndarray) -> tuple[float, float, float]:
        out = raw(np.ascontiguousarray(image[:, :, ::-1]))
        det, cls, rec = [*(getattr(out, "elapse_list", None) or []), 0, 0, 0][:3]
        return float(det or 0), float(cls or 0), float(rec or 0)

    cases = [
        ("800x800", regular, None),
        ("790x6000 slices", tall, False),
        ("790x6000 bands", tall, True),
        ("790x6000 busy", _busy(tall), True),
    ]
    unit = None
    for name, image, skip_blank in cases:
        totals = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            if skip_blank is None:
                regions = engine.recognize(image, "zh")
                reads = 1
            else:
                regions, reads = recognize_sliced(engine, image, "zh", skip_blank=skip_blank)
            totals.append(time.perf_counter() - start)
        median = statistics.median(totals)
        unit = unit or median
        if skip_blank is None:
            stacks = [image]
            calls = 1
        else:
            passes = plan_passes(image, skip_blank=skip_blank)
            stacks = [_stack(image, spans)[0] for spans in passes]
            calls = len(passes)
        parts = [split(stack) for stack in stacks]
        det, cls, rec = (sum(p[i] for p in parts) for i in range(3))
        det_px = sum(s.shape[0] * s.shape[1] for s in stacks) / 1e6
        kept, _ = filter_regions(regions, 0.6)
        lines = ""
        if image is not regular:
            missing = sorted(set(tall_lines) - {r.text for r in kept})
            lines = f", workload lines missing {missing}" if missing else ", all workload lines read"
        print(f"{name:16s}: OCR {median:.2f}s = {median / unit:.2f}x 800x800 (median of {args.repeat}); "
              f"{reads} slice(s) in {calls} call(s), {det_px:.2f} Mpx to the detector; {len(kept)} regions; "
              f"det {det:.2f}s cls {cls:.2f}s rec {rec:.2f}s{lines}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
