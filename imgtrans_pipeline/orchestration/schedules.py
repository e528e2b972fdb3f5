"""Scheduled backfills: re-translate stored images that lack a configured target language or were produced by
an older pipeline version (e.g. "translate the whole catalogue into Korean").

The schedule registers the missing translations as partitions and launches single-run ranges of the
``translate_stored_images`` asset job over them: one run per contiguous range (at most ``max_per_run``
partitions), so a catalogue of thousands pays run start-up and model loading a handful of times. The same plan is
available as ``imgtrans backfill`` and, in the UI, as a backfill of the asset job over selected partitions.
"""

from dataclasses import dataclass

from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    DefaultScheduleStatus,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from .. import names
from ..catalogue import MissingTranslation, missing_translations
from ..core.settings import get_settings
from .assets import translate_stored_images
from .recording import TRANSLATIONS
from .resources import ArtifactStoreResource

IN_FLIGHT = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
             DagsterRunStatus.STARTED]


@dataclass(frozen=True)
class BackfillRange:
    start: str
    end: str
    size: int

    def tags(self) -> dict[str, str]:
        return {ASSET_PARTITION_RANGE_START_TAG: self.start, ASSET_PARTITION_RANGE_END_TAG: self.end,
                names.TAG_SOURCE: names.SOURCE_BACKFILL, names.TAG_BACKFILL_SIZE: str(self.size)}


def plan_backfill(instance: DagsterInstance, missing: list[MissingTranslation],
                  max_per_run: int = 200) -> list[BackfillRange]:
    """Register the missing translations as partitions and cut them into contiguous ranges.

    Dynamic partitions keep insertion order, so translations added together form one range; keys that already
    existed (older pipeline version) are grouped by their existing positions.
    """
    keys = [names.partition_key(m.content_hash, m.source_lang, m.target_lang) for m in missing]
    existing = set(instance.get_dynamic_partitions(TRANSLATIONS.name))
    new = [key for key in dict.fromkeys(keys) if key not in existing]
    if new:
        instance.add_dynamic_partitions(TRANSLATIONS.name, new)
    order = {key: i for i, key in enumerate(instance.get_dynamic_partitions(TRANSLATIONS.name))}
    wanted = sorted(set(keys), key=order.__getitem__)
    ranges: list[BackfillRange] = []
    run: list[str] = []
    for key in wanted:
        if run and (order[key] != order[run[-1]] + 1 or len(run) >= max_per_run):
            ranges.append(BackfillRange(run[0], run[-1], len(run)))
            run = []
        run.append(key)
    if run:
        ranges.append(BackfillRange(run[0], run[-1], len(run)))
    return ranges


@schedule(
    name="translate_catalogue",
    job=translate_stored_images,
    cron_schedule=get_settings().backfill.cron,
    default_status=(DefaultScheduleStatus.RUNNING if get_settings().backfill.target_list()
                    else DefaultScheduleStatus.STOPPED),
    description="Daily: translate stored images missing an IMGTRANS_BACKFILL_TARGETS language or made by an older "
                "pipeline version.",
)
def translate_catalogue_schedule(context: ScheduleEvaluationContext, artifacts: ArtifactStoreResource):
    settings = get_settings().backfill
    targets = settings.target_list()
    if not targets:
        return SkipReason("IMGTRANS_BACKFILL_TARGETS is empty: no target languages to keep the catalogue in")
    busy = context.instance.get_runs(RunsFilter(job_name=names.BACKFILL_JOB, statuses=IN_FLIGHT), limit=1)
    if busy:  # its partitions would look missing again and be translated twice
        return SkipReason(f"backfill run {busy[0].run_id} is still in progress")
    missing = missing_translations(artifacts.store(), targets)
    if not missing:
        return SkipReason(f"every stored image exists in {', '.join(targets)} at the current pipeline version")
    return [RunRequest(tags=r.tags()) for r in plan_backfill(context.instance, missing, settings.per_run)]
