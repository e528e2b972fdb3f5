"""The translation request: what a producer asks for, validated with errors that name the field."""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .errors import InvalidRequest
from .languages import AUTO, normalize_language

_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_SUPPORTED_SCHEMES = {"http", "https", "file", "s3"}
_OUTPUT_FORMATS = {"png", "jpeg", "webp"}
_SCOPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
MODES = ("translate", "inspect")  # inspect: download -> OCR -> content inspection, findings only
# What a request may say about the product its image shows; LLM engines pass it on to the model.
CONTEXT_KEYS = ("title", "category", "brand", "text")
MAX_CONTEXT_CHARS = 2000


@dataclass(frozen=True)
class RequestOptions:
    """Per-request knobs; every field has a safe default."""

    output_format: str = "png"
    jpeg_quality: int = 92
    force: bool = False
    glossary: dict[str, str] = field(default_factory=dict)
    # A catalogue or shop id: selects that scope's glossary entries and translation memory (then the global ones).
    glossary_scope: str = ""
    # Product title, category, brand and free text ("text"): a plain string given by a caller becomes {"text": ...}.
    context: dict[str, str] = field(default_factory=dict)
    mode: str = "translate"  # "inspect": findings of the content inspection only, no translation or result image

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TranslationRequest:
    request_id: str
    image_url: str
    target_lang: str
    source_lang: str = AUTO
    options: RequestOptions = field(default_factory=RequestOptions)
    priority: int = 0
    callback_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.callback_url is None:
            data.pop("callback_url")
        return data


def _parse_options(raw: Any) -> RequestOptions:
    if raw is None:
        return RequestOptions()
    if not isinstance(raw, dict):
        raise InvalidRequest("options", "must be an object")
    unknown = set(raw) - {"output_format", "jpeg_quality", "force", "glossary", "context", "glossary_scope", "mode"}
    if unknown:
        raise InvalidRequest("options", f"unknown option(s): {', '.join(sorted(unknown))}")
    fmt = str(raw.get("output_format", "png")).lower()
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt not in _OUTPUT_FORMATS:
        raise InvalidRequest("options.output_format", f"'{fmt}' is not one of {sorted(_OUTPUT_FORMATS)}")
    quality = raw.get("jpeg_quality", 92)
    if not isinstance(quality, int) or isinstance(quality, bool) or not 1 <= quality <= 100:
        raise InvalidRequest("options.jpeg_quality", "must be an integer from 1 to 100")
    force = raw.get("force", False)
    if not isinstance(force, bool):
        raise InvalidRequest("options.force", "must be true or false")
    glossary = raw.get("glossary", {}) or {}
    if not isinstance(glossary, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in glossary.items()
    ):
        raise InvalidRequest("options.glossary", "must map non-empty source terms to translation strings")
    scope = validate_scope(raw.get("glossary_scope") or "", field="options.glossary_scope")
    mode = raw.get("mode") or "translate"
    if mode not in MODES:
        raise InvalidRequest("options.mode", f"must be one of {', '.join(MODES)} (got {mode!r})")
    return RequestOptions(output_format=fmt, jpeg_quality=quality, force=force, glossary=dict(glossary),
                          context=parse_context(raw.get("context")), glossary_scope=scope, mode=mode)


