"""A reconstructable translate_images job whose inpaint engine is LaMa at a given path (for re-execution tests).

Re-execution loads the job again by reference (module + function + kwargs), as the webserver does.
"""

from __future__ import annotations

from pathlib import Path

from dagster import Definitions, JobDefinition

from imgtrans_pipeline.names import TRANSLATE_JOB
from imgtrans_pipeline.orchestration.definitions import build_resources
from imgtrans_pipeline.orchestration.jobs import translate_images
from tests.support.dagster_services import pipeline_settings

PROJECT = Path(__file__).resolve().parents[2]


def job_with_lama(model_path: str, artifacts: str) -> JobDefinition:
    settings = pipeline_settings(Path(artifacts), inpaint__engine="lama", inpaint__lama_model=model_path,
                                 fetch__allow_private_urls=False)
    return Definitions(jobs=[translate_images], resources=build_resources(settings)).resolve_job_def(TRANSLATE_JOB)
