"""Tesseract OCR through the Debian ``tesseract`` CLI, the only offline option for Korean.

Why the CLI and not pytesseract: pytesseract is itself a thin subprocess wrapper; calling the binary directly
keeps one less dependency and lets us pass the image on stdin and read its outputs ourselves.
Apt packages: tesseract-ocr plus tesseract-ocr-{kor,chi-sim,jpn} (and -chi-tra for zh-Hant when installed).

How a page is read (``layout="lines"``, the default): a text detector finds the lines, each line is normalised
(``textlines``) and all of them are read from stacked canvases in one tesseract run, one region per detected line
with the detector's polygon and the mean word confidence (0..1) as score. Reading the whole page as one block
(``--psm 6``) ran table columns and side-by-side captions together, and tesseract's own layout analysis (psm 3,
the CLI default) drops text beside photos; both are kept only as ``layout="page"``.

Word spacing: tesseract's TSV lists each Hangul syllable it is unsure about as a separate word and carries no
spacing, so joining TSV words with spaces wrote "블 랙 스 네 일". Its plain-text renderer does keep the real
spaces (the kor traineddata preserves inter-word spaces), so every run writes both and the TSV words take their
spacing from the text line they appear in. Gaps between word boxes are no substitute: on our Korean pages the gaps
between split syllables (up to 0.9 glyph heights) overlap those of real spaces (from 0.25).
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ...core.types import TextRegion
from .base import OcrError
from .textlines import DEFAULT_GLYPH_PX, MIN_LINE_PX, Line, LineDetector, normalize_line, stack_lines

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


LAYOUTS = ("lines", "page")
# Script of each language whose words tesseract may misread as Latin when English data is added.
SCRIPTS: dict[str, re.Pattern[str]] = {
    "ko": re.compile("[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]"),
    "zh": re.compile("[\u4e00-\u9fff]"),
    "zh-Hant": re.compile("[\u4e00-\u9fff]"),
    "ja": re.compile("[\u3040-\u30ff\u4e00-\u9fff]"),
}
SUSPECT_CONF = 90.0  # Latin/digit words inside a CJK line below this confidence are re-read (garbage scores 0-88)
_ALNUM = re.compile("[A-Za-z0-9]")
# Tesseract's per-word confidence sits around 90-97 on clean text; a line of garbage read from a photo texture
# usually scores well below 60, which run_ocr's confidence filter drops.


@dataclass
class _Word:
    text: str
    conf: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the image tesseract read
    space_before: bool = False


class TesseractEngine:
    """Tesseract CLI as a line reader: lines found by a text detector, each normalised, all read in one call.

    ``layout="lines"`` (default): PP-OCRv6 det (``textlines.LineDetector``) finds line boxes; each line crop is
    turned into dark-on-light grey with ``glyph_px``-tall ink (``textlines.normalize_line``: tesseract reads best
    with glyphs ~30-40 px tall, and small print is upscaled to that) and the lines are stacked on a white canvas
    read with ``--psm 6`` (one uniform block, which the stack now is). Each line becomes one region with the
    detector's polygon. ``layout="page"``: the whole image read with ``--psm psm`` (the old behaviour, also the
    fallback when rapidocr is not installed).

    Words are joined the way tesseract's own text output spaces them: its TSV lists every Hangul syllable of a
    word as a separate "word" with no spacing information, while its plain-text renderer keeps the real spaces, so
    both are written in one run and matched (``_join_words``).
    """

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
        layout: str = "lines",
        glyph_px: int = DEFAULT_GLYPH_PX,
    ) -> None:
        path = shutil.which(binary)
        if path is None:
            raise OcrError(
                f"tesseract binary '{binary}' not found (apt-get install tesseract-ocr tesseract-ocr-kor)",
            )
        if layout not in LAYOUTS:
            raise OcrError(f"unknown tesseract layout '{layout}' (known: {', '.join(LAYOUTS)})")
        self.binary = path
        self.psm = psm  # page layout only: the line layout always reads its stacked canvas as one block (psm 6)
        self.threads = threads
        self.timeout = timeout
        self.upscale_below_px = upscale_below_px
        self.add_english = add_english
        self.glyph_px = glyph_px
        self.detector: LineDetector | None = None
        if layout == "lines":
            try:
                self.detector = LineDetector(threads=threads)
            except OcrError as exc:
                logger.warning("tesseract falls back to whole-page reading (psm %d): %s", psm, exc)
                layout = "page"
        self.layout = layout
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
        if self.detector is not None:
            layout = f"lines by {self.detector.name}, {self.glyph_px} px glyphs, psm 6"
        else:
            layout = f"page, psm {self.psm}"
        return f"{self._version} (traineddata: {langs}; {layout})"

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

    def read_words(self, image: Image.Image, lang_arg: str, psm: int) -> list[list[_Word]]:
        """One tesseract run over ``image``: its lines, each a list of words with tesseract's own spacing."""
        buf = io.BytesIO()
        image.save(buf, "PNG")
        with tempfile.TemporaryDirectory(prefix="imgtrans-tess-") as tmp:
            base = Path(tmp) / "out"
            proc = self._run(["-", str(base), "-l", lang_arg, "--psm", str(psm), "txt", "tsv"], buf.getvalue())
            if proc.returncode != 0:
                raise OcrError(
                    f"tesseract failed (exit {proc.returncode}): {proc.stderr.decode('utf-8', 'replace')[-500:]}",
                )
            try:
                tsv = base.with_suffix(".tsv").read_text("utf-8", "replace")
                txt = base.with_suffix(".txt").read_text("utf-8", "replace")
            except OSError as exc:
                raise OcrError(f"tesseract wrote no output: {exc}") from exc
        return _join_words(_tsv_lines(tsv), txt)

    def recognize(self, image: np.ndarray, lang: str) -> list[TextRegion]:
        return self.recognize_batch([image], lang)[0]

    def recognize_batch(self, images: list[np.ndarray], lang: str) -> list[list[TextRegion]]:
        """``recognize`` for several images (the passes of a tall page) in as few tesseract runs as possible.

        Each tesseract run first loads its traineddata (~0.5 s CPU for kor+eng), so the line layout reads the lines
        of all images from the same stacked canvases: one run (plus one for re-reads) instead of one or two per image.
        """
        lang_arg = self._lang_arg(lang)
        for image in images:
            if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise OcrError(f"tesseract expects an HxWx3 uint8 RGB image, got {getattr(image, 'shape', None)}")
        if self.detector is None:
            return [self._recognize_page(image, lang_arg) for image in images]
        return self._recognize_lines(images, lang, lang_arg)

    def _recognize_page(self, image: np.ndarray, lang_arg: str) -> list[TextRegion]:
        h, w = image.shape[:2]
        if h < MIN_LINE_PX or w < MIN_LINE_PX:
            return []
        # Optional 2x upscale for small images with tiny glyphs (off by default: it made 40-px Hangul worse).
        scale = 2.0 if max(h, w) < self.upscale_below_px else 1.0
        pil = Image.fromarray(image)
        if scale != 1.0:
            pil = pil.resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS)
        regions = []
        for words in self.read_words(pil, lang_arg, self.psm):
            x0 = min(wd.box[0] for wd in words) / scale
            y0 = min(wd.box[1] for wd in words) / scale
            x1 = max(wd.box[2] for wd in words) / scale
            y1 = max(wd.box[3] for wd in words) / scale
            regions.append(TextRegion(polygon=[(x0, y0), (x1, y0), (x1, y1), (x0, y1)], text=_line_text(words),
                                      score=_line_score(words)))
        return regions

    def _recognize_lines(self, images: list[np.ndarray], lang: str, lang_arg: str) -> list[list[TextRegion]]:
        assert self.detector is not None
        found: list[tuple[int, Line]] = []  # (image index, line) for every line of every image
        crops: list[np.ndarray] = []
        for index, image in enumerate(images):
            for line in self.detector.detect(image):
                x0, y0, x1, y1 = line.box
                found.append((index, line))
                crops.append(normalize_line(image[y0:y1, x0:x1], self.glyph_px)[0])
        results: list[list[TextRegion]] = [[] for _ in images]
        if not crops:
            return results
        words_of = self._read_crops(crops, lang_arg)
        script = SCRIPTS.get(lang)
        primary = TESSERACT_LANGS.get(lang)
        if script is not None and primary is not None and lang_arg != primary:
            # With English added, tesseract now and then reads a whole Hangul (or Han) word as Latin garbage
            # ("SS" for 수축을) at low confidence. Re-read just those lines with the language's own data alone and
            # take its reading for the suspicious words where it is confident and in the script.
            suspects = [i for i, words in enumerate(words_of) if _has_suspect(words, script)]
            if suspects:
                again = self._read_crops([crops[i] for i in suspects], primary)
                for i, words in zip(suspects, again, strict=True):
                    words_of[i] = _merge_suspects(words_of[i], words, script)
        for (index, line), words in zip(found, words_of, strict=True):
            text = _line_text(words)
            if text:
                results[index].append(TextRegion(polygon=list(line.polygon), text=text, score=_line_score(words)))
        return results

    def _read_crops(self, crops: list[np.ndarray], lang_arg: str) -> list[list[_Word]]:
        """Words of each normalised line crop (canvas coordinates: x comparable between reads of the same crop)."""
        words_of: list[list[_Word]] = [[] for _ in crops]
        rows_of: list[list[int]] = [[] for _ in crops]  # tesseract's line number of each word
        for c, canvas in enumerate(stack_lines(crops, glyph_px=self.glyph_px)):
            for row, words in enumerate(self.read_words(Image.fromarray(canvas.pixels), lang_arg, 6)):
                for word in words:
                    index = canvas.line_at((word.box[1] + word.box[3]) / 2)
                    if index is not None:
                        words_of[index].append(word)
                        rows_of[index].append(c * 100_000 + row)
        for index, rows in enumerate(rows_of):
            if len(set(rows)) > 1:
                words_of[index] = _one_row(words_of[index], rows, self.glyph_px)
        return words_of


