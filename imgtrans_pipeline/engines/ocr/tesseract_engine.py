"""Tesseract OCR through the Debian ``tesseract`` CLI (TSV output), the only offline option for Korean.

Why the CLI and not pytesseract: pytesseract is itself a thin subprocess wrapper; calling the binary directly
keeps one less dependency and lets us pass the image on stdin (no temp files) and read the TSV ourselves.
Apt packages: tesseract-ocr plus tesseract-ocr-{kor,chi-sim,jpn} (and -chi-tra for zh-Hant when installed).

Tesseract reports words; we group them into lines (block/paragraph/line numbers from the TSV), give each line
the union rectangle as polygon and the mean word confidence (0..1) as score.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
import subprocess
from collections import OrderedDict

import numpy as np
from PIL import Image

from ...core.types import TextRegion
from .base import OcrError
from .blocks import join_lines

logger = logging.getLogger(__name__)

# canonical language code -> tesseract traineddata name
TESSERACT_LANGS: dict[str, str] = {
    "ko": "kor",
    "zh": "chi_sim",
    "zh-Hant": "chi_tra",
    "ja": "jpn",
    "en": "eng",
    "fr": "fra",
    "de": "deu",
    "es": "spa",
    "it": "ita",
    "pt": "por",
    "ru": "rus",
    "vi": "vie",
    "th": "tha",
    "id": "ind",
}


class TesseractEngine:
    """Runs ``tesseract - - -l <lang> --psm N tsv`` per image; line-level regions with polygons and 0..1 scores."""

    name = "tesseract"
    per_language_models = True  # reading with the right traineddata matters: run_ocr re-reads after auto-detect

    def __init__(
        self,
        *,
        binary: str = "tesseract",
        psm: int = 6,
        threads: int = 1,
        timeout: float = 120.0,
        upscale_below_px: int = 0,
        add_english: bool = True,
    ) -> None:
        path = shutil.which(binary)
        if path is None:
            raise OcrError(
                f"tesseract binary '{binary}' not found (apt-get install tesseract-ocr tesseract-ocr-kor)",
            )
        self.binary = path
        # psm 6 (one uniform block) measured best on rendered Korean product lines: CER 0 on plain, textured and
        # dark backgrounds, where psm 3 read nothing on textured backgrounds and psm 11 misread 출 as 줄.
        self.psm = psm
        self.threads = threads
        self.timeout = timeout
        self.upscale_below_px = upscale_below_px
        self.add_english = add_english
        self._installed = self._list_langs()
        self._version = self._read_version()

    def _run(self, args: list[str], data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        env = dict(os.environ, OMP_THREAD_LIMIT=str(self.threads))
        try:
            return subprocess.run([self.binary, *args], input=data, capture_output=True, timeout=self.timeout,
                                  env=env, check=False)
        except subprocess.TimeoutExpired as exc:
            raise OcrError(f"tesseract timed out after {self.timeout}s", transient=True) from exc
        except OSError as exc:
            raise OcrError(f"tesseract could not be started: {exc}") from exc

    def _list_langs(self) -> set[str]:
        proc = self._run(["--list-langs"])
        text = (proc.stdout + proc.stderr).decode("utf-8", "replace")
        return {line.strip() for line in text.splitlines()[1:] if line.strip() and " " not in line.strip()}

    def _read_version(self) -> str:
        proc = self._run(["--version"])
        text = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip().splitlines()
        first = text[0] if text else "tesseract unknown"
        return first

    def languages(self) -> set[str]:
        return {code for code, data in TESSERACT_LANGS.items() if data in self._installed}

    def version(self) -> str:
        langs = "+".join(sorted(TESSERACT_LANGS[c] for c in self.languages()))
        return f"{self._version} (traineddata: {langs}; psm {self.psm})"

    def _lang_arg(self, lang: str) -> str:
        if lang == "auto":
            # Every installed CJK set plus English: slower and less accurate than one set, only used to detect.
            wanted = [TESSERACT_LANGS[c] for c in ("ko", "zh", "ja", "en")]
            found = [d for d in wanted if d in self._installed]
            if not found:
                raise OcrError(f"tesseract has none of {wanted} installed")
            return "+".join(found)
        data = TESSERACT_LANGS.get(lang)
        if data is None or data not in self._installed:
            raise OcrError(
                f"tesseract has no traineddata for language '{lang}' (installed: {sorted(self._installed)}; "
                f"apt-get install tesseract-ocr-{(data or lang).replace('_', '-')})",
            )
        if self.add_english and data != "eng" and "eng" in self._installed:
            return f"{data}+eng"  # product images mix Latin brand names / numbers into CJK text
        return data

    def recognize(self, image: np.ndarray, lang: str) -> list[TextRegion]:
        lang_arg = self._lang_arg(lang)
        h, w = image.shape[:2]
        # Optional 2x upscale for small images with tiny glyphs (off by default: it made 40-px Hangul worse).
        scale = 1.0
        if max(h, w) < self.upscale_below_px:
            scale = 2.0
        pil = Image.fromarray(image)
        if scale != 1.0:
            pil = pil.resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        pil.save(buf, "PNG")
        proc = self._run(["-", "-", "-l", lang_arg, "--psm", str(self.psm), "tsv"], buf.getvalue())
        if proc.returncode != 0:
            raise OcrError(
                f"tesseract failed (exit {proc.returncode}): {proc.stderr.decode('utf-8', 'replace')[-500:]}",
            )
        return _parse_tsv(proc.stdout.decode("utf-8", "replace"), scale)


def _parse_tsv(tsv: str, scale: float) -> list[TextRegion]:
    """Group word rows (level 5) into lines keyed by block/paragraph/line number."""
    lines: OrderedDict[tuple[str, str, str, str], list[dict[str, str]]] = OrderedDict()
    reader = csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE)
    for row in reader:
        if row.get("level") != "5":
            continue
        text = (row.get("text") or "").strip()
        try:
            conf = float(row.get("conf") or -1)
        except ValueError:
            conf = -1.0
        if not text or conf < 0:
            continue
        key = (row["page_num"], row["block_num"], row["par_num"], row["line_num"])
        lines.setdefault(key, []).append(row)
    regions: list[TextRegion] = []
    for words in lines.values():
        x0 = min(int(r["left"]) for r in words) / scale
        y0 = min(int(r["top"]) for r in words) / scale
        x1 = max(int(r["left"]) + int(r["width"]) for r in words) / scale
        y1 = max(int(r["top"]) + int(r["height"]) for r in words) / scale
        # Tesseract splits Chinese/Japanese into per-glyph "words": join those without spaces, Hangul/Latin with.
        text = join_lines([r["text"].strip() for r in words])
        # Weight confidence by characters so a one-glyph fragment does not dominate a long line.
        total = sum(len(r["text"].strip()) for r in words)
        score = sum(float(r["conf"]) * len(r["text"].strip()) for r in words) / max(total, 1) / 100.0
        regions.append(TextRegion(polygon=[(x0, y0), (x1, y0), (x1, y1), (x0, y1)], text=text,
                                  score=max(0.0, min(1.0, score))))
    return regions

