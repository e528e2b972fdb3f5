"""Artifact stores: one behavioural suite run against the local store and a real S3-API server (moto)."""

from __future__ import annotations

import http.server
import os
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgtrans_pipeline.core.errors import StorageError
from imgtrans_pipeline.storage import (
    META,
    OCR,
    SOURCE,
    ArtifactNotFound,
    ArtifactStore,
    InvalidArtifactKey,
    LocalArtifactStore,
    S3ArtifactStore,
    create_artifact_store,
    get_json,
    put_json,
    result_name,
)
from tests.support.imagegen import font
from tests.support.servers import S3Server, free_port

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_bytes() -> bytes:
    """A small real PNG with CJK text, so the stored bytes are a realistic artifact."""
    import io

    from PIL import Image, ImageDraw

    img = Image.new("RGB", (120, 40), "white")
    ImageDraw.Draw(img).text((4, 4), "新品上市", font=font(24), fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _s3_store(server: S3Server, bucket: str, prefix: str = "", **options: object) -> S3ArtifactStore:
    return S3ArtifactStore(
        bucket,
        prefix,
        endpoint_url=server.endpoint_url,
        region=server.region,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
        **options,  # type: ignore[arg-type]
    )


def _new_bucket(server: S3Server) -> str:
    name = f"test-{uuid.uuid4().hex[:16]}"
    server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "artifacts")
    server: S3Server = request.getfixturevalue("s3_server")
    return _s3_store(server, _new_bucket(server), "runs")


# --- behaviour shared by every backend ---------------------------------------------------------------------------


def test_store_satisfies_protocol(store: ArtifactStore) -> None:
    assert isinstance(store, ArtifactStore)


def test_bytes_round_trip(store: ArtifactStore) -> None:
    png = _png_bytes()
    uri = store.put("req-1", SOURCE, png, "image/png")
    assert uri == store.uri("req-1", SOURCE)
    got = store.get("req-1", SOURCE)
    assert got == png and got.startswith(PNG_MAGIC)


def test_put_replaces_previous_version(store: ArtifactStore) -> None:
    store.put("req-1", "mask.png", b"first version, longer than the second")
    store.put("req-1", "mask.png", b"second")
    assert store.get("req-1", "mask.png") == b"second"


def test_json_round_trip_keeps_cjk_readable(store: ArtifactStore) -> None:
    obj = {"text": "限时特价", "ko": "신제품", "blocks": [{"b": 2, "a": 1}], "score": 0.93}
    put_json(store, "req-json", OCR, obj)
    assert get_json(store, "req-json", OCR) == obj
    raw = store.get("req-json", OCR).decode("utf-8")
    assert "限时特价" in raw and "\\u" not in raw  # ensure_ascii=False
    assert raw.index('"a"') < raw.index('"b"')  # sorted keys: same content, same bytes


def test_put_json_accepts_to_dict_objects(store: ArtifactStore) -> None:
    class Meta:
        def to_dict(self) -> dict[str, object]:
            return {"status": "ok", "目标": "en"}

    put_json(store, "req-meta", META, Meta())
    assert get_json(store, "req-meta", META) == {"status": "ok", "目标": "en"}


def test_put_json_rejects_unencodable(store: ArtifactStore) -> None:
    with pytest.raises(StorageError) as info:
        put_json(store, "req-bad", META, {"x": float("nan")})
    assert not info.value.transient
    assert not store.exists("req-bad", META)


def test_get_json_corrupt_is_permanent(store: ArtifactStore) -> None:
    store.put("req-c", META, b"{not json")
    with pytest.raises(StorageError) as info:
        get_json(store, "req-c", META)
    assert not info.value.transient and "not valid" in info.value.reason


def test_exists_and_list(store: ArtifactStore) -> None:
    assert store.list("req-2") == []
    assert not store.exists("req-2", SOURCE)
    names = [SOURCE, OCR, "translation.json", "mask.png", "inpainted.png", result_name("jpeg"), META]
    for name in names:
        store.put("req-2", name, name.encode())
    store.put("req-2b", SOURCE, b"other request")  # a neighbour whose id shares the prefix must not leak in
    assert store.list("req-2") == sorted(names)
    assert all(store.exists("req-2", n) for n in names)
    assert not store.exists("req-2", "result.png")
    assert store.list("req-2b") == [SOURCE]


def test_get_missing_raises_not_found(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactNotFound) as info:
        store.get("req-none", SOURCE)
    assert isinstance(info.value, StorageError) and not info.value.transient
    assert "req-none/source.png" in info.value.reason


