"""What is kept untranslated and how lines group into blocks, on the real Chinese product images.

    .venv/bin/python benchmarks/keep_blocks.py [--target en] [--draw /tmp/blocks] [--images zh04,zh08]

Reads ``../shared/datasets/real-product-images/`` (next to the checkout; exits cleanly when absent), runs the
default OCR (RapidOCR) on each ``zh*`` image, groups the lines (``group_blocks`` with the image) and splits the
blocks with ``core.keep.split_translatable``. Prints per image the blocks (kept ones with their reason) and, for
every Latin line of ``truth.json`` (no CJK), whether it is kept untouched; the totals at the end. ``--draw`` writes
PNGs (source | blocks: kept ones green with their reason) to look at.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from difflib import SequenceMatcher
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from imgtrans_pipeline.core.keep import split_translatable  # noqa: E402
from imgtrans_pipeline.engines.ocr import create_ocr_engine, run_ocr  # noqa: E402

DATASET = PROJECT.parent / "shared" / "datasets" / "real-product-images"
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")


def _norm(text: str) -> str:
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", text).casefold())


def _similar(a: str, b: str) -> float:
    return SequenceMatcher(None, _norm(a), _norm(b)).ratio()


def _draw(path: Path, pixels: np.ndarray, blocks: list, out: Path) -> None:
    source = Image.fromarray(pixels)
    overlay = source.copy()
    draw = ImageDraw.Draw(overlay)
    palette = [(230, 30, 30), (30, 120, 230), (200, 0, 200), (0, 160, 160), (230, 130, 0)]
    for index, block in enumerate(blocks):
        colour = (0, 200, 0) if block.keep_reason else palette[index % len(palette)]
        x0, y0, x1, y1 = block.bbox
        draw.rectangle([x0 - 2, y0 - 2, x1 + 2, y1 + 2], outline=colour, width=3)
        for region in block.regions:
            draw.rectangle(list(region.bbox()), outline=colour, width=1)
        draw.text((x0, max(0, y0 - 12)), f"{index}" + (f":{block.keep_reason}" if block.keep_reason else ""),
                  fill=colour)
    canvas = Image.new("RGB", (source.width * 2 + 10, source.height), "white")
    canvas.paste(source, (0, 0))
    canvas.paste(overlay, (source.width + 10, 0))
    out.mkdir(parents=True, exist_ok=True)
    canvas.save(out / f"{path.stem}.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="en")
    parser.add_argument("--draw", type=Path, default=None, help="folder for source|blocks PNGs")
    parser.add_argument("--images", default="", help="comma-separated name prefixes (default: every zh image)")
    args = parser.parse_args()
    if not (DATASET / "truth.json").is_file():
        print(f"dataset not found at {DATASET}: nothing to measure")
        return 0
    truth = json.loads((DATASET / "truth.json").read_text(encoding="utf-8"))
    wanted = [p for p in args.images.split(",") if p]
    engine = create_ocr_engine("rapidocr")
    totals = {"images": 0, "blocks": 0, "multi_line_blocks": 0, "kept_blocks": 0, "latin_truth_lines": 0,
              "latin_read": 0, "latin_kept": 0}
    for path in sorted(DATASET.glob("zh*")):
        if wanted and not any(path.name.startswith(p) for p in wanted):
            continue
        pixels = np.asarray(Image.open(path).convert("RGB"))
        result = run_ocr(engine, pixels, "zh")
        _, kept = split_translatable(result.blocks, "zh", args.target)
        totals["images"] += 1
        totals["blocks"] += len(result.blocks)
        totals["multi_line_blocks"] += sum(len(b.regions) > 1 for b in result.blocks)
        totals["kept_blocks"] += len(kept)
        print(f"{path.name}: {len(result.blocks)} blocks, {len(kept)} kept")
        for block in result.blocks:
            print(f"    {block.text!r}" + (f"  [kept: {block.keep_reason}]" if block.keep_reason else ""))
        for line in truth.get(path.name, []):
            if CJK.search(line):
                continue
            totals["latin_truth_lines"] += 1
            best = max(result.blocks, key=lambda b: max((_similar(line, r.text) for r in b.regions), default=0),
                       default=None)
            score = max((_similar(line, r.text) for r in best.regions), default=0) if best else 0
            if best is None or score < 0.7:
                print(f"  truth {line!r}: not read by OCR")
                continue
            totals["latin_read"] += 1
            totals["latin_kept"] += best.keep_reason is not None
            print(f"  truth {line!r}: " + (f"kept ({best.keep_reason})" if best.keep_reason
                                             else f"translated as part of {best.text!r}"))
        if args.draw is not None:
            _draw(path, pixels, result.blocks, args.draw)
    print(json.dumps(totals))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
