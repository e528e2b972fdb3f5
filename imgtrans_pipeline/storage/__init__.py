"""Artifact stores: where each request's intermediate and final artifacts live.

``create_artifact_store(url)`` picks the backend from a URL so deployments switch between a local folder and
S3 / R2 / MinIO by configuration alone::

    create_artifact_store("./out/artifacts")              # local folder
    create_artifact_store("file:///var/lib/imgtrans")     # same, as a URL
    create_artifact_store("s3://bucket/some/prefix")      # S3 API; endpoint/region/public URL as options
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from imgtrans_pipeline.core.errors import StorageError
from imgtrans_pipeline.storage.base import (
    INPAINTED,
    MASK,
    META,
    OCR,
    SOURCE,
    TRANSLATION,
    ArtifactNotFound,
    ArtifactStore,
    InvalidArtifactKey,
    guess_content_type,
    result_name,
    validate_name,
    validate_request_id,
)
from imgtrans_pipeline.storage.local import LocalArtifactStore
from imgtrans_pipeline.storage.s3 import S3ArtifactStore

__all__ = [
    "INPAINTED",
    "MASK",
    "META",
    "OCR",
    "SOURCE",
    "TRANSLATION",
    "ArtifactNotFound",
    "ArtifactStore",
    "InvalidArtifactKey",
    "LocalArtifactStore",
    "S3ArtifactStore",
    "create_artifact_store",
    "get_json",
    "guess_content_type",
    "put_json",
    "result_name",
    "validate_name",
    "validate_request_id",
]

_LOCAL_OPTIONS = {"fsync"}


def create_artifact_store(url: str | os.PathLike[str], **options: Any) -> ArtifactStore:
    """Build the store a URL names: a local path, ``file://...``, or ``s3://bucket[/prefix]``.

    S3 ``options`` are the keyword arguments of ``S3ArtifactStore`` (the ``s3`` settings section supplies
    endpoint, region, public URL and presign expiry; credentials come from boto3's own AWS_* chain). Options set to
    ``None`` count as not given, so a config layer can pass all its fields through unconditionally.
    """
    options = {k: v for k, v in options.items() if v is not None}
    text = os.fspath(url)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        if not parts.netloc:
            raise StorageError(f"artifact store URL {text!r} has no bucket (expected s3://bucket/prefix)")
        if "presign_expires" in options:
            options["presign_expires"] = int(options["presign_expires"])
        return S3ArtifactStore(parts.netloc, unquote(parts.path).strip("/"), **options)
    if scheme in {"", "file"} or (len(scheme) == 1 and os.name == "nt"):  # "C:\..." parses as scheme "c"
        unknown = set(options) - _LOCAL_OPTIONS
        if unknown:
            raise TypeError(f"options not supported by a local artifact store: {', '.join(sorted(unknown))}")
        if scheme == "file":
            if parts.netloc not in {"", "localhost"}:
                raise StorageError(f"file URL {text!r} names a remote host; only local paths are supported")
            path = Path(url2pathname(parts.path))
        else:
            path = Path(text)
        return LocalArtifactStore(path, **options)
    raise StorageError(f"unsupported artifact store URL {text!r}: use a local path, file://... or s3://bucket/prefix")


def put_json(store: ArtifactStore, request_id: str, name: str, obj: Any, *, sort_keys: bool = True) -> str:
    """Store ``obj`` as UTF-8 JSON (CJK kept readable, not \\u-escaped); objects with ``to_dict()`` are converted.

    Keys are sorted by default so the same content always produces the same bytes (stable diffs and ETags);
    pass ``sort_keys=False`` where order carries meaning for human readers.
    """
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        obj = obj.to_dict()
    try:
        text = json.dumps(obj, ensure_ascii=False, sort_keys=sort_keys, indent=2, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StorageError(f"could not encode {request_id}/{name} as JSON: {exc}", transient=False) from exc
    return store.put(request_id, name, (text + "\n").encode("utf-8"), "application/json; charset=utf-8")


def get_json(store: ArtifactStore, request_id: str, name: str) -> Any:
    """Load a JSON artifact; a corrupt one is a permanent ``StorageError`` (``ArtifactNotFound`` if missing)."""
    data = store.get(request_id, name)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise StorageError(f"artifact {request_id}/{name} is not valid UTF-8 JSON: {exc}", transient=False) from exc
