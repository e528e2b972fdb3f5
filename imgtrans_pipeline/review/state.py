"""Where the review state of a request lives: in the artifact store, beside its artifacts (no Redis needed).

* ``<request>/review.json`` — the request's review record: ``state`` (needs_review → approved | rejected; a request
  re-rendered without ever being held has ``succeeded``), the current ``revision`` (1 = what the pipeline made),
  its ``score`` and ``reasons``, the render ``overrides`` per block, ``history`` (one entry per revision: who, when,
  which blocks changed from what to what) and the reviewer's ``decision``.
* ``review-index/<digest>.json`` — one small entry per request that ever entered review (state, revision, score,
  reasons, created time), so a queue page or an export lists the requests to review without reading every
  request folder. Entries are rewritten on every change of the record, never deleted (approved and rejected ones
  say so).
* ``<request>/rev-<n>.<name>`` — revision ``n``'s ``result.*``, ``meta.json`` and ``translation.json``, copied
  aside before revision ``n + 1`` replaces them; the un-prefixed artifacts are always the latest revision.

Changes to one request (re-render, approve, reject) run under :func:`request_lock`: a lock file under the local
store's root (``flock``, so separate processes on one host are serialised too) plus a lock per request in this
process. Inside it, the revision is read, compared with what the caller saw (compare-and-set) and advanced.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..names import REVIEW_INDEX_FOLDER, REVIEW_JSON, STATE_NEEDS_REVIEW
from ..storage import get_json, put_json
from ..storage.base import ArtifactNotFound, ArtifactStore

APPROVED = "approved"
REJECTED = "rejected"
SUCCEEDED = "succeeded"  # re-rendered without having been held by the gate
REVIEW_STATES = (STATE_NEEDS_REVIEW, APPROVED, REJECTED, SUCCEEDED)
LOCK_TIMEOUT_S = 120.0


class ReviewError(Exception):
    """A review action that cannot be done as asked (the message says why; nothing was changed)."""

    kind = "review"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownRequest(ReviewError):
    kind = "unknown_request"


class UnknownBlock(ReviewError):
    kind = "unknown_block"


class RevisionConflict(ReviewError):
    """The request changed since the caller read it (another reviewer, or an import of a newer export)."""

    kind = "revision_conflict"


class WrongState(ReviewError):
    kind = "wrong_state"


ERRORS = {cls.kind: cls for cls in (ReviewError, UnknownRequest, UnknownBlock, RevisionConflict, WrongState)}


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def index_entry_name(request_id: str) -> str:
    # Request ids may hold ':' which artifact names may not: the entry is named by a digest, the id is inside.
    return hashlib.sha256(request_id.encode("utf-8")).hexdigest()[:32] + ".json"


def load(store: ArtifactStore, request_id: str) -> dict[str, Any] | None:
    try:
        return get_json(store, request_id, REVIEW_JSON)
    except ArtifactNotFound:
        return None


def index_entry(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("request_id", "state", "revision", "score", "reasons", "threshold", "created_at", "updated_at",
            "source_lang", "target_lang")
    return {key: record.get(key) for key in keys}


def save(store: ArtifactStore, record: dict[str, Any]) -> None:
    """Write the record, then its index entry (a reader of the index re-checks the record it points at)."""
    record["updated_at"] = now()
    put_json(store, record["request_id"], REVIEW_JSON, record)
    put_json(store, REVIEW_INDEX_FOLDER, index_entry_name(record["request_id"]), index_entry(record))


def new_record(request_id: str, meta: dict[str, Any], state: str) -> dict[str, Any]:
    quality = meta.get("quality") or {}
    review = meta.get("review") or {}
    request = meta.get("request") or {}
    return {"request_id": request_id, "state": state, "revision": 1, "score": quality.get("score"),
            "reasons": list(quality.get("reasons", [])), "threshold": review.get("threshold"),
            "why": review.get("why"), "created_at": meta.get("finished_at") or now(), "updated_at": now(),
            "source_lang": meta.get("source_lang") or request.get("source_lang"),
            "target_lang": request.get("target_lang"), "overrides": {},
            "history": [{"revision": 1, "at": meta.get("finished_at") or now(), "by": "pipeline",
                         "what": "translated"}]}


def enter_review(store: ArtifactStore, request_id: str, meta: dict[str, Any]) -> None:
    """A request the quality gate held: its record (revision 1) and index entry."""
    save(store, new_record(request_id, meta, STATE_NEEDS_REVIEW))


def list_reviews(store: ArtifactStore, state: str | None = STATE_NEEDS_REVIEW) -> list[dict[str, Any]]:
    """Index entries (oldest first), only those in ``state`` unless it is None."""
    entries = []
    for name in store.list(REVIEW_INDEX_FOLDER):
        try:
            entry = get_json(store, REVIEW_INDEX_FOLDER, name)
        except Exception:  # one unreadable entry must not hide the others
            continue
        if state is None or entry.get("state") == state:
            entries.append(entry)
    return sorted(entries, key=lambda e: (e.get("created_at") or "", e.get("request_id") or ""))


_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def request_lock(store: ArtifactStore, request_id: str, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Exclusive access to one request's review state and latest artifacts (module docstring)."""
    key = (repr(store), request_id)
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(key, threading.Lock())
    if not lock.acquire(timeout=timeout_s):
        raise ReviewError(f"request {request_id} is busy (another re-render or decision did not finish in "
                          f"{timeout_s:.0f} s)")
    try:
        root = getattr(store, "root", None)
        if not isinstance(root, Path):  # S3: serialised within this process only (README "Review")
            yield
            return
        path = root / ".locks" / f"{hashlib.sha256(request_id.encode()).hexdigest()[:32]}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ReviewError(f"request {request_id} is locked by another process") from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        lock.release()
