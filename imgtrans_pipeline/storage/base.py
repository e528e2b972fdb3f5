"""The artifact store contract: one folder (prefix) per request holding its artifacts.

Every stage writes what it produced under ``{request_id}/{name}`` so a failed request can be inspected and a
re-run can skip the stages whose artifacts already exist. Keys are validated here, in one place, so that no
backend can be tricked into writing outside its root (a request id like ``../../etc`` or ``a/b``).
"""

from __future__ import annotations

import mimetypes
import re
from typing import Protocol, runtime_checkable

from imgtrans_pipeline.core.errors import StorageError

# The artifacts of one request. ``result.<ext>`` depends on the requested output format: see ``result_name``.
SOURCE = "source.png"
OCR = "ocr.json"
TRANSLATION = "translation.json"
MASK = "mask.png"
INPAINTED = "inpainted.png"
META = "meta.json"

_RESULT_EXT = {"png": "png", "jpeg": "jpg", "jpg": "jpg", "webp": "webp"}

# Same alphabet as core/request.py's request-id rule; a leading alphanumeric excludes "." and ".." outright.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
# Artifact names are flat file names: no separators, no hidden/temp-file prefix (the local store uses ".").
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

_CONTENT_TYPES = {
    ".json": "application/json; charset=utf-8",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".txt": "text/plain; charset=utf-8",
}


class InvalidArtifactKey(StorageError):
    """A request id or artifact name that could escape the store's root or is otherwise unusable (permanent)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, transient=False)


class ArtifactNotFound(StorageError):
    """The artifact does not exist (permanent: retrying will not make it appear)."""

    def __init__(self, request_id: str, name: str, where: str) -> None:
        super().__init__(f"artifact '{request_id}/{name}' not found in {where}", transient=False)
        self.request_id = request_id
        self.name = name


def validate_request_id(request_id: str) -> str:
    """Return ``request_id`` unchanged if it is safe as one path segment; raise ``InvalidArtifactKey`` otherwise.

    Rejecting (rather than silently rewriting) keeps distinct ids from colliding on the same folder.
    """
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        raise InvalidArtifactKey(
            f"invalid request id {request_id!r}: must be 1-128 characters of letters, digits, '.', '_', ':' or '-', "
            "starting alphanumeric (no slashes, no '..')"
        )
    return request_id


def validate_name(name: str) -> str:
    """Return ``name`` unchanged if it is a flat artifact file name; raise ``InvalidArtifactKey`` otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidArtifactKey(
            f"invalid artifact name {name!r}: must be 1-128 characters of letters, digits, '.', '_' or '-', "
            "starting alphanumeric (no slashes)"
        )
    return name


def result_name(output_format: str) -> str:
    """Artifact name of the final image for an output format (``png`` → ``result.png``, ``jpeg`` → ``result.jpg``)."""
    fmt = output_format.lower()
    if fmt not in _RESULT_EXT:
        raise ValueError(f"unknown output format {output_format!r}; expected one of png, jpeg, webp")
    return f"result.{_RESULT_EXT[fmt]}"


def guess_content_type(name: str) -> str:
    """Content type stored with an artifact, from its extension; so browsers render published results directly."""
    dot = name.rfind(".")
    ext = name[dot:].lower() if dot >= 0 else ""
    if ext in _CONTENT_TYPES:
        return _CONTENT_TYPES[ext]
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


@runtime_checkable
class ArtifactStore(Protocol):
    """What every backend offers. All methods raise ``StorageError`` (``transient`` set) and never other errors."""

    def put(self, request_id: str, name: str, data: bytes, content_type: str | None = None) -> str:
        """Store ``data`` as ``{request_id}/{name}`` (replacing any previous version); return its URI.

        ``content_type`` defaults to a guess from the name's extension.
        """
        ...

    def get(self, request_id: str, name: str) -> bytes:
        """The stored bytes; ``ArtifactNotFound`` if absent."""
        ...

    def exists(self, request_id: str, name: str) -> bool:
        ...

    def uri(self, request_id: str, name: str) -> str:
        """Stable identifier of the artifact (``file://...`` or ``s3://bucket/key``), whether or not it exists."""
        ...

    def public_url(self, request_id: str, name: str, expires_in: int | None = None) -> str:
        """A URL a client can fetch the artifact from (public CDN URL, presigned GET, or file:// for local)."""
        ...

    def list(self, request_id: str) -> list[str]:
        """Sorted names of the artifacts stored for a request (empty if none)."""
        ...

    def list_requests(self, starting_with: str = "") -> list[str]:
        """Sorted request folders in the store, optionally only those whose name starts with ``starting_with``."""
        ...

    def delete(self, request_id: str) -> int:
        """Remove every artifact of a request; return how many were removed (0 if none)."""
        ...
