"""Benchmark variant of the project's code location: the same job, sensors and resources, plus the in-memory
IO manager.

Why: a run launched by the daemon uses Dagster's default ``fs_io_manager``, which pickles every op's output (the
batch's WorkItems, with full-size source, mask and inpainted pixel arrays) to ``$DAGSTER_HOME/storage`` and
unpickles it in the next op; ``execute_in_process`` (CLI, tests, the benchmark's job mode) silently uses memory
instead. With the in-process executor all ops of a run share one process, so memory is enough; op retries
(``RetryPolicy``) re-run inside the same process and still find their inputs. What is lost: re-executing a failed
run *from failure* in a new process (its step outputs were not persisted).
"""

from __future__ import annotations

from dagster import Definitions, mem_io_manager

from imgtrans_pipeline.orchestration.definitions import build_resources
from imgtrans_pipeline.orchestration.jobs import translate_images
from imgtrans_pipeline.orchestration.sensors import redis_dead_letter_sensor, redis_intake_sensor

defs = Definitions(jobs=[translate_images], sensors=[redis_intake_sensor, redis_dead_letter_sensor],
                   resources={**build_resources(), "io_manager": mem_io_manager})