def _tsv_lines(tsv: str) -> list[list[_Word]]:
    """Word rows (level 5) grouped into lines by block/paragraph/line number, in tesseract's order."""
    lines: OrderedDict[tuple[str, str, str, str], list[_Word]] = OrderedDict()
    reader = csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE)
    for row in reader:
        if row.get("level") != "5":
            continue
        text = (row.get("text") or "").strip()
        try:
            conf = float(row.get("conf") or -1)
            x, y = int(row["left"]), int(row["top"])
            box = (x, y, x + int(row["width"]), y + int(row["height"]))
        except (TypeError, ValueError, KeyError):
            continue
        if not text or conf < 0:
            continue
        key = (row["page_num"], row["block_num"], row["par_num"], row["line_num"])
        lines.setdefault(key, []).append(_Word(text=text, conf=conf, box=box))
    return list(lines.values())


def _spacing_from_text(words: list[_Word], line: str) -> list[bool] | None:
    """Whether a space precedes each word in ``line`` (tesseract's text for these words), or None if they differ."""
    flags: list[bool] = []
    pos = 0
    for word in words:
        start = pos
        while pos < len(line) and line[pos].isspace():
            pos += 1
        if not line.startswith(word.text, pos):
            return None
        flags.append(pos > start)
        pos += len(word.text)
    return flags if not line[pos:].strip() else None


