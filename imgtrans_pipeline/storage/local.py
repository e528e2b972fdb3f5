"""Artifact store on the local file system: ``{root}/{request_id}/{name}``.

Writes are atomic (temp file in the same directory, fsync, ``os.replace``) so a crash or a concurrent reader never
sees a half-written artifact: a re-run that checks ``exists()`` to skip a stage must be able to trust the file.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import tempfile
from pathlib import Path

from imgtrans_pipeline.core.errors import StorageError
from imgtrans_pipeline.storage.base import (
    ArtifactNotFound,
    guess_content_type,
    validate_name,
    validate_request_id,
)

logger = logging.getLogger(__name__)

_TEMP_PREFIX = "."  # temp files are hidden; artifact names can never start with "." (see base.validate_name)
_TEMP_SUFFIX = ".tmp"
# Errors a retry may cure (disk momentarily full, I/O hiccup, NFS busy); everything else is permanent.
_TRANSIENT_ERRNOS = {errno.ENOSPC, errno.EIO, errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ESTALE, errno.EDQUOT}


def _storage_error(action: str, path: Path, exc: OSError) -> StorageError:
    transient = exc.errno in _TRANSIENT_ERRNOS
    return StorageError(f"could not {action} {path}: {exc.strerror or exc}", transient=transient)


class LocalArtifactStore:
    """Artifacts as files under ``root``; safe to share between threads and processes (writes are atomic)."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        """``fsync=False`` skips the flush-to-disk (faster; a power cut may then lose the newest artifact)."""
        self.root = Path(root).expanduser().resolve()
        self.fsync = fsync
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _storage_error("create artifact root", self.root, exc) from exc

    def __repr__(self) -> str:
        return f"LocalArtifactStore({str(self.root)!r})"

    def _dir(self, request_id: str) -> Path:
        return self.root / validate_request_id(request_id)

    def path(self, request_id: str, name: str) -> Path:
        """File system path of an artifact (validated: always inside ``root``)."""
        return self._dir(request_id) / validate_name(name)

    def put(self, request_id: str, name: str, data: bytes, content_type: str | None = None) -> str:
        """Atomically write ``data``; ``content_type`` is accepted for interface parity and not stored."""
        del content_type  # the file extension carries it; see guess_content_type
        target = self.path(request_id, name)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"artifact data must be bytes, not {type(data).__name__}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f"{_TEMP_PREFIX}{name}.", suffix=_TEMP_SUFFIX)
        except OSError as exc:
            raise _storage_error("write", target, exc) from exc
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; artifacts are meant to be readable like normal files
            os.replace(tmp, target)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(exc, OSError):
                raise _storage_error("write", target, exc) from exc
            raise
        if self.fsync:
            self._fsync_dir(target.parent)
        logger.debug("stored %s (%d bytes)", target, len(data))
        return target.as_uri()

    @staticmethod
    def _fsync_dir(directory: Path) -> None:
        """Persist the rename itself (the directory entry); best effort, not all file systems allow it."""
        with contextlib.suppress(OSError):
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def get(self, request_id: str, name: str) -> bytes:
        target = self.path(request_id, name)
        try:
            return target.read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactNotFound(request_id, name, str(self.root)) from exc
        except OSError as exc:
            raise _storage_error("read", target, exc) from exc

    def exists(self, request_id: str, name: str) -> bool:
        return self.path(request_id, name).is_file()

    def uri(self, request_id: str, name: str) -> str:
        return self.path(request_id, name).as_uri()

    def public_url(self, request_id: str, name: str, expires_in: int | None = None) -> str:
        """Local artifacts have no HTTP address; the file:// URI is the best a caller can get."""
        del expires_in
        return self.uri(request_id, name)

    def content_type(self, request_id: str, name: str) -> str:
        """Content type an HTTP layer should serve the artifact with (derived from the name)."""
        return guess_content_type(validate_name(name))

    def list(self, request_id: str) -> list[str]:
        directory = self._dir(request_id)
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _storage_error("list", directory, exc) from exc
        return sorted(e.name for e in entries if not e.name.startswith(_TEMP_PREFIX) and e.is_file())

    def list_requests(self, starting_with: str = "") -> list[str]:
        """Request folders under the root, optionally only those starting so (backfills, clean-up, debugging)."""
        try:
            return sorted(e.name for e in os.scandir(self.root)
                          if e.is_dir() and not e.name.startswith(".") and e.name.startswith(starting_with))
        except OSError as exc:
            raise _storage_error("list", self.root, exc) from exc

    def delete(self, request_id: str) -> int:
        directory = self._dir(request_id)
        count = len(self.list(request_id))
        try:
            shutil.rmtree(directory)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise _storage_error("delete", directory, exc) from exc
        return count
