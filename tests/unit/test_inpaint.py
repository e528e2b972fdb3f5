"""Inpainting: masks cover the drawn text, engines erase it (re-OCR finds nothing), crops change nothing but cost.

Images come from tests/support/imagegen.py, so the text pixels and the clean background are known exactly.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from imgtrans_pipeline.core.errors import EngineError
from imgtrans_pipeline.engines.inpaint import (
    LamaInpainter,
    OpenCvInpainter,
    build_mask,
    create_inpainter,
    plan_crops,
    select_device,
)
from imgtrans_pipeline.engines.inpaint.crops import Crop, expand_to_multiple, merge_crops
from imgtrans_pipeline.engines.inpaint.mask import default_dilation, text_height
from tests.support.imagegen import TestImage as GeneratedImage
from tests.support.imagegen import character_error_rate, tall_image, text_image

LINES = ["限时特价 全场包邮", "Hello World gjpqy", "品质保证 假一赔十"]
PLAIN_BG = np.array([246, 244, 240])


def box_polygons(img: GeneratedImage, shrink: float = 0.0) -> list[list[tuple[float, float]]]:
    """The drawn lines' boxes as float polygons (clockwise from top-left), optionally shrunk like a tight OCR box."""
    polys = []
    for line in img.lines:
        x0, y0, x1, y1 = (float(v) for v in line.bbox)
        x0, y0, x1, y1 = x0 + shrink, y0 + shrink, x1 - shrink, y1 - shrink
        polys.append([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
    return polys


def ink(img: GeneratedImage, background: np.ndarray | None = None, threshold: int = 60) -> np.ndarray:
    """Pixels that are visibly text: differ from the clean background by more than ``threshold`` levels."""
    if background is None:
        background = text_image([], width=img.pixels.shape[1], height=img.pixels.shape[0]).pixels
    return np.abs(img.pixels.astype(int) - background.astype(int)).max(axis=-1) > threshold


def far_from_text(img: GeneratedImage, distance: int) -> np.ndarray:
    """Pixels more than ``distance`` px away from every drawn line's box."""
    near = np.zeros(img.pixels.shape[:2], dtype=bool)
    for line in img.lines:
        x0, y0, x1, y1 = line.bbox
        near[max(0, y0 - distance):y1 + distance, max(0, x0 - distance):x1 + distance] = True
    return ~near


# --- masks -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("refine", [False, True])
@pytest.mark.parametrize("background", ["plain", "textured", "dark"])
def test_mask_covers_every_text_pixel_and_no_far_background(background: str, refine: bool) -> None:
    color = (240, 240, 240) if background == "dark" else (20, 20, 20)
    img = text_image(LINES, background=background, color=color, width=480, height=300)
    clean = text_image([], background=background, width=480, height=300).pixels
    mask = build_mask(img.pixels.shape[:2], box_polygons(img), image=img.pixels if refine else None)
    assert mask.dtype == np.uint8 and mask.shape == img.pixels.shape[:2]
    assert set(np.unique(mask)) <= {0, 255}
    text = ink(img, clean, threshold=25)
    assert text.sum() > 1000
    assert np.all(mask[text] == 255), f"{int((mask[text] == 0).sum())} text pixels left unmasked"
    assert not mask[far_from_text(img, 20)].any()


def test_refined_mask_catches_strokes_outside_a_tight_ocr_box() -> None:
    img = text_image(LINES, background="textured", width=480, height=300)
    clean = text_image([], background="textured", width=480, height=300).pixels
    tight = box_polygons(img, shrink=4.0)  # OCR boxes often cut descenders and stroke ends
    text = ink(img, clean, threshold=25)
    refined = build_mask(img.pixels.shape[:2], tight, image=img.pixels)
    assert np.all(refined[text] == 255)
    # ...and it erases less than the dilated boxes: more of the real background survives.
    boxes = build_mask(img.pixels.shape[:2], box_polygons(img))
    assert (refined > 0).sum() < (boxes > 0).sum()


def test_refinement_falls_back_to_boxes_on_a_busy_background() -> None:
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    polys = [[(50.0, 60.0), (250.0, 60.0), (250.0, 100.0), (50.0, 100.0)]]
    refined = build_mask(noise.shape[:2], polys, image=noise)
    boxes = build_mask(noise.shape[:2], polys)
    assert np.array_equal(refined, boxes)


def test_dilation_scales_with_text_height_and_can_be_overridden() -> None:
    small = [(20.0, 20.0), (220.0, 20.0), (220.0, 32.0), (20.0, 32.0)]  # 12 px tall
    big = [(20.0, 100.0), (220.0, 100.0), (220.0, 200.0), (20.0, 200.0)]  # 100 px tall
    assert text_height(big) == pytest.approx(100, abs=1)
    assert default_dilation(12) == 2 and default_dilation(100) == 15

    def extent_below(poly: list[tuple[float, float]], **kw: int) -> int:
        mask = build_mask((300, 260), [poly], **kw)
        column = mask[:, 120] > 0
        return int(np.flatnonzero(column).max()) - int(poly[2][1])

    assert 1 <= extent_below(small) <= 3
    assert 13 <= extent_below(big) <= 16
    assert extent_below(big, dilation_px=4) in (3, 4, 5)


def test_rotated_polygon_uses_its_short_side_as_height() -> None:
    angle = np.deg2rad(30)
    u = np.array([np.cos(angle), np.sin(angle)])
    v = np.array([-np.sin(angle), np.cos(angle)])
    c = np.array([150.0, 150.0])
    corners = [c - 100 * u - 20 * v, c + 100 * u - 20 * v, c + 100 * u + 20 * v, c - 100 * u + 20 * v]
    assert text_height([tuple(p) for p in corners]) == pytest.approx(40, abs=1)


def test_polygons_partly_outside_or_degenerate_are_clipped_not_fatal() -> None:
    polys = [
        [(-30.5, -10.2), (60.3, -10.2), (60.3, 20.7), (-30.5, 20.7)],  # hangs over the top-left corner
        [(500.0, 500.0), (600.0, 500.0), (600.0, 540.0), (500.0, 540.0)],  # entirely outside
        [(100.0, 100.0), (140.0, 100.0)],  # a line, not a polygon
        [],
    ]
    mask = build_mask((200, 200), polys)
    assert mask[0, 0] == 255 and mask[15, 55] == 255
    assert mask[100, 120] == 255  # the degenerate one still marks its pixels
    assert mask[190, 190] == 0


# --- crop planning -----------------------------------------------------------------------------------------


def test_crop_planner_merges_overlapping_padded_components() -> None:
    mask = np.zeros((400, 400), dtype=np.uint8)
    mask[50:60, 50:100] = 255
    mask[50:60, 110:160] = 255  # 10 px apart: padded boxes overlap -> one crop
    mask[300:320, 300:350] = 255  # far away -> its own crop
    crops = plan_crops(mask, padding=8)
    assert crops == [Crop(42, 42, 168, 68), Crop(292, 292, 358, 328)]
    # Union growth can reach a third box that neither part touched.
    assert merge_crops([Crop(0, 0, 10, 10), Crop(20, 20, 30, 30), Crop(5, 5, 25, 25)]) == [Crop(0, 0, 30, 30)]
    assert plan_crops(np.zeros((10, 10), np.uint8), padding=4) == []


def test_expand_to_multiple_stays_inside_the_image() -> None:
    box = expand_to_multiple(Crop(0, 3, 13, 20), 8, (100, 100))
    assert box.width % 8 == 0 and box.height % 8 == 0
    assert box.x0 >= 0 and box.x0 <= 0 and box.y0 <= 3 and box.x1 >= 13 and box.y1 >= 20
    edge = expand_to_multiple(Crop(90, 95, 100, 100), 8, (100, 100))
    assert edge.x1 == 100 and edge.y1 == 100 and edge.width == 16 and edge.height == 8
    tiny = expand_to_multiple(Crop(0, 0, 5, 5), 8, (5, 5))
    assert tiny == Crop(0, 0, 5, 5)  # can't grow past the image: the caller pads


# --- OpenCV ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("refine", [False, True])
@pytest.mark.parametrize("shrink", [0.0, 3.0])
def test_opencv_restores_a_plain_background(opencv_inpainter: OpenCvInpainter, refine: bool, shrink: float) -> None:
    img = text_image(LINES, width=480, height=300)
    mask = build_mask(img.pixels.shape[:2], box_polygons(img, shrink), image=img.pixels if refine else None)
    out = opencv_inpainter.inpaint(img.pixels, mask)
    assert out.shape == img.pixels.shape and out.dtype == np.uint8
    inside = mask > 0
    assert np.abs(out[inside].astype(float) - PLAIN_BG).mean() < 2.0
    # No ghost anywhere: neither a stroke remnant inside the mask nor an anti-aliased halo just outside it.
    assert np.abs(out.astype(int) - PLAIN_BG).max() <= 12
    assert np.array_equal(out[~inside], img.pixels[~inside])  # outside the mask nothing moves


@pytest.mark.parametrize("refine", [False, True])
def test_opencv_on_textured_background_is_close_to_the_local_mean(
    opencv_inpainter: OpenCvInpainter, refine: bool
) -> None:
    img = text_image(LINES, background="textured", width=480, height=300, seed=3)
    clean = text_image([], background="textured", width=480, height=300, seed=3).pixels
    local_mean = cv2.blur(clean.astype(np.float32), (15, 15))
    mask = build_mask(img.pixels.shape[:2], box_polygons(img), image=img.pixels if refine else None)
    out = opencv_inpainter.inpaint(img.pixels, mask)
    inside = mask > 0
    error = np.abs(out[inside].astype(np.float32) - local_mean[inside])
    assert error.mean() < 5.0  # noise std is 4: the fill is as close as the texture allows
    assert error.max() < 30  # and no leftover stroke
    assert np.array_equal(out[~inside], img.pixels[~inside])


@pytest.mark.parametrize(
    ("background", "color"), [("textured", (20, 20, 20)), ("dark", (240, 240, 240))]
)
def test_reocr_of_the_inpainted_image_finds_none_of_the_text(
    reocr, opencv_inpainter: OpenCvInpainter, background: str, color: tuple[int, int, int]
) -> None:
    img = text_image(LINES, background=background, color=color, width=480, height=300)
    regions = reocr(img.pixels)
    found = " ".join(r.text for r in regions)
    assert len(regions) >= 3, f"OCR should read the source first, got {found!r}"
    mask = build_mask(img.pixels.shape[:2], [r.polygon for r in regions], image=img.pixels)
    out = opencv_inpainter.inpaint(img.pixels, mask)
    after = [r.text for r in reocr(out) if r.text.strip()]
    for text in after:
        for line in LINES:
            assert character_error_rate(line, text) > 0.8, f"{line!r} still readable as {text!r}"
    source_chars = set("".join(LINES).replace(" ", ""))
    leftover = source_chars & set("".join(after))
    assert len(leftover) <= 1, f"source characters still read after inpainting: {sorted(leftover)}"


@pytest.mark.parametrize("method", ["ns", "telea"])
def test_crop_based_equals_whole_image_inpainting(method: str) -> None:
    img = text_image(LINES, background="textured", width=480, height=300, seed=5)
    mask = build_mask(img.pixels.shape[:2], box_polygons(img))
    flag = cv2.INPAINT_NS if method == "ns" else cv2.INPAINT_TELEA
    whole = cv2.inpaint(img.pixels, mask, 5, flag)
    cropped = OpenCvInpainter(method=method, radius=5).inpaint(img.pixels, mask)
    assert len(plan_crops(mask, 13)) == 3  # it really worked crop-wise
    diff = np.abs(cropped.astype(int) - whole.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01


@pytest.mark.slow
def test_tall_image_inpaints_only_the_text_and_fast(opencv_inpainter: OpenCvInpainter) -> None:
    texts = ["限时特价", "全场包邮", "品质保证", "假一赔十", "新品上市"]
    img = tall_image(texts)
    clean = tall_image([]).pixels
    mask = build_mask(img.pixels.shape[:2], box_polygons(img), image=img.pixels)
    out = opencv_inpainter.inpaint(img.pixels, mask)
    assert out.shape == (6000, 790, 3)
    assert len(plan_crops(mask, opencv_inpainter.crop_padding)) == len(texts)
    inside = mask > 0
    assert np.array_equal(out[~inside], img.pixels[~inside])
    text = ink(img, clean, threshold=25)
    assert np.all(inside[text])
    error = np.abs(out[inside].astype(float) - cv2.blur(clean.astype(np.float32), (15, 15))[inside])
    assert error.mean() < 5.0 and error.max() < 30


def test_opencv_edge_cases(opencv_inpainter: OpenCvInpainter) -> None:
    img = text_image(["边缘"], width=120, height=80, top=0, left=0)
    empty = np.zeros(img.pixels.shape[:2], np.uint8)
    out = opencv_inpainter.inpaint(img.pixels, empty)
    assert out is not img.pixels and np.array_equal(out, img.pixels)
    # A 0/1 mask at the image border works like 0/255.
    ones = (build_mask(img.pixels.shape[:2], box_polygons(img)) > 0).astype(np.uint8)
    filled = opencv_inpainter.inpaint(img.pixels, ones)
    assert np.abs(filled[ones > 0].astype(int) - PLAIN_BG).mean() < 3
    with pytest.raises(EngineError, match="HxWx3"):
        opencv_inpainter.inpaint(img.pixels[:, :, 0], empty)
    with pytest.raises(EngineError, match="mask"):
        opencv_inpainter.inpaint(img.pixels, empty[:10])
    with pytest.raises(EngineError, match="method"):
        OpenCvInpainter(method="magic")


def test_create_inpainter_by_name(tiny_lama_path: Path) -> None:
    default = create_inpainter("opencv", radius=3)
    assert isinstance(default, OpenCvInpainter) and default.radius == 3
    assert create_inpainter("").name == "opencv"
    assert isinstance(create_inpainter("LaMa", model_path=tiny_lama_path), LamaInpainter)
    with pytest.raises(EngineError, match="unknown inpainter"):
        create_inpainter("photoshop")
    with pytest.raises(EngineError, match="bad option"):
        create_inpainter("opencv", model_path="x.pt")


def test_package_imports_without_torch() -> None:
    code = "import sys, imgtrans_pipeline.engines.inpaint as m; m.create_inpainter(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "False"


# --- LaMa (a tiny TorchScript model with big-lama's signature, built by the fixture) ---------------------


def rect_mask(shape: tuple[int, int], *rects: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for x0, y0, x1, y1 in rects:
        mask[y0:y1, x0:x1] = 255
    return mask


def test_lama_fills_masked_pixels_as_the_model_dictates(lama_inpainter: LamaInpainter) -> None:
    img = text_image(LINES, width=480, height=300)
    mask = build_mask(img.pixels.shape[:2], box_polygons(img))
    out = lama_inpainter.inpaint(img.pixels, mask)
    assert out.shape == img.pixels.shape and out.dtype == np.uint8
    inside = mask > 0
    assert np.array_equal(out[~inside], img.pixels[~inside])
    # All the text is masked, so the mean of each crop's unmasked pixels is the plain background colour.
    assert np.abs(out[inside].astype(int) - PLAIN_BG).max() <= 1


def test_lama_works_on_local_crops_not_the_whole_image(lama_inpainter: LamaInpainter) -> None:
    image = np.zeros((160, 400, 3), np.uint8)
    image[:, :200] = (200, 30, 30)
    image[:, 200:] = (30, 30, 200)
    image[60:80, 40:120] = 0  # "text" on each half
    image[60:80, 280:360] = 255
    mask = rect_mask(image.shape[:2], (36, 56, 124, 84), (276, 56, 364, 84))
    out = lama_inpainter.inpaint(image, mask)
    assert np.abs(out[70, 80].astype(int) - (200, 30, 30)).max() <= 1  # filled from its own crop's context
    assert np.abs(out[70, 320].astype(int) - (30, 30, 200)).max() <= 1


def test_lama_batches_crops_of_equal_size(tiny_lama_path: Path) -> None:
    image = np.full((400, 600, 3), 128, np.uint8)
    same = [(40, 40, 120, 60), (300, 40, 380, 60), (40, 300, 120, 320)]  # three equal 80x20 boxes
    other = (450, 200, 560, 260)
    mask = rect_mask(image.shape[:2], *same, other)
    lama = LamaInpainter(tiny_lama_path, crop_padding=16, batch_size=4)
    lama.inpaint(image, mask)
    shapes = sorted(tuple(s) for s in lama.model.shapes)
    assert lama.model.calls == 2
    assert shapes == [(1, 3, 96, 144), (3, 3, 56, 112)]
    small_batches = LamaInpainter(tiny_lama_path, crop_padding=16, batch_size=2)
    small_batches.inpaint(image, mask)
    assert small_batches.model.calls == 3
    assert sorted(s[0] for s in small_batches.model.shapes) == [1, 1, 2]


def test_lama_sizes_are_multiples_of_8_even_for_tiny_odd_images(lama_inpainter: LamaInpainter) -> None:
    image = np.full((37, 53, 3), 90, np.uint8)
    image[10:20, 10:40] = 250
    mask = rect_mask(image.shape[:2], (8, 8, 42, 22))
    out = lama_inpainter.inpaint(image, mask)  # the tiny model raises on sizes that aren't multiples of 8
    assert out.shape == image.shape
    assert np.abs(out[15, 20].astype(int) - 90).max() <= 1


def test_lama_downscales_crops_above_max_crop_side(tiny_lama_path: Path) -> None:
    image = np.full((300, 1400, 3), (60, 120, 180), np.uint8)
    image[50:250, 50:1350] = 0
    mask = rect_mask(image.shape[:2], (40, 40, 1360, 260))
    lama = LamaInpainter(tiny_lama_path, crop_padding=20, max_crop_side=512)
    out = lama.inpaint(image, mask > 0)  # a boolean mask works too
    (shape,) = lama.model.shapes
    assert max(shape[2:]) <= 512 and shape[2] % 8 == 0 and shape[3] % 8 == 0
    inside = mask > 0
    assert np.array_equal(out[~inside], image[~inside])
    assert np.abs(out[inside].astype(int) - (60, 120, 180)).max() <= 2


def test_lama_device_selection_picks_cpu_without_a_gpu(lama_inpainter: LamaInpainter) -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto") == expected
    assert lama_inpainter.device == expected
    assert select_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="no CUDA GPU"):
            select_device("cuda")


def test_lama_missing_or_corrupt_model_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "models" / "inpaint" / "big-lama.pt"
    with pytest.raises(EngineError) as err:
        LamaInpainter(missing)
    message = str(err.value)
    assert str(missing) in message and "model_path" in message and "opencv" in message
    assert err.value.stage == "inpaint" and not err.value.transient
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torchscript archive")
    with pytest.raises(EngineError, match="cannot load"):
        LamaInpainter(corrupt)


def test_lama_model_errors_become_engine_errors(tmp_path: Path) -> None:
    class WrongShape(torch.nn.Module):
        def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return image[:, :, :8, :8]

    path = tmp_path / "wrong.pt"
    torch.jit.save(torch.jit.script(WrongShape()), str(path))
    image = np.full((64, 64, 3), 100, np.uint8)
    with pytest.raises(EngineError, match="returned shape"):
        LamaInpainter(path, crop_padding=8).inpaint(image, rect_mask((64, 64), (20, 20, 40, 40)))


def test_lama_version_names_the_model_file(lama_inpainter: LamaInpainter, tiny_lama_path: Path) -> None:
    assert lama_inpainter.version().startswith(f"lama/{tiny_lama_path.name}/sha256:")
