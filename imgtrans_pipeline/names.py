"""Every name the layers share: stages, jobs, assets, checks, tags, pools, artifacts, and the run config.

Plain strings and small functions, no heavy imports (no Dagster), so engines-free code (intake, storage, the CLI,
benchmarks, tests) can use them without loading anything. The Dagster layer turns them into objects
(``AssetKey``, ``RetryPolicy``...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# --- stages (each is also the name of its op in the translate_images job) -----------------------------------
REQUEST = "request"  # validation and language-pair checks, before anything is downloaded
DOWNLOAD = "download"
OCR = "ocr"
TRANSLATE = "translate"
INPAINT = "inpaint"
RENDER = "render"
PUBLISH = "publish"
STAGES = (DOWNLOAD, OCR, TRANSLATE, INPAINT, RENDER, PUBLISH)
# Scoring the result is a stage of the runner run inside the render step (it reads what render drew).
QUALITY = "quality"
# Content inspection is a stage of the runner too, run twice: on the OCR text inside the ocr step (a reject stops
# the request before it is translated; an inspect-only request ends there) and on the translation inside the
# translate step (a clean source can become a banned claim).
INSPECT = "inspect"
RUN_ORDER = (DOWNLOAD, OCR, INSPECT, TRANSLATE, INSPECT, INPAINT, RENDER, QUALITY, PUBLISH)
# What an inspect-only request (options.mode "inspect") skips: download -> ocr -> inspect -> publish.
INSPECT_ONLY_SKIPS = frozenset({TRANSLATE, INPAINT, RENDER, QUALITY})
MODE_TRANSLATE = "translate"
MODE_INSPECT = "inspect"
GPU_STAGES = frozenset({OCR, INPAINT})  # run in the Dagster pool GPU_POOL, one request at a time on a GPU

# --- jobs, pools, partitions ----------------------------------------------------------------------------------
TRANSLATE_JOB = "translate_images"
RERENDER_JOB = "rerender_request"  # review: render + quality + publish again from one request's stored artifacts
RERENDER = "rerender"  # its op
BACKFILL_JOB = "translate_stored_images"
GPU_POOL = "gpu"
TRANSLATIONS_PARTITIONS = "translations"  # dynamic partitions: "<image sha256>.<source>.<target>"

# --- assets and checks (asset keys are [ASSET_PREFIX, name]) --------------------------------------------------
ASSET_PREFIX = "imgtrans"
SOURCE_IMAGE = "source_image"
OCR_RESULT = "ocr_result"
TRANSLATION = "translation"
INPAINTED_IMAGE = "inpainted_image"
RENDERED_IMAGE = "rendered_image"
ASSET_OF_STAGE = {DOWNLOAD: SOURCE_IMAGE, OCR: OCR_RESULT, TRANSLATE: TRANSLATION, INPAINT: INPAINTED_IMAGE,
                  RENDER: RENDERED_IMAGE}

CHECK_ONE_TRANSLATION_PER_BLOCK = "one_translation_per_block"
CHECK_NO_SOURCE_TEXT_LEFT = "no_source_text_left"
CHECK_OUTPUT_DECODES = "output_decodes"
CHECK_QUALITY = "quality_score_above_minimum"
CHECK_INSPECTION = "no_rejected_content"  # on ocr_result and translation: no reject rule fired
INSPECTION_METADATA = "inspection_matches"  # materialization metadata: rule hits of the request
QUALITY_SCORE_METADATA = "quality_score"  # rendered_image materialization metadata (the /metrics histogram reads it)

# --- run tags -------------------------------------------------------------------------------------------------
TAG_SOURCE = "imgtrans/source"  # who started a run: one of the SOURCE_* values
TAG_REQUEST_COUNT = "imgtrans/requests"
TAG_FIRST_REQUEST = "imgtrans/request_id"
TAG_LANGUAGES = "imgtrans/languages"
TAG_PRIORITY = "imgtrans/priority"
TAG_ATTEMPT = "imgtrans/attempt"
TAG_BACKFILL_SIZE = "imgtrans/translations"
TAG_PIPELINE = "imgtrans/pipeline"
SOURCE_REDIS = "redis"
SOURCE_KAFKA = "kafka"
# Runs whose requests are settled through the intake. Anyone with queue access can write these requests, so their
# downloads obey the trust boundary (IMGTRANS_FILE_ROOTS, IMGTRANS_S3_BUCKETS); CLI, Launchpad, backfills and
# reviews are trusted.
INTAKE_SOURCES = frozenset({SOURCE_REDIS, SOURCE_KAFKA})
TAG_KAFKA_PARTITION = "imgtrans/kafka_partition"  # "<topic>:<partition>" of the messages a Kafka run carries
TAG_KAFKA_OFFSETS = "imgtrans/kafka_offsets"  # their offsets as ranges, e.g. "3,5-9"
SOURCE_CLI = "cli"
SOURCE_BACKFILL = "backfill"
SOURCE_BENCHMARK = "benchmark"
SOURCE_REVIEW = "review"
TAG_REVISION = "imgtrans/revision"  # the revision a rerender_request run produced

# Tags the warm run workers write on every run they execute (scaleout.app).
TAG_CELERY_QUEUE = "dagster-celery/queue"
TAG_WORKER = "imgtrans/celery_worker"
TAG_WORKER_PID = "imgtrans/celery_worker_pid"
TAG_ENGINES_LOADED = "imgtrans/engines_loaded"  # engines the run had to load (0 = the worker was warm)
TAG_ENGINES_CACHED = "imgtrans/engines_cached"
TAG_TASK_SECONDS = "imgtrans/celery_task_seconds"

# --- artifacts: one folder per request ------------------------------------------------------------------------
SOURCE_PNG = "source.png"
OCR_JSON = "ocr.json"
TRANSLATION_JSON = "translation.json"
MASK_PNG = "mask.png"
INPAINTED_PNG = "inpainted.png"
META_JSON = "meta.json"
RESULT_PREFIX = "result."
RESULT_EXTENSIONS = {"png": "png", "jpeg": "jpg", "jpg": "jpg", "webp": "webp"}
RESULT_CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}
# Review (the quality gate's queue and revisions): per request ``review.json`` (state, revision, history); the
# previous revisions' files as ``rev-<n>.<name>`` (``rev-1.result.png``, ``rev-1.meta.json``...); and one folder
# indexing the requests that entered review (one entry per request), so a queue page lists them without a scan.
REVIEW_JSON = "review.json"
REVIEW_INDEX_FOLDER = "review-index"
REVISION_PREFIX = "rev-"
STATE_NEEDS_REVIEW = "needs_review"
HASH_FOLDER_PREFIX = "hash-"  # dedupe index and catalogue: one folder per image content hash


def result_name(output_format: str) -> str:
    """``result.<ext>`` for an output format (png, jpeg/jpg, webp)."""
    key = output_format.lower()
    if key not in RESULT_EXTENSIONS:
        raise ValueError(f"unknown output format {output_format!r}")
    return RESULT_PREFIX + RESULT_EXTENSIONS[key]


def find_result_name(names: Iterable[str]) -> str | None:
    """The ``result.*`` artifact among ``names``, if any."""
    return next((name for name in names if name.startswith(RESULT_PREFIX)), None)


def revision_name(revision: int, name: str) -> str:
    """Where revision ``revision``'s copy of artifact ``name`` is kept once a newer revision replaced it."""
    return f"{REVISION_PREFIX}{revision}.{name}"


