"""Page layout of translated blocks: one size per source size, wrap before shrinking, grow only into free space.

A translation usually needs more room than its source (zh -> en runs 2-3x wider). A designer keeps the size and
lets the text take the empty space next to it; this module does the same under hard rules:

- a block that sits in a container (a bar, pill, badge or band of one colour closed by an edge, ``container``) may
  use the container minus an inner padding and nothing outside it, centred in it when the source was;
- any other block may always use its own source box (but never another block's text inside it); beyond it, only space
  that holds no other text (translated blocks' source boxes, kept text, blocks already placed, each with a gap), no
  graphics (``FreeSpace``: edges of the source image outside text, faint straight lines such as card edges and
  separators included) and no ground of another colour than the block's own, keeping a margin to the image edge;
- drawn blocks never overlap each other or kept text, and nothing is drawn outside the image;
- blocks of one source size class (within 8%) get one rendered size, a larger class is never rendered smaller than
  a smaller one, and each size stays as close to its source size as the page allows: at each size every wrap width
  and anchoring is tried before the size is lowered. When a block finds no room beside blocks placed before it,
  its class is planned again at the size it does fit; only a third failure leaves it smaller than its class
  (``demoted``). ``by_style`` splits classes by weight and fill colour.

The planner is pure geometry: the caller supplies how to lay out a block's text at a size (``LayoutFn``) and how
much an outline / faux bold adds around the ink (``PadFn``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from .container import Container, sobel_steps
from .layout import TextLayout

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]

EDGE_THRESHOLD = 100.0  # Sobel |gx| + |gy| of the gray image: a ~25-level step counts as an edge
FAINT_EDGE_THRESHOLD = 40.0  # a ~10-level step: counts only along straight lines
LINE_RUN_RATIO = 0.08  # a straight line counts when it runs this share of the image's short side ...
LINE_MAX_DENSITY = 0.2  # ... through surroundings with at most this share of faint edge pixels
BUSY_WINDOW = 7  # px: edge density is measured over this window
BUSY_DENSITY = 0.06  # a straight 1-px edge gives 1/7 in the window; scattered JPEG noise stays below this
SPECK_RATIO = 0.04  # busy shapes smaller than this share of the image's short side are ignored
STRUCTURE_RATIO = 0.15  # ... larger than this are structure (product, panel, photo); in between texture
STRUCTURE_TOLERANCE = 0.005  # share of the grown area that may cover structure ...
TEXTURE_TOLERANCE = 0.05  # ... and texture (more where the source text itself sat on texture, up to the max)
MAX_TEXTURE_TOLERANCE = 0.2
BUSY_GROUND = 0.5  # source text whose surroundings are this much structure sat on a busy picture: may grow over it
GROUND_COLOR_DELTA = 40.0  # max RGB distance between the mean colour of grown space and of the ground under the text
STYLE_COLOR_DELTA = 90.0  # RGB distance within which two fills are one text style
SAME_SIZE_RATIO = 1.08  # source sizes within 8% of a group's largest are one size (measurement noise is ~5%)
GAP_RATIO = 0.3  # gap to other text, in em of the block being placed
ROW_GAP_RATIO = 0.6  # ... left and right of it (text on the same row): two word spaces, not one
AIR_RATIO = 0.12  # ... and to busy graphics
EDGE_MARGIN_RATIO = 0.35  # margin to the image edge when growing beyond the source box, in em
MAX_WRAP_LINES = 8
STACK_SIZE_RATIO = 3.0  # a subline or kicker shares the alignment of a headline up to this many times taller
BOX_PAD_RATIO = 0.1  # OCR line boxes reach this share of their height past the ink on each side
HEADLINE_VOTE = 0.5  # weight of a headline's alignment for a subline or kicker, against a line of the same size
INK_INSET_MAX = 0.25  # em: the source ink sits at most this far inside its OCR box (else the measure missed ink)
INK_FALLBACK_PX = 3  # ... but the box's edge is tried too when it is at most this much further out
CRAMPED_RATIO = 0.8  # a block that fits at under this share of what the rest of its size class fits is sized alone
ADJACENT_EM = 1.0  # ... together with the class-mates whose boxes are within this many em of its own

LayoutFn = Callable[[int, int, float], TextLayout]  # (block index, font px, max line width) -> layout
PadFn = Callable[[int, int], int]  # (block index, font px) -> pixels of outline / faux bold around the ink


def area(b: Box) -> int:
    return max(0, b[2] - b[0]) * max(0, b[3] - b[1])


def intersection(a: Box, b: Box) -> Box | None:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def contains(outer: Box, inner: Box) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def expand(b: Box, m: int) -> Box:
    return (b[0] - m, b[1] - m, b[2] + m, b[3] + m)


def _hits(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Which of ``boxes`` (N x 4) overlap ``box`` (non-empty intersection)."""
    return (np.maximum(box[0], boxes[:, 0]) < np.minimum(box[2], boxes[:, 2])) & (
        np.maximum(box[1], boxes[:, 1]) < np.minimum(box[3], boxes[:, 3]))


