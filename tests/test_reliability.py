"""Retries and re-execution the Dagster way, and the GPU memory guard."""

from __future__ import annotations

import time

import pytest
from dagster import ReexecutionOptions, execute_job, instance_for_test
from dagster._core.definitions.definitions_load_context import DefinitionsLoadContext
from dagster._core.definitions.reconstruct import build_reconstructable_job

from imgtrans_pipeline.core.errors import EngineError
from imgtrans_pipeline.engines.gpu import GpuMemoryGuard, cuda_memory
from tests.fixtures.imaging import build_tiny_lama
from tests.imagegen import text_image


def test_reexecution_from_failure_reuses_the_steps_that_succeeded(tmp_path, monkeypatch):
    """The LaMa model file is missing: inpaint fails once (never retried: retrying cannot create a file). The
    operator installs the model and re-executes from failure: download, OCR and translate are not run again."""
    # Loading a code location in-process (other tests do) leaves a process-wide load context whose instance may
    # be gone by now; start this reconstruction from a clean one.
    monkeypatch.setattr(DefinitionsLoadContext, "_instance", None)
    model = tmp_path / "big-lama.pt"
    image = text_image(["全新升级"], width=360, height=140, font_size=44).save(tmp_path / "p.png")
    config = {"ops": {"download": {"config": {"requests": [
        {"request_id": "rx-1", "image_url": str(image), "source_lang": "zh", "target_lang": "en"}]}}}}
    with instance_for_test() as instance:
        # Built inside: loading definitions reads the *current* instance's defs-state storage, and an instance an
        # earlier test opened without closing may still be registered as current.
        job = build_reconstructable_job("tests.reexecution_job", "job_with_lama",
                                        reconstructable_kwargs={"model_path": str(model),
                                                                "artifacts": str(tmp_path / "artifacts")})
        with execute_job(job, instance, run_config=config, raise_on_error=False) as first:
            assert not first.success
            failed = [e for e in first.all_events if e.is_step_failure]
            assert [e.step_key for e in failed] == ["inpaint"]
            assert str(model) in failed[0].step_failure_data.error.message
            assert not [e for e in first.all_events if e.is_step_up_for_retry]
            first_run_id = first.run_id
        build_tiny_lama(model)
        options = ReexecutionOptions.from_failure(first_run_id, instance)
        with execute_job(job, instance, reexecution_options=options) as second:
            assert second.success
            started = sorted(e.step_key for e in second.all_events if e.is_step_start)
            assert started == ["inpaint", "publish", "render"]
        meta = (tmp_path / "artifacts" / "rx-1" / "meta.json").read_text()
        assert '"status": "succeeded"' in meta and '"inpaint": "lama"' in meta


def test_gpu_guard_passes_without_a_gpu():
    assert cuda_memory() is None  # these machines have no accelerator
    assert GpuMemoryGuard(min_free_bytes=2**40).wait("ocr") == 0.0


def test_gpu_guard_waits_for_memory_then_proceeds():
    readings = iter([(100 * 2**20, 8 * 2**30), (500 * 2**20, 8 * 2**30), (3 * 2**30, 8 * 2**30)])
    guard = GpuMemoryGuard(min_free_bytes=2 * 2**30, poll_s=0.05, probe=lambda: next(readings))
    assert guard.wait("inpaint") >= 0.1  # two polls below the threshold, then enough memory


def test_gpu_guard_times_out_with_a_transient_error():
    guard = GpuMemoryGuard(min_free_bytes=2 * 2**30, timeout_s=0.2, poll_s=0.05,
                           probe=lambda: (100 * 2**20, 8 * 2**30))
    start = time.monotonic()
    with pytest.raises(EngineError) as error:
        guard.wait("inpaint")
    assert error.value.transient and "100 MiB" in error.value.reason
    assert time.monotonic() - start < 2


def test_gpu_guard_never_asks_more_than_the_device_has():
    guard = GpuMemoryGuard(min_free_bytes=16 * 2**30, timeout_s=0.1, probe=lambda: (4 * 2**30, 4 * 2**30))
    assert guard.wait("ocr") < 0.05  # a fully free 4 GiB device is enough, not a timeout
