"""A fixed, seeded workload of Chinese product images, written once and shared by every mode.

Why generated and not bundled: the same seed reproduces the same pixels on any machine with Noto Sans CJK, the
expected text is known, and the size of the workload is a command-line knob. Every image is unique (checked by a
pixel hash), so a mode's own artifact store never answers one request from another (dedupe stays out of the
measurement) while the translation cache still sees realistic repeats of common slogans.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tests.support.imagegen import tall_image, text_image

logger = logging.getLogger(__name__)

# Short phrases as they appear on Chinese product images (price tags, slogans, specs). <= 10 characters so a line
# at the largest font size still fits an 800 px wide image.
PHRASES = [
    "限时特价", "买一送一", "全场包邮", "新品上市", "正品保证", "七天无理由退换", "纯棉舒适面料", "加厚保暖",
    "防水防滑", "大容量设计", "轻薄便携", "高清画质", "超长续航", "智能温控", "静音运行", "一键启动",
    "天然有机", "无添加剂", "口感醇厚", "产地直发", "手工制作", "经典款式", "时尚百搭", "简约设计",
    "儿童专用", "孕妇可用", "官方旗舰店", "销量第一", "好评如潮", "品质生活", "匠心工艺", "环保材料",
    "耐磨耐用", "透气吸汗", "快速充电", "无线连接", "家庭装", "特惠套餐", "会员专享", "满减优惠",
    "今日下单立减", "赠送精美礼品", "质保两年", "专业级品质", "进口原料", "低糖低脂", "新鲜直达", "优选好物",
]
BACKGROUNDS = ("plain", "textured")
COLORS = [(20, 20, 20), (180, 30, 30), (30, 60, 150), (60, 60, 60)]


@dataclass
class WorkloadImage:
    """One generated image: where it is, what kind, and the text drawn on it."""

    name: str
    path: str
    kind: str  # "regular" (800x800) or "tall" (790x6000)
    width: int
    height: int
    lines: list[str]


def _regular(rng: np.random.Generator, seed: int) -> tuple[np.ndarray, list[str]]:
    n_lines = int(rng.integers(2, 6))
    lines = [str(p) for p in rng.choice(PHRASES, size=n_lines, replace=False)]
    font_size = int(rng.integers(36, 61))
    longest = max(len(t) for t in lines)
    max_left = max(20, 800 - 20 - longest * font_size)
    line_gap = int(rng.integers(40, 90))
    height_needed = n_lines * (font_size + line_gap)
    top = int(rng.integers(30, max(31, 800 - height_needed - 20)))
    image = text_image(
        lines, width=800, height=800, font_size=font_size, background=str(rng.choice(BACKGROUNDS)),
        color=COLORS[int(rng.integers(0, len(COLORS)))], top=top, line_gap=line_gap,
        left=int(rng.integers(20, max_left + 1)), seed=seed,
    )
    return image.pixels, lines


def _tall(rng: np.random.Generator, seed: int) -> tuple[np.ndarray, list[str]]:
    n_lines = int(rng.integers(6, 12))  # a detail page carries several sections of text down its height
    lines = [str(p) for p in rng.choice(PHRASES, size=n_lines, replace=False)]
    image = tall_image(lines, width=790, height=6000, font_size=int(rng.integers(40, 53)), seed=seed)
    return image.pixels, lines


def generate(directory: Path, count: int, *, seed: int = 20261105, tall_fraction: float = 0.1,
             prefix: str = "img") -> list[WorkloadImage]:
    """Write ``count`` unique JPEG images into ``directory``: ~``tall_fraction`` tall pages, the rest 800x800.

    Tall images are spread evenly through the sequence (every 10th), as they would arrive in real traffic.
    """
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    every = max(1, round(1 / tall_fraction)) if tall_fraction > 0 else 0
    seen: set[str] = set()
    images: list[WorkloadImage] = []
    for index in range(count):
        kind = "tall" if every and index % every == every - 1 else "regular"
        for attempt in range(20):
            sub_seed = seed * 1000 + index * 20 + attempt
            pixels, lines = (_tall if kind == "tall" else _regular)(rng, sub_seed)
            digest = hashlib.sha256(pixels.tobytes()).hexdigest()
            if digest not in seen:
                seen.add(digest)
                break
        else:  # pragma: no cover - 20 identical draws in a row would mean the generator is broken
            raise RuntimeError(f"could not draw a unique image #{index}")
        name = f"{prefix}-{index:04d}-{kind}"
        path = directory / f"{name}.jpg"
        Image.fromarray(pixels).save(path, "JPEG", quality=90)
        images.append(WorkloadImage(name=name, path=str(path.resolve()), kind=kind, width=pixels.shape[1],
                                    height=pixels.shape[0], lines=lines))
    return images


def save_manifest(path: Path, workload: dict[str, list[WorkloadImage]]) -> None:
    path.write_text(json.dumps({k: [asdict(i) for i in v] for k, v in workload.items()}, ensure_ascii=False,
                               indent=1), encoding="utf-8")


def load_manifest(path: Path) -> dict[str, list[WorkloadImage]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {k: [WorkloadImage(**i) for i in v] for k, v in data.items()}
