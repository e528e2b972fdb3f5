"""Benchmark variant of the project's code location: in-memory IO manager (see mem_io_definitions.py) and an OCR
engine with ONE onnxruntime thread instead of two.

Why one thread: measured in the bare loop on 2 cores, two intra-op threads did not make a single 800x800 request
faster but cost ~30 % more CPU per image (onnxruntime's worker threads spin while waiting), and with several run
workers on the same cores the spinning threads steal time from each other. Parallelism comes from running one
request (or run) per core instead.
"""

from __future__ import annotations

from dagster import Definitions, mem_io_manager

from imgtrans_pipeline.orchestration.definitions import build_resources
from imgtrans_pipeline.orchestration.jobs import translate_images
from imgtrans_pipeline.orchestration.resources import OcrResource
from imgtrans_pipeline.orchestration.sensors import redis_dead_letter_sensor, redis_intake_sensor

_resources = build_resources()
_resources["ocr_engine"] = OcrResource(**{**_resources["ocr_engine"].model_dump(), "threads": 1})

defs = Definitions(jobs=[translate_images], sensors=[redis_intake_sensor, redis_dead_letter_sensor],
                   resources={**_resources, "io_manager": mem_io_manager})