def _clash_areas(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Per box of ``boxes`` (N x 4), the summed intersection area with ``others`` (M x 4), as integers."""
    if not len(boxes) or not len(others):
        return np.zeros(len(boxes), dtype=np.int64)
    w = np.minimum(boxes[:, None, 2], others[None, :, 2]) - np.maximum(boxes[:, None, 0], others[None, :, 0])
    h = np.minimum(boxes[:, None, 3], others[None, :, 3]) - np.maximum(boxes[:, None, 1], others[None, :, 1])
    return np.where((w > 0) & (h > 0), w * h, 0).sum(axis=1)


def union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


@dataclass(frozen=True)
class Ground:
    """What the source text sat on: texture / structure share of a ring around its box, mean colour under it."""

    own: Box
    texture: float
    structure: float
    color: tuple[float, float, float]


class FreeSpace:
    """Where text may grow: busy graphics of the source image and colours of the erased one, per box in O(1).

    Edge pixels (outside text) are spread over a small window and split by the size of the shape they form: specks
    (water drops, dust, sparkles, JPEG noise) are ignored, small clusters are texture (a little of it may be
    covered) and shapes that stretch over a larger part of the image (product outlines, panel edges, photos) are
    structure (none may be covered). Text that already sat on such ground (a forest photo, a water texture) may
    grow over more of the same, but never onto ground of another colour (off a panel, across a colour bar).
    """

    def __init__(self, original: np.ndarray, text_boxes: Sequence[Box] = (),
                 erased: np.ndarray | None = None) -> None:
        self.height, self.width = original.shape[:2]
        gray = cv2.cvtColor(original, cv2.COLOR_RGB2GRAY) if original.ndim == 3 else original
        if gray.dtype != np.uint8:
            gray = np.clip(gray, 0, 255).astype(np.uint8)
        magnitude = sobel_steps(gray)
        edges = magnitude > EDGE_THRESHOLD
        faint = magnitude > FAINT_EDGE_THRESHOLD
        for x0, y0, x1, y1 in text_boxes:  # text is handled as obstacles (or is being replaced), not as graphics
            edges[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = False
            faint[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = False
        density = cv2.boxFilter(edges.view(np.uint8), cv2.CV_32F, (BUSY_WINDOW, BUSY_WINDOW),
                                borderType=cv2.BORDER_REPLICATE)
        busy = (density > BUSY_DENSITY).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(busy, connectivity=8)
        short = min(self.width, self.height)
        extent = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT])
        kind = np.zeros(count, dtype=np.uint8)  # 0 background / speck, 1 texture, 2 structure
        kind[extent >= max(BUSY_WINDOW + 2, SPECK_RATIO * short)] = 1
        kind[extent >= max(3 * BUSY_WINDOW, STRUCTURE_RATIO * short)] = 2
        kind[0] = 0
        classes = kind[labels]
        # Faint straight lines are structure too: the edge of a dark card on a black page, a dotted separator.
        # Only long horizontal or vertical runs count, so soft texture (water, fabric) stays free.
        run = max(3 * BUSY_WINDOW, round(LINE_RUN_RATIO * short))
        faint8 = faint.astype(np.uint8)
        lines = np.zeros_like(faint8)
        for bridge, kernel in (((1, 7), (1, run)), ((7, 1), (run, 1))):
            joined = cv2.morphologyEx(faint8, cv2.MORPH_CLOSE, np.ones(bridge, np.uint8))
            lines |= cv2.morphologyEx(joined, cv2.MORPH_OPEN, np.ones(kernel, np.uint8))
        if lines.any():
            # A line stands alone; runs found inside a dense field of faint edges are texture.
            around = cv2.boxFilter(faint.view(np.uint8), cv2.CV_32F, (run, run), borderType=cv2.BORDER_REPLICATE)
            lines &= (around < LINE_MAX_DENSITY).astype(np.uint8)
        if lines.any():
            lines = cv2.dilate(lines, np.ones((BUSY_WINDOW // 2 * 2 + 1,) * 2, np.uint8))
            classes = np.where(lines > 0, 2, classes).astype(classes.dtype)
        self.structure_map = classes == 2
        self.texture_map = classes == 1
        self.busy_map = classes > 0
        self._structure = cv2.integral(self.structure_map.astype(np.uint8))
        self._texture = cv2.integral(self.texture_map.astype(np.uint8))
        ground = original if erased is None else erased
        ground = ground if ground.ndim == 3 else np.stack([ground] * 3, axis=-1)
        depth = cv2.CV_32S if self.width * self.height * 255 < 2**31 else cv2.CV_64F
        self._color = cv2.integral(np.ascontiguousarray(ground[:, :, :3]), sdepth=depth)

    def _sum(self, integral: np.ndarray, b: Box) -> np.ndarray | float:
        x0, y0 = max(0, b[0]), max(0, b[1])
        x1, y1 = min(self.width, b[2]), min(self.height, b[3])
        if x0 >= x1 or y0 >= y1:
            return 0.0 if integral.ndim == 2 else np.zeros(integral.shape[2])
        corners = integral[[y1, y0, y1, y0], [x1, x1, x0, x0]].astype(np.float64)
        return corners[0] - corners[1] - corners[2] + corners[3]

    def structure(self, b: Box) -> int:
        return int(self._sum(self._structure, b))

    def texture(self, b: Box) -> int:
        return int(self._sum(self._texture, b))

    def ground(self, own: Box, ring: int) -> Ground:
        """Describe the ring of width ``ring`` around a source box."""
        outer = (max(0, own[0] - ring), max(0, own[1] - ring), min(self.width, own[2] + ring),
                 min(self.height, own[3] + ring))
        inner = intersection(own, outer) or (0, 0, 0, 0)
        ring_area = area(outer) - area(inner)
        if ring_area <= 0:
            outer, inner, ring_area = own, (0, 0, 0, 0), max(1, area(own))
        texture = (self.texture(outer) - self.texture(inner)) / ring_area
        structure = (self.structure(outer) - self.structure(inner)) / ring_area
        # The colour under the text once erased: the ring may reach past the panel the text sits on.
        color = np.asarray(self._sum(self._color, own)) / max(1, area(own))
        return Ground(own=own, texture=texture, structure=structure, color=tuple(float(v) for v in color))

    def covers_too_much(self, b: Box, ground: Ground) -> bool:
        """Would text over ``b`` cover graphics, or ground unlike its own, outside its own source box?"""
        own = ground.own
        inner = intersection(b, own) or (0, 0, 0, 0)
        grown = area(b) - area(inner)
        if grown <= 0:
            return False
        if ground.structure < BUSY_GROUND:
            if self.structure(b) - self.structure(inner) > STRUCTURE_TOLERANCE * grown + 2:
                return True
            tolerance = min(MAX_TEXTURE_TOLERANCE, max(TEXTURE_TOLERANCE, 1.5 * ground.texture))
            if self.texture(b) - self.texture(inner) > tolerance * grown + 2:
                return True
        mean = (np.asarray(self._sum(self._color, b)) - np.asarray(self._sum(self._color, inner))) / grown
        return float(np.sqrt(((mean - np.asarray(ground.color)) ** 2).sum())) > GROUND_COLOR_DELTA


@dataclass
class BlockSpec:
    """One block to place: its text, source box and what the source looked like."""

    index: int
    src: Box
    source_px: float
    target_px: int  # the size to aim for (source size, clamped to the renderer's limits)
    alignment: str
    src_lines: int
    fixed_px: int | None = None  # an override: draw at exactly this size
    bold: bool = False
    fill: tuple[int, int, int] = (0, 0, 0)
    flexible: bool = False  # the alignment is a guess: the text may anchor on another edge or the centre
    container: Container | None = None  # the bar / pill / badge the text sits in: the block stays inside it
    ink_x: tuple[int, int] | None = None  # left and right edge of the source ink (None: the source box's)

    @property
    def core(self) -> Box:
        """The source box without the OCR box's padding around the ink (~0.18 em each side)."""
        x0, y0, x1, y1 = self.src
        m = min(round(0.15 * self.source_px), (x1 - x0) // 3, (y1 - y0) // 3)
        return (x0 + m, y0 + m, x1 - m, y1 - m)


@dataclass
class Placement:
    index: int
    layout: TextLayout
    box: Box  # ink box of the text block, outline included
    pad: int
    fits: bool
    alignment: str = "left"
    region: Box = (0, 0, 0, 0)
    demoted: bool = False  # had to go below its group's size to fit beside already placed blocks
    container: Box | None = None  # the container the block was laid out in (None: free-space rules)


@dataclass
class PagePlan:
    placements: dict[int, Placement]
    group_of: dict[int, int] = field(default_factory=dict)  # block index -> size group (0 = largest source)
    group_px: list[int] = field(default_factory=list)
    group_class: list[int] = field(default_factory=list)  # size class of each group (0 = largest source size)


class PagePlanner:
    """Plans where and how large every block of one page is drawn (see the module docstring)."""

    def __init__(self, specs: Sequence[BlockSpec], layout_fn: LayoutFn, pad_fn: PadFn, space: FreeSpace, *,
                 kept: Sequence[Box] = (), min_px: int = 10, by_style: bool = False,
                 container_own_size: bool = True) -> None:
        self.specs = {s.index: s for s in specs}
        self.layout_fn = layout_fn
        self.pad_fn = pad_fn
        self.space = space
        self.kept = list(kept)
        self.min_px = min_px
        self.by_style = by_style
        # Text in a container (a button, a badge) shrinks to fit it on its own instead of setting the size of its
        # class and of every smaller one: the page's hierarchy is kept among the other blocks.
        self._own = {s.index for s in specs if container_own_size and s.container is not None and s.fixed_px is None}
        # Blocks whose spot is far tighter than their class's, with the size cap of the set they belong to
        # (``_group_sizes``).
        self._cramped: dict[int, int] = {}
        self.width, self.height = space.width, space.height
        self._layouts: dict[tuple[int, int, int], TextLayout] = {}
        self._grounds: dict[int, Ground] = {}
        self._may_break: set[int] = set()  # blocks that fit nowhere without splitting a word
        self._tight: set[int] = set()  # blocks that fit their container only without its inner padding
        order = list(self.specs)
        self._srcs = np.asarray([self.specs[i].src for i in order], dtype=np.int64).reshape(-1, 4)
        self._cores = np.asarray([self.specs[i].core for i in order], dtype=np.int64).reshape(-1, 4)
        self._others = {i: np.asarray([n for n, j in enumerate(order) if j != i], dtype=np.int64) for i in order}
        self._fixed_key: tuple[Box, ...] | None = None
        self._fixed: tuple[np.ndarray, np.ndarray] = (np.zeros((0, 4), np.int64), np.zeros((0, 4), np.int64))
        self._near: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    # -- geometry checks ----------------------------------------------------------------------------------------

    def allowed(self, spec: BlockSpec, cand: Box, size: int, drawn: Sequence[Box]) -> bool:
        """May block ``spec`` draw its text over ``cand`` (see the module docstring for the rules)?"""
        src = spec.src
        if cand[0] < 0 or cand[1] < 0 or cand[2] > self.width or cand[3] > self.height:
            return False
        container = spec.container
        if container is not None and not container.holds(cand, spec.index in self._tight):
            return False
        margin = max(2, round(EDGE_MARGIN_RATIO * size))
        if container is None and (cand[0] < min(src[0], margin) or cand[1] < min(src[1], margin)
                or cand[2] > max(src[2], self.width - margin) or cand[3] > max(src[3], self.height - margin)):
            return False
        gap = max(2, round(GAP_RATIO * size))
        # Beside other text on its row a word space's gap would run the two into one line: a column gap there.
        gaps = np.asarray([max(gap, round(ROW_GAP_RATIO * size)), gap], dtype=np.int64)
        c = np.asarray(cand, dtype=np.int64)
        # Other blocks: never over their text (the core of the OCR box, even where boxes overlap or one encloses
        # the other), and outside the own source box not within ``gap`` of their box. Kept and drawn text: never
        # over it, and the same gap.
        other_cores, fixed, grown_fixed, near = self._obstacles(spec.index, drawn)
        if len(other_cores) and _hits(c, other_cores).any():
            return False
        if len(fixed) and _hits(c, grown_fixed).any():
            return False
        if len(near):
            lo = np.maximum(c[:2], near[:, :2] - gaps)
            hi = np.minimum(c[2:], near[:, 2:] + gaps)
            hit = (lo < hi).all(axis=1)
            if hit.any():
                src = np.asarray(spec.src, dtype=np.int64)
                inside = (lo[hit] >= src[:2]).all(axis=1) & (hi[hit] <= src[2:]).all(axis=1)
                if not inside.all():
                    return False
        if container is not None:  # one ground colour up to the padding inside its edge, by construction
            return True
        # A little air between the text and graphics it grows next to (a panel edge, a product outline).
        return not self.space.covers_too_much(expand(cand, max(1, round(AIR_RATIO * size))), self._ground(spec))

    def _obstacles(self, index: int,
                   drawn: Sequence[Box]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(other blocks' cores, kept + drawn boxes, the same grown by 1 px, other sources + kept + drawn) as arrays,
        rebuilt only when ``drawn`` changes: the search asks ``allowed`` thousands of times per drawn list."""
        key = tuple(drawn)
        if key != self._fixed_key:
            self._fixed_key = key
            fixed = np.asarray([*self.kept, *drawn], dtype=np.int64).reshape(-1, 4)
            self._fixed = (fixed, fixed + np.array([-1, -1, 1, 1]))  # +1: drawn ink may round outwards
            self._near = {}
        fixed, grown = self._fixed
        near = self._near.get(index)
        if near is None:
            others = self._others[index]
            cores = self._cores[others]
            near = self._near[index] = (cores, np.concatenate([self._srcs[others], fixed]) if len(others) else fixed)
        return near[0], fixed, grown, near[1]

    def _ground(self, spec: BlockSpec) -> Ground:
        cached = self._grounds.get(spec.index)
        if cached is None:
            cached = self._grounds[spec.index] = self.space.ground(spec.src, max(4, round(0.6 * spec.source_px)))
        return cached

    # -- candidates ---------------------------------------------------------------------------------------------

    def _layout(self, index: int, size: int, max_width: float) -> TextLayout:
        key = (index, size, int(max_width))
        cached = self._layouts.get(key)
        if cached is None:
            cached = self._layouts[key] = self.layout_fn(index, size, float(int(max_width)))
        return cached

    def layouts(self, spec: BlockSpec, size: int) -> list[TextLayout]:
        """Distinct wraps of the block's text at ``size``: one line, balanced 2..N lines, the source width."""
        pad = self.pad_fn(spec.index, size)
        limit = max(1.0, self.width - 2 * pad)
        one_line = self._layout(spec.index, size, 1e9)
        natural = one_line.width
        widths = {min(limit, natural + 1.0), min(limit, float(spec.src[2] - spec.src[0] - 2 * pad))}
        if spec.container is not None:  # as wide as the container lets it
            widths.add(max(1.0, float(spec.container.inner[2] - spec.container.inner[0] - 2 * pad)))
        for k in range(2, MAX_WRAP_LINES + 1):
            w = natural / k * 1.06 + size
            if w < 2 * size:
                break
            widths.add(min(limit, w))
        out: list[TextLayout] = []
        seen: set[tuple[str, ...]] = set()
        for w in sorted(widths, reverse=True):
            if w < 1:
                continue
            lay = one_line if w >= natural + 1.0 else self._layout(spec.index, size, w)
            key = tuple(lay.lines)
            if key not in seen:
                seen.add(key)
                out.append(lay)
        return out

    def positions(self, spec: BlockSpec, bw: int, bh: int, pad: int = 0) -> list[tuple[Box, float, str]]:
        """Boxes of size bw x bh anchored like the source (alignment edge; vertical centre, top or bottom), each
        with a small preference cost and the alignment it implies. A block whose alignment is only a guess (one
        line, nothing stacked with it) may also anchor on its other edges or its centre.

        Left and right edges are the source ink's when measured (the text inside the box starts ``pad`` in), so a
        left-aligned translation starts where the source glyphs did, not where the OCR box's padding did (the
        centre is the box's: its padding is about even)."""
        x0, y0, x1, y1 = spec.src
        ax0, ax1 = x0, x1
        if spec.ink_x is not None:  # never outside the box, nor further in than its padding can be
            most = round(INK_INSET_MAX * spec.source_px)
            ax0 = x0 + min(most, max(0, spec.ink_x[0] - pad - x0))
            ax1 = x1 - min(most, max(0, x1 - spec.ink_x[1] - pad))
        anchors = [spec.alignment]
        out: list[tuple[Box, float, str]] = []
        seen: set[Box] = set()
        container = spec.container
        later = 0.0
        if container is not None and (container.centered_x or container.centered_y):
            later = 0.1  # the source's own anchors only when the centred position is taken
            # Centred in its container like the source: on the container's centre line(s), the source's otherwise.
            cx0, cy0, cx1, cy1 = container.box
            x = round((cx0 + cx1 - bw) / 2) if container.centered_x else (
                ax1 - bw if spec.alignment == "right" else round((x0 + x1 - bw) / 2)
                if spec.alignment == "center" else ax0)
            y = round((cy0 + cy1 - bh) / 2) if container.centered_y else round((y0 + y1 - bh) / 2)
            box = (x, y, x + bw, y + bh)
            seen.add(box)
            out.append((box, 0.0, "center" if container.centered_x else spec.alignment))
        if spec.flexible:
            # Text wider than its source line grows evenly on both sides, so it stays where the line was (a label
            # under an icon stays under it); text that fits keeps the guessed edge.
            first = "center" if bw > x1 - x0 else spec.alignment
            anchors = list(dict.fromkeys([first, spec.alignment, "left", "center", "right"]))
        ys = [(round((y0 + y1 - bh) / 2), 0.0), (y0, 0.02), (y1 - bh, 0.04)]
        for n, anchor in enumerate(anchors):
            if anchor == "right":
                x, box_x = ax1 - bw, x1 - bw
            elif anchor == "center":
                x = box_x = round((x0 + x1 - bw) / 2)
            else:
                x, box_x = ax0, x0
            # Small text in a tight spot may need the few pixels between its ink and the OCR box's edge.
            if abs(box_x - x) > INK_FALLBACK_PX:
                box_x = x
            for xx, shifted in ((x, 0.0), (box_x, 0.25), (min(max(x, 0), self.width - bw), 0.05)):
                for y, pref in ys:
                    for yy, clamped in ((y, 0.0), (min(max(y, 0), self.height - bh), 0.01)):
                        box = (int(xx), int(yy), int(xx) + bw, int(yy) + bh)
                        if box not in seen:
                            seen.add(box)
                            out.append((box, pref + clamped + shifted + (0.08 if n else 0.0) + later, anchor))
        return out

    def candidates(self, spec: BlockSpec, size: int,
                   drawn: Sequence[Box]) -> list[tuple[float, Box, TextLayout, str]]:
        pad = self.pad_fn(spec.index, size)
        src_area = max(1, area(spec.src))
        out = []
        for lay in self.layouts(spec, size):
            if lay.broke_words and spec.index not in self._may_break:
                continue
            bw = math.ceil(lay.width) + 2 * pad
            bh = math.ceil(lay.height) + 2 * pad
            extra_lines = max(0, len(lay.lines) - max(1, spec.src_lines))
            broken = 1.0 if lay.broke_words else 0.0
            for box, pref, anchor in self.positions(spec, bw, bh, pad):
                if not self.allowed(spec, box, size, drawn):
                    continue
                grown = (area(box) - area(intersection(box, spec.src) or (0, 0, 0, 0))) / src_area
                out.append((grown + 0.15 * extra_lines + broken + pref, box, lay, anchor))
        out.sort(key=lambda c: c[0])
        return out

    def best(self, spec: BlockSpec, size: int, drawn: Sequence[Box]) -> tuple[Box, TextLayout, str] | None:
        cands = self.candidates(spec, size, drawn)
        return (cands[0][1], cands[0][2], cands[0][3]) if cands else None

    def largest_fit(self, spec: BlockSpec, hi: int, drawn: Sequence[Box]) -> int | None:
        """Largest size in [min_px, hi] with an allowed placement (binary search: feasibility is near-monotone)."""
        lo, best = self.min_px, None
        if hi < lo:
            return None
        if self.best(spec, hi, drawn) is not None:
            return hi
        hi -= 1
        while lo <= hi:
            mid = (lo + hi) // 2
            if self.best(spec, mid, drawn) is not None:
                best, lo = mid, mid + 1
            else:
                hi = mid - 1
        return best

    # -- the page -----------------------------------------------------------------------------------------------

    def groups(self) -> list[tuple[int, list[int]]]:
        """Blocks (not fixed by an override) grouped by source size, largest first, as (size class, members).

        Within a size class, blocks of visibly different styles (weight, fill colour) form separate groups when
        ``by_style`` is set: a designer's paragraph style is size + weight + colour, so a cramped coloured label in a
        spec table does not shrink the body copy that happens to share its size.
        """
        order = sorted((s for s in self.specs.values() if s.fixed_px is None), key=lambda s: (-s.source_px, s.index))
        classes: list[list[BlockSpec]] = []
        anchor = 0.0
        for spec in order:
            if classes and spec.source_px >= anchor / SAME_SIZE_RATIO - 0.5:
                classes[-1].append(spec)
            else:
                classes.append([spec])
                anchor = spec.source_px
        groups: list[tuple[int, list[int]]] = []
        for k, members in enumerate(classes):
            styles: list[list[BlockSpec]] = []
            for spec in members:
                for style in styles:
                    if not self.by_style or same_style(style[0], spec):
                        style.append(spec)
                        break
                else:
                    styles.append([spec])
            groups += [(k, [spec.index for spec in style]) for style in styles]
        return groups

    def plan(self) -> PagePlan:
        groups = self.groups()
        group_of = {i: g for g, (_, members) in enumerate(groups) for i in members}
        fits: dict[int, int] = {}
        for spec in self.specs.values():
            if spec.fixed_px is None:
                fit = self.largest_fit(spec, spec.target_px, ())
                if fit is None and spec.container is not None:  # closer to the container's edge, not out of it
                    self._tight.add(spec.index)
                    fit = self.largest_fit(spec, spec.target_px, ())
                if fit is None:  # a word split between characters is the last resort before overflowing
                    self._may_break.add(spec.index)
                    fit = self.largest_fit(spec, spec.target_px, ())
                fits[spec.index] = fit or self.min_px
            elif self.best(spec, spec.fixed_px, ()) is None:
                if spec.container is not None:
                    self._tight.add(spec.index)
                if self.best(spec, spec.fixed_px, ()) is None:
                    self._may_break.add(spec.index)
        order = [i for _, members in groups for i in sorted(members)]
        order += sorted(s.index for s in self.specs.values() if s.fixed_px is not None)
        sizes: dict[int, int] = {}
        group_px: list[int] = []
        placements: dict[int, Placement] = {}
        for attempt in range(3):
            group_px = self._group_sizes(groups, fits)
            sizes = {i: group_px[group_of[i]] if i not in self._own else min(group_px[group_of[i]], fits[i])
                     for i in group_of}
            sizes.update({i: min(group_px[group_of[i]], cap) for i, cap in self._cramped.items()})
            sizes.update({s.index: int(s.fixed_px) for s in self.specs.values() if s.fixed_px is not None})
            placements, demoted = self._place_all(order, sizes, allow_demote=attempt == 2)
            if not demoted:
                break
            for i, size in demoted.items():
                fits[i] = min(fits[i], size)
        for p in placements.values():
            others = [q.box for q in placements.values() if q.index != p.index]
            p.region = self.region(self.specs[p.index], p.box, p.layout.font_px, others)
        return PagePlan(placements=placements, group_of=group_of, group_px=group_px,
                        group_class=[k for k, _ in groups])

    def _group_sizes(self, groups: list[tuple[int, list[int]]], fits: dict[int, int]) -> list[int]:
        """Each group at its members' smallest fit (capped at its source size), and never above any group of a
        larger size class (a larger source size is never drawn smaller than a smaller one).

        A member whose spot is far tighter than the rest of its group's (it fits at under ``CRAMPED_RATIO`` of what
        the others fit: a caption squeezed between a product's edges) is sized on its own (``_cramped``) when its
        group would otherwise drop below the source size of a smaller class, together with the group-mates right
        next to it (a label pair or a list keeps one size): the rest of its group keeps its size.
        The order holds all the same: smaller classes are capped by the cramped member's size too."""
        self._cramped = {}
        sizes: list[int] = []
        cap: int | None = None
        current, class_min = -1, None
        targets = [round(float(np.median([self.specs[i].target_px for i in members]))) for _, members in groups]
        free_class = [(k, t) for (k, members), t in zip(groups, targets, strict=True)
                      if any(i not in self._own for i in members)]
        for (size_class, members), target in zip(groups, targets, strict=True):
            if size_class != current:
                if class_min is not None:
                    cap = class_min if cap is None else min(cap, class_min)
                current, class_min = size_class, None
            bound = [i for i in members if i not in self._own]
            below = max((t for k, t in free_class if k > size_class), default=0)
            if len(bound) > 1 and below:
                roomy = CRAMPED_RATIO * min(target, max(fits[i] for i in bound))
                cramped = self._cramped_sets(bound, {i for i in bound if fits[i] < min(roomy, below)}, fits)
                self._cramped.update(cramped)
                bound = [i for i in bound if i not in cramped]
            else:
                cramped = {}
            size = min([target, *(fits[i] for i in bound or members)])
            if cap is not None:
                size = min(size, cap)
            size = max(self.min_px, size)
            sizes.append(size)
            if bound:  # a group of container text alone does not cap smaller classes
                low = max(self.min_px, min([size, *cramped.values()]))
                class_min = low if class_min is None else min(class_min, low)
        return sizes

    def _cramped_sets(self, bound: list[int], tight: set[int], fits: dict[int, int]) -> dict[int, int]:
        """The tight members of a group with the class-mates right next to them (a label pair, a list: they read as
        one set and keep one size), each mapped to its set's smallest fit; empty when that takes in the group."""
        out: dict[int, int] = {}
        for i in tight:
            if i in out:
                continue
            members, todo = {i}, [i]
            while todo:
                k = todo.pop()
                for j in bound:
                    if j not in members and self._adjacent(k, j):
                        members.add(j)
                        todo.append(j)
            cap = min(fits[j] for j in members)
            out.update({j: cap for j in members})
        return {} if len(out) >= len(bound) else out

    def _adjacent(self, i: int, j: int) -> bool:
        """Do blocks ``i`` and ``j`` sit next to each other (boxes within about a line height)?"""
        a, b = self.specs[i], self.specs[j]
        reach = round(ADJACENT_EM * max(a.source_px, b.source_px))
        return intersection(expand(a.src, reach), b.src) is not None

    def _place_all(self, order: list[int], sizes: dict[int, int],
                   allow_demote: bool) -> tuple[dict[int, Placement], dict[int, int]]:
        drawn: list[Box] = []
        placements: dict[int, Placement] = {}
        demoted: dict[int, int] = {}
        for i in order:
            spec = self.specs[i]
            size = sizes[i]
            found = self.best(spec, size, drawn)
            was_demoted = False
            if found is None and spec.fixed_px is None:
                smaller = self.largest_fit(spec, size - 1, drawn)
                if smaller is not None:
                    demoted[i] = smaller
                    if not allow_demote:
                        return placements, demoted
                    size, found, was_demoted = smaller, self.best(spec, smaller, drawn), True
            fits = found is not None
            if found is None:
                found = self.overflow(spec, size, drawn)
                if found is None:
                    logger.warning("block %d: no room for its text anywhere in a %dx%d image; not drawn", i,
                                   self.width, self.height)
                    continue
            box, lay, anchor = found
            placements[i] = Placement(index=i, layout=lay, box=box, pad=self.pad_fn(i, size), fits=fits,
                                      alignment=anchor, demoted=was_demoted,
                                      container=spec.container.box if spec.container is not None and fits else None)
            drawn.append(box)
        return placements, demoted

    def overflow(self, spec: BlockSpec, size: int, drawn: Sequence[Box]) -> tuple[Box, TextLayout, str] | None:
        """Nothing fits by the rules: the wrap and position inside the image that covers no other text (graphics,
        margins and gaps given up) and grows least, else the one covering the least other text; None when no
        position inside the image exists (an image smaller than one line of text)."""
        pad = self.pad_fn(spec.index, size)
        texts = np.asarray([*(expand(b, 1) for b in (*self.kept, *drawn)),
                            *(o.core for o in self.specs.values() if o.index != spec.index)],
                           dtype=np.int64).reshape(-1, 4)
        best: tuple[float, Box, TextLayout, str] | None = None
        for lay in self.layouts(spec, size):
            if lay.broke_words and spec.index not in self._may_break:
                continue
            bw = math.ceil(lay.width) + 2 * pad
            bh = math.ceil(lay.height) + 2 * pad
            boxes = list(self.positions(spec, bw, bh, pad))
            # Also positions on a grid around the source box: the text may have to move to clear others.
            x0, y0, x1, y1 = spec.src
            step = max(2, size // 2, (x1 - x0 + 3 * bw) // 40, (y1 - y0 + 3 * bh) // 40)
            for y in range(y0 - 2 * bh, y1 + bh + 1, step):
                for x in range(x0 - 2 * bw, x1 + bw + 1, step):
                    boxes.append(((x, y, x + bw, y + bh), 0.2, spec.alignment))
            clashes = _clash_areas(np.asarray([b for b, _, _ in boxes], dtype=np.int64).reshape(-1, 4), texts)
            for (box, pref, anchor), clash in zip(boxes, clashes.tolist(), strict=True):
                if box[0] < 0 or box[1] < 0 or box[2] > self.width or box[3] > self.height:
                    continue
                home = spec.container.box if spec.container is not None else spec.src  # spill out of it least
                grown = (area(box) - area(intersection(box, home) or (0, 0, 0, 0))) / max(1, area(spec.src))
                if spec.container is not None:  # a pixel over the top reads better than a word past the end
                    grown += 2.0 * max(0, home[0] - box[0], home[1] - box[1], box[2] - home[2],
                                       box[3] - home[3]) / max(1, size)
                score = clash * 1000.0 + grown + pref + (2.0 if lay.broke_words else 0.0)
                if best is None or score < best[0]:
                    best = (score, box, lay, anchor)
        if best is None:  # the image is smaller than one line of the smallest text
            return None
        return best[1], best[2], best[3]

    def region(self, spec: BlockSpec, box: Box, size: int, others: Sequence[Box]) -> Box:
        """A largest allowed rectangle around the drawn box (each side pushed out as far as it may go, by binary
        search, twice round): the room the block had."""
        if not self.allowed(spec, box, size, others):
            return box
        region = list(union(box, spec.src) if self.allowed(spec, union(box, spec.src), size, others) else box)
        limits = (0, 0, self.width, self.height)
        for _ in range(2):
            for side in range(4):
                outward = 1 if side >= 2 else -1
                lo, hi = 0, abs(limits[side] - region[side])  # known good, maybe good
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    cand = list(region)
                    cand[side] += outward * mid
                    if self.allowed(spec, (cand[0], cand[1], cand[2], cand[3]), size, others):
                        lo = mid
                    else:
                        hi = mid - 1
                region[side] += outward * lo
        return region[0], region[1], region[2], region[3]


Line = tuple[float, float, float, float]


def same_style(a: BlockSpec, b: BlockSpec) -> bool:
    """Same weight class and a fill colour a reader would call the same."""
    distance = math.sqrt(sum((x - y) ** 2 for x, y in zip(a.fill, b.fill, strict=True)))
    return a.bold == b.bold and distance <= STYLE_COLOR_DELTA


def _same_size(h: float, oh: float) -> bool:
    return 0.6 <= oh / h <= 1.6


def _stack_relation(a: Line, b: Line, headline: bool = False) -> str | None:
    """How line ``a`` lines up with line ``b`` stacked directly above or below it: "left" / "center" / "right",
    "equal" (same width: all three at once, which proves nothing) or None (not stacked, not aligned).

    Lines of about one size only, unless ``headline``: then ``b`` may also be a larger line set just above or below
    ``a`` (a subline under its headline or a kicker over it, up to STACK_SIZE_RATIO times smaller)."""
    x0, y0, x1, y1 = a
    ox0, oy0, ox1, oy1 = b
    h, oh = max(1.0, y1 - y0), max(1.0, oy1 - oy0)
    if min(x1, ox1) <= max(x0, ox0):
        return None
    gap = max(oy0 - y1, y0 - oy1)
    if gap > 1.2 * max(h, oh) or gap < -0.5 * min(h, oh):
        return None  # not directly above or below (or on the same row)
    tol = max(3.0, 0.25 * h)
    if not _same_size(h, oh):
        if not headline or not h < oh <= STACK_SIZE_RATIO * h or gap > 1.2 * h:
            return None
        # Compare the ink, not the OCR boxes (padded by ~0.1 of their height on each side).
        x0, x1 = x0 + BOX_PAD_RATIO * h, x1 - BOX_PAD_RATIO * h
        ox0, ox1 = ox0 + BOX_PAD_RATIO * oh, ox1 - BOX_PAD_RATIO * oh
    dev = sorted([(abs(x0 - ox0), "left"), (abs((x0 + x1 - ox0 - ox1) / 2), "center"), (abs(x1 - ox1), "right")])
    if dev[0][0] > tol:
        return None
    # A pixel or two between edges is OCR jitter: lines whose edges all fall that close are as good as equal.
    decisive = dev[0][0] < 0.5 * dev[1][0] and dev[1][0] - dev[0][0] >= max(3.0, 0.1 * h)
    return dev[0][1] if decisive else "equal"


def infer_alignments(block_lines: Sequence[Sequence[Line]], guesses: Sequence[str],
                     other_lines: Sequence[Line] = ()) -> list[tuple[str, bool]]:
    """(alignment, known) per block from its line boxes and the other text lines on the page.

    Several lines: the OCR's estimate from how they line up is evidence enough. One line: the edge or centre it
    shares with lines stacked directly above or below it is its alignment (OCR makes each line of a centred list its
    own block); a subline or kicker set just under or over a larger translated headline counts that headline's
    edge too, at half weight. A line as wide as its stacked neighbour takes that neighbour block's alignment. A
    one-line block centred in the image (the OCR's "center") is centred. Otherwise the alignment is only a guess
    (known = False).
    """
    n = len(block_lines)
    result: list[tuple[str, bool]] = []
    equal_to: list[list[int]] = [[] for _ in range(n)]
    for i, (lines, guess) in enumerate(zip(block_lines, guesses, strict=True)):
        if len(lines) != 1:
            result.append((guess, len(lines) >= 2))
            continue
        votes = {"left": 0.0, "center": 0.0, "right": 0.0}
        candidates = [(j, line) for j, own in enumerate(block_lines) if j != i for line in own]
        candidates += [(-1, line) for line in other_lines]
        for j, line in candidates:
            rel = _stack_relation(lines[0], line, headline=j >= 0)
            if rel == "equal" and j >= 0:
                equal_to[i].append(j)
            elif rel in votes:
                # A line of its own size (a list, a table column) is stronger evidence than a headline over it.
                same = _same_size(max(1.0, lines[0][3] - lines[0][1]), max(1.0, line[3] - line[1]))
                votes[rel] += 1.0 if same else HEADLINE_VOTE
        best = max(votes, key=lambda k: (votes[k], k == guess))
        result.append((best, True) if votes[best] > 0 else (guess, guess == "center"))
    changed = True
    while changed:  # same-width neighbours share what was found for either
        changed = False
        for i in range(n):
            if result[i][1]:
                continue
            for j in equal_to[i]:
                if result[j][1]:
                    result[i] = (result[j][0], True)
                    changed = True
                    break
    return result
