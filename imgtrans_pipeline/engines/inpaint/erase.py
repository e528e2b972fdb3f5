"""Erase only the text: per line, tell the glyph pixels from their background and restore just those.

Handing the whole OCR box to an inpainter destroys the design under the text: a red price band, a white label
bar with rounded corners or a badge is diffused over from the outside and turns into a smear. So each line is
treated on its own:

1. **Separate text from background.** The line's pixels (its polygon grown a little, the *box*) and a *ring*
   around it are clustered by colour (k-means in Lab). A colour that is common in the ring is a background
   colour; one that is frequent in the box but rare in the ring is text (strokes, anti-aliasing, outline,
   shadow). Background is made of *segments*: the pixels of a background colour that are connected to the ring.
   That is what tells white glyphs on a red band from the white page the band sits on: the glyphs are enclosed
   by red, the page touches the ring.
2. **Fit the background.** Each segment gets a low-order polynomial per RGB channel, fitted robustly on its
   pixels in box and ring; one model for all segments when that fits as well (a plain gradient split in two by
   the clustering). Every other pixel belongs to its nearest segment, so an edge of a band that runs through the
   box is kept as a boundary between two models instead of being blurred. Where the segments under the glyphs
   are several or not smooth, a *profile* is tried: the background as a function of the position along one
   direction (slanted stripes, straight edges at any angle), which puts stripe edges back under the glyphs.
   A label bar or pill that the line fills almost entirely is a segment of its own; what lies within it is on it.
3. **Glyph mask.** Where the segment's model fits (flat or gradient background, small residual), text is what
   deviates from the model: strong deviations seed it and weaker ones connected to them (anti-aliasing, JPEG
   ringing, shadow tails) are added by hysteresis. Those pixels are filled from the model: exact, with no
   diffusion from outside the band. Where the residual is high (photo, fabric), the text-colour pixels, slightly
   grown, go to the inpainting engine, which already works on crops around its mask.
4. **Fallback.** When text and background cannot be told apart (no background colour in the ring, no distinct
   text, an implausible glyph share) the line's dilated polygon goes to the inpainter, as before, and is counted.

Pixels outside the final mask are never changed, and pixels inside ``protect`` polygons (text that is kept
untranslated) are never touched nor used as background.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .base import Inpainter
from .mask import MIN_DILATION_PX, _disk, _fill_polygon, default_dilation, text_height

logger = logging.getLogger(__name__)

FLAT = "flat"
GRADIENT = "gradient"
PATTERN = "pattern"
INPAINTED = "inpainted"
FALLBACK = "fallback"
SKIPPED = "skipped"
LINE_KINDS = (FLAT, GRADIENT, PATTERN, INPAINTED, FALLBACK, SKIPPED)

_CLUSTERS = 4  # text fill, outline/shadow, anti-aliasing and one or two background colours
_SAMPLE = 4000  # pixels per line used to find the cluster centres
_MAX_FIT_SAMPLES = 6000
_MODEL_SIGMA = 4.0  # robust residual (levels) up to which a segment counts as flat/gradient
_MODEL_OUTLIERS = 0.08  # share of a segment's pixels the model may miss by far before it counts as textured
_GRADIENT_RANGE = 8.0  # levels the model varies over the box above which the line counts as "gradient"
_STRONG_MIN = 22.0  # deviation from the model that seeds a glyph
_WEAK_MIN = 7.0  # deviation that joins a glyph when connected to a seed
_MIN_GLYPH_SHARE = 0.01
_MAX_GLYPH_SHARE = 0.85
_MIN_DELTA_E = 12.0  # text colour must differ this much (Lab) from every background colour
_RING_BG = 0.15  # ring share from which a colour is background whatever its share of the box


@dataclass
class EraseResult:
    pixels: np.ndarray  # HxWx3 uint8 RGB, the text erased
    mask: np.ndarray  # HxW uint8, 255 where pixels were replaced (model fill or inpainting)
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Line:
    """The outcome for one line inside its ROI."""

    kind: str
    reason: str = ""
    fill_mask: np.ndarray | None = None  # ROI bool: pixels filled from ``fill_values``
    fill_values: np.ndarray | None = None  # ROI HxWx3 float
    inpaint_mask: np.ndarray | None = None  # ROI bool: pixels for the inpainting engine


# --- small numeric helpers ----------------------------------------------------------------------------------------


def _lab(pixels: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(pixels.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def _kmeans(samples: np.ndarray, k: int, seed: int = 0, iterations: int = 12) -> np.ndarray:
    """Cluster centres of ``samples`` (Nx3) by k-means with k-means++ seeding; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    samples = samples.astype(np.float32, copy=False)
    n = len(samples)
    k = max(1, min(k, n))
    centres = [samples[int(rng.integers(n))]]
    dist = np.sum((samples - centres[0]) ** 2, axis=1)
    for _ in range(1, k):
        total = float(dist.sum())
        if total <= 0:
            break
        idx = int(rng.choice(n, p=dist / total))
        centres.append(samples[idx])
        dist = np.minimum(dist, np.sum((samples - samples[idx]) ** 2, axis=1))
    c = np.asarray(centres, np.float32)
    for _ in range(iterations):
        labels = _nearest(samples, c)
        counts = np.bincount(labels, minlength=len(c)).astype(np.float32)
        sums = np.stack([np.bincount(labels, weights=samples[:, j], minlength=len(c)) for j in range(3)], axis=1)
        moved = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], c).astype(np.float32)
        if np.allclose(moved, c, atol=0.05):
            break
        c = moved
    return c


