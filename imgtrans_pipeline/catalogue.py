"""The catalogue of stored images, read from the artifact store's dedupe index (``hash-<sha256>/`` folders).

Every successfully translated image has an index folder named by its content hash, holding one entry per
(source, target, pipeline version, options) it was translated for. Backfills ask it what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import PIPELINE_VERSION
from .names import HASH_FOLDER_PREFIX, index_folder
from .pipeline.dedupe import parse_index_name
from .storage.base import ArtifactStore


@dataclass(frozen=True)
class MissingTranslation:
    content_hash: str
    source_lang: str
    target_lang: str
    reason: str  # "new target" | "older pipeline version"


def stored_hashes(store: ArtifactStore) -> list[str]:
    return [folder[len(HASH_FOLDER_PREFIX):] for folder in store.list_requests(HASH_FOLDER_PREFIX)]


def missing_translations(store: ArtifactStore, targets: list[str],
                         pipeline_version: str = PIPELINE_VERSION) -> list[MissingTranslation]:
    """For each stored image: the configured targets it lacks, or has only from an older pipeline version.

    The source language is the one the image was requested with (most often), so a backfill reads it the same
    way; an image is never "translated" into its own source language.
    """
    missing: list[MissingTranslation] = []
    for content_hash in stored_hashes(store):
        entries = [parsed for name in store.list(index_folder(content_hash)) if (parsed := parse_index_name(name))]
        if not entries:
            continue
        sources = [source for source, _, _ in entries]
        source = max(set(sources), key=sources.count)
        for target in targets:
            if target == source:
                continue
            versions = {version for src, tgt, version in entries if tgt == target}
            if pipeline_version in versions:
                continue
            reason = "older pipeline version" if versions else "new target"
            missing.append(MissingTranslation(content_hash, source, target, reason))
    return missing
