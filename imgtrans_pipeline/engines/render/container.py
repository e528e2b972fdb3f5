"""Find the container a text block sits in: a label bar, pill, badge or band of one colour, bounded by an edge.

A designer sets a button label inside its button and lets a caption use its whole label bar, never more. The
container is read from the source image (the erased one may have smeared it): the ground colour is sampled in the
OCR box's padding around the ink, and the region of that colour connected to the text (the text itself counted in)
is grown within a band a few line heights above and below the box. It is a container only when it is bounded inside
that band (a plain page runs on past it), compact (a bar or a rounded shape, not a ragged patch of a photo) and closed
by a visible edge all round (another colour or an outline, not a soft gradient). The region's pixels, minus an
inner padding, are where the block may draw; holes in it larger than noise (an icon, a price tag, other text) stay
out.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[int, int, int, int]

BLUR_PX = 5  # median window against JPEG noise and fine texture (water, fabric) inside a pill
MIN_TOLERANCE = 24.0  # RGB distance from the ground colour that still counts as the same ground ...
MAX_TOLERANCE = 48.0  # ... at most, when the ground is a little textured (spread x SPREAD_FACTOR)
SPREAD_FACTOR = 3.0
GRADIENT_REACH = 2.5  # ground may drift this many tolerances from the sampled colour along a smooth gradient ...
SMOOTH_STEP = 40.0  # ... where neighbours differ by less than this (Sobel |gx| + |gy|, largest channel)
MIN_EDGE_SHARE = 0.7  # share of the region's rim that must sit on a clear step (an edge, an outline)
EDGE_STEP = 80.0  # ... a ~20-level step
MIN_SOLIDITY = 0.75  # region area / its bounding box (a pill is ~0.8, a bar ~1.0, a ragged photo patch less)
BADGE_SOLIDITY = 0.6  # ... a star or burst badge fills less of its box (~0.7) ...
BADGE_HULL_SOLIDITY = 0.88  # ... but nearly all of its convex hull (~0.92; a ragged patch much less)
MAX_PERIMETER_RATIO = 1.35  # outer contour length / bounding box perimeter
MAX_HEIGHT_LINES = 4.0  # taller than this many line heights: a panel, not a bar around this text
NOISE_HOLE_EM = 0.3  # holes smaller than this (em, both sides) are noise in the ground, not an obstacle
PAD_EM = 0.2  # inner padding between the container's edge and the text, in em of the source text
TIGHT_PAD_PX = 1  # padding when the text fits the container no other way (before it would spill out of it)


@dataclass(frozen=True)
class Container:
    """The region around one block's text where it may draw, and how the source text sat in it."""

    box: Box  # bounding box of the container (outline excluded)
    inner: Box  # bounding box of the allowed area (container minus padding, text box included)
    color: tuple[int, int, int]
    centered_x: bool  # the source text was centred in it horizontally ...
    centered_y: bool  # ... and vertically
    pad: int
    _origin: tuple[int, int]  # page position of the window the allowed area was found in
    _integral: np.ndarray  # integral image of the allowed area over that window
    _tight: np.ndarray  # ... and of the container up to TIGHT_PAD_PX inside its edge

    def holds(self, b: Box, tight: bool = False) -> bool:
        """Does the allowed area (``tight``: the container with almost no padding) hold every pixel of ``b``?"""
        ox, oy = self._origin
        x0, y0, x1, y1 = b[0] - ox, b[1] - oy, b[2] - ox, b[3] - oy
        ii = self._tight if tight else self._integral
        h, w = ii.shape[0] - 1, ii.shape[1] - 1
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h or x0 >= x1 or y0 >= y1:
            return False
        inside = int(ii[y1, x1]) - int(ii[y0, x1]) - int(ii[y1, x0]) + int(ii[y0, x0])
        return inside == (x1 - x0) * (y1 - y0)

    def record(self) -> dict[str, object]:
        return {"box": list(self.box), "inner": list(self.inner), "color": list(self.color),
                "centered": self.centered_x}


