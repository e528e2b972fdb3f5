"""Errors every stage raises, so callers can tell a bad request from a passing outage.

A ``PipelineError`` carries the stage it happened in, a human-readable reason and whether retrying could help.
Permanent errors (corrupt image, unsupported language pair, 404) end a request as a recorded failure at once;
transient ones (timeouts, 429/5xx, connection resets, an API that answered garbage) are retried first.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base error: ``stage`` names where it happened, ``transient`` says whether a retry may succeed."""

    stage: str = "pipeline"
    transient: bool = False

    def __init__(self, reason: str, *, stage: str | None = None, transient: bool | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if stage is not None:
            self.stage = stage
        if transient is not None:
            self.transient = transient

    def to_dict(self) -> dict[str, object]:
        return {
            "stage": self.stage,
            "error": type(self).__name__,
            "reason": self.reason,
            "transient": self.transient,
        }


class InvalidRequest(PipelineError):
    """A request field is missing or malformed; ``field`` names it."""

    stage = "request"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid request field '{field}': {reason}")
        self.field = field


class UnsupportedLanguagePair(PipelineError):
    """No configured engine translates this pair; never silently replaced by another language."""

    stage = "translate"

    def __init__(self, source_lang: str, target_lang: str, engine: str, detail: str = "") -> None:
        message = f"engine '{engine}' does not translate {source_lang} -> {target_lang}"
        super().__init__(message + (f" ({detail})" if detail else ""))
        self.source_lang = source_lang
        self.target_lang = target_lang


class FetchError(PipelineError):
    """The image could not be obtained (404, refused address, too large, unreachable)."""

    stage = "download"


class URLNotAllowed(FetchError):
    """The URL's scheme or resolved address is refused by the URL policy (SSRF guard)."""


class ImageError(PipelineError):
    """The bytes are not a decodable image, or the image breaks a limit (pixels, format)."""

    stage = "download"


class ImageTooLarge(ImageError):
    """Decompression-bomb guard: the image has more pixels than allowed."""


class EngineError(PipelineError):
    """An engine failed to load or run (missing model file, bad model, runtime error)."""


class TranslationError(PipelineError):
    """The translator answered something unusable (wrong count, empty output) even after retries."""

    stage = "translate"


class StorageError(PipelineError):
    """The artifact store could not read or write an object."""

    stage = "publish"


class InspectionRejected(PipelineError):
    """Content inspection found text a ``reject`` rule forbids; ``rule`` names the first rule that fired."""

    stage = "inspect"

    def __init__(self, reason: str, *, rule: str, matches: list[dict[str, object]]) -> None:
        super().__init__(reason)
        self.rule = rule
        self.matches = matches

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "rule": self.rule}
