"""Score OCR output against partial line truth: edit errors per truth character.

Used by ``benchmarks/ocr_korean.py`` and the OCR tests, so every number about OCR text quality means the same thing.

* Both sides are normalised the same way: NFKC, case folded, every run of whitespace (newlines included) collapsed
  to one space, trimmed. Spaces count: an OCR that writes "블 랙" for "블랙" makes one error.
* Each truth line is aligned against the *best matching substring* of the whole output (semi-global alignment:
  skipping output text before and after costs nothing). Truth lists are partial on purpose and output order is not
  judged, so extra output text is never an error; a truth line missing from the output costs its length.
* The score is the sum of the lines' edit distances divided by the total number of truth characters: 0 is perfect,
  1 is as bad as reading nothing (it can exceed 1 only if a line's best match is worse than deleting it, which the
  alignment never picks, so in practice 0..1).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np

_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """NFKC, case fold, collapse whitespace runs to one space, trim."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def substring_distance(pattern: str, text: str) -> int:
    """Minimal edit distance between ``pattern`` and any substring of ``text`` (the empty one included).

    Row by row over ``pattern``, vectorised over ``text``: within a row the insertion chain
    ``cur[j] = min(base[j], cur[j-1] + 1)`` is ``j + cummin(base[k] - k)``, so no Python loop runs over ``text``.
    """
    if not pattern:
        return 0
    if not text:
        return len(pattern)
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    n = len(codes)
    offsets = np.arange(n + 1, dtype=np.int64)
    prev = np.zeros(n + 1, dtype=np.int64)  # free start anywhere in text
    for i, ch in enumerate(pattern, 1):
        mismatch = (codes != ord(ch)).astype(np.int64)
        base = np.empty(n + 1, dtype=np.int64)
        base[0] = i
        base[1:] = np.minimum(prev[1:] + 1, prev[:-1] + mismatch)
        prev = np.minimum.accumulate(base - offsets) + offsets
    return int(prev.min())  # free end anywhere in text


@dataclass
class LineScore:
    truth: str  # normalised
    errors: int


@dataclass
class Score:
    errors: int = 0
    chars: int = 0
    lines: list[LineScore] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Edit errors per truth character (0 = every truth line found verbatim)."""
        return self.errors / self.chars if self.chars else 0.0

    @property
    def exact_lines(self) -> int:
        return sum(1 for line in self.lines if line.errors == 0)

    def __add__(self, other: Score) -> Score:
        return Score(self.errors + other.errors, self.chars + other.chars, self.lines + other.lines)


def score_text(truth_lines: list[str], output: str) -> Score:
    """Score one image's OCR ``output`` (all its text, any order, any line breaks) against its truth lines."""
    text = normalize(output)
    score = Score()
    for raw in truth_lines:
        line = normalize(raw)
        if not line:
            continue
        errors = substring_distance(line, text)
        score.lines.append(LineScore(line, errors))
        score.errors += errors
        score.chars += len(line)
    return score