def _core(src: Box, em: float) -> Box:
    x0, y0, x1, y1 = src
    m = min(round(0.15 * em), (x1 - x0) // 3, (y1 - y0) // 3)
    return x0 + m, y0 + m, x1 - m, y1 - m


@dataclass(frozen=True)
class PageGround:
    """What every block's container search reads from one source page, computed once per page."""

    blurred: np.ndarray  # the page median-filtered with BLUR_PX (uint8 RGB)
    step: np.ndarray  # per pixel, the largest per-channel Sobel |gx| + |gy| of ``blurred`` (int16)


def sobel_steps(pixels: np.ndarray) -> np.ndarray:
    """Sobel |gx| + |gy| (3x3) of uint8 pixels, per channel, as int16: on uint8 input the sums are integers of at
    most 4 * 255 per direction, which int16 holds exactly."""
    return cv2.add(np.abs(cv2.Sobel(pixels, cv2.CV_16S, 1, 0, ksize=3)),
                   np.abs(cv2.Sobel(pixels, cv2.CV_16S, 0, 1, ksize=3)))


def page_ground(image: np.ndarray) -> PageGround:
    blurred = cv2.medianBlur(np.ascontiguousarray(image[:, :, :3]), BLUR_PX)
    step = sobel_steps(blurred)
    step = np.maximum(np.maximum(step[:, :, 0], step[:, :, 1]), step[:, :, 2])
    return PageGround(blurred=blurred, step=step)


def find_container(image: np.ndarray, src: Box, em: float, page: PageGround | None = None) -> Container | None:
    """The container around the text of source box ``src`` (font size ``em`` px) in the source ``image``, or None.

    ``page``: ``page_ground(image)`` (pass it when calling for several blocks of a page).
    """
    height, width = image.shape[:2]
    x0, y0, x1, y1 = src
    bw, bh = x1 - x0, y1 - y0
    if bw < 2 or bh < 2 or em <= 0:
        return None
    if page is None:
        page = page_ground(image)
    line = max(bh, em)
    # A bar may run far beyond its caption, so the window spans the page's width; a container is at most
    # MAX_HEIGHT_LINES tall, so ground running past that many lines above or below is open page.
    my = round(MAX_HEIGHT_LINES * line)
    wx0, wy0 = 0, max(0, y0 - my)
    wx1, wy1 = width, min(height, y1 + my)
    win = page.blurred[wy0:wy1, wx0:wx1].astype(np.float32)
    step = page.step[wy0:wy1, wx0:wx1]
    core = _core(src, em)
    cx0, cy0, cx1, cy1 = core[0] - wx0, core[1] - wy0, core[2] - wx0, core[3] - wy0
    sx0, sy0, sx1, sy1 = x0 - wx0, y0 - wy0, x1 - wx0, y1 - wy0

    # Ground colour: the OCR box's padding around the ink, plus a thin ring outside it.
    ox0, oy0 = max(0, sx0 - 2), max(0, sy0 - 2)
    around = win[oy0:sy1 + 2, ox0:sx1 + 2]
    ring = np.ones(around.shape[:2], dtype=bool)
    ring[cy0 - oy0:cy1 - oy0, cx0 - ox0:cx1 - ox0] = False
    samples = around[ring]
    if len(samples) < 8:
        return None
    color = _dominant(samples)
    diff = win - color
    # Squared distances, channel by channel (no reduction over a 3-long axis), compared with squared tolerances.
    squared = diff[:, :, 0] ** 2 + diff[:, :, 1] ** 2 + diff[:, :, 2] ** 2
    spread = float(np.median(np.sqrt(((samples - color) ** 2).sum(axis=1))))
    tolerance = min(MAX_TOLERANCE, max(MIN_TOLERANCE, SPREAD_FACTOR * spread))

    # Ground: close to the sampled colour, or further along a smooth gradient (no step between neighbours).
    # Steps per colour channel: a yellow outline on light blue has the same gray level as its ground.
    same = ((squared <= tolerance ** 2) | ((squared <= (GRADIENT_REACH * tolerance) ** 2) & (step < SMOOTH_STEP)))
    same = same.astype(np.uint8)
    same[cy0:cy1, cx0:cx1] = 1  # the text itself belongs to its container
    _, labels = cv2.connectedComponents(same, connectivity=4)
    label = labels[(cy0 + cy1) // 2, (cx0 + cx1) // 2]
    region = labels == label
    rx0, ry0, rx1, ry1 = _bounds(region)
    # Bounded inside the window (the image edge may bound it: a band across the page).
    if ((rx0 == 0 and wx0 > 0) or (ry0 == 0 and wy0 > 0) or (rx1 == win.shape[1] and wx1 < width)
            or (ry1 == win.shape[0] and wy1 < height)):
        return None
    if ry1 - ry0 > MAX_HEIGHT_LINES * line:
        return None
    # ... but bounded by its own edges on both sides of at least one axis: plain ground filling the page is none.
    if (wx0 + rx0 == 0 and wx0 + rx1 == width) and (wy0 + ry0 == 0 and wy0 + ry1 == height):
        return None
    filled = _fill_holes(region)
    box_area = (rx1 - rx0) * (ry1 - ry0)
    filled_area = int(filled.sum())
    if filled_area < BADGE_SOLIDITY * box_area:
        return None
    contours, _ = cv2.findContours(filled.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if filled_area < MIN_SOLIDITY * box_area:  # a star / burst badge: compact around its centre all the same
        hull = cv2.convexHull(max(contours, key=cv2.contourArea))
        if filled_area < BADGE_HULL_SOLIDITY * max(1.0, cv2.contourArea(hull)):
            return None
    perimeter = max(cv2.arcLength(c, True) for c in contours)
    if perimeter > MAX_PERIMETER_RATIO * 2 * ((rx1 - rx0) + (ry1 - ry0)):
        return None
    # Closed by an edge: the pixels just outside are clearly another colour (image edges count as closed).
    rim = cv2.dilate(filled.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~filled
    edge = cv2.dilate(step, np.ones((5, 5), np.uint8)) >= EDGE_STEP
    if not rim.any() or edge[rim].mean() < MIN_EDGE_SHARE:
        return None

    # Noise holes (specks of texture) are ground; larger holes (icons, other text) stay out.
    holes = filled & ~region
    allowed = region.copy()
    if holes.any():
        _, hl, stats, _ = cv2.connectedComponentsWithStats(holes.astype(np.uint8), connectivity=8)
        noise = NOISE_HOLE_EM * em
        small = (stats[:, cv2.CC_STAT_WIDTH] < noise) & (stats[:, cv2.CC_STAT_HEIGHT] < noise)
        small[0] = False
        allowed |= small[hl]
    pad = max(2, round(PAD_EM * em))
    ground = allowed.astype(np.uint8)
    areas = []
    for p in (pad, TIGHT_PAD_PX):
        kernel = np.ones((2 * p + 1, 2 * p + 1), np.uint8)
        eroded = cv2.erode(ground, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
        eroded[sy0:sy1, sx0:sx1] = True  # the own source box always
        areas.append(eroded)
    allowed = areas[0]
    ax0, ay0, ax1, ay1 = _bounds(allowed)
    inner = (ax0 + wx0, ay0 + wy0, ax1 + wx0, ay1 + wy0)
    box = (rx0 + wx0, ry0 + wy0, rx1 + wx0, ry1 + wy0)
    tol = max(2.0, 0.1 * (box[2] - box[0]), 0.5 * em)
    centered_x = abs((x0 - box[0]) - (box[2] - x1)) <= tol
    centered_y = abs((y0 - box[1]) - (box[3] - y1)) <= max(2.0, 0.2 * (box[3] - box[1]), 0.3 * em)
    return Container(box=box, inner=inner, color=(int(color[0]), int(color[1]), int(color[2])),
                     centered_x=centered_x, centered_y=centered_y, pad=pad,
                     _origin=(wx0, wy0), _integral=cv2.integral(allowed.astype(np.uint8)),
                     _tight=cv2.integral(areas[1].astype(np.uint8)))


def _bounds(mask: np.ndarray) -> Box:
    """Bounding box (x0, y0, x1, y1) of a non-empty mask's pixels."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _dominant(samples: np.ndarray) -> np.ndarray:
    """The most common colour among ``samples`` (N x 3): glyph pixels caught in the ring are a minority colour, but
    may be too many for a plain median to ignore."""
    bins = (samples // 24).astype(np.int64)
    keys = (bins[:, 0] * 16 + bins[:, 1]) * 16 + bins[:, 2]
    values, counts = np.unique(keys, return_counts=True)
    top = values[np.argmax(counts)]
    centre = np.array([top // 256, (top // 16) % 16, top % 16], dtype=np.float32) * 24 + 12
    near = samples[np.sqrt(((samples - centre) ** 2).sum(axis=1)) <= 30]
    return np.median(near if len(near) else samples, axis=0)


def _fill_holes(region: np.ndarray) -> np.ndarray:
    """The region with every enclosed hole filled (flood fill of the outside from a 1-px border)."""
    h, w = region.shape
    padded = np.zeros((h + 2, w + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = region
    cv2.floodFill(padded, None, (0, 0), 2)
    return padded[1:-1, 1:-1] != 2
