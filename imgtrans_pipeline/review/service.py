"""The review API a page, the CLI and the import call: one object over one configuration (artifact store,
Dagster instance, Redis intake when configured). Plain Python, no web code.

``ReviewService.rerender`` starts a ``rerender_request`` run in this process (recorded in the Dagster instance,
tagged with the request id, so it shows in the UI beside the request's first run); a ``ReviewError`` from inside
the run comes back as the same exception class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import names
from ..core.settings import Settings, get_settings
from . import actions
from . import state as review_state
from .rerender import BlockEdit, RerenderResult
from .state import ERRORS, ReviewError


class ReviewService:
    def __init__(self, settings: Settings | None = None, *, instance: Any = None, intake: Any = None) -> None:
        from ..orchestration.definitions import build_resources

        self.settings = settings or get_settings()
        self._resources = build_resources(self.settings)
        self.store = self._resources["artifacts"].store()  # type: ignore[attr-defined]
        self._instance = instance
        # Requests from an intake (Redis, Kafka) are settled through it; without one nothing touches a queue.
        queued = self.settings.intake.enabled or self.settings.kafka.enabled
        self.intake = intake if intake is not None else (self._resources["intake"] if queued else None)

    @property
    def instance(self) -> Any:
        if self._instance is None:
            from ..orchestration.instance import dagster_instance

            self._instance = dagster_instance()
        return self._instance

    # --- reading ------------------------------------------------------------------------------------------------
    def pending(self, state: str | None = names.STATE_NEEDS_REVIEW) -> list[dict[str, Any]]:
        """The review queue: index entries (request id, state, revision, score, reasons, created time)."""
        return review_state.list_reviews(self.store, state)

    def details(self, request_id: str) -> dict[str, Any]:
        return actions.review_details(self.store, request_id)

    # --- changing -----------------------------------------------------------------------------------------------
    def rerender(self, request_id: str, edits: Sequence[BlockEdit], *, expected_revision: int | None = None,
                 by: str = "reviewer", note: str = "") -> RerenderResult:
        from ..orchestration.definitions import build_definitions

        job = build_definitions(self.settings).resolve_job_def(names.RERENDER_JOB)
        config = {"request_id": request_id, "expected_revision": expected_revision or 0, "changed_by": by,
                  "note": note, "edits": [{k: v for k, v in edit.__dict__.items() if v is not None}
                                          for edit in edits]}
        result = job.execute_in_process(
            run_config={"ops": {names.RERENDER: {"config": config}},
                        "loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            instance=self.instance, raise_on_error=False,
            tags={names.TAG_SOURCE: names.SOURCE_REVIEW, names.TAG_FIRST_REQUEST: request_id})
        if not result.success:
            raise _run_error(result, request_id)
        output = result.output_for_node(names.RERENDER)
        return RerenderResult(**output)

    def approve(self, request_id: str, *, by: str = "reviewer", note: str = "") -> dict[str, Any]:
        """Release the latest revision, and remember its corrected blocks in the translation memory (when one is
        configured), so every later request with the same text gets the reviewer's translation before any engine."""
        outcome = actions.approve(self.store, request_id, by=by, note=note, intake=self.intake)
        memory = self.settings.translate.memory
        if memory:
            from ..engines.translate.memory import TranslationMemory

            outcome["remembered"] = actions.remember_corrections(self.store, request_id, TranslationMemory(memory))
        return outcome

    def reject(self, request_id: str, *, reason: str, by: str = "reviewer") -> dict[str, Any]:
        return actions.reject(self.store, request_id, reason=reason, by=by, intake=self.intake)


def _run_error(result: Any, request_id: str) -> ReviewError:
    for event in result.all_events:
        if event.is_failure and event.step_failure_data is not None:
            data = event.step_failure_data
            kind = None
            if data.user_failure_data is not None:
                kind = getattr(data.user_failure_data.metadata.get("error_kind"), "value", None)
            message = (data.user_failure_data.description if data.user_failure_data is not None
                       and data.user_failure_data.description else data.error.message.strip().splitlines()[0])
            return ERRORS.get(kind or "", ReviewError)(message)
    return ReviewError(f"re-render run {result.run_id} of {request_id} failed")
