"""Fetch stage: download image bytes safely (URL policy, limits, retries) and normalise them to RGB + PNG."""

from imgtrans_pipeline.engines.fetch.downloader import (
    Downloader,
    FetchSettings,
    parse_retry_after,
    redact_url,
)
from imgtrans_pipeline.engines.fetch.normalize import (
    DEFAULT_MAX_PIXELS,
    PNG_COMPRESS_LEVEL,
    SUPPORTED_FORMATS,
    normalize_image,
    sniff_format,
)
from imgtrans_pipeline.engines.fetch.policy import PolicyResolver, UrlPolicy, blocked_reason

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "PNG_COMPRESS_LEVEL",
    "SUPPORTED_FORMATS",
    "Downloader",
    "FetchSettings",
    "PolicyResolver",
    "UrlPolicy",
    "blocked_reason",
    "normalize_image",
    "parse_retry_after",
    "redact_url",
    "sniff_format",
]
