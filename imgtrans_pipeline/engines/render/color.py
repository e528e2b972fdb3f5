"""Pick the colour to draw a translation in, from the original text's pixels, and add an outline when needed.

Why from the original: the inpainted image no longer contains the text. The region's pixels are split into two
clusters (k-means, k=2); the cluster farther from the pixels just outside the box (the local background) is the text.
Anti-aliased edge pixels sit between the two colours, so the text colour is the median of the text pixels farthest
from the background. The background to check contrast against comes from the inpainted image, since that is what the
new text is drawn on; if the WCAG contrast ratio is below ``min_contrast`` an outline in black or white is added.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RGB = tuple[int, int, int]

BLACK: RGB = (0, 0, 0)
WHITE: RGB = (255, 255, 255)
MIN_CONTRAST = 3.0
STROKE_RATIO = 0.06  # added outline width as a fraction of the font size


@dataclass(frozen=True)
class TextStyle:
    """How to draw one block: fill colour, optional outline (``stroke_fill`` None = no outline)."""

    fill: RGB
    stroke_fill: RGB | None
    stroke_ratio: float
    background: RGB
    contrast: float  # WCAG contrast of fill against background

    @property
    def has_outline(self) -> bool:
        return self.stroke_fill is not None


def relative_luminance(rgb: RGB | np.ndarray) -> float:
    """WCAG 2 relative luminance of an sRGB colour (0 black .. 1 white)."""
    c = np.asarray(rgb, dtype=np.float64)[:3] / 255.0
    lin = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return float(0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2])


def contrast_ratio(a: RGB | np.ndarray, b: RGB | np.ndarray) -> float:
    """WCAG contrast ratio, 1 (same) .. 21 (black on white)."""
    la, lb = relative_luminance(a), relative_luminance(b)
    hi, lo = max(la, lb), min(la, lb)
    return (hi + 0.05) / (lo + 0.05)


def _clip_box(bbox: tuple[float, float, float, float], width: int, height: int, pad: int = 0) -> tuple[int, ...]:
    x0, y0, x1, y1 = bbox
    return (max(0, int(np.floor(x0)) - pad), max(0, int(np.floor(y0)) - pad),
            min(width, int(np.ceil(x1)) + pad), min(height, int(np.ceil(y1)) + pad))


def border_pixels(image: np.ndarray, bbox: tuple[float, float, float, float], ring: int = 4) -> np.ndarray:
    """Pixels in a ring just outside the box (the local background); the box's own edge if the ring is empty."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = _clip_box(bbox, w, h)
    ox0, oy0, ox1, oy1 = _clip_box(bbox, w, h, pad=ring)
    outer = image[oy0:oy1, ox0:ox1].reshape(-1, 3)
    inside = np.zeros((oy1 - oy0, ox1 - ox0), dtype=bool)
    inside[y0 - oy0:y1 - oy0, x0 - ox0:x1 - ox0] = True
    ring_px = outer[~inside.reshape(-1)]
    if len(ring_px) >= 8:
        return ring_px
    crop = image[y0:y1, x0:x1]
    if crop.size == 0:
        return outer
    edge = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]])
    return edge.reshape(-1, 3)


