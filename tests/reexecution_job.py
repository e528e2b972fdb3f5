"""A reconstructable translate_images job whose inpaint engine is LaMa at a given path (for re-execution tests).

Re-execution loads the job again by reference (module + function + kwargs), as the webserver does.
"""

from __future__ import annotations

from pathlib import Path

from dagster import Definitions, JobDefinition

from imgtrans_pipeline.core.config import Settings
from imgtrans_pipeline.orchestration.definitions import build_resources
from imgtrans_pipeline.orchestration.jobs import TRANSLATE_JOB, translate_images

PROJECT = Path(__file__).resolve().parents[1]


def job_with_lama(model_path: str, artifacts: str) -> JobDefinition:
    settings = Settings(**{**Settings.from_env().__dict__, "inpaint_engine": "lama", "lama_model_path": model_path,
                           "artifacts_url": artifacts, "models_dir": str(PROJECT / "models"),
                           "translation_cache": str(Path(artifacts) / "cache.sqlite")})
    return Definitions(jobs=[translate_images], resources=build_resources(settings)).resolve_job_def(TRANSLATE_JOB)