def parse_context(raw: Any) -> dict[str, str]:
    """``options.context`` as a dict of the known keys: a string is free text; empty values are dropped."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        raw = {"text": raw}
    if not isinstance(raw, dict):
        raise InvalidRequest("options.context", "must be a string or an object with "
                             f"{', '.join(CONTEXT_KEYS)}")
    unknown = set(raw) - set(CONTEXT_KEYS)
    if unknown:
        raise InvalidRequest("options.context", f"unknown key(s): {', '.join(sorted(map(str, unknown)))} "
                             f"(known: {', '.join(CONTEXT_KEYS)})")
    context: dict[str, str] = {}
    for key in CONTEXT_KEYS:
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidRequest(f"options.context.{key}", "must be a string")
        if value.strip():
            context[key] = value.strip()
    if sum(len(v) for v in context.values()) > MAX_CONTEXT_CHARS:
        raise InvalidRequest("options.context", f"is longer than {MAX_CONTEXT_CHARS} characters")
    return context


def validate_scope(value: Any, *, field: str) -> str:
    """A catalogue/shop scope id: '' (global) or 1-64 letters, digits, '.', '_', ':' or '-'."""
    if not isinstance(value, str):
        raise InvalidRequest(field, "must be a string")
    value = value.strip()
    if value and not _SCOPE.fullmatch(value):
        raise InvalidRequest(field, f"{value!r} is not a scope id: 1-64 letters, digits, '.', '_', ':' or '-', "
                             "starting with a letter or digit")
    return value


def validate_image_url(url: Any) -> str:
    """Accept http(s)://, file://, s3://bucket/key or a local path; return the URL in canonical form."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequest("image_url", "must be a non-empty string")
    url = url.strip()
    try:
        parsed = urlparse(url)
        parsed.port  # noqa: B018 - urlparse checks brackets, .port checks the port: both raise ValueError
    except ValueError as exc:
        raise InvalidRequest("image_url", f"malformed URL: {exc}") from exc
    scheme = parsed.scheme.lower()
    if scheme == "" or (len(scheme) == 1 and url[1:3] in (":\\", ":/")):
        # A bare local path (or a Windows drive letter): turn it into a file:// URL.
        return Path(url).expanduser().resolve().as_uri()
    if scheme not in _SUPPORTED_SCHEMES:
        raise InvalidRequest("image_url", f"scheme '{scheme}' is not supported (use http, https, file or s3)")
    if scheme in ("http", "https", "s3") and not parsed.netloc:
        raise InvalidRequest("image_url", f"{scheme} URL has no host/bucket")
    if scheme == "s3" and not parsed.path.strip("/"):
        raise InvalidRequest("image_url", "s3 URL has no object key")
    if scheme == "file" and not parsed.path:
        raise InvalidRequest("image_url", "file URL has no path")
    return url


def parse_request(raw: Any) -> TranslationRequest:
    """Validate a request dict (from a queue, the CLI or Launchpad config) into a ``TranslationRequest``."""
    if not isinstance(raw, dict):
        raise InvalidRequest("request", "must be a JSON object")
    known = {"request_id", "image_url", "source_lang", "target_lang", "options", "priority", "callback_url"}
    unknown = set(raw) - known
    if unknown:
        raise InvalidRequest("request", f"unknown field(s): {', '.join(sorted(unknown))}")
    request_id = raw.get("request_id")
    if request_id is None or request_id == "":
        request_id = uuid.uuid4().hex
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        raise InvalidRequest(
            "request_id", "must be 1-128 characters of letters, digits, '.', '_', ':' or '-', starting alphanumeric"
        )
    if "target_lang" not in raw:
        raise InvalidRequest("target_lang", "is required")
    target = normalize_language(raw["target_lang"], field="target_lang")
    source = normalize_language(raw.get("source_lang") or AUTO, field="source_lang", allow_auto=True)
    if source == target:
        raise InvalidRequest("target_lang", f"is the same as source_lang ({source})")
    priority = raw.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise InvalidRequest("priority", "must be an integer")
    callback = raw.get("callback_url")
    if callback is not None:
        try:
            parsed = urlparse(str(callback))
            parsed.port  # noqa: B018 - see validate_image_url
        except ValueError as exc:
            raise InvalidRequest("callback_url", f"malformed URL: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidRequest("callback_url", "must be an http(s) URL")
    return TranslationRequest(
        request_id=request_id,
        image_url=validate_image_url(raw.get("image_url")),
        source_lang=source,
        target_lang=target,
        options=_parse_options(raw.get("options")),
        priority=priority,
        callback_url=callback,
    )


# --- conversions: the other shapes a request takes ---------------------------------------------------------------
# A request travels as a queue message (``parse_request`` / ``to_dict``: options nested) and as the download op's
# config in a run (the Launchpad shape: options flattened, ``to_config`` / ``request_from_config``).
_CONFIG_OPTIONS = ("output_format", "jpeg_quality", "force", "glossary", "context", "glossary_scope", "mode")


def to_config(request: TranslationRequest) -> dict[str, Any]:
    """The request in the download op's config shape (what the Launchpad shows and the sensor submits)."""
    config: dict[str, Any] = {"request_id": request.request_id, "image_url": request.image_url,
                              "target_lang": request.target_lang, "source_lang": request.source_lang}
    options = request.options.to_dict()
    config.update({name: options[name] for name in _CONFIG_OPTIONS})
    if request.callback_url:
        config["callback_url"] = request.callback_url
    return config


def request_from_config(config: dict[str, Any]) -> TranslationRequest:
    """Validate a request given in the download op's config shape (empty strings mean "not given")."""
    raw: dict[str, Any] = {key: value for key, value in config.items()
                           if key not in _CONFIG_OPTIONS and value not in ("", None)}
    raw["options"] = {key: config[key] for key in _CONFIG_OPTIONS if key in config}
    return parse_request(raw)
