"""Find a font that can draw the target language, and cache loaded font objects.

Why this exists: Pillow's default bitmap font has no CJK glyphs, and the "right" CJK face differs per language (the
same code point has Korean, Japanese, Simplified and Traditional Chinese glyph variants). Noto Sans CJK ships all four
regional faces in one ``.ttc`` collection, so a language maps to a (file, face index) pair.

Search order (first font that actually has glyphs for the language wins):
1. a configured directory: ``fonts_dir`` argument, else ``$IMGTRANS_FONTS_DIR``, else ``models/fonts`` (repo root
   or cwd);
2. system font directories (Debian ``fonts-noto-cjk``, Fedora/Arch package paths, user font dirs), then ``fc-match``;
3. the PyPI package ``noto-cjk-sans-otc`` (Regular weight only).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ...core.errors import EngineError

logger = logging.getLogger(__name__)

# Face index of each language inside the Noto Sans CJK / Source Han Sans collections.
CJK_FACE_INDEX: dict[str, int] = {"ja": 0, "ko": 1, "zh": 2, "zh-Hant": 3}
LATIN_FACE_INDEX = 0  # every CJK face carries the same Latin/Cyrillic/Greek glyphs

# Characters a font must have to be accepted for a language (a font that lacks them would draw tofu boxes).
COVERAGE_SAMPLES: dict[str, str] = {
    "ko": "한국어",
    "ja": "ひらがなカタカナ漢字",
    "zh": "简体中文",
    "zh-Hant": "繁體中文",
    "ru": "Русский",
    "vi": "Tiếng Việt",
    "th": "ภาษาไทย",
}
DEFAULT_SAMPLE = "Aa"

INSTALL_HINT = (
    "install a CJK font: `apt-get install fonts-noto-cjk` (Debian/Ubuntu), or `pip install noto-cjk-sans-otc==0.0.1`, "
    "or put NotoSansCJK-Regular.ttc into models/fonts (or the directory named by IMGTRANS_FONTS_DIR)"
)

_COLLECTION_NAMES = {False: ("NotoSansCJK-Regular.ttc", "SourceHanSans-Regular.ttc"),
                     True: ("NotoSansCJK-Bold.ttc", "SourceHanSans-Bold.ttc")}
# Single-face files (index 0) as shipped by the noto-cjk repository and Google Fonts.
_SINGLE_FACE_NAMES: dict[str, tuple[str, ...]] = {
    "ja": ("NotoSansCJKjp-{w}.otf", "NotoSansJP-{w}.otf", "NotoSansJP-{w}.ttf"),
    "ko": ("NotoSansCJKkr-{w}.otf", "NotoSansKR-{w}.otf", "NotoSansKR-{w}.ttf"),
    "zh": ("NotoSansCJKsc-{w}.otf", "NotoSansSC-{w}.otf", "NotoSansSC-{w}.ttf"),
    "zh-Hant": ("NotoSansCJKtc-{w}.otf", "NotoSansTC-{w}.otf", "NotoSansTC-{w}.ttf"),
}
_LATIN_FALLBACKS = {False: ("DejaVuSans.ttf", "NotoSans-Regular.ttf", "LiberationSans-Regular.ttf"),
                    True: ("DejaVuSans-Bold.ttf", "NotoSans-Bold.ttf", "LiberationSans-Bold.ttf")}
_THAI_NAMES = {False: ("NotoSansThai-Regular.ttf", "Loma.ttf", "Garuda.ttf"),
               True: ("NotoSansThai-Bold.ttf", "Loma-Bold.ttf", "Garuda-Bold.ttf")}

SYSTEM_FONT_DIRS: tuple[Path, ...] = (
    Path("/usr/share/fonts/opentype/noto"),
    Path("/usr/share/fonts/noto-cjk"),
    Path("/usr/share/fonts/google-noto-cjk"),
    Path("/usr/share/fonts/opentype/source-han-sans"),
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/truetype/noto"),
    Path("/usr/share/fonts/truetype/tlwg"),
    Path("/usr/local/share/fonts"),
    Path.home() / ".local/share/fonts",
    Path.home() / ".fonts",
)

_REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class FontChoice:
    """A font face: file path plus face index inside a collection (0 for single-face files)."""

    path: str
    index: int = 0

    def label(self) -> str:
        return f"{self.path}#{self.index}" if self.index else self.path


def language_key(target_lang: str) -> str:
    """Map a language code to the key used for face selection ('zh-Hant' stays distinct from 'zh')."""
    lang = (target_lang or "").strip()
    lowered = lang.lower()
    if lowered in {"zh-hant", "zh-tw", "zh_tw", "zh-hk"}:
        return "zh-Hant"
    if lowered in {"zh", "zh-cn", "zh-hans", "zh_cn", "cn"}:
        return "zh"
    if lowered in {"jp", "ja"}:
        return "ja"
    if lowered in {"kr", "ko", "ko-kr"}:
        return "ko"
    return lowered.split("-")[0] if lowered else "en"


@lru_cache(maxsize=512)
def load_font(path: str, index: int, size: int) -> ImageFont.FreeTypeFont:
    """Load (once) a FreeType font at a pixel size; the layout search asks for many sizes of the same face."""
    return ImageFont.truetype(path, size=size, index=index)


def _render_glyph(font: ImageFont.FreeTypeFont, ch: str) -> np.ndarray:
    size = int(font.size) * 2
    img = Image.new("L", (size, size), 0)
    ImageDraw.Draw(img).text((size // 4, size // 4), ch, font=font, fill=255)
    return np.asarray(img)


@lru_cache(maxsize=128)
def font_covers(path: str, index: int, sample: str) -> bool:
    """True when every non-space character of ``sample`` has a real glyph (not .notdef / blank) in the face.

    Pillow exposes no "has glyph" call, so compare each character's rendering with the rendering of a code point no
    font defines (U+10FFFD): a missing glyph draws exactly the .notdef shape (or nothing).
    """
    try:
        font = load_font(path, index, 24)
    except OSError:
        return False
    notdef = _render_glyph(font, "\U0010fffd")
    for ch in sample:
        if ch.isspace():
            continue
        glyph = _render_glyph(font, ch)
        if not glyph.any() or np.array_equal(glyph, notdef):
            return False
    return True


def _faces_in_collection(path: Path) -> int:
    """Number of faces in a font file (1 for .ttf/.otf)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(12)
    except OSError:
        return 0
    if head[:4] == b"ttcf":
        return int.from_bytes(head[8:12], "big")
    return 1


