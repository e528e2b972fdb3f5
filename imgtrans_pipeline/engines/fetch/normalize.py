"""Turn downloaded bytes into a :class:`SourceImage`: RGB pixels, the normalised PNG and its content hash.

Every later stage sees the same thing whatever the source format was: an upright (EXIF orientation applied) RGB
image. Transparency is composited on white (product images with transparent backgrounds are shown on white pages),
animated GIFs contribute their first frame, CMYK / palette / 16-bit images are converted to 8-bit RGB.

Safety: the format is sniffed from magic bytes (the Content-Type header and file extension are not trusted) and
Pillow is restricted to that one decoder. The pixel count is read from the header *before* any pixel is decoded, so
a small file that claims 20000x20000 pixels (a decompression bomb) is refused without allocating gigabytes.
"""

from __future__ import annotations

import hashlib
import io
import logging

import numpy as np
from PIL import Image, ImageOps

from imgtrans_pipeline.core.errors import ImageError, ImageTooLarge
from imgtrans_pipeline.core.types import SourceImage

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 60_000_000

# zlib level 1: the PNG is an internal lossless carrier and the hash input, not a delivery format. Measured on a
# 790x6000 textured page: level 1 took 0.30 s and 6.5 MB, Pillow's default level 6 took 1.39 s and 6.3 MB -- 4-5x
# the CPU for a ~5 % smaller file is a bad trade on the download path. The hash is computed
# over these bytes, so changing this level (or a zlib/Pillow upgrade that changes the encoder output) changes every
# content hash: treat it as part of the cache key format.
PNG_COMPRESS_LEVEL = 1

SUPPORTED_FORMATS = ("jpeg", "png", "webp", "gif", "bmp", "tiff")
_PIL_FORMAT = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF", "bmp": "BMP", "tiff": "TIFF"}
_BMP_DIB_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}
_ISO_BMFF_BRANDS = {b"avif": "avif", b"avis": "avif", b"heic": "heic", b"heix": "heic", b"mif1": "heif",
                    b"msf1": "heif", b"hevc": "heic"}

# Pillow has its own process-wide bomb guard (Image.MAX_IMAGE_PIXELS: a warning above it, DecompressionBombError
# above twice it). We do not modify that global (other engines share the process); our header check below is the
# authoritative limit and DecompressionBombError is mapped to ImageTooLarge as a backstop. If someone disabled the
# global (None), our check still applies.


def sniff_format(data: bytes) -> str | None:
    """Image format from the magic bytes, or None when the bytes are not one of the supported formats."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM" and len(data) >= 18 and int.from_bytes(data[14:18], "little") in _BMP_DIB_HEADER_SIZES:
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    return None


def _describe_start(data: bytes) -> str:
    """A short, log-safe description of what the bytes start with (an HTML error page, JSON, ...)."""
    head = data[:24]
    text = head.decode("utf-8", errors="ignore")  # may cut a multi-byte character at the end: dropped
    if len(text.encode("utf-8")) >= len(head) - 3 and all(c.isprintable() or c.isspace() for c in text):
        return repr(text.strip())
    return head.hex(" ")


def _unsupported_reason(data: bytes) -> str:
    if not data:
        return "not an image (empty, 0 bytes)"
    if data[4:8] == b"ftyp" and data[8:12] in _ISO_BMFF_BRANDS:
        return f"unsupported image format '{_ISO_BMFF_BRANDS[data[8:12]]}' (supported: {', '.join(SUPPORTED_FORMATS)})"
    if data.lstrip()[:5].lower() in (b"<svg ", b"<?xml") and b"<svg" in data[:2048].lower():
        return f"unsupported image format 'svg' (supported: {', '.join(SUPPORTED_FORMATS)})"
    return f"not an image (starts with {_describe_start(data)}, {len(data)} bytes)"


def _gray_16_to_8(im: Image.Image) -> np.ndarray:
    """16-bit / 32-bit / float grayscale -> 8-bit, scaling the range (Pillow's convert would clip at 255)."""
    arr = np.asarray(im)
    if arr.dtype == np.float32 or arr.dtype == np.float64:
        scale = 255.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 1.0
        return np.clip(np.nan_to_num(arr) * scale, 0, 255).round().astype(np.uint8)
    arr = arr.astype(np.int64)
    if im.mode.startswith("I;16") or int(arr.max(initial=0)) > 255:
        return np.clip((arr + 128) // 257, 0, 255).astype(np.uint8)
    return np.clip(arr, 0, 255).astype(np.uint8)


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparent pixels are composited on white."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I") or mode == "F":
        gray = _gray_16_to_8(im)
        return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2), "RGB")
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode in ("P", "L", "RGB") and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def encode_png(im: Image.Image) -> bytes:
    """The normalised PNG: no metadata chunks, fixed compression level, so equal pixels give equal bytes."""
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def pixel_hash(pixels: np.ndarray) -> str:
    """The image's key: sha256 over its size and decoded RGB pixels.

    Hashing pixels rather than an encoding keeps the key stable across Pillow/zlib upgrades and compression
    settings, so dedupe and backfills over stored hashes survive upgrades; the same picture sent as JPEG-decoded
    PNG or BMP gets the same key.
    """
    height, width = pixels.shape[:2]
    digest = hashlib.sha256(f"rgb8:{width}x{height}:".encode())
    digest.update(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def normalize_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, source: str = "") -> SourceImage:
    """Decode ``data`` safely and normalise it (see module docstring).

    Raises :class:`ImageTooLarge` when the header announces more than ``max_pixels`` pixels and :class:`ImageError`
    (permanent) for anything that is not a decodable image of a supported format, with the reason.
    """
    where = f" [{source}]" if source else ""
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageError(_unsupported_reason(data) + where)
    try:
        im = Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[fmt]])  # lazy: parses the header only
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"{fmt} image refused by the decompression-bomb guard: {exc}{where}") from exc
    except Exception as exc:  # UnidentifiedImageError, SyntaxError, struct.error ... from a corrupt header
        raise ImageError(f"corrupt {fmt} header: {exc}{where}") from exc
    try:
        width, height = im.size
        if width <= 0 or height <= 0:
            raise ImageError(f"{fmt} image has invalid size {width}x{height}{where}")
        if width * height > max_pixels:
            raise ImageTooLarge(
                f"{fmt} image is {width}x{height} = {width * height:,} pixels, more than the limit of "
                f"{max_pixels:,}{where}"
            )
        try:
            im.seek(0)  # animated GIF / WebP, multi-page TIFF: the first frame
            im.load()
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge(f"{fmt} image refused by the decompression-bomb guard: {exc}{where}") from exc
        except MemoryError as exc:
            raise ImageTooLarge(f"{fmt} image {width}x{height} does not fit in memory{where}") from exc
        except Exception as exc:  # OSError "image file is truncated", zlib errors, broken chunks ...
            reason = str(exc) or type(exc).__name__
            raise ImageError(f"corrupt or truncated {fmt} image ({len(data)} bytes): {reason}{where}") from exc
        try:
            upright = ImageOps.exif_transpose(im)
        except Exception as exc:  # a broken EXIF block must not cost us an otherwise good image
            logger.warning("ignoring unreadable EXIF orientation%s: %s", where, exc)
            upright = im
        rgb = to_rgb(upright if upright is not None else im)
        png = encode_png(rgb)
        pixels = np.array(rgb, dtype=np.uint8)  # a writable copy: later stages may draw on it
    finally:
        im.close()
    return SourceImage(
        pixels=pixels,
        content_hash=pixel_hash(pixels),
        source_format=fmt,
        byte_size=len(data),
        png_bytes=png,
    )
