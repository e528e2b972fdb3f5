"""Fetch stage against a real local aiohttp server, real files and a real (moto) S3 server."""

from __future__ import annotations

import asyncio
import io
import struct
import threading
import time
import uuid
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from PIL import Image

from imgtrans_pipeline.core.errors import FetchError, ImageError, ImageTooLarge, PipelineError, URLNotAllowed
from imgtrans_pipeline.core.types import SourceImage
from imgtrans_pipeline.engines.fetch import (
    Downloader,
    FetchSettings,
    PolicyResolver,
    UrlPolicy,
    blocked_reason,
    normalize_image,
    parse_retry_after,
    redact_url,
    sniff_format,
)
from tests.support.imagegen import text_image
from tests.support.servers import free_port

# ---------------------------------------------------------------------------------------------------------------------
# A real HTTP server on 127.0.0.1, in its own thread and event loop, with routes that misbehave on purpose.


class ImageServer:
    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.hits: Counter[str] = Counter()
        self.hit_times: dict[str, list[float]] = defaultdict(list)
        self.user_agents: list[str] = []
        self.inflight = 0
        self.max_inflight = 0
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def add(self, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Serve ``data`` at a fresh path; returns the path."""
        name = uuid.uuid4().hex
        self.files[name] = (data, content_type)
        return f"/img/{name}"

    def _hit(self, request: web.Request) -> str:
        key = request.path
        self.hits[key] += 1
        self.hit_times[key].append(time.monotonic())
        self.user_agents.append(request.headers.get("User-Agent", ""))
        return key

    async def img(self, request: web.Request) -> web.Response:
        self._hit(request)
        data, ctype = self.files[request.match_info["name"]]
        return web.Response(body=data, content_type=ctype)

    async def status(self, request: web.Request) -> web.Response:
        self._hit(request)
        return web.Response(status=int(request.match_info["code"]), text="nope")

    async def flaky(self, request: web.Request) -> web.Response:
        """/flaky/{failures}/{code}/{name}: answer ``code`` for the first ``failures`` hits, then the file."""
        key = self._hit(request)
        failures, code = int(request.match_info["failures"]), int(request.match_info["code"])
        if self.hits[key] <= failures:
            headers = {}
            if "retry_after" in request.query:
                headers["Retry-After"] = request.query["retry_after"]
            return web.Response(status=code, headers=headers, text="busy")
        data, ctype = self.files[request.match_info["name"]]
        return web.Response(body=data, content_type=ctype)

    async def declared_big(self, request: web.Request) -> web.Response:
        self._hit(request)
        return web.Response(body=b"\0" * int(request.match_info["size"]), content_type="image/png")

    async def streamed(self, request: web.Request) -> web.StreamResponse:
        """Chunked body without Content-Length."""
        self._hit(request)
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        remaining = int(request.match_info["size"])
        while remaining > 0:
            n = min(1024, remaining)
            try:
                await resp.write(b"\0" * n)
            except ConnectionError:  # the client hung up at its size limit: expected
                return resp
            remaining -= n
        await resp.write_eof()
        return resp

    async def redirect(self, request: web.Request) -> web.Response:
        self._hit(request)
        raise web.HTTPFound(request.query["to"])

    async def loop(self, request: web.Request) -> web.Response:
        self._hit(request)
        n = int(request.match_info["n"])
        raise web.HTTPFound(f"/loop/{n + 1}")

    async def slow(self, request: web.Request) -> web.Response:
        self._hit(request)
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            await asyncio.sleep(0.15)
        finally:
            self.inflight -= 1
        data, ctype = self.files[request.match_info["name"]]
        return web.Response(body=data, content_type=ctype)

    def start(self) -> None:
        app = web.Application()
        app.add_routes([
            web.get("/img/{name}", self.img),
            web.get("/status/{code}/{tag}", self.status),
            web.get("/flaky/{failures}/{code}/{name}", self.flaky),
            web.get("/declared/{size}", self.declared_big),
            web.get("/streamed/{size}", self.streamed),
            web.get("/redirect", self.redirect),
            web.get("/loop/{n}", self.loop),
            web.get("/slow/{tag}/{name}", self.slow),
        ])
        self._thread.start()
        self._runner = web.AppRunner(app)
        asyncio.run_coroutine_threadsafe(self._runner.setup(), self._loop).result(10)
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        asyncio.run_coroutine_threadsafe(site.start(), self._loop).result(10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture(scope="module")
def server() -> Iterator[ImageServer]:
    srv = ImageServer()
    srv.start()
    yield srv
    srv.stop()


def fast_settings(**overrides: object) -> FetchSettings:
    """Loopback allowed (the test server lives there) and tiny backoff delays so retries take milliseconds."""
    base: dict[str, object] = {"allow_private": True, "backoff_base": 0.01, "backoff_max": 0.05, "retries": 2,
                               "connect_timeout": 2.0, "total_timeout": 10.0}
    base.update(overrides)
    return FetchSettings(**base)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------------
# Test images


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    return text_image(["价格 99 元", "Sale"], width=160, height=120, font_size=24, top=10, line_gap=20,
                      left=10).pixels


def encode(pixels: np.ndarray | Image.Image, fmt: str, **kwargs: object) -> bytes:
    im = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height (1-bit gray) followed by a tiny IDAT: a decompression bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# ---------------------------------------------------------------------------------------------------------------------
# Normalisation


def test_formats_normalise_to_the_same_rgb_and_hash(sample: np.ndarray) -> None:
    reference = normalize_image(encode(sample, "PNG"))
    assert reference.pixels.dtype == np.uint8 and reference.pixels.shape == (120, 160, 3)
    assert np.array_equal(reference.pixels, sample)
    assert reference.source_format == "png" and len(reference.content_hash) == 64
    assert Image.open(io.BytesIO(reference.png_bytes)).mode == "RGB"
    lossless = {"bmp": encode(sample, "BMP"), "tiff": encode(sample, "TIFF"),
                "webp": encode(sample, "WEBP", lossless=True)}
    for fmt, data in lossless.items():
        img = normalize_image(data)
        assert img.source_format == fmt
        assert img.byte_size == len(data)
        assert np.array_equal(img.pixels, sample), fmt
        assert img.content_hash == reference.content_hash, fmt  # same pixels -> same key, whatever the container
    # a different image must not collide
    other = sample.copy()
    other[0, 0] = (0, 0, 0) if tuple(other[0, 0]) != (0, 0, 0) else (1, 1, 1)
    assert normalize_image(encode(other, "BMP")).content_hash != reference.content_hash


def test_alpha_palette_cmyk_16bit_become_rgb() -> None:
    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[:, 10:] = (0, 0, 255, 255)  # right half opaque blue, left half fully transparent
    img = normalize_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert img.pixels.shape == (10, 20, 3)
    assert tuple(img.pixels[5, 2]) == (255, 255, 255)  # transparent -> white, not black
    assert tuple(img.pixels[5, 15]) == (0, 0, 255)

    half = rgba.copy()
    half[:, :10] = (0, 0, 0, 128)  # half-transparent black over white -> mid grey
    assert abs(int(normalize_image(encode(Image.fromarray(half, "RGBA"), "PNG")).pixels[5, 2, 0]) - 127) <= 1

    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.paste(1, (4, 0, 8, 8))
    pal.info["transparency"] = 0
    img = normalize_image(encode(pal, "PNG", transparency=0))
    assert tuple(img.pixels[0, 0]) == (255, 255, 255) and tuple(img.pixels[0, 6]) == (0, 255, 0)

    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    img = normalize_image(encode(cmyk, "JPEG", quality=95))
    assert img.source_format == "jpeg" and img.pixels.shape == (16, 16, 3)
    r, g, b = (int(v) for v in img.pixels[8, 8])
    assert r > 230 and g < 30 and b < 30

    gray16 = np.array([[0, 32896, 65535, 65535]], dtype=np.uint16)
    img = normalize_image(encode(Image.fromarray(gray16), "PNG"))
    assert [int(v) for v in img.pixels[0, :, 0]] == [0, 128, 255, 255]  # scaled, not clipped at 255
    assert np.array_equal(img.pixels[..., 0], img.pixels[..., 2])


def test_animated_gif_gives_first_frame() -> None:
    frames = [Image.new("RGB", (12, 12), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    img = normalize_image(data)
    assert img.source_format == "gif"
    assert img.pixels.shape == (12, 12, 3)
    assert tuple(img.pixels[6, 6]) == (255, 0, 0)


def test_exif_orientation_is_applied() -> None:
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)  # left half red
    stored[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    img = normalize_image(encode(stored, "JPEG", quality=95, exif=exif))
    assert img.pixels.shape == (40, 20, 3)  # width and height swapped
    top, bottom = img.pixels[5, 10].astype(int), img.pixels[35, 10].astype(int)
    assert top[0] > 200 and top[2] < 60  # the left (red) edge is now on top
    assert bottom[2] > 200 and bottom[0] < 60
    # the same JPEG without the tag stays landscape
    assert normalize_image(encode(stored, "JPEG", quality=95)).pixels.shape == (20, 40, 3)


def test_garbage_truncated_and_text_are_clear_image_errors(sample: np.ndarray) -> None:
    with pytest.raises(ImageError, match=r"not an image \(starts with '<!DOCTYPE html>") as exc:
        normalize_image(b"<!DOCTYPE html><html><body>Not found</body></html>")
    assert exc.value.transient is False and not isinstance(exc.value, ImageTooLarge)
    with pytest.raises(ImageError, match=r"not an image .*empty"):
        normalize_image(b"")
    with pytest.raises(ImageError, match="not an image"):
        normalize_image(bytes(range(7, 200)))
    noisy = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    jpeg = encode(noisy, "JPEG", quality=90)
    with pytest.raises(ImageError, match="truncated jpeg") as exc:
        normalize_image(jpeg[: len(jpeg) // 2], source="http://x/y.jpg")
    assert "http://x/y.jpg" in exc.value.reason
    png = encode(sample, "PNG")
    with pytest.raises(ImageError, match="png"):
        normalize_image(png[: len(png) // 2])
    with pytest.raises(ImageError, match="corrupt png header"):
        normalize_image(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 4)
    with pytest.raises(ImageError, match="unsupported image format 'avif'"):
        normalize_image(b"\x00\x00\x00\x1cftypavif" + b"\0" * 40)


def test_pixel_bomb_refused_before_decoding(sample: np.ndarray) -> None:
    bomb = png_header_only(9000, 9000)  # 81 Mpx: above our 60 Mpx default, below Pillow's own limit
    assert len(bomb) < 200
    with pytest.raises(ImageTooLarge, match="9000x9000"):
        normalize_image(bomb)
    with pytest.raises(ImageTooLarge):  # 400 Mpx: Pillow's own guard fires first; still ImageTooLarge
        normalize_image(png_header_only(20000, 20000))
    with pytest.raises(ImageTooLarge, match="more than the limit of 10,000"):
        normalize_image(encode(sample, "PNG"), max_pixels=10_000)
    assert sniff_format(bomb) == "png"


# ---------------------------------------------------------------------------------------------------------------------
# HTTP


def test_fetch_many_success_and_isolated_failures(server: ImageServer, sample: np.ndarray) -> None:
    png = encode(sample, "PNG")
    ok = server.url(server.add(png, "image/png"))
    missing = server.url("/status/404/many")
    results = asyncio.run(Downloader(fast_settings()).fetch_many([ok, missing, ok]))
    assert results[0] == png and results[2] == png
    assert isinstance(results[1], FetchError) and not results[1].transient
    assert "User-Agent" not in server.user_agents and "imgtrans-pipeline" in server.user_agents


def test_fetch_images_end_to_end(server: ImageServer, sample: np.ndarray) -> None:
    webp = server.url(server.add(encode(sample, "WEBP", lossless=True), "image/webp"))
    text = server.url(server.add(b"hello, I am text\n", "image/png"))  # lies about its type
    results = Downloader(fast_settings()).fetch_images([webp, text])
    img, err = results
    assert isinstance(img, SourceImage) and np.array_equal(img.pixels, sample) and img.source_format == "webp"
    assert img.content_hash == normalize_image(encode(sample, "PNG")).content_hash
    assert isinstance(err, ImageError) and "not an image (starts with 'hello, I am text'" in err.reason


def test_404_is_permanent_and_not_retried(server: ImageServer) -> None:
    url = server.url("/status/404/once")
    with pytest.raises(FetchError, match="HTTP 404") as exc:
        asyncio.run(Downloader(fast_settings(retries=4)).fetch(url))
    assert exc.value.transient is False
    assert server.hits["/status/404/once"] == 1
    for code in (403, 410, 400):
        with pytest.raises(FetchError, match=f"HTTP {code}"):
            asyncio.run(Downloader(fast_settings()).fetch(server.url(f"/status/{code}/x")))
        assert server.hits[f"/status/{code}/x"] == 1


def test_503_twice_then_success(server: ImageServer, sample: np.ndarray) -> None:
    png = encode(sample, "PNG")
    name = server.add(png).rsplit("/", 1)[1]
    path = f"/flaky/2/503/{name}"
    assert asyncio.run(Downloader(fast_settings(retries=4)).fetch(server.url(path))) == png
    assert server.hits[path] == 3


def test_persistent_5xx_gives_transient_error_after_retries(server: ImageServer) -> None:
    path = "/status/502/always"
    with pytest.raises(FetchError, match=r"HTTP 502.*gave up after 3 attempts") as exc:
        asyncio.run(Downloader(fast_settings(retries=2)).fetch(server.url(path)))
    assert exc.value.transient is True
    assert server.hits[path] == 3


def test_429_retry_after_is_honoured(server: ImageServer, sample: np.ndarray) -> None:
    png = encode(sample, "PNG")
    name = server.add(png).rsplit("/", 1)[1]
    path = f"/flaky/1/429/{name}"
    assert asyncio.run(Downloader(fast_settings()).fetch(server.url(path) + "?retry_after=1")) == png
    first, second = server.hit_times[path]
    assert second - first >= 0.95  # backoff alone would have waited <= 0.05 s


def test_retry_after_parsing() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = 1_700_000_000.0
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 30))
    assert parse_retry_after(date, now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now - 30)), now=now) == 0.0
    policy = Downloader(fast_settings(retry_after_max=5)).retry_policy
    assert policy.delay(1, 3600) == 5  # capped
    assert all(0 <= policy.delay(4, None) <= 0.05 for _ in range(50))
    assert 0 < max(policy.delay(1, None) for _ in range(200)) <= 0.01  # full jitter under base * 2**0


def test_size_limit_content_length_and_streamed(server: ImageServer) -> None:
    d = Downloader(fast_settings(max_bytes=10_000))
    with pytest.raises(FetchError, match="Content-Length 50,000") as exc:
        asyncio.run(d.fetch(server.url("/declared/50000")))
    assert exc.value.transient is False
    with pytest.raises(FetchError, match="more than 10,000 bytes streamed") as exc:
        asyncio.run(d.fetch(server.url("/streamed/200000")))
    assert exc.value.transient is False
    assert server.hits["/streamed/200000"] == 1  # permanent: not retried
    assert len(asyncio.run(d.fetch(server.url("/streamed/9000")))) == 9000


def test_concurrency_is_bounded(server: ImageServer, sample: np.ndarray) -> None:
    name = server.add(encode(sample, "PNG")).rsplit("/", 1)[1]
    urls = [server.url(f"/slow/{i}/{name}") for i in range(6)]
    server.max_inflight = 0
    results = asyncio.run(Downloader(fast_settings(concurrency=2)).fetch_many(urls))
    assert all(isinstance(r, bytes) for r in results)
    assert server.max_inflight == 2


def test_unreachable_port_is_transient_after_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}/x.png"
    with pytest.raises(FetchError, match="gave up after 3 attempts") as exc:
        asyncio.run(Downloader(fast_settings(retries=2)).fetch(url))
    assert exc.value.transient is True


def test_too_many_redirects(server: ImageServer) -> None:
    with pytest.raises(FetchError, match="too many redirects") as exc:
        asyncio.run(Downloader(fast_settings(max_redirects=3)).fetch(server.url("/loop/0")))
    assert exc.value.transient is False
    assert server.hits["/loop/0"] == 1 and server.hits["/loop/3"] == 1 and server.hits["/loop/4"] == 0


def test_fetch_images_inside_running_loop(server: ImageServer, sample: np.ndarray) -> None:
    url = server.url(server.add(encode(sample, "BMP")))

    async def caller() -> list[SourceImage | PipelineError]:
        return Downloader(fast_settings()).fetch_images([url])  # sync API called from async code

    (img,) = asyncio.run(caller())
    assert isinstance(img, SourceImage) and img.source_format == "bmp"


# ---------------------------------------------------------------------------------------------------------------------
# SSRF guard


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "224.0.0.1",
     "240.0.0.1", "100.64.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "ff02::1",
     "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::1", "64:ff9b::a9fe:a9fe"],
)
def test_blocked_addresses(address: str) -> None:
    assert blocked_reason(address) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_allowed(address: str) -> None:
    assert blocked_reason(address) is None


def test_private_literal_refused_unless_allowed(server: ImageServer, sample: np.ndarray) -> None:
    png = encode(sample, "PNG")
    path = server.add(png)
    for host in ("127.0.0.1", "localhost", "[::ffff:127.0.0.1]"):
        with pytest.raises(URLNotAllowed, match="loopback") as exc:
            asyncio.run(Downloader(FetchSettings(retries=0)).fetch(server.url(path, host=host)))
        assert exc.value.transient is False
    assert server.hits[path] == 0  # never connected
    assert asyncio.run(Downloader(fast_settings(allow_private=True)).fetch(server.url(path))) == png
    assert server.hits[path] == 1


def test_policy_resolver_checks_resolved_addresses() -> None:
    async def resolve(policy: UrlPolicy) -> list[str]:
        resolver = PolicyResolver(policy)
        try:
            return [r["host"] for r in await resolver.resolve("localhost", 80, 0)]
        finally:
            await resolver.close()

    with pytest.raises(URLNotAllowed, match="'localhost' resolves to a loopback"):
        asyncio.run(resolve(UrlPolicy()))
    assert "127.0.0.1" in asyncio.run(resolve(UrlPolicy(allow_private=True)))
    assert "127.0.0.1" in asyncio.run(resolve(UrlPolicy(allowed_hosts=["localhost"])))
    with pytest.raises(URLNotAllowed):
        asyncio.run(UrlPolicy().resolve_and_check("localhost", 80))


def test_redirect_to_private_address_refused(server: ImageServer, sample: np.ndarray) -> None:
    """The first hop is an explicitly allowed host; its redirect to another private address must be re-checked."""
    png = encode(sample, "PNG")
    target = server.add(png)
    d = Downloader(FetchSettings(allowed_hosts=["localhost"], retries=0))
    # positive control: the allowed host redirecting to itself works
    to_self = server.url(f"/redirect?to={server.url(target, host='localhost')}", host="localhost")
    assert asyncio.run(d.fetch(to_self)) == png
    assert server.hits[target] == 1
    for bad in (server.url(target), "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/",
                "file:///etc/passwd", "s3://bucket/key"):
        url = server.url(f"/redirect?to={bad}", host="localhost")
        with pytest.raises(URLNotAllowed) as exc:
            asyncio.run(d.fetch(url))
        assert exc.value.transient is False
    assert server.hits[target] == 1  # the private target was never requested


def test_scheme_and_file_roots(tmp_path: Path, sample: np.ndarray) -> None:
    inside = tmp_path / "root"
    inside.mkdir()
    img_path = inside / "a b.png"
    img_path.write_bytes(encode(sample, "PNG"))
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"secret")
    d = Downloader(fast_settings(allowed_file_roots=[inside]))
    assert asyncio.run(d.fetch(img_path.as_uri())) == img_path.read_bytes()  # file:// with %20
    assert asyncio.run(d.fetch(str(img_path))) == img_path.read_bytes()  # bare path
    for url in (outside.as_uri(), str(inside / ".." / "secret.png"), "ftp://example.com/a.png", "gopher://x/"):
        with pytest.raises(URLNotAllowed):
            asyncio.run(d.fetch(url))
    (inside / "link.png").symlink_to(outside)
    with pytest.raises(URLNotAllowed):
        asyncio.run(d.fetch(str(inside / "link.png")))
    with pytest.raises(FetchError, match="file not found") as exc:
        asyncio.run(d.fetch(str(inside / "missing.png")))
    assert exc.value.transient is False
    with pytest.raises(FetchError, match="not a regular file"):
        asyncio.run(d.fetch(str(inside)))
    (img,) = Downloader(FetchSettings()).fetch_images([str(img_path)])  # CLI default: any path
    assert isinstance(img, SourceImage) and np.array_equal(img.pixels, sample)


def test_redact_url() -> None:
    assert redact_url("https://user:pw@cdn.example.com/a.png?X-Amz-Signature=abc#f") == "https://cdn.example.com/a.png?…"


# ---------------------------------------------------------------------------------------------------------------------
# S3 (real moto server)


def test_s3_fetch(s3_server, sample: np.ndarray) -> None:
    client = s3_server.client()
    bucket = f"fetch-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    jpeg = encode(sample, "JPEG", quality=90)
    client.put_object(Bucket=bucket, Key="dir/item 1.jpg", Body=jpeg)
    d = Downloader(fast_settings(s3_endpoint_url=s3_server.endpoint_url, s3_region=s3_server.region,
                                 s3_access_key_id=s3_server.access_key, s3_secret_access_key=s3_server.secret_key))
    img, missing_key, missing_bucket = d.fetch_images(
        [f"s3://{bucket}/dir/item 1.jpg", f"s3://{bucket}/nope.jpg", "s3://no-such-bucket-xyz/a.jpg"]
    )
    assert isinstance(img, SourceImage) and img.source_format == "jpeg" and img.byte_size == len(jpeg)
    assert img.content_hash == normalize_image(jpeg).content_hash
    assert isinstance(missing_key, FetchError) and not missing_key.transient and "NoSuchKey" in missing_key.reason
    assert isinstance(missing_bucket, FetchError) and not missing_bucket.transient
    d.close()


def test_s3_unreachable_is_transient() -> None:
    d = Downloader(fast_settings(s3_endpoint_url=f"http://127.0.0.1:{free_port()}", s3_region="us-east-1",
                                 s3_access_key_id="x", s3_secret_access_key="y", retries=1, connect_timeout=1.0))
    with pytest.raises(FetchError, match="gave up after 2 attempts") as exc:
        asyncio.run(d.fetch("s3://bucket/key.png"))
    assert exc.value.transient is True