class FontSet:
    """Resolves fonts per target language and hands out cached ``ImageFont`` objects.

    ``fonts_dir``: a directory searched first (default: ``$IMGTRANS_FONTS_DIR`` or ``models/fonts``).
    ``latin_font``: a font file to use for non-CJK languages instead of the CJK font's Latin glyphs.
    ``search_system`` / ``search_package``: switch off system paths + fc-match, or the PyPI package (tests use this).
    """

    def __init__(
        self,
        fonts_dir: str | Path | None = None,
        *,
        bold: bool = False,
        latin_font: str | Path | None = None,
        search_system: bool = True,
        search_package: bool = True,
    ) -> None:
        self.bold = bold
        self.latin_font = str(latin_font) if latin_font else None
        self.search_system = search_system
        self.search_package = search_package
        self.fonts_dirs = self._configured_dirs(fonts_dir)
        self._resolved: dict[str, FontChoice] = {}
        self._weights: dict[tuple[str, int, str, str], FontChoice | None] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _configured_dirs(fonts_dir: str | Path | None) -> list[Path]:
        if fonts_dir is not None:  # the settings' IMGTRANS_FONTS_DIR, through the render resource
            return [Path(fonts_dir)]
        dirs = [_REPO_ROOT / "models" / "fonts", Path.cwd() / "models" / "fonts"]
        unique: list[Path] = []
        for d in dirs:
            if d.resolve() not in [u.resolve() for u in unique]:
                unique.append(d)
        return unique

    # -- public API -------------------------------------------------------------------------------------------

    def resolve(self, target_lang: str) -> FontChoice:
        """The font face for ``target_lang``; raises ``EngineError`` (permanent) naming how to install one."""
        key = language_key(target_lang)
        with self._lock:
            cached = self._resolved.get(key)
        if cached is not None:
            return cached
        choice = self._find(key)
        if choice is None:
            searched = [str(d) for d in self.fonts_dirs]
            if self.search_system:
                searched.append("system font directories + fc-match")
            if self.search_package:
                searched.append("PyPI package noto_cjk_sans_otc")
            hint = INSTALL_HINT
            if key == "th":
                hint = "install a Thai font: `apt-get install fonts-noto-core` or `fonts-thai-tlwg`"
            raise EngineError(
                f"no font found that can draw '{target_lang}' (searched: {'; '.join(searched)}); {hint}",
                stage="render",
                transient=False,
            )
        logger.info("font for %s: %s", target_lang, choice.label())
        with self._lock:
            self._resolved[key] = choice
        return choice

    def font(self, choice: FontChoice, size: int) -> ImageFont.FreeTypeFont:
        """A cached FreeType font object for the face at ``size`` pixels."""
        return load_font(choice.path, choice.index, int(size))

    def weighted(self, choice: FontChoice, weight: str, target_lang: str) -> FontChoice | None:
        """The same family and face index in another weight ("Regular", "Medium", "Bold", "Black"), or None when
        no such file sits next to ``choice`` (or it lacks the language's glyphs). The caller fakes the weight then."""
        key = (choice.path, choice.index, weight.capitalize(), language_key(target_lang))
        with self._lock:
            if key in self._weights:
                return self._weights[key]
        found = None
        sample = COVERAGE_SAMPLES.get(key[3], DEFAULT_SAMPLE)
        for path in weight_variant_paths(Path(choice.path), key[2]):
            if path.is_file() and _faces_in_collection(path) > choice.index \
                    and font_covers(str(path), choice.index, sample):
                found = FontChoice(str(path), choice.index)
                break
        with self._lock:
            self._weights[key] = found
        return found

    # -- search -----------------------------------------------------------------------------------------------

    def _candidates_in_dir(self, directory: Path, key: str) -> list[FontChoice]:
        """Known file names first (collections with the language's face index, then single-face files)."""
        out: list[FontChoice] = []
        if not directory.is_dir():
            return out
        weight = "Bold" if self.bold else "Regular"
        index = CJK_FACE_INDEX.get(key, LATIN_FACE_INDEX)
        names_by_weight = [_COLLECTION_NAMES[self.bold]] + ([_COLLECTION_NAMES[False]] if self.bold else [])
        for names in names_by_weight:
            for name in names:
                p = directory / name
                if p.is_file() and _faces_in_collection(p) > index:
                    out.append(FontChoice(str(p), index))
        weights = [weight, "Regular"] if self.bold else [weight]
        for w in weights:
            for pattern in _SINGLE_FACE_NAMES.get(key, ()):
                p = directory / pattern.format(w=w)
                if p.is_file():
                    out.append(FontChoice(str(p), 0))
        if key == "th":
            out += [FontChoice(str(directory / n), 0) for n in _THAI_NAMES[self.bold] if (directory / n).is_file()]
        return out

    def _other_fonts_in_dir(self, directory: Path) -> list[FontChoice]:
        """Any other font file in a configured directory (checked for coverage before use)."""
        if not directory.is_dir():
            return []
        out = []
        for p in sorted(directory.iterdir()):
            if p.suffix.lower() in {".ttf", ".otf", ".ttc", ".otc"} and p.is_file():
                out += [FontChoice(str(p), i) for i in range(min(_faces_in_collection(p), 8))]
        return out

    def _fc_match(self, key: str) -> list[FontChoice]:
        """Ask fontconfig for a font supporting the language (it may answer with one that does not: checked later)."""
        exe = shutil.which("fc-match")
        if not exe:
            return []
        fc_lang = {"zh": "zh-cn", "zh-Hant": "zh-tw"}.get(key, key)
        pattern = f":lang={fc_lang}" + (":weight=bold" if self.bold else "")
        try:
            proc = subprocess.run([exe, "-f", "%{file}\n%{index}\n", pattern], capture_output=True, text=True,
                                  timeout=10, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            logger.debug("fc-match failed: %s", exc)
            return []
        lines = proc.stdout.splitlines()
        if len(lines) >= 2 and lines[0] and Path(lines[0]).is_file():
            try:
                index = int(lines[1] or 0)
            except ValueError:
                index = 0
            # In a Noto CJK / Source Han collection, take the requested language's face, whatever fc-match picked.
            name = Path(lines[0]).name
            if key in CJK_FACE_INDEX and ("CJK" in name or "SourceHan" in name) \
                    and _faces_in_collection(Path(lines[0])) > CJK_FACE_INDEX[key]:
                index = CJK_FACE_INDEX[key]
            return [FontChoice(lines[0], index)]
        return []

    def _package_font(self, key: str) -> list[FontChoice]:
        """The collection shipped by PyPI ``noto-cjk-sans-otc`` (Regular only), if installed."""
        try:
            from importlib.resources import files

            path = Path(str(files("noto_cjk_sans_otc").joinpath("NotoSansCJK-Regular.ttc")))
        except (ImportError, ModuleNotFoundError, TypeError):
            return []
        if not path.is_file():
            return []
        return [FontChoice(str(path), CJK_FACE_INDEX.get(key, LATIN_FACE_INDEX))]

    def _find(self, key: str) -> FontChoice | None:
        sample = COVERAGE_SAMPLES.get(key, DEFAULT_SAMPLE)
        is_cjk = key in CJK_FACE_INDEX
        stages: list[list[FontChoice]] = []
        if not is_cjk and self.latin_font:
            stages.append([FontChoice(self.latin_font, 0)])
        for d in self.fonts_dirs:
            stages.append(self._candidates_in_dir(d, key))
        for d in self.fonts_dirs:
            stages.append(self._other_fonts_in_dir(d))
        if self.search_system:
            for d in SYSTEM_FONT_DIRS:
                stages.append(self._candidates_in_dir(d, key))
        if self.search_package:
            stages.append(self._package_font(key))
        if self.search_system:
            stages.append(self._fc_match(key))
            if not is_cjk:  # a plain Latin font (DejaVu) when no CJK font exists at all
                for d in SYSTEM_FONT_DIRS:
                    stages.append([FontChoice(str(d / n), 0) for n in _LATIN_FALLBACKS[self.bold] if (d / n).is_file()])
        for candidates in stages:
            for choice in candidates:
                if font_covers(choice.path, choice.index, sample):
                    return choice
                logger.debug("font %s lacks glyphs for %s", choice.label(), key)
        return None


_WEIGHT_NAMES = ("Thin", "Light", "DemiLight", "Regular", "Medium", "Bold", "Black", "Heavy", "ExtraBold")


def weight_variant_paths(path: Path, weight: str) -> list[Path]:
    """Candidate files of ``weight`` for a font file named like ``Family-Regular.ttc`` / ``Family.ttf``."""
    stem, suffix = path.stem, path.suffix
    if weight == "Regular" and "-" not in stem:
        return [path]
    base = stem
    for name in _WEIGHT_NAMES:
        if stem.endswith("-" + name):
            base = stem[: -len(name) - 1]
            break
    names = [f"{base}{suffix}"] if weight == "Regular" else []
    names.append(f"{base}-{weight}{suffix}")
    if weight == "Black":
        names.append(f"{base}-Heavy{suffix}")
    return [path.with_name(n) for n in names]


_DEFAULT_SETS: dict[tuple[str | None, bool], FontSet] = {}
_DEFAULT_LOCK = threading.Lock()


def resolve_font(target_lang: str, fonts_dir: str | Path | None = None, bold: bool = False) -> FontChoice:
    """The font face for ``target_lang`` (see the module docstring for the search order); cached per process."""
    key = (str(fonts_dir) if fonts_dir is not None else None, bold)
    with _DEFAULT_LOCK:
        fs = _DEFAULT_SETS.get(key)
        if fs is None:
            fs = _DEFAULT_SETS[key] = FontSet(fonts_dir, bold=bold)
    return fs.resolve(target_lang)
