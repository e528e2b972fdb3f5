"""The work item: everything known about one request as it moves through the stages."""

from __future__ import annotations

import dataclasses
import logging
import traceback
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import PipelineError
from ..core.logs import log_event
from ..core.request import TranslationRequest
from ..core.types import InpaintResult, OcrResult, RenderedImage, SourceImage, TranslationResult

logger = logging.getLogger(__name__)


@dataclass
class WorkItem:
    request: TranslationRequest
    source: SourceImage | None = None
    ocr: OcrResult | None = None
    source_lang: str | None = None  # resolved language (request's, or detected by OCR when it said 'auto')
    translation: TranslationResult | None = None
    inpainted: InpaintResult | None = None
    rendered: RenderedImage | None = None
    failure: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    engines: dict[str, str] = field(default_factory=dict)
    result_uri: str | None = None
    reused_from: str | None = None  # request whose stored result answered this one (dedupe)
    quality: dict[str, Any] | None = None  # score 0..1 with its reasons and components
    # Review: per-block render overrides (text, font_px, color, keep_original) of a re-render; the quality gate's
    # verdict (state needs_review, score, threshold, reasons) while the result waits for a reviewer; and what the
    # revision being published is (number, who changed what).
    overrides: list[dict[str, Any] | None] | None = None
    review: dict[str, Any] | None = None
    revision: dict[str, Any] | None = None
    # Content inspection: rules used, matches (rule, category, action, text, block, box), verdict, sides inspected.
    inspection: dict[str, Any] | None = None

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def needs_work(self) -> bool:
        """Still to be computed: not failed, and not answered from an earlier identical request."""
        return self.failure is None and self.reused_from is None

    @property
    def inspect_only(self) -> bool:
        """An inspect-only request (options.mode "inspect"): download -> OCR -> inspection, nothing translated."""
        return self.request.options.mode == "inspect"

    @property
    def status(self) -> str:
        """succeeded, failed, or needs_review (a result held by the quality gate until a reviewer decides)."""
        if self.failure is not None:
            return "failed"
        return "needs_review" if self.review is not None else "succeeded"

    @property
    def failed_transiently(self) -> bool:
        return self.failure is not None and bool(self.failure.get("transient"))

    def fail(self, error: BaseException, stage: str) -> None:
        """Record ``error`` as this request's failure in ``stage``: where it happened, whatever its class says
        (a storage error while writing ocr.json is an OCR-stage failure, retried with the OCR step)."""
        if isinstance(error, PipelineError):
            info = {**error.to_dict(), "stage": stage}
        else:
            # An unexpected exception is a bug or an engine crash: record it permanently with its type, and log
            # the traceback so it can be fixed; retrying the same input would crash the same way.
            info = {"stage": stage, "error": type(error).__name__, "reason": f"{type(error).__name__}: {error}",
                    "transient": False}
            logger.error("unexpected error in %s for %s:\n%s", stage, self.request_id,
                         "".join(traceback.format_exception(error)))
        self.failure = info
        log_event(logger, logging.WARNING, "request.failed", request_id=self.request_id, stage=stage,
                  reason=info["reason"], transient=info["transient"])


def new_items(requests: list[TranslationRequest]) -> list[WorkItem]:
    return [WorkItem(request=r) for r in requests]


def copy_items(items: list[WorkItem]) -> list[WorkItem]:
    """Shallow copies that share the big pixel arrays: a step must not mutate its inputs (two branches,
    translate and inpaint, and a retried attempt would otherwise see each other's changes)."""
    return [dataclasses.replace(item, timings=dict(item.timings), artifacts=dict(item.artifacts),
                                engines=dict(item.engines)) for item in items]


def merge_branches(translated: list[WorkItem], inpainted: list[WorkItem]) -> list[WorkItem]:
    """Join the translate and inpaint branches (which ran on copies of the same items) back into one list."""
    by_id = {item.request_id: item for item in inpainted}
    merged: list[WorkItem] = []
    for item in translated:
        other = by_id[item.request_id]
        item.inpainted = other.inpainted
        item.artifacts.update(other.artifacts)
        item.engines.update(other.engines)
        for stage, seconds in other.timings.items():
            item.timings.setdefault(stage, seconds)
        if item.failure is None and other.failure is not None:
            item.failure = other.failure
        merged.append(item)
    return merged


def failure_summary(items: list[WorkItem], *, limit: int = 50) -> str | None:
    """"2 of 8 request(s) failed:" and one line per failed request, or None when all succeeded."""
    failed = [item for item in items if not item.ok]
    if not failed:
        return None
    lines = [f"{item.request_id}: [{item.failure['stage']}] {item.failure['reason']}"  # type: ignore[index]
             for item in failed[:limit]]
    more = [f"... and {len(failed) - limit} more"] if len(failed) > limit else []
    return f"{len(failed)} of {len(items)} request(s) failed:\n" + "\n".join(lines + more)