def index_folder(content_hash: str) -> str:
    return HASH_FOLDER_PREFIX + content_hash


def partition_key(content_hash: str, source_lang: str, target_lang: str) -> str:
    """``<sha256>.<source>.<target>``: also a valid request id, used as such by backfill runs."""
    return f"{content_hash}.{source_lang}.{target_lang}"


def parse_partition_key(key: str) -> tuple[str, str, str]:
    content_hash, source_lang, target_lang = key.split(".", 2)
    return content_hash, source_lang, target_lang


# --- run config of translate_images ---------------------------------------------------------------------------
def run_config(requests: Iterable[Mapping[str, Any]], *, log_level: str | None = None) -> dict[str, Any]:
    """The run config of one translate_images run over ``requests`` (each in the Launchpad shape:
    ``TranslationRequest.to_config()``); ``log_level`` sets Dagster's console logger."""
    config: dict[str, Any] = {"ops": {DOWNLOAD: {"config": {"requests": [dict(r) for r in requests]}}}}
    if log_level:
        config["loggers"] = {"console": {"config": {"log_level": log_level}}}
    return config


def requests_of_run_config(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The requests a translate_images run config carries (inverse of :func:`run_config`)."""
    return list(config.get("ops", {}).get(DOWNLOAD, {}).get("config", {}).get("requests", []))