def _nearest(values: np.ndarray, centres: np.ndarray) -> np.ndarray:
    # |v - c|^2 = |v|^2 - 2 v.c + |c|^2; |v|^2 is the same for every centre.
    d = (centres * centres).sum(axis=1)[None, :] - 2.0 * (values.astype(np.float32, copy=False) @ centres.T)
    return np.argmin(d, axis=1)


def _solve(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Least squares by the normal equations: the design is small (<= 6 terms) and scaled to [-1, 1], so this is
    as accurate as an SVD here and much cheaper."""
    ata = a.T @ a
    ata[np.diag_indices_from(ata)] += 1e-9 * (float(np.trace(ata)) + 1.0)
    try:
        return np.linalg.solve(ata, a.T @ v)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(a, v, rcond=None)[0]


def _design(xs: np.ndarray, ys: np.ndarray, order: int, scale: tuple[float, float, float, float]) -> np.ndarray:
    cx, cy, sx, sy = scale
    u = (xs - cx) / sx
    v = (ys - cy) / sy
    cols = [np.ones_like(u)]
    if order >= 1:
        cols += [u, v]
    if order >= 2:
        cols += [u * u, u * v, v * v]
    return np.stack(cols, axis=1)


@dataclass
class _Model:
    coef: np.ndarray  # terms x 3
    order: int
    scale: tuple[float, float, float, float]
    sigma: float  # robust residual, levels (max over channels)
    outliers: float  # share of the fit pixels missed by far
    lo: np.ndarray | None = None  # per channel, the range of the fitted values: no extrapolating beyond it
    hi: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return self.sigma <= _MODEL_SIGMA and self.outliers <= _MODEL_OUTLIERS

    def predict(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        values = _design(xs.astype(np.float64), ys.astype(np.float64), self.order, self.scale) @ self.coef
        return values if self.lo is None or self.hi is None else np.clip(values, self.lo, self.hi)


def _fit(xs: np.ndarray, ys: np.ndarray, values: np.ndarray, scale: tuple[float, float, float, float],
         seed: int = 0) -> _Model | None:
    """Robust per-channel polynomial (order 2, less when there are few pixels) of ``values`` (Nx3) over (x, y)."""
    n = len(xs)
    if n < 8:
        return None
    if n > _MAX_FIT_SAMPLES:
        pick = np.random.default_rng(seed).choice(n, _MAX_FIT_SAMPLES, replace=False)
        xs, ys, values = xs[pick], ys[pick], values[pick]
        n = _MAX_FIT_SAMPLES
    order = 2 if n >= 60 else 1 if n >= 20 else 0
    a = _design(xs.astype(np.float64), ys.astype(np.float64), order, scale)
    v = values.astype(np.float64)
    keep = np.ones(n, bool)
    coef = np.zeros((a.shape[1], 3))
    sigma = 0.0
    for _ in range(3):  # refit without the pixels the previous fit missed by far (stray AA, shadow tails)
        if keep.sum() < a.shape[1] + 2:
            break
        coef = _solve(a[keep], v[keep])
        resid = np.abs(a @ coef - v)
        sigma = float(np.max(np.median(resid[keep], axis=0))) * 1.4826
        keep = resid.max(axis=1) <= max(3.0 * sigma, 3.0)
    resid = np.abs(a @ coef - v).max(axis=1)
    outliers = float(np.mean(resid > max(5.0 * sigma, 10.0)))
    return _Model(coef=coef, order=order, scale=scale, sigma=sigma, outliers=outliers,
                  lo=v.min(axis=0) - 3.0 * sigma - 2.0, hi=v.max(axis=0) + 3.0 * sigma + 2.0)


@dataclass
class _LocalModel:
    """Locally linear background: at every pixel, a plane fitted to the segment's pixels with Gaussian weights
    (normalised convolution). Follows smooth shading that one polynomial over a long line cannot, and uses only
    background pixels near each masked pixel."""

    image: np.ndarray  # HxWx3 float, NaN where the segment has no support
    sigma: float
    outliers: float
    pattern: bool = False  # a profile along one direction (stripes), not a smooth surface

    @property
    def ok(self) -> bool:
        return self.sigma <= _MODEL_SIGMA and self.outliers <= _MODEL_OUTLIERS

    def predict(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        return self.image[ys, xs].astype(np.float64)


def _fit_local(weights: np.ndarray, values: np.ndarray, check: np.ndarray, radius: float,
               wanted: np.ndarray) -> _LocalModel | None:
    """``weights``: HxW bool, the segment pixels to fit; ``values``: HxWx3 float; ``check``: the pixels whose
    residual decides whether the model is trusted; ``wanted``: further pixels to predict.

    The planes vary over ``radius`` pixels, so they are solved on a grid of cells a third of that wide (exact
    moments per cell, the Gaussian applied on the grid) and their coefficients interpolated back to the pixels.
    """
    if weights.sum() < 12 or not check.any():
        return None
    hh, ww = weights.shape
    step = max(1, int(radius // 3))
    gh, gw = -(-hh // step), -(-ww // step)
    yy, xx = np.mgrid[0:hh, 0:ww].astype(np.float32)
    xx = (xx - ww / 2.0) / radius
    yy = (yy - hh / 2.0) / radius
    w = weights.astype(np.float32)
    vals = values.astype(np.float32) * w[..., None]
    # Moments of the weights (1, x, y, xx, xy, yy) and of the values (1, x, y per channel), per pixel.
    planes = [w, w * xx, w * yy, w * xx * xx, w * xx * yy, w * yy * yy]
    for c in range(3):
        planes += [vals[..., c], vals[..., c] * xx, vals[..., c] * yy]
    stack = np.zeros((gh * step, gw * step, len(planes)), np.float32)
    stack[:hh, :ww] = np.stack(planes, axis=-1)
    cells = stack.reshape(gh, step, gw, step, len(planes)).mean(axis=(1, 3))
    sigma_cells = radius / step
    cells = np.stack([cv2.GaussianBlur(np.ascontiguousarray(cells[..., i]), (0, 0), sigma_cells,
                                       borderType=cv2.BORDER_CONSTANT) for i in range(len(planes))], axis=-1)
    cells = cells.reshape(-1, len(planes)).astype(np.float64)
    m0, mx, my, mxx, mxy, myy = (cells[:, i] for i in range(6))
    ridge = 1e-3 * m0 + 1e-12
    a = np.stack([np.stack([m0, mx, my], -1), np.stack([mx, mxx + ridge, mxy], -1),
                  np.stack([my, mxy, myy + ridge], -1)], -2)  # Nx3x3
    rhs = cells[:, 6:].reshape(-1, 3, 3).transpose(0, 2, 1)  # N x terms x channels
    good = m0 > 1e-3
    coef = np.zeros((len(cells), 3, 3))
    if good.any():
        coef[good] = np.linalg.solve(a[good], rhs[good])
    # Back to pixels: coefficients (and the unsupported cells, which must not leak into a blend) interpolated.
    fields = np.concatenate([coef.reshape(gh, gw, 9), (~good).reshape(gh, gw, 1).astype(np.float64)], axis=-1)
    full = cv2.resize(fields.astype(np.float32), (gw * step, gh * step), interpolation=cv2.INTER_LINEAR)
    full = full[:hh, :ww]
    supported = (full[..., 9] < 1e-6) & (wanted | check)
    image = np.full((hh, ww, 3), np.nan)
    if supported.any():
        k = full[supported][:, :9].reshape(-1, 3, 3).astype(np.float64)
        basis = np.stack([np.ones(int(supported.sum())), xx[supported], yy[supported]], -1).astype(np.float64)
        image[supported] = np.einsum("nt,ntc->nc", basis, k)
    probe = check & supported
    if probe.sum() < 8:
        return None
    resid = np.abs(image[probe] - values[probe]).max(axis=1)
    sigma = float(np.median(resid)) * 1.4826
    outliers = float(np.mean(resid > max(5.0 * sigma, 10.0)))
    return _LocalModel(image=image, sigma=sigma, outliers=outliers)


_COARSE_ANGLES = np.deg2rad(np.arange(0.0, 180.0, 3.0))
_PROFILE_BIN = 0.5  # px along the profile direction
_CHANNELS = np.arange(3)
_PROFILE_SAMPLES = 6000  # pixels used to find the direction (the profile itself uses all)


def _profile_sse(xs: np.ndarray, ys: np.ndarray, v: np.ndarray, angle: float, squares: float) -> float:
    """Squared error of ``v`` around its mean per bin of the projection on ``angle`` (bins of _PROFILE_BIN);
    ``squares``: the sum of ``v * v``."""
    p = xs * math.cos(angle) + ys * math.sin(angle)
    b = ((p - p.min()) / _PROFILE_BIN).astype(np.int64)
    inv = 1.0 / np.maximum(np.bincount(b).astype(np.float64), 1.0)
    # Per bin and channel in one pass: bin b, channel c is bucket 3b + c (each bucket sums in pixel order).
    s1 = np.bincount((b[:, None] * 3 + _CHANNELS).ravel(), weights=v.ravel()).reshape(-1, 3)
    sse = squares  # sum of squares minus, per bin and channel, (sum)^2 / count
    for c in range(3):
        col = np.ascontiguousarray(s1[:, c])
        sse -= float(np.dot(col * col, inv))
    return sse


def _fit_profile(known: np.ndarray, values: np.ndarray, wanted: np.ndarray, seed: int = 0,
                 check: np.ndarray | None = None) -> _LocalModel | None:
    """Background that only varies along one direction (slanted stripes, bands and edges at any angle, linear
    gradients): the colour is a profile over the projection on the best direction, each bin the mean of the
    known pixels that project into it. Stripe edges under the glyphs come back where they were instead of being
    approximated by the nearest stripe's colour. Trusted by its residual on the ``check`` pixels among the
    known ones (the ring: next to the glyphs, a drop shadow in a stripe's colour misses it, and is erased)."""
    ys, xs = np.nonzero(known)
    if len(ys) < 200:
        return None
    xs_f, ys_f = xs.astype(np.float64), ys.astype(np.float64)
    v = values[ys, xs].astype(np.float64)
    if len(ys) > _PROFILE_SAMPLES:
        pick = np.random.default_rng(seed).choice(len(ys), _PROFILE_SAMPLES, replace=False)
        sx, sy, sv = xs_f[pick], ys_f[pick], v[pick]
    else:
        sx, sy, sv = xs_f, ys_f, v
    squares = float(np.sum(sv * sv))
    coarse = min(_COARSE_ANGLES, key=lambda a: _profile_sse(sx, sy, sv, float(a), squares))
    fine = coarse + np.deg2rad(np.arange(-3.0, 3.01, 0.25))
    angle = float(min(fine, key=lambda a: _profile_sse(sx, sy, sv, float(a), squares)))
    cos, sin = math.cos(angle), math.sin(angle)
    p = xs_f * cos + ys_f * sin
    hh, ww = known.shape
    corners = np.array([0.0, ww - 1.0]) * cos
    lo = float(min(corners.min() + min(0.0, (hh - 1.0) * sin), p.min()))
    b = ((p - lo) / _PROFILE_BIN).astype(np.int64)
    keep = np.ones(len(b), bool)
    profile = np.zeros((1, 3))
    cnt = np.zeros(1)
    for _ in range(2):  # second pass without the pixels the first missed by far (stray anti-aliasing)
        cnt = np.bincount(b[keep]).astype(np.float64)
        sums = np.stack([np.bincount(b[keep], weights=v[keep, c]) for c in range(3)], axis=1)
        profile = sums / np.maximum(cnt, 1.0)[:, None]
        resid = np.abs(profile[np.minimum(b, len(cnt) - 1)] - v).max(axis=1)
        sigma = float(np.median(resid)) * 1.4826
        keep = resid <= max(3.0 * sigma, 6.0)
    resid = np.abs(profile[np.minimum(b, len(cnt) - 1)] - v).max(axis=1)
    judged = check[ys, xs] if check is not None else np.ones(len(ys), bool)
    if judged.sum() >= 100:
        resid = resid[judged]
    sigma = float(np.median(resid)) * 1.4826
    outliers = float(np.mean(resid > max(5.0 * sigma, 10.0)))
    wy, wx = np.nonzero(wanted)
    wb = ((wx * cos + wy * sin - lo) / _PROFILE_BIN).astype(np.int64)
    ok = (wb >= 0) & (wb < len(cnt))
    ok[ok] = cnt[wb[ok]] >= 3
    image = np.full((hh, ww, 3), np.nan)
    image[wy[ok], wx[ok]] = profile[wb[ok]]
    return _LocalModel(image=image, sigma=sigma, outliers=outliers, pattern=True)


# --- one line -----------------------------------------------------------------------------------------------------


def _segments(labels: np.ndarray, region: np.ndarray, ring: np.ndarray, bg_clusters: list[int]) -> np.ndarray:
    """Background segments (1..S, 0 = none): per background colour, its pixels connected to the ring."""
    seg = np.zeros(labels.shape, np.int32)
    next_id = 1
    for c in bg_clusters:
        pixels = ((labels == c) & region).astype(np.uint8)
        count, comp = cv2.connectedComponents(pixels, connectivity=4)
        if count <= 1:
            continue
        touching = np.unique(comp[ring & (comp > 0)])
        if touching.size == 0:
            continue
        hit = np.isin(comp, touching)
        seg[hit] = next_id
        next_id += 1
    return seg


def _inner_background(labels: np.ndarray, seg: np.ndarray, box: np.ndarray, text_clusters: list[int],
                      height: float) -> np.ndarray | None:
    """The background inside the box that the ring does not see (a pill or bar no larger than the line box):
    when what is left for text is too much of the box, the text colour whose pixels form the thickest blob.
    Its large components are returned, or None."""
    inside = box & (seg == 0)
    if inside.sum() <= 0.3 * box.sum():
        return None
    best: tuple[float, int] | None = None
    for c in text_clusters:
        pixels = (inside & (labels == c)).astype(np.uint8)
        if pixels.sum() < 0.2 * box.sum():
            continue
        thickness = float(cv2.distanceTransform(pixels, cv2.DIST_L2, 3).max())
        if thickness >= 0.18 * height and (best is None or thickness > best[0]):
            best = (thickness, c)
    if best is None:
        return None
    pixels = (inside & (labels == best[1])).astype(np.uint8)
    count, comp, stats, _ = cv2.connectedComponentsWithStats(pixels, connectivity=4)
    big = np.zeros(count, bool)
    big[1:] = stats[1:, cv2.CC_STAT_AREA] >= 0.1 * box.sum()
    return big[comp] if np.any(big) else None


def _assign_segments(seg: np.ndarray, near: np.ndarray, scale: tuple[float, float, float, float],
                     band: float, *, fit_boundary: bool = True) -> np.ndarray:
    """For every pixel, the segment it belongs to (segment pixels keep their id).

    With one segment that is all. With several (a band edge running through the line), the boundary between
    them is continued under the glyphs: a quadratic boundary in (x, y) is fitted (least squares, one score per
    segment) to the segment pixels ``near`` the text and decides for the pixels in between; the nearest
    segment pixel alone would put the boundary mid-stroke. Where that boundary misclassifies too many of the
    known pixels, the nearest segment pixel decides.
    """
    n_seg = int(seg.max())
    if not np.any(seg == 0) or n_seg == 0:
        return seg
    src = (seg == 0).astype(np.uint8)
    _dist, nearest = cv2.distanceTransformWithLabels(src, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    lut = np.zeros(int(nearest.max()) + 1, np.int32)
    lut[nearest[seg > 0]] = seg[seg > 0]
    assign = lut[nearest]
    if n_seg == 1 or not fit_boundary:
        return assign
    # Train on the pixels along the boundaries only (a strip of equal width on both sides), so the fitted
    # boundary lies on the edge rather than between the segments' centres.
    strip = np.zeros(seg.shape, bool)
    for s in range(1, n_seg + 1):
        other = ((seg > 0) & (seg != s)).astype(np.uint8)
        if not other.any():
            continue
        dist = cv2.distanceTransform(1 - other, cv2.DIST_L2, 3)
        strip |= (seg == s) & (dist <= band)
    ys, xs = np.nonzero(strip & near)
    if len(ys) < 30 or len(np.unique(seg[ys, xs])) < 2:
        return assign
    if len(ys) > _MAX_FIT_SAMPLES:
        pick = np.random.default_rng(0).choice(len(ys), _MAX_FIT_SAMPLES, replace=False)
        ys, xs = ys[pick], xs[pick]
    truth = seg[ys, xs] - 1
    a = _design(xs.astype(np.float64), ys.astype(np.float64), 2, scale)
    target = np.full((len(ys), n_seg), -1.0)
    target[np.arange(len(ys)), truth] = 1.0
    weight = 1.0 / np.bincount(truth, minlength=n_seg)[truth]  # balanced: a small segment counts as much
    sw = np.sqrt(weight)[:, None]
    coef = _solve(a * sw, target * sw)
    if np.mean(np.argmax(a @ coef, axis=1) == truth) < 0.97:
        return assign
    fy, fx = np.nonzero(seg == 0)
    scores = _design(fx.astype(np.float64), fy.astype(np.float64), 2, scale) @ coef
    chosen = np.argmax(scores, axis=1).astype(np.int32) + 1
    # The boundary only decides near both sides: a pixel far from the segment it picked (a quadratic swinging
    # round a small segment at the edge of the ROI) keeps its nearest segment.
    reach = 3.0 * band
    for s in range(1, n_seg + 1):
        picked = chosen == s
        if not picked.any():
            continue
        dist = cv2.distanceTransform((seg != s).astype(np.uint8), cv2.DIST_L2, 3)
        far = picked & (dist[fy, fx] > reach)
        chosen[far] = assign[fy[far], fx[far]]
    assign[fy, fx] = chosen
    return assign


def _split_frames(glyphs: np.ndarray, inside: np.ndarray, height: float) -> tuple[np.ndarray, np.ndarray]:
    """Split ``glyphs`` into glyphs and *frames*: parts in the text's colour that are long (at least 1.5 line
    heights along or across the line) and lie mostly outside the line's polygon, or long straight hairlines
    wherever they lie. The outline of a ghost button around "立即抢购 >", a rule under a heading, the grid of a
    size table whose cells the OCR polygons fill: design, to keep. A glyph lies mostly within its line's polygon,
    whatever pokes out of a tight one, and no stroke is a hairline 1.5 line heights long."""
    count, comp, stats, _ = cv2.connectedComponentsWithStats(glyphs.astype(np.uint8), connectivity=8)
    frames = np.zeros(glyphs.shape, bool)
    if count <= 1:
        return glyphs, frames
    area = stats[:, cv2.CC_STAT_AREA]
    within = np.bincount(comp[inside], minlength=count)
    widths, heights = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
    long = np.maximum(widths, heights) >= 1.5 * height
    hair = max(2.0, 0.12 * height)
    straight = ((widths >= 1.5 * height) & (heights <= hair)) | ((heights >= 1.5 * height) & (widths <= hair))
    is_frame = (long & (within < 0.25 * area)) | straight
    is_frame[0] = False
    if not np.any(is_frame):
        return glyphs, frames
    frames = is_frame[comp]
    return glyphs & ~frames, frames


def _erase_line(roi: np.ndarray, poly: np.ndarray, others: np.ndarray, protect: np.ndarray, height: float,
                seed: int) -> _Line:
    """Decide how to erase one line inside its ROI (``poly``: its filled polygon; ``others``: other lines' text,
    kept out of the ring; ``protect``: pixels never to change)."""
    h_px = max(1.0, height)
    grow = max(MIN_DILATION_PX, round(0.15 * h_px))
    ring_w = max(4, round(0.35 * h_px))
    box = cv2.dilate(poly, _disk(grow)) > 0
    outer = cv2.dilate(poly, _disk(grow + ring_w)) > 0
    box &= ~protect
    ring = outer & ~box & ~others & ~protect
    region = box | ring
    fallback_mask = (cv2.dilate(poly, _disk(default_dilation(h_px))) > 0) & ~protect

    def fallback(reason: str) -> _Line:
        return _Line(FALLBACK, reason, inpaint_mask=fallback_mask)

    if ring.sum() < 16 or box.sum() < 4:
        return fallback("no background ring")
    lab = _lab(roi)
    ys_r, xs_r = np.nonzero(region)
    values = lab[ys_r, xs_r]
    rng = np.random.default_rng(seed)
    sample = values if len(values) <= _SAMPLE else values[rng.choice(len(values), _SAMPLE, replace=False)]
    centres = _kmeans(sample, _CLUSTERS, seed)
    labels = np.full(poly.shape, -1, np.int32)
    labels[ys_r, xs_r] = _nearest(values, centres)
    ring_share = np.bincount(labels[ring], minlength=len(centres)) / max(1, int(ring.sum()))
    box_share = np.bincount(labels[box], minlength=len(centres)) / max(1, int(box.sum()))
    # A background colour is common in the ring; a colour that only shows there a little but fills the box
    # (strokes poking out of a tight box, a shadow) is text.
    bg_clusters = [c for c in range(len(centres))
                   if ring_share[c] >= _RING_BG or (ring_share[c] >= 0.04 and ring_share[c] >= 0.5 * box_share[c])]
    text_clusters = [c for c in range(len(centres)) if c not in bg_clusters and box_share[c] >= 0.003]
    logger.debug("line h=%.0f centres=%s ring=%s box=%s bg=%s", h_px, np.round(centres).tolist(),
                 np.round(ring_share, 2).tolist(), np.round(box_share, 2).tolist(), bg_clusters)
    if not bg_clusters:
        return fallback("no background colour in the ring")
    seg = _segments(labels, region, ring, bg_clusters)
    if not np.any(seg):
        return fallback("no background segment")
    inner = _inner_background(labels, seg, box, text_clusters, h_px)
    if inner is not None:
        # A pill or bar that the line fills almost entirely: hardly in the ring, but it surrounds the glyphs.
        # Glyphs in the page's colour that touch the bar's edge joined the page: within the bar they are text.
        closed = cv2.morphologyEx(inner.astype(np.uint8), cv2.MORPH_CLOSE, _disk(max(2, round(0.2 * h_px)))) > 0
        seg[closed & ~inner & box & (seg > 0)] = 0
        inner_id = int(seg.max()) + 1
        seg[inner] = inner_id
        text_clusters = [c for c in text_clusters if not np.any(inner & (labels == c))]
    roi_f = roi.astype(np.float32)
    hh, ww = poly.shape
    scale = ((ww - 1) / 2.0, (hh - 1) / 2.0, max(1.0, ww / 2.0), max(1.0, hh / 2.0))
    # Fit on segment pixels away from anything else (their anti-aliased rims are neither text nor background).
    core = cv2.erode((seg > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    n_seg = int(seg.max())
    models: dict[int, _Model | _LocalModel | None] = {}
    ys_c, xs_c = np.nonzero(core)
    joint = _fit(xs_c, ys_c, roi_f[ys_c, xs_c], scale, seed)
    if joint is not None and joint.ok:
        models = dict.fromkeys(range(1, n_seg + 1), joint)
    else:
        for s in range(1, n_seg + 1):
            ys_s, xs_s = np.nonzero(core & (seg == s))
            models[s] = _fit(xs_s, ys_s, roi_f[ys_s, xs_s], scale, seed + s)
        # The segments under the glyphs, when one of them is no smooth surface or there are several (stripes, a
        # straight edge at an angle): one profile along a direction for all of them, when that fits. It puts
        # the edges between them back where they were; the nearest segment only approximates them.
        in_box = np.bincount(seg[box], minlength=n_seg + 1)[1:]
        under = [s for s in range(1, n_seg + 1) if in_box[s - 1] >= 0.03 * max(1, int(in_box.sum()))]
        if len(under) >= 2 or any(models[s] is None or not models[s].ok for s in under):  # type: ignore[union-attr]
            glyphish = cv2.dilate((box & (seg == 0)).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            profile = _fit_profile(np.isin(seg, under) & ~glyphish & ~protect, roi_f, region & ~protect, seed,
                                   check=ring)
            logger.debug("profile over %s: %s", under, profile and (round(profile.sigma, 1),
                                                                      round(profile.outliers, 3)))
            if profile is not None and profile.ok:
                models.update(dict.fromkeys(under, profile))
            elif len(under) >= 2:  # stripes next to a plain band: a profile for the stripes alone
                for s in under:
                    if models[s] is None or not models[s].ok:  # type: ignore[union-attr]
                        own = _fit_profile((seg == s) & ~glyphish & ~protect, roi_f, region & ~protect, seed + s,
                                          check=ring)
                        if own is not None and own.ok:
                            models[s] = own
        near_text = cv2.dilate((box & (seg == 0)).astype(np.uint8), _disk(max(2, round(0.25 * h_px)))) > 0
        for s in range(1, n_seg + 1):
            model = models[s]
            if model is None or not model.ok:
                local = _fit_local(core & (seg == s), roi_f, core & (seg == s) & near_text,
                                   max(3.0, 0.45 * h_px), near_text & region)
                if local is not None and (model is None or local.sigma < model.sigma):
                    models[s] = local
    logger.debug("segments: joint=%s per=%s", joint and (round(joint.sigma, 1), round(joint.outliers, 3)),
                 {s: m and (round(m.sigma, 1), round(m.outliers, 3), int((seg == s).sum())) for s, m in models.items()})
    near = cv2.dilate((box & (seg == 0)).astype(np.uint8), _disk(max(3, round(0.3 * h_px)))) > 0
    # A pill or bar the glyphs sit in is enclosed: each glyph pixel belongs to the nearest background (the bar's
    # own outline is visible around the glyphs); a fitted boundary is for an edge running through the line.
    assign = _assign_segments(seg, near, scale, max(3.0, 0.15 * h_px), fit_boundary=inner is None)
    if inner is not None:
        assign[closed & (seg == 0)] = inner_id  # what lies within the bar is on the bar
        # ... and what lies beyond its edge is on the page, never on the bar: pixels there in the text's colour
        # (the page's own, for dark text on a white pill on a dark page) are measured against the page.
        outline, _ = cv2.findContours(closed.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        within = cv2.drawContours(np.zeros(poly.shape, np.uint8), outline, -1, 1, thickness=cv2.FILLED)
        beyond = (assign == inner_id) & (seg == 0) & ~(cv2.dilate(within, _disk(1)) > 0)
        if np.any(beyond):
            page = _assign_segments(np.where(seg == inner_id, 0, seg), near, scale, 1.0, fit_boundary=False)
            assign[beyond] = page[beyond]
    modelled = np.zeros(poly.shape, bool)  # pixels whose nearest segment has a trusted model
    for s, model in models.items():
        if model is not None and model.ok:
            here = assign == s
            if isinstance(model, _LocalModel):
                here &= np.isfinite(model.image[..., 0])
            modelled |= here
    search = region & ~protect
    candidates = search & (seg == 0)
    # Model side: deviation from the nearest segment's model.
    predicted = np.zeros(roi_f.shape, np.float32)
    dev = np.zeros(poly.shape, np.float32)
    sigma = 0.0
    ys_m, xs_m = np.nonzero(modelled & search)
    if len(ys_m):
        for s, model in models.items():
            if model is None or not model.ok:
                continue
            sel = assign[ys_m, xs_m] == s
            if not np.any(sel):
                continue
            predicted[ys_m[sel], xs_m[sel]] = model.predict(xs_m[sel], ys_m[sel])
            sigma = max(sigma, model.sigma)
        dev[ys_m, xs_m] = np.abs(roi_f[ys_m, xs_m] - predicted[ys_m, xs_m]).max(axis=1)
    strong_thr = max(_STRONG_MIN, 6.0 * sigma)
    weak_thr = max(_WEAK_MIN, 3.0 * sigma)
    seeds = modelled & candidates & box & (dev > strong_thr)
    # Weak pixels join a glyph near the line only: anti-aliasing, a shadow or strokes poking out of the box are
    # close to it; the page beyond a card's edge or a rule in the ring, in the text's colour, is not text.
    reach = cv2.dilate(box.astype(np.uint8), _disk(max(2, round(0.1 * h_px)))) > 0
    weak = modelled & search & reach & (dev > weak_thr)
    # Texture side: the text colours, and background-coloured blobs enclosed in the box (glyphs whose colour is
    # also the page's), minus specks.
    textured = search & ~modelled
    if np.any(textured & box):
        text_like = np.isin(labels, text_clusters) & candidates
        text_like, frames = _split_frames(text_like, poly > 0, h_px)
        count, comp, stats, _ = cv2.connectedComponentsWithStats((candidates & ~text_like & ~frames).astype(np.uint8),
                                                                 8)
        min_area = max(8, round(0.02 * h_px * h_px))
        big = np.zeros(count, bool)
        big[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
        # What a frame encloses is the background inside a button, not the inside of a glyph.
        big[np.unique(comp[cv2.dilate(frames.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0])] = False
        enclosed = big[comp] & box
        texture_text = (text_like | enclosed) & textured & box
        if text_clusters:
            bg_lab = centres[bg_clusters]
            contrast = min(float(np.min(np.linalg.norm(bg_lab - centres[c], axis=1))) for c in text_clusters)
            if contrast < _MIN_DELTA_E and not np.any(seeds):
                return fallback("text colour too close to the background")
        seeds |= texture_text
        weak |= texture_text
    else:
        texture_text = np.zeros(poly.shape, bool)
        frames = None
    if not np.any(seeds):
        return fallback("no text pixels found")
    count, comp = cv2.connectedComponents((weak | seeds).astype(np.uint8), connectivity=8)
    keep = np.zeros(count, bool)
    keep[np.unique(comp[seeds])] = True
    keep[0] = False
    glyphs = keep[comp]
    glyphs, more_frames = _split_frames(glyphs, poly > 0, h_px)
    frames = more_frames if frames is None else frames | more_frames
    if not np.any(glyphs):
        return fallback("no text pixels found")
    share = float((glyphs & box).sum()) / float(box.sum())
    outside = float((glyphs & ~box).sum()) / max(1.0, float((glyphs & box).sum()))
    if not _MIN_GLYPH_SHARE <= share <= _MAX_GLYPH_SHARE:
        return fallback(f"implausible glyph share {share:.2f}")
    if outside > 0.5:
        return fallback("text runs far outside the line")
    # Model pixels: one pixel of margin for the faintest anti-aliasing. Textured: a little more, since what
    # the inpainter sees next to its mask is copied inwards.
    model_part = cv2.dilate((glyphs & modelled).astype(np.uint8), _disk(1)) > 0
    keep_out = protect | (cv2.dilate(frames.astype(np.uint8), _disk(1)) > 0)
    model_part &= modelled & search & ~keep_out
    tex_grow = max(2, round(0.08 * h_px))
    tex_part = cv2.dilate((glyphs & ~modelled).astype(np.uint8), _disk(tex_grow)) > 0
    tex_part &= ~model_part & ~keep_out
    if np.any(model_part) and np.count_nonzero(model_part) >= np.count_nonzero(glyphs & ~modelled):
        ranges = np.ptp(predicted[model_part], axis=0) if np.any(model_part) else np.zeros(3)
        kind = GRADIENT if float(np.max(ranges)) > _GRADIENT_RANGE else FLAT
        if any(isinstance(m, _LocalModel) and m.pattern for m in models.values()):
            kind = PATTERN
    else:
        kind = INPAINTED
    return _Line(kind, fill_mask=model_part, fill_values=predicted,
                 inpaint_mask=tex_part if np.any(tex_part) else None)


# --- the page -----------------------------------------------------------------------------------------------------


def _polygon_array(polygon: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray | None:
    try:
        pts = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        return None
    if len(pts) == 0 or not np.all(np.isfinite(pts)):
        return None
    return pts


def erase_text(
    pixels: np.ndarray,
    polygons: Sequence[Sequence[Sequence[float]]],
    inpainter: Inpainter | None,
    *,
    protect: Sequence[Sequence[Sequence[float]]] = (),
) -> EraseResult:
    """Erase the text lines given as float (x, y) polygons from ``pixels`` (HxWx3 uint8 RGB).

    Flat and gradient backgrounds are filled from a fitted background model, textured ones by ``inpainter`` on
    the glyph pixels only, and lines whose text can't be separated from the background by ``inpainter`` on the
    dilated polygon (counted as fallback). ``protect``: polygons of text that stays (never changed). With no
    inpainter, the pixels that would need one are left as they are (and still marked in the mask).
    """
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"pixels must be HxWx3 uint8, got {pixels.shape} {pixels.dtype}")
    height, width = pixels.shape[:2]
    out = pixels.copy()
    fill_total = np.zeros((height, width), bool)
    inpaint_total = np.zeros((height, width), bool)
    protect_mask = np.zeros((height, width), np.uint8)
    for polygon in protect:
        pts = _polygon_array(polygon)
        if pts is not None:
            _fill_polygon(protect_mask, pts, (0, 0))
    kinds: list[str] = []
    reasons: Counter[str] = Counter()
    lines = [_polygon_array(p) for p in polygons]
    boxes: list[tuple[int, int, int, int] | None] = []
    for pts in lines:
        if pts is None:
            boxes.append(None)
            continue
        boxes.append((math.floor(pts[:, 0].min()), math.floor(pts[:, 1].min()),
                      math.ceil(pts[:, 0].max()) + 1, math.ceil(pts[:, 1].max()) + 1))
    for index, pts in enumerate(lines):
        box = boxes[index]
        if pts is None or box is None:
            kinds.append(SKIPPED)
            reasons["skipped: not a polygon"] += 1
            continue
        if box[2] - box[0] <= 1 or box[3] - box[1] <= 1:
            kinds.append(SKIPPED)
            reasons["skipped: empty polygon"] += 1
            continue
        region_h = text_height(pts)
        margin = max(MIN_DILATION_PX, round(0.15 * region_h)) + max(4, round(0.35 * region_h)) + 2
        x0, y0 = max(0, box[0] - margin), max(0, box[1] - margin)
        x1, y1 = min(width, box[2] + margin), min(height, box[3] + margin)
        if x0 >= x1 or y0 >= y1 or box[2] <= 0 or box[3] <= 0 or box[0] >= width or box[1] >= height:
            kinds.append(SKIPPED)
            reasons["skipped: outside the image"] += 1
            continue
        poly = np.zeros((y1 - y0, x1 - x0), np.uint8)
        _fill_polygon(poly, pts, (x0, y0))
        others = np.zeros_like(poly)
        for j, other in enumerate(lines):
            ob = boxes[j]
            if j == index or other is None or ob is None:
                continue
            if ob[2] < x0 or ob[0] > x1 or ob[3] < y0 or ob[1] > y1:
                continue
            _fill_polygon(others, other, (x0, y0))
        others = cv2.dilate(others, _disk(max(MIN_DILATION_PX, round(0.15 * region_h)))) > 0
        protect_roi = protect_mask[y0:y1, x0:x1] > 0
        # The working image: lines erased earlier are already restored, so they read as background here.
        # The seed of the line's colour clustering comes from where the line is, not from its place in the list:
        # a line erases the same way whatever other lines the page holds or keeps.
        seed = zlib.crc32(np.asarray(box, np.int64).tobytes())
        line = _erase_line(out[y0:y1, x0:x1], poly, others, protect_roi, region_h, seed=seed)
        kinds.append(line.kind)
        if line.reason:
            reasons[line.reason] += 1
        if line.fill_mask is not None and line.fill_values is not None and np.any(line.fill_mask):
            roi = out[y0:y1, x0:x1]
            values = np.clip(np.round(line.fill_values[line.fill_mask]), 0, 255).astype(np.uint8)
            roi[line.fill_mask] = values
            fill_total[y0:y1, x0:x1] |= line.fill_mask
        if line.inpaint_mask is not None:
            inpaint_total[y0:y1, x0:x1] |= line.inpaint_mask
    inpaint_total &= protect_mask == 0
    fill_total &= ~inpaint_total
    mask = ((fill_total | inpaint_total) * 255).astype(np.uint8)
    if inpainter is not None and inpaint_total.any():
        painted = inpainter.inpaint(out, (inpaint_total * 255).astype(np.uint8))
        out[inpaint_total] = painted[inpaint_total]
    counts = Counter(kinds)
    stats: dict[str, Any] = {
        "lines": len(kinds),
        **{f"lines_{kind}": counts.get(kind, 0) for kind in LINE_KINDS},
        "reasons": dict(sorted(reasons.items())),
        "model_filled_px": int(fill_total.sum()),
        "inpainted_px": int(inpaint_total.sum()),
        "line_kinds": kinds,
    }
    logger.debug("erase: %s", {k: v for k, v in stats.items() if k.startswith("lines")})
    return EraseResult(pixels=out, mask=mask, stats=stats)
