"""The dedupe index: identical requests (image, languages, pipeline version, output variant) answered from the
stored result of the first one, and the catalogue of stored images the backfills read.

Each successfully translated image has a folder ``hash-<sha256>/`` in the artifact store holding one entry per
(source, target, pipeline version, variant digest) it was translated for.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import logging
import time

from .. import PIPELINE_VERSION
from ..core.languages import AUTO
from ..core.logs import log_event
from ..engines.translate.memory import TranslationMemory
from ..names import META_JSON, SOURCE_PNG, index_folder
from ..storage import get_json, put_json
from ..storage.base import ArtifactStore
from .items import WorkItem

logger = logging.getLogger(__name__)


def index_name(source_lang: str, target_lang: str, pipeline_version: str, digest: str) -> str:
    """``<source>.<target>.v<version>.<digest>.json``: dots, because language codes may contain dashes."""
    return f"{source_lang}.{target_lang}.v{pipeline_version}.{digest}.json"


def parse_index_name(name: str) -> tuple[str, str, str] | None:
    """(source, target, pipeline version) of an index entry name, or None for anything else."""
    parts = name.split(".")
    if len(parts) != 5 or parts[-1] != "json" or not parts[2].startswith("v"):
        return None
    return parts[0], parts[1], parts[2][1:]


def dedupe_key(item: WorkItem, variant: str) -> tuple[str, str]:
    """Where the index entry for this item's (image, languages, pipeline version, output variant) lives.

    ``variant`` covers what else changes the output: the translation engine/model (from the caller), and the
    request's glossary, context and output options (added here).
    """
    assert item.source is not None
    options = item.request.options
    key: list[object] = [variant, sorted(options.glossary.items()), options.output_format, options.jpeg_quality]
    if options.context:  # appended only when given, so the index entries of earlier requests keep their keys
        key.append(sorted(options.context.items()))
    if options.glossary_scope:  # appended only when given, so the index entries of earlier requests keep their keys
        key.append(f"scope:{options.glossary_scope}")
    digest = hashlib.sha256(json.dumps(key, ensure_ascii=False).encode()).hexdigest()[:16]
    return index_folder(item.source.content_hash), index_name(item.request.source_lang, item.request.target_lang,
                                                              PIPELINE_VERSION, digest)


def reuse(items: list[WorkItem], store: ArtifactStore, variant: str, memory: TranslationMemory | None = None) -> None:
    """Answer requests whose identical image + languages + pipeline version already succeeded from the stored
    artifacts, without recomputing (seed 002's dedupe by image hash), unless the request says ``force``.

    A stored result older than a change to the translation memory entries its request would use (its target
    language and scope) is not reused: the memory may now translate some of its texts differently."""
    for item in items:
        if not item.needs_work or item.source is None or item.request.options.force or item.inspect_only:
            continue  # an inspect-only request wants findings, not a stored translation
        folder, name = dedupe_key(item, variant)
        try:
            if not store.exists(folder, name):
                continue
            prior = get_json(store, folder, name)
            if prior.get("request_id") == item.request_id or not prior.get("result"):
                continue  # re-running the very same request recomputes it
            if memory is not None and _memory_changed(memory, item, prior):
                log_event(logger, logging.INFO, "dedupe.stale", request_id=item.request_id,
                          prior=prior.get("request_id"), reason="translation memory changed since")
                continue
        except Exception as error:  # a broken index entry only costs a recomputation
            logger.warning("dedupe index unreadable for %s: %s", item.request_id, error)
            continue
        item.reused_from = prior["request_id"]
        item.result_uri = prior["result"]
        item.artifacts["result"] = prior["result"]
        item.source_lang = prior.get("source_lang")
        log_event(logger, logging.INFO, "dedupe.hit", request_id=item.request_id, reused_from=item.reused_from)


def _memory_changed(memory: TranslationMemory, item: WorkItem, prior: dict[str, object]) -> bool:
    recorded = prior.get("recorded_ts")
    if not isinstance(recorded, (int, float)):  # entries written before the memory existed: the time string
        stamp = prior.get("recorded_at")
        recorded = calendar.timegm(time.strptime(str(stamp), "%Y-%m-%dT%H:%M:%SZ")) if stamp else 0.0
    source = item.request.source_lang if item.request.source_lang != AUTO else None
    return memory.changed_since(float(recorded), item.request.target_lang, item.request.options.glossary_scope,
                                source)


def record(items: list[WorkItem], store: ArtifactStore, variant: str) -> None:
    """Index each freshly computed success by its dedupe key, so identical later requests reuse it."""
    for item in items:
        # A result waiting for (or changed by) a reviewer is no answer for other requests.
        if (not item.needs_work or item.source is None or item.result_uri is None or item.review is not None
                or item.revision is not None):
            continue
        folder, name = dedupe_key(item, variant)
        try:
            put_json(store, folder, name, {"request_id": item.request_id, "result": item.result_uri,
                                           "meta": item.artifacts.get(META_JSON), "source_lang": item.source_lang,
                                           "target_lang": item.request.target_lang,
                                           "pipeline_version": PIPELINE_VERSION,
                                           "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                           # No later than the translate stage read the memory (``reuse``).
                                           "recorded_ts": time.time() - sum(item.timings.values())})
        except Exception as error:  # the result itself is stored; only reuse is lost
            logger.warning("could not record dedupe entry for %s: %s", item.request_id, error)


def stored_source_uri(store: ArtifactStore, content_hash: str) -> str | None:
    """Where an earlier request stored this image: any index entry of the hash names its request."""
    folder = index_folder(content_hash)
    for name in store.list(folder):
        entry = get_json(store, folder, name)
        request_id = entry.get("request_id")
        if request_id and store.exists(request_id, SOURCE_PNG):
            return store.uri(request_id, SOURCE_PNG)
    return None
