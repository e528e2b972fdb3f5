"""How the render stage lays out translations on real product images: overlaps, text outside the image, rendered vs
source size, size order and size consistency per page, read from ``RenderedImage.extra["layout"]``.

    .venv/bin/python benchmarks/render_layout.py [--images zh04,zh13] [--sheets /tmp/sheets] [--cache /tmp/pieces]

Each image (default: every Chinese image of ``../shared/datasets/real-product-images/``) goes through the
pipeline's own pieces: RapidOCR + ``run_ocr``, the stage's split into translated and kept blocks, the offline
CTranslate2 zh->en model, ``build_mask`` + ``OpenCvInpainter``, then ``TextRenderer.render(..., obstacles=kept)``.
``--sheets DIR`` writes source | result side by side as PNG (outside the repository: the images are third-party);
``--cache DIR`` keeps each image's OCR, translation and erased image (pickles) so reruns measure the render alone;
``--by-style`` renders with ``TextRenderer(sizes_by_style=True)``, ``--no-containers`` with
``TextRenderer(containers=False)`` (text in bars and pills laid out by the free-space rules alone),
``--strict-order`` with ``TextRenderer(container_own_size=False)`` (a label shrunk into its pill lowers its size
class and every smaller one). Size classes, order inversions and rank correlation are counted over the text
outside containers (labels in bars, pills and badges are sized by their container); ``inv ctr`` counts the
inversions that involve a container label.
The script exits cleanly (status 0, a note on stderr) when the dataset or the translation model is missing.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

import numpy as np  # noqa: E402

DATASET = PROJECT.parent / "shared" / "datasets" / "real-product-images"
SAME_SIZE_RATIO = 1.08  # as the planner: source sizes within 8% are one size


def spearman(a: list[float], b: list[float]) -> float | None:
    """Rank correlation with average ranks for ties; None when either side has a single value."""
    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None

    def ranks(x: list[float]) -> np.ndarray:
        arr = np.asarray(x, dtype=np.float64)
        r = np.empty(len(arr))
        r[np.argsort(arr, kind="stable")] = np.arange(len(arr))
        for v in set(arr.tolist()):
            r[arr == v] = r[arr == v].mean()
        return r

    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def size_classes(source: dict[int, float]) -> list[list[int]]:
    classes: list[list[int]] = []
    anchor = 0.0
    for i in sorted(source, key=lambda k: -source[k]):
        if classes and source[i] >= anchor / SAME_SIZE_RATIO - 0.5:
            classes[-1].append(i)
        else:
            classes.append([i])
            anchor = source[i]
    return classes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", help="comma-separated name prefixes (default: all zh images)")
    parser.add_argument("--sheets", type=Path, help="write source|result PNGs here")
    parser.add_argument("--by-style", action="store_true", help="TextRenderer(sizes_by_style=True)")
    parser.add_argument("--no-containers", action="store_true", help="TextRenderer(containers=False)")
    parser.add_argument("--strict-order", action="store_true",
                        help="TextRenderer(container_own_size=False)")
    parser.add_argument("--cache", type=Path, help="keep OCR/translation/erased pieces here between runs")
    parser.add_argument("--models-dir", default=None, help="translation models (default: the pipeline's)")
    args = parser.parse_args()

    if not DATASET.is_dir():
        print(f"dataset not found at {DATASET}: nothing to measure", file=sys.stderr)
        return 0
    from PIL import Image

    from imgtrans_pipeline.core.errors import PipelineError
    from imgtrans_pipeline.core.languages import needs_translation
    from imgtrans_pipeline.engines.inpaint import OpenCvInpainter, build_mask
    from imgtrans_pipeline.engines.ocr import create_ocr_engine, run_ocr
    from imgtrans_pipeline.engines.render import TextRenderer
    from imgtrans_pipeline.engines.translate import create_translator

    names = sorted(p.name for p in DATASET.iterdir() if p.name.startswith("zh") and p.suffix in {".jpg", ".png"})
    if args.images:
        wanted = [w.strip() for w in args.images.split(",") if w.strip()]
        names = [n for n in names if any(n.startswith(w) for w in wanted)]
    engines: dict[str, object] = {}

    def ocr():  # loaded on first use: a run from --cache needs neither OCR nor translation
        if "ocr" not in engines:
            engines["ocr"] = create_ocr_engine("rapidocr")
        return engines["ocr"]

    def translator():
        if "translate" not in engines:
            options = {"models_dir": args.models_dir} if args.models_dir else {}
            engines["translate"] = create_translator("ctranslate2", **options)
        return engines["translate"]

    if not args.cache:
        try:
            translator().translate_batch(["测试"], "zh", "en")
        except PipelineError as exc:
            print(f"no zh->en translation model: {exc}", file=sys.stderr)
            return 0
    inpainter = OpenCvInpainter()
    renderer = TextRenderer(sizes_by_style=args.by_style, containers=not args.no_containers,
                            container_own_size=not args.strict_order)
    if args.sheets:
        args.sheets.mkdir(parents=True, exist_ok=True)

    totals = {"blocks": 0, "overlaps": 0, "outside": 0, "overflow": 0, "min_font": 0, "mixed": 0, "classes": 0,
              "inversions": 0, "containers": 0, "container_inversions": 0}
    ratios: list[float] = []
    rhos: list[float] = []
    print(f"{'image':34s} {'blocks':>6s} {'ovl':>4s} {'out':>4s} {'ovf':>4s} {'min':>4s} {'size':>5s} {'rho':>5s} "
          f"{'mixed':>6s} {'ctr':>4s} {'cpu_s':>6s}")
    for name in names:
        cached = args.cache / f"{name}.pkl" if args.cache else None
        if cached is not None and cached.is_file():
            with cached.open("rb") as fh:
                pieces = pickle.load(fh)  # written by this script (trusted, local)
            pixels, erased, ocr_result = pieces["source"], pieces["inpainted"], pieces["ocr"]
            translations = pieces["translations"]
        else:
            pixels = np.asarray(Image.open(DATASET / name).convert("RGB"))
            ocr_result = run_ocr(ocr(), pixels, "zh")
            kept = [b for b in ocr_result.blocks if not needs_translation(b.text, "zh")]
            ocr_result.blocks = [b for b in ocr_result.blocks if needs_translation(b.text, "zh")]
            ocr_result.kept_blocks = kept
            texts = [b.text for b in ocr_result.blocks]
            translations = list(translator().translate_batch(texts, "zh", "en")) if texts else []
            polygons = [r.polygon for b in ocr_result.blocks for r in b.regions]
            mask = build_mask(pixels.shape[:2], polygons, image=pixels)
            erased = inpainter.inpaint(pixels, mask) if mask.any() else pixels.copy()
            if cached is not None:
                args.cache.mkdir(parents=True, exist_ok=True)
                with cached.open("wb") as fh:
                    pickle.dump({"name": name, "source": pixels, "ocr": ocr_result, "translations": translations,
                                 "inpainted": erased}, fh)
        blocks, kept = ocr_result.blocks, ocr_result.kept_blocks
        start = time.process_time()
        out = renderer.render(erased, pixels, blocks, list(translations), "en", obstacles=kept)
        cpu = time.process_time() - start
        layout = out.extra["layout"]
        drawn = layout["blocks"]
        every = {b["index"]: b["source_px"] for b in drawn}
        rendered = {b["index"]: b["font_px"] for b in drawn}
        in_container = {b["index"] for b in drawn if b.get("in_container")}
        source = {i: px for i, px in every.items() if i not in in_container}
        classes = [c for c in size_classes(source) if len(c) > 1]
        mixed = sum(1 for c in classes if len({rendered[i] for i in c}) > 1)
        inverted = [(a, b) for a in every for b in every
                    if every[a] > every[b] * SAME_SIZE_RATIO and rendered[a] < rendered[b]]
        inversions = sum(1 for a, b in inverted if a not in in_container and b not in in_container)
        totals["container_inversions"] += len(inverted) - inversions
        rho = spearman([source[i] for i in source], [rendered[i] for i in source])
        page_ratios = [rendered[i] / every[i] for i in every if every[i] > 0]
        ratios += page_ratios
        if rho is not None:
            rhos.append(rho)
        for key, value in (("blocks", len(drawn)), ("overlaps", layout["overlaps"]), ("outside", layout["outside"]),
                           ("overflow", layout["overflow_blocks"]), ("min_font", layout["min_font_blocks"]),
                           ("mixed", mixed), ("classes", len(classes)), ("inversions", inversions),
                           ("containers", layout.get("container_blocks", 0))):
            totals[key] += value
        median = statistics.median(page_ratios) if page_ratios else float("nan")
        rho_txt = f"{rho:5.2f}" if rho is not None else "    -"
        print(f"{name[:34]:34s} {len(drawn):6d} {layout['overlaps']:4d} {layout['outside']:4d} "
              f"{layout['overflow_blocks']:4d} {layout['min_font_blocks']:4d} {median:5.2f} {rho_txt} "
              f"{mixed:>3d}/{len(classes):<2d} {layout.get('container_blocks', 0):4d} {cpu:6.2f}", flush=True)
        if args.sheets:
            gap = np.full((pixels.shape[0], 8, 3), 255, np.uint8)
            sheet = np.concatenate([pixels, gap, out.pixels], axis=1)
            Image.fromarray(sheet).save(args.sheets / f"{Path(name).stem}.png")
    if not ratios:
        return 0
    print(f"\n{totals['blocks']} blocks on {len(names)} images: overlaps {totals['overlaps']}, outside "
          f"{totals['outside']}, did not fit {totals['overflow']}, at the minimum size {totals['min_font']}; "
          f"rendered/source size median {statistics.median(ratios):.2f} (quartiles "
          f"{np.quantile(ratios, 0.25):.2f}-{np.quantile(ratios, 0.75):.2f}); size rank correlation per page "
          f"mean {statistics.mean(rhos):.2f} (min {min(rhos):.2f}, {len(rhos)} pages); size classes with mixed "
          f"rendered sizes {totals['mixed']}/{totals['classes']}; order inversions {totals['inversions']} "
          f"(text outside containers; {totals['container_inversions']} more involve a container label); "
          f"laid out in a container (bar, pill, badge) {totals['containers']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
