"""A reviewer's decisions: approve (deliver the latest revision) or reject (dead letter with the reason).

Both work on the artifact store alone (the CLI path: ``review.json``, ``meta.json`` and the review index record
the decision). A request that came through the Redis intake — it has a status hash — is then settled through the
very delivery path of a finished run, ``IntakeResource.deliver``: approve delivers the approved (latest) result
once to the results list and the webhook (``RequestStatus.claim_delivery`` keeps it to one message; a request whose
hash already says ``succeeded`` is not delivered again), reject marks it dead and records a dead letter with the
reviewer's reason.
"""

from __future__ import annotations

from typing import Any

from ..names import META_JSON, STATE_NEEDS_REVIEW
from ..storage import get_json, put_json
from ..storage.base import ArtifactStore
from . import state as review_state
from .rerender import load_meta
from .state import UnknownRequest, WrongState


def _pending(store: ArtifactStore, request_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    meta = load_meta(store, request_id)
    record = review_state.load(store, request_id)
    if record is None:
        raise UnknownRequest(f"request {request_id} is not under review")
    if record["state"] != STATE_NEEDS_REVIEW:
        decision = record.get("decision") or {}
        raise WrongState(f"request {request_id} is {record['state']}"
                         + (f" (by {decision.get('by')} at {decision.get('at')})" if decision else "")
                         + ", not waiting for review")
    return meta, record


def _outcome(store: ArtifactStore, request_id: str, meta: dict[str, Any], error: dict[str, Any] | None
             ) -> dict[str, Any]:
    """The outcome shape ``IntakeResource.deliver`` takes (``pipeline.stages.outcome``)."""
    request = meta.get("request") or {}
    result = meta.get("result")
    result_url = result
    name = next((n for n in (meta.get("artifacts") or {}) if n.startswith("result.")), None)
    if result and name and hasattr(store, "public_url"):
        try:
            result_url = store.public_url(request_id, name)
        except Exception:  # an unsignable URL still leaves the stored URI
            result_url = result
    return {"request_id": request_id, "status": "failed" if error else "succeeded", "review": None,
            "result": None if error else result, "result_url": None if error else result_url,
            "meta": store.uri(request_id, META_JSON), "error": error, "reused_from": None,
            "callback_url": request.get("callback_url"), "request": request}


def _intake_state(intake: Any, request_id: str) -> dict[str, Any] | None:
    return intake.status().get(request_id) if intake is not None else None


def _decide(store: ArtifactStore, request_id: str, *, state: str, by: str, note: str, intake: Any,
            error: dict[str, Any] | None) -> dict[str, Any]:
    with review_state.request_lock(store, request_id):
        meta, record = _pending(store, request_id)
        decision = {"state": state, "by": by, "at": review_state.now(), "note": note,
                    "revision": int(record["revision"])}
        status = _intake_state(intake, request_id)
        delivered = False
        # Deliver before recording the decision: a failed delivery (Redis down) leaves the request pending, to be
        # approved again; a hash that already says so means an earlier attempt delivered it.
        if status is not None and status.get("state") == STATE_NEEDS_REVIEW:
            intake.deliver([_outcome(store, request_id, meta, error)], status.get("run_id") or f"review:{request_id}")
            delivered = True
        meta["status"] = "succeeded" if state == review_state.APPROVED else review_state.REJECTED
        meta["review"] = {**(meta.get("review") or {}), **decision}
        if error:
            meta["error"] = error
        put_json(store, request_id, META_JSON, meta)
        record["state"] = state
        record["decision"] = decision
        record["history"].append({"revision": record["revision"], "at": decision["at"], "by": by, "what": state,
                                  "note": note})
        review_state.save(store, record)
        return {"request_id": request_id, "state": state, "revision": record["revision"],
                "result": meta.get("result"), "delivered_through_intake": delivered}


def approve(store: ArtifactStore, request_id: str, *, by: str = "reviewer", note: str = "",
            intake: Any = None) -> dict[str, Any]:
    """Release the latest revision: ``meta.json`` status succeeded; delivered once when it came through Redis."""
    return _decide(store, request_id, state=review_state.APPROVED, by=by, note=note, intake=intake, error=None)


def remember_corrections(store: ArtifactStore, request_id: str, memory: Any) -> int:
    """Add the approved revision's reviewer-corrected blocks (``via.origin == "reviewer"`` in ``translation.json``)
    to ``memory`` in the request's glossary scope; the number of entries written."""
    from ..names import TRANSLATION_JSON

    meta = load_meta(store, request_id)
    translation = get_json(store, request_id, TRANSLATION_JSON)
    scope = ((meta.get("request") or {}).get("options") or {}).get("glossary_scope") or ""
    source_lang, target_lang = translation.get("source_lang", ""), translation.get("target_lang", "")
    written = 0
    for pair in translation.get("pairs", []):
        if (pair.get("via") or {}).get("origin") == "reviewer" and pair.get("source") and pair.get("translation"):
            memory.add(pair["source"], pair["translation"], source_lang, target_lang, scope=scope, origin="reviewer")
            written += 1
    return written


def reject(store: ArtifactStore, request_id: str, *, reason: str, by: str = "reviewer",
           intake: Any = None) -> dict[str, Any]:
    """Refuse the result: ``meta.json`` status rejected with the reason; through Redis, a dead letter."""
    if not reason.strip():
        raise WrongState("a rejection needs a reason")
    error = {"stage": "review", "reason": f"rejected by {by}: {reason.strip()}", "error": "Rejected",
             "transient": False}
    return _decide(store, request_id, state=review_state.REJECTED, by=by, note=reason.strip(), intake=intake,
                   error=error)


def review_details(store: ArtifactStore, request_id: str) -> dict[str, Any]:
    """What a review page shows for one request: the record and, per block, its box, source and translation."""
    from ..names import OCR_JSON, TRANSLATION_JSON

    meta = load_meta(store, request_id)
    record = review_state.load(store, request_id) or review_state.new_record(request_id, meta,
                                                                            meta.get("status", ""))
    ocr = get_json(store, request_id, OCR_JSON)
    pairs = get_json(store, request_id, TRANSLATION_JSON).get("pairs", [])
    blocks = [{"block": i, "bbox": block.get("bbox"), "source": block.get("text"),
               "translation": pairs[i]["translation"] if i < len(pairs) else "",
               "override": (record.get("overrides") or {}).get(str(i))}
              for i, block in enumerate(ocr.get("blocks", []))]
    return {**record, "blocks": blocks, "result": meta.get("result"), "status": meta.get("status"),
            "revisions": [h for h in record.get("history", []) if "changes" in h or h.get("by") == "pipeline"]}
