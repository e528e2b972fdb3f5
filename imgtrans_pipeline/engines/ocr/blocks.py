"""Turn OCR lines into translation units: drop unreliable lines, group the rest into blocks in reading order.

Why blocks: a paragraph wrapped over two lines must be translated as one sentence, while a banner next to it is a
separate unit. Lines join a block when they are vertically close (gap below 0.6 x line height), of similar height
(ratio >= 0.8) and overlap horizontally (>= 30 % of the narrower line) — the way a wrapped paragraph looks.
"""

from __future__ import annotations

import logging
import statistics

from ...core.types import TextBlock, TextRegion

logger = logging.getLogger(__name__)

DEFAULT_MIN_CONFIDENCE = 0.6
# Vertical gap / line height. Wrapped paragraph lines sit < ~0.55 line heights apart even at 2x line spacing
# (OCR boxes are ~1.3x the font size); separate claims on product images sit about a line apart, and merging
# separate phrases into one "sentence" ruins their translation, so err on the side of splitting.
MAX_GAP_RATIO = 0.6
MIN_HEIGHT_RATIO = 0.8  # a size change marks a different element (title vs body)
MIN_X_OVERLAP = 0.3  # of the narrower line
SAME_ROW_OVERLAP = 0.5  # y-overlap / smaller height for two boxes to count as the same row


def filter_regions(regions: list[TextRegion], min_confidence: float = DEFAULT_MIN_CONFIDENCE
                   ) -> tuple[list[TextRegion], int]:
    """Keep regions scoring at least ``min_confidence`` with non-blank text; return (kept, dropped count)."""
    kept = [r for r in regions if r.score >= min_confidence and r.text.strip()]
    dropped = len(regions) - len(kept)
    if dropped:
        logger.info("dropped %d OCR region(s) below confidence %.2f", dropped, min_confidence)
    return kept, dropped


def _height(box: tuple[float, float, float, float]) -> float:
    return max(box[3] - box[1], 1.0)


def _same_row(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    return overlap > SAME_ROW_OVERLAP * min(_height(a), _height(b))


def reading_order(regions: list[TextRegion]) -> list[TextRegion]:
    """Top-to-bottom rows, left-to-right within a row (rows = boxes overlapping vertically by half)."""
    remaining = sorted(regions, key=lambda r: (r.bbox()[1], r.bbox()[0]))
    rows: list[list[TextRegion]] = []
    for region in remaining:
        box = region.bbox()
        for row in rows:
            if _same_row(row[0].bbox(), box):
                row.append(region)
                break
        else:
            rows.append([region])
    ordered: list[TextRegion] = []
    for row in rows:
        ordered.extend(sorted(row, key=lambda r: r.bbox()[0]))
    return ordered


def _joins(upper: tuple[float, float, float, float], lower: tuple[float, float, float, float]) -> bool:
    h_up, h_low = _height(upper), _height(lower)
    if min(h_up, h_low) / max(h_up, h_low) < MIN_HEIGHT_RATIO:
        return False
    gap = lower[1] - upper[3]
    mean_h = (h_up + h_low) / 2
    if gap > MAX_GAP_RATIO * mean_h or gap < -0.5 * mean_h:
        return False
    x_overlap = min(upper[2], lower[2]) - max(upper[0], lower[0])
    narrower = min(upper[2] - upper[0], lower[2] - lower[0])
    return narrower > 0 and x_overlap >= MIN_X_OVERLAP * narrower


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x3040 <= cp <= 0x30FF  # kana
        or 0x3400 <= cp <= 0x4DBF
        or 0x4E00 <= cp <= 0x9FFF  # Han
        or 0xF900 <= cp <= 0xFAFF
        or 0x3000 <= cp <= 0x303F  # CJK punctuation
        or 0xFF00 <= cp <= 0xFFEF  # full-width forms
    )


def join_lines(lines: list[str]) -> str:
    """Join wrapped lines: no separator where either side is Chinese/Japanese, a space otherwise (Latin, Hangul)."""
    out = ""
    for line in (s.strip() for s in lines):
        if not line:
            continue
        if not out:
            out = line
        elif _is_cjk(out[-1]) or _is_cjk(line[0]):
            out += line
        elif out.endswith("-") and len(out) > 1 and out[-2].isalpha() and line[0].islower():
            out = out[:-1] + line  # de-hyphenate a word wrapped across lines
        else:
            out += " " + line
    return out


def estimate_alignment(boxes: list[tuple[float, float, float, float]], image_width: float | None = None) -> str:
    """left / center / right from how line edges line up (several lines) or position in the image (one line)."""
    if not boxes:
        return "left"
    if len(boxes) == 1:
        x0, _, x1, _ = boxes[0]
        if image_width:
            centre_offset = abs((x0 + x1) / 2 - image_width / 2)
            left_margin, right_margin = x0, image_width - x1
            if centre_offset <= 0.04 * image_width and left_margin > 0.05 * image_width:
                return "center"
            if right_margin < 0.5 * left_margin:
                return "right"
        return "left"
    lefts = [b[0] for b in boxes]
    rights = [b[2] for b in boxes]
    centres = [(b[0] + b[2]) / 2 for b in boxes]
    spread = {
        "left": statistics.pstdev(lefts),
        "center": statistics.pstdev(centres),
        "right": statistics.pstdev(rights),
    }
    # Lines of equal width line up on all three: prefer left, the common default, unless another is clearly better.
    best = min(spread, key=lambda k: spread[k])
    if spread["left"] <= spread[best] + 2.0:
        return "left"
    return best


def group_blocks(regions: list[TextRegion], image_width: float | None = None) -> list[TextBlock]:
    """Group lines into blocks; blocks and lines within them come out in reading order."""
    ordered = reading_order(regions)
    parent = list(range(len(ordered)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    boxes = [r.bbox() for r in ordered]
    for i in range(len(ordered)):
        # Join each line to the nearest line below it that continues it (paragraph lines are one under another).
        candidates = [
            j for j in range(len(ordered))
            if j != i and boxes[j][1] > boxes[i][1] and not _same_row(boxes[i], boxes[j]) and _joins(boxes[i], boxes[j])
        ]
        if candidates:
            j = min(candidates, key=lambda k: boxes[k][1])
            parent[find(j)] = find(i)

    groups: dict[int, list[int]] = {}
    for i in range(len(ordered)):
        groups.setdefault(find(i), []).append(i)
    blocks: list[tuple[int, TextBlock]] = []
    for members in groups.values():
        members.sort()  # indices into ``ordered`` are already reading order
        lines = [ordered[k] for k in members]
        member_boxes = [boxes[k] for k in members]
        bbox = (
            min(b[0] for b in member_boxes),
            min(b[1] for b in member_boxes),
            max(b[2] for b in member_boxes),
            max(b[3] for b in member_boxes),
        )
        blocks.append((members[0], TextBlock(
            regions=lines,
            text=join_lines([r.text for r in lines]),
            bbox=bbox,
            alignment=estimate_alignment(member_boxes, image_width),
        )))
    # Block reading order: by the first line's position in the overall line order.
    blocks.sort(key=lambda item: item[0])
    return [block for _, block in blocks]