def _gap_spacing(words: list[_Word]) -> list[bool]:
    """Fallback when the text output cannot be matched: a space where the gap exceeds a quarter of the glyph height."""
    heights = sorted(w.box[3] - w.box[1] for w in words)
    glyph = max(heights[len(heights) // 2], 1)
    flags = [False]
    for prev, word in itertools.pairwise(words):
        flags.append(word.box[0] - prev.box[2] > 0.25 * glyph)
    return flags


def _join_words(lines: list[list[_Word]], txt: str) -> list[list[_Word]]:
    """Set each word's ``space_before`` from tesseract's text output (same run, same lines)."""
    # Lines keyed by their text without whitespace: the text renderer writes the very words the TSV lists.
    by_key: dict[str, list[str]] = {}
    for raw in txt.splitlines():
        if raw.strip():
            by_key.setdefault("".join(raw.split()), []).append(raw.strip())
    for words in lines:
        candidates = by_key.get("".join("".join(w.text.split()) for w in words), [])
        flags = _spacing_from_text(words, candidates.pop(0)) if candidates else None
        if flags is None:
            flags = _gap_spacing(words)
        for word, flag in zip(words, flags, strict=True):
            word.space_before = flag
    return lines


def _one_row(words: list[_Word], rows: list[int], glyph_px: int) -> list[_Word]:
    """Words of one detected line that tesseract put on several text lines (``rows``), back in one row.

    Now and then tesseract splits a single line (tall brackets, mixed sizes) into two and reads part of it twice
    ("[ko] 한정 특가" as "한정 특가" + "[ko] 안성"). Left to right, a word overlapping a more confident one by half is
    a second reading and dropped. Between two words that followed each other on one tesseract line its own spacing
    stands; elsewhere a space goes where the gap exceeds a quarter of the glyph height.
    """
    kept: list[int] = []
    for i in sorted(range(len(words)), key=lambda k: -words[k].conf):
        a = words[i].box
        if all(min(a[2], words[k].box[2]) - max(a[0], words[k].box[0])
               < 0.5 * max(min(a[2] - a[0], words[k].box[2] - words[k].box[0]), 1) for k in kept):
            kept.append(i)
    kept.sort(key=lambda k: words[k].box[0])
    out: list[_Word] = []
    for n, i in enumerate(kept):
        word = words[i]
        if n > 0:
            prev = kept[n - 1]
            own = prev == i - 1 and rows[prev] == rows[i]
            space = word.space_before if own else word.box[0] - words[prev].box[2] > 0.25 * glyph_px
            word = _Word(word.text, word.conf, word.box, space)
        out.append(word)
    return out


def _line_text(words: list[_Word]) -> str:
    out = ""
    for word in words:
        if out and word.space_before:
            out += " "
        out += word.text
    return out.strip()


def _line_score(words: list[_Word]) -> float:
    # Weighted by characters so a one-glyph fragment does not dominate a long line.
    total = sum(len(w.text) for w in words)
    score = sum(w.conf * len(w.text) for w in words) / max(total, 1) / 100.0
    return max(0.0, min(1.0, score))


def _suspect(word: _Word, script: re.Pattern[str]) -> bool:
    return word.conf < SUSPECT_CONF and not script.search(word.text) and bool(_ALNUM.search(word.text))


def _has_suspect(words: list[_Word], script: re.Pattern[str]) -> bool:
    return any(script.search(w.text) for w in words) and any(_suspect(w, script) for w in words)


def _merge_suspects(mixed: list[_Word], native: list[_Word], script: re.Pattern[str]) -> list[_Word]:
    """Replace each suspicious word of ``mixed`` by the ``native`` words centred inside its box, when those are in
    the script and more confident (both reads are of the same crop at the same place, so x positions compare)."""
    out: list[_Word] = []
    used: set[int] = set()
    for word in mixed:
        if _suspect(word, script):
            cover = [k for k, nat in enumerate(native) if k not in used
                     and word.box[0] <= (nat.box[0] + nat.box[2]) / 2 <= word.box[2]]
            texts = "".join(native[k].text for k in cover)
            conf = sum(native[k].conf for k in cover) / len(cover) if cover else 0.0
            if cover and script.search(texts) and conf > max(word.conf, 80.0):
                used.update(cover)
                first, *rest = (native[k] for k in cover)
                out.append(_Word(first.text, first.conf, first.box, word.space_before))
                out.extend(rest)
                continue
        out.append(word)
    return out