def _kmeans2(pixels: np.ndarray, seed_a: np.ndarray, iters: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Two-cluster k-means seeded with the background colour and the pixel farthest from it (deterministic)."""
    px = pixels.astype(np.float64)
    far = px[np.argmax(((px - seed_a) ** 2).sum(axis=1))]
    centers = np.stack([seed_a.astype(np.float64), far])
    labels = np.zeros(len(px), dtype=np.int64)
    for _ in range(iters):
        d = ((px[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
        new_labels = d.argmin(axis=1)
        if np.array_equal(new_labels, labels) and _ > 0:
            break
        labels = new_labels
        for k in range(2):
            if np.any(labels == k):
                centers[k] = px[labels == k].mean(axis=0)
    return labels, centers


def sample_text_color(original: np.ndarray, bbox: tuple[float, float, float, float],
                      max_pixels: int = 40000) -> tuple[RGB, RGB]:
    """(text colour, local background colour) of the original text inside ``bbox``.

    When the region is flat (no text pixels distinguishable), the text colour is black or white, whichever contrasts
    more with the background.
    """
    h, w = original.shape[:2]
    x0, y0, x1, y1 = _clip_box(bbox, w, h)
    bg = np.median(border_pixels(original, bbox), axis=0)
    bg_rgb: RGB = tuple(round(float(v)) for v in bg)  # type: ignore[assignment]
    crop = original[y0:y1, x0:x1].reshape(-1, 3)
    if len(crop) == 0:
        return _contrasting(bg_rgb), bg_rgb
    if len(crop) > max_pixels:  # subsample big regions: colour statistics need no more
        step = int(np.ceil(len(crop) / max_pixels))
        crop = crop[::step]
    labels, centers = _kmeans2(crop, bg)
    dist_to_bg = np.sqrt(((centers - bg) ** 2).sum(axis=1))
    text_k = int(np.argmax(dist_to_bg))
    if dist_to_bg[text_k] < 12.0 or not np.any(labels == text_k):
        return _contrasting(bg_rgb), bg_rgb
    text_px = crop[labels == text_k].astype(np.float64)
    d = np.sqrt(((text_px - bg) ** 2).sum(axis=1))
    core = text_px[d >= np.quantile(d, 0.5)]  # the solid interior of the strokes, not the anti-aliased rim
    text = np.median(core, axis=0)
    return tuple(round(float(v)) for v in text), bg_rgb  # type: ignore[return-value]


def background_color(image: np.ndarray, bbox: tuple[float, float, float, float]) -> RGB:
    """Median colour of the (inpainted) image inside the box: what the new text is drawn on."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = _clip_box(bbox, w, h)
    crop = image[y0:y1, x0:x1].reshape(-1, 3)
    if len(crop) == 0:
        return WHITE
    return tuple(int(v) for v in np.median(crop, axis=0))  # type: ignore[return-value]


def _contrasting(rgb: RGB) -> RGB:
    return BLACK if contrast_ratio(rgb, BLACK) >= contrast_ratio(rgb, WHITE) else WHITE


def choose_style(text: RGB, background: RGB, *, min_contrast: float = MIN_CONTRAST,
                 stroke_ratio: float = STROKE_RATIO) -> TextStyle:
    """Keep the original text colour; add a black/white outline (whichever contrasts more with the fill) when the
    fill alone is hard to read on the background."""
    ratio = contrast_ratio(text, background)
    if ratio >= min_contrast:
        return TextStyle(fill=text, stroke_fill=None, stroke_ratio=0.0, background=background, contrast=ratio)
    return TextStyle(fill=text, stroke_fill=_contrasting(text), stroke_ratio=stroke_ratio, background=background,
                     contrast=ratio)


def style_for_region(original: np.ndarray, inpainted: np.ndarray, bbox: tuple[float, float, float, float], *,
                     min_contrast: float = MIN_CONTRAST, stroke_ratio: float = STROKE_RATIO) -> TextStyle:
    """Text colour from the original pixels, contrast checked against the inpainted background."""
    text, _ = sample_text_color(original, bbox)
    return choose_style(text, background_color(inpainted, bbox), min_contrast=min_contrast,
                        stroke_ratio=stroke_ratio)


MAX_FILL_SHIFT = 0.3  # how far (towards black or white) a fill may move to reach the contrast without an outline
OUTLINE_CONTRAST = 4.5  # an added outline separates the fill from the ground at least this well


def _blend(rgb: RGB | np.ndarray, target: RGB, t: float) -> RGB:
    c = np.asarray(rgb, dtype=np.float64)[:3] * (1.0 - t) + np.asarray(target, dtype=np.float64) * t
    return tuple(round(float(v)) for v in c)  # type: ignore[return-value]


def readable_fill(fill: RGB, background: RGB, min_contrast: float = MIN_CONTRAST,
                  max_shift: float = MAX_FILL_SHIFT) -> RGB | None:
    """The fill, darkened or lightened away from the background just enough to reach ``min_contrast`` (a grey
    footnote on white gets a little darker), or None when that would take more than ``max_shift``."""
    if contrast_ratio(fill, background) >= min_contrast:
        return fill
    target = BLACK if relative_luminance(fill) <= relative_luminance(background) else WHITE
    steps = max(1, round(max_shift / 0.02))
    for k in range(1, steps + 1):
        candidate = _blend(fill, target, k * 0.02)
        if contrast_ratio(candidate, background) >= min_contrast:
            return candidate
    return None


def outline_color(fill: RGB, background: RGB, min_contrast: float = OUTLINE_CONTRAST) -> RGB:
    """An outline in a shade of the background (darker behind light text, lighter behind dark text) that sets
    the fill apart by ``min_contrast``; pure black or white when no shade does."""
    target = BLACK if relative_luminance(fill) >= relative_luminance(background) else WHITE
    for k in range(3, 11):
        candidate = _blend(background, target, k / 10.0)
        if contrast_ratio(fill, candidate) >= min_contrast:
            return candidate
    return _contrasting(fill)