def test_delete_removes_request(store: ArtifactStore) -> None:
    store.put("req-del", SOURCE, b"a")
    store.put("req-del", META, b"{}")
    store.put("req-keep", SOURCE, b"b")
    assert store.delete("req-del") == 2
    assert store.list("req-del") == []
    assert store.delete("req-del") == 0
    assert store.get("req-keep", SOURCE) == b"b"


@pytest.mark.parametrize(
    "request_id",
    ["..", "../etc", "a/b", "a\\b", "/abs", ".hidden", "", "a" * 129, "x\x00y", "réq", "a b", "%2e%2e", "req\n"],
)
def test_unsafe_request_ids_rejected(store: ArtifactStore, request_id: str) -> None:
    with pytest.raises(InvalidArtifactKey) as info:
        store.put(request_id, SOURCE, b"x")
    assert not info.value.transient
    for call in (lambda: store.get(request_id, SOURCE), lambda: store.list(request_id),
                 lambda: store.uri(request_id, SOURCE), lambda: store.exists(request_id, SOURCE)):
        with pytest.raises(InvalidArtifactKey):
            call()


@pytest.mark.parametrize("name", ["../source.png", "a/b.png", ".source.png.tmp", "", "..", "x\\y", "a.png\n"])
def test_unsafe_names_rejected(store: ArtifactStore, name: str) -> None:
    with pytest.raises(InvalidArtifactKey):
        store.put("req-ok", name, b"x")


def test_request_ids_from_core_alphabet_accepted(store: ArtifactStore) -> None:
    rid = "Job_2026-11-24T10:00:00.123"
    store.put(rid, SOURCE, b"x")
    assert store.list(rid) == [SOURCE]


def test_concurrent_puts_from_threads(store: ArtifactStore) -> None:
    """One store (one boto3 client) is shared by the engine's worker threads."""
    from concurrent.futures import ThreadPoolExecutor

    def work(i: int) -> bytes:
        store.put(f"req-t{i % 3}", f"part-{i}.bin", f"payload {i}".encode())
        return store.get(f"req-t{i % 3}", f"part-{i}.bin")

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(24)))
    assert results == [f"payload {i}".encode() for i in range(24)]
    assert sum(len(store.list(f"req-t{k}")) for k in range(3)) == 24


# --- local store specifics ---------------------------------------------------------------------------------------


def test_local_uri_is_file_uri(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    uri = store.put("req-u", SOURCE, b"x")
    assert uri == (tmp_path.resolve() / "req-u" / SOURCE).as_uri()
    assert uri.startswith("file:///")
    assert store.public_url("req-u", SOURCE) == uri
    assert urllib.request.urlopen(uri).read() == b"x"


def test_local_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    for i in range(5):
        store.put("req-a", SOURCE, os.urandom(1000 + i))
    assert os.listdir(tmp_path / "req-a") == [SOURCE]


def test_local_failed_write_keeps_old_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash between writing the temp file and the rename must leave the previous artifact intact."""
    store = LocalArtifactStore(tmp_path)
    store.put("req-a", SOURCE, b"good old bytes")

    def failing_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(StorageError) as info:
        store.put("req-a", SOURCE, b"new bytes that never land")
    monkeypatch.undo()
    assert info.value.transient  # ENOSPC may clear up
    assert store.get("req-a", SOURCE) == b"good old bytes"
    assert os.listdir(tmp_path / "req-a") == [SOURCE]


def test_local_list_ignores_temp_files(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    store.put("req-t", SOURCE, b"x")
    (tmp_path / "req-t" / ".mask.png.abc.tmp").write_bytes(b"half")  # what a killed writer leaves behind
    assert store.list("req-t") == [SOURCE]
    assert store.list_requests() == ["req-t"]


def test_local_unwritable_location_is_permanent(tmp_path: Path) -> None:
    """A file where the request folder should be (works even as root, unlike chmod) is a configuration fault."""
    store = LocalArtifactStore(tmp_path)
    (tmp_path / "req-p").write_bytes(b"not a directory")
    with pytest.raises(StorageError) as info:
        store.put("req-p", META, b"{}")
    assert not info.value.transient and str(tmp_path / "req-p") in info.value.reason


# --- S3 specifics against the real moto S3 server ----------------------------------------------------------------


def test_s3_uri_and_key_layout(s3_server: S3Server) -> None:
    bucket = _new_bucket(s3_server)
    store = _s3_store(s3_server, bucket, "/seeds/2026/")
    uri = store.put("req-k", SOURCE, b"x")
    assert uri == f"s3://{bucket}/seeds/2026/req-k/source.png" == store.uri("req-k", SOURCE)
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["seeds/2026/req-k/source.png"]
    no_prefix = _s3_store(s3_server, bucket)
    assert no_prefix.uri("req-k", SOURCE) == f"s3://{bucket}/req-k/source.png"


def test_s3_content_type_stored(s3_server: S3Server) -> None:
    bucket = _new_bucket(s3_server)
    store = _s3_store(s3_server, bucket, cache_control="public, max-age=86400")
    store.put("req-ct", SOURCE, _png_bytes())  # guessed from the name
    store.put("req-ct", result_name("jpeg"), b"\xff\xd8\xff", "image/jpeg")
    store.put("req-ct", "blob.bin", b"x", "application/x-custom")
    put_json(store, "req-ct", OCR, {"a": 1})
    client = s3_server.client()

    def ctype(name: str) -> str:
        return client.head_object(Bucket=bucket, Key=f"req-ct/{name}")["ContentType"]

    assert ctype(SOURCE) == "image/png"
    assert ctype("result.jpg") == "image/jpeg"
    assert ctype("blob.bin") == "application/x-custom"
    assert ctype(OCR) == "application/json; charset=utf-8"
    assert client.head_object(Bucket=bucket, Key="req-ct/source.png")["CacheControl"] == "public, max-age=86400"
    assert store.head("req-ct", SOURCE)["content_type"] == "image/png"


def test_s3_presigned_url_fetchable_over_http(s3_server: S3Server) -> None:
    bucket = _new_bucket(s3_server)
    store = _s3_store(s3_server, bucket, "pub")
    png = _png_bytes()
    store.put("req-p", "result.png", png)
    url = store.public_url("req-p", "result.png", expires_in=120)
    assert url.startswith(f"{s3_server.endpoint_url}/{bucket}/pub/req-p/result.png?")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=120" in url
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "image/png"
        assert resp.read() == png


def test_s3_public_base_url(s3_server: S3Server) -> None:
    store = _s3_store(s3_server, "seeds", "out", public_base_url="https://pub-abc123.r2.dev/")
    assert store.public_url("job:1", "result.webp") == "https://pub-abc123.r2.dev/out/job%3A1/result.webp"
    assert store.uri("job:1", "result.webp") == "s3://seeds/out/job:1/result.webp"


def test_s3_r2_endpoint_defaults() -> None:
    """R2 signs with region "auto" and path-style keys; presigning needs no network, so no R2 account is needed."""
    store = S3ArtifactStore(
        "seeds", "out", endpoint_url="https://0123abcd.r2.cloudflarestorage.com", access_key_id="k",
        secret_access_key="s",
    )
    assert store.client.meta.region_name == "auto"
    url = store.public_url("r1", "result.png", expires_in=60)
    assert url.startswith("https://0123abcd.r2.cloudflarestorage.com/seeds/out/r1/result.png?")
    assert "%2Fauto%2Fs3%2Faws4_request" in url


def test_s3_list_paginates(s3_server: S3Server) -> None:
    bucket = _new_bucket(s3_server)
    store = _s3_store(s3_server, bucket, list_page_size=2)
    names = [f"part-{i}.json" for i in range(7)]
    for name in names:
        store.put("req-many", name, b"{}")
    assert store.list("req-many") == sorted(names)
    assert store.delete("req-many") == 7


def test_s3_missing_bucket_is_permanent_with_reason(s3_server: S3Server) -> None:
    store = _s3_store(s3_server, f"missing-{uuid.uuid4().hex[:12]}")
    for call in (lambda: store.put("req", SOURCE, b"x"), lambda: store.get("req", SOURCE),
                 lambda: store.list("req"), store.check):
        with pytest.raises(StorageError) as info:
            call()
        assert not info.value.transient
        assert "does not exist" in info.value.reason and store.bucket in info.value.reason
        assert not isinstance(info.value, ArtifactNotFound)


def test_s3_create_bucket_option(s3_server: S3Server) -> None:
    bucket = f"auto-{uuid.uuid4().hex[:12]}"
    store = _s3_store(s3_server, bucket, create_bucket=True)
    store.check()
    store.put("req", SOURCE, b"x")
    _s3_store(s3_server, bucket, create_bucket=True)  # idempotent on an existing bucket
    assert store.get("req", SOURCE) == b"x"


def test_s3_unreachable_endpoint_is_transient_and_fast() -> None:
    store = S3ArtifactStore(
        "bucket",
        endpoint_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        region="us-east-1",
        access_key_id="x",
        secret_access_key="y",
        max_attempts=2,
        connect_timeout=0.5,
        read_timeout=0.5,
    )
    start = time.monotonic()
    for call in (lambda: store.put("req", SOURCE, b"x"), lambda: store.get("req", SOURCE),
                 lambda: store.exists("req", SOURCE), lambda: store.list("req")):
        with pytest.raises(StorageError) as info:
            call()
        assert info.value.transient
        assert "cannot reach" in info.value.reason
    assert time.monotonic() - start < 120  # bounded by the 0.5 s timeouts, not boto3's 60 s defaults x retries


class _Always503(http.server.BaseHTTPRequestHandler):
    hits = 0

    def _answer(self) -> None:
        type(self).hits += 1
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = b"<Error><Code>ServiceUnavailable</Code><Message>try later</Message></Error>"
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def flaky_server() -> Iterator[str]:
    _Always503.hits = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Always503)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_s3_5xx_is_transient_after_retries(flaky_server: str) -> None:
    store = S3ArtifactStore(
        "bucket", endpoint_url=flaky_server, region="us-east-1", access_key_id="x", secret_access_key="y",
        max_attempts=2, connect_timeout=1, read_timeout=2,
    )
    with pytest.raises(StorageError) as info:
        store.put("req", SOURCE, b"x")
    assert info.value.transient and "503" in info.value.reason
    assert _Always503.hits == 2  # standard retry mode retried once, then gave up


# --- factory -----------------------------------------------------------------------------------------------------


def test_factory_local_path_and_file_url(tmp_path: Path) -> None:
    by_path = create_artifact_store(tmp_path / "a")
    assert isinstance(by_path, LocalArtifactStore) and by_path.root == (tmp_path / "a").resolve()
    by_url = create_artifact_store((tmp_path / "b").as_uri())
    assert isinstance(by_url, LocalArtifactStore) and by_url.root == (tmp_path / "b").resolve()
    by_url.put("r", SOURCE, b"x")
    assert (tmp_path / "b" / "r" / SOURCE).read_bytes() == b"x"
    # None-valued S3 options are ignored so config layers can pass every field through
    assert isinstance(create_artifact_store(str(tmp_path / "c"), endpoint_url=None), LocalArtifactStore)
    with pytest.raises(TypeError):
        create_artifact_store(str(tmp_path / "d"), endpoint_url="http://x")


def test_s3_store_configured_from_the_environment(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """IMGTRANS_S3_* reach the store through the settings and the artifacts resource (nothing else reads them)."""
    from imgtrans_pipeline.core.settings import Settings
    from imgtrans_pipeline.orchestration.definitions import build_resources

    bucket = _new_bucket(s3_server)
    monkeypatch.setenv("IMGTRANS_ARTIFACTS", f"s3://{bucket}/seeds/out")
    monkeypatch.setenv("IMGTRANS_S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("IMGTRANS_S3_REGION", s3_server.region)
    monkeypatch.setenv("IMGTRANS_S3_PUBLIC_BASE_URL", "https://cdn.example.com")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)  # boto3's default credential chain
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    store = build_resources(Settings())["artifacts"].store()
    assert isinstance(store, S3ArtifactStore)
    assert store.put("r1", SOURCE, b"x") == f"s3://{bucket}/seeds/out/r1/source.png"
    assert store.public_url("r1", SOURCE) == "https://cdn.example.com/seeds/out/r1/source.png"
    assert s3_server.client().get_object(Bucket=bucket, Key="seeds/out/r1/source.png")["Body"].read() == b"x"
    explicit = create_artifact_store(f"s3://{bucket}", endpoint_url=s3_server.endpoint_url, region=s3_server.region,
                                     public_base_url="https://other.example.com")
    assert explicit.public_url("r1", SOURCE) == "https://other.example.com/r1/source.png"


def test_factory_rejects_unknown_urls() -> None:
    for url in ("ftp://host/x", "s3://", "file://remote-host/x"):
        with pytest.raises(StorageError):
            create_artifact_store(url)


def test_result_name() -> None:
    assert result_name("png") == "result.png"
    assert result_name("jpeg") == "result.jpg"
    assert result_name("WEBP") == "result.webp"
    with pytest.raises(ValueError):
        result_name("bmp")


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_list_requests_lists_folders_by_prefix(kind, tmp_path, s3_server):
    if kind == "local":
        store = create_artifact_store(str(tmp_path / "store"))
    else:
        s3_server.client().create_bucket(Bucket="folders")
        store = create_artifact_store("s3://folders/root", endpoint_url=s3_server.endpoint_url,
                                      access_key_id="testing", secret_access_key="testing")
    for folder in ("hash-aa", "hash-bb", "req-1"):
        store.put(folder, "meta.json", b"{}")
    store.put("hash-aa", "other.json", b"{}")
    assert store.list_requests() == ["hash-aa", "hash-bb", "req-1"]
    assert store.list_requests("hash-") == ["hash-aa", "hash-bb"]
