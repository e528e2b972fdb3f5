"""Retries and re-execution the Dagster way, and the GPU memory guard."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import ReexecutionOptions, execute_job, instance_for_test
from dagster._core.definitions.definitions_load_context import DefinitionsLoadContext
from dagster._core.definitions.reconstruct import build_reconstructable_job

from imgtrans_pipeline.core.errors import EngineError
from imgtrans_pipeline.engines.gpu import GpuMemoryGuard, cuda_memory
from imgtrans_pipeline.names import run_config
from imgtrans_pipeline.orchestration.io_managers import LIVE_OUTPUTS
from tests.support.fixtures.imaging import build_tiny_lama
from tests.support.imagegen import text_image


def test_reexecution_from_failure_reuses_the_steps_that_succeeded(tmp_path, monkeypatch):
    """The LaMa model file is missing: inpaint fails once (never retried: retrying cannot create a file). The
    operator installs the model and re-executes from failure: download, OCR and translate are not run again."""
    # Loading a code location in-process (other tests do) leaves a process-wide load context whose instance may
    # be gone by now; start this reconstruction from a clean one.
    monkeypatch.setattr(DefinitionsLoadContext, "_instance", None)
    model = tmp_path / "big-lama.pt"
    image = text_image(["全新升级"], width=360, height=140, font_size=44).save(tmp_path / "p.png")
    config = run_config([{"request_id": "rx-1", "image_url": str(image), "source_lang": "zh", "target_lang": "en"}])
    with instance_for_test() as instance:
        # Built inside: loading definitions reads the *current* instance's defs-state storage, and an instance an
        # earlier test opened without closing may still be registered as current.
        job = build_reconstructable_job("tests.support.reexecution_job", "job_with_lama",
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
        # As in a new process (the webserver launches re-executions in one): the outputs of the failed run come
        # from the slim copies on disk, their images read back from the artifact store.
        assert first_run_id in LIVE_OUTPUTS.runs()
        LIVE_OUTPUTS.drop(first_run_id)
        stored = list((Path(instance.storage_directory()) / "items" / first_run_id).rglob("*.pkl"))
        assert sorted(p.parent.name for p in stored) == ["download", "ocr", "translate"]
        assert max(p.stat().st_size for p in stored) < 20_000  # no pixels (this small image alone is 151 KB of them)
        options = ReexecutionOptions.from_failure(first_run_id, instance)
        with execute_job(job, instance, reexecution_options=options) as second:
            assert second.success
            started = sorted(e.step_key for e in second.all_events if e.is_step_start)
            assert started == ["inpaint", "publish", "render"]
            assert second.run_id not in LIVE_OUTPUTS.runs()  # released once publish stored its output
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
    with pytest.raises(EngineError) as error:
        guard.wait("inpaint")
    assert error.value.transient and "100 MiB" in error.value.reason


def test_gpu_guard_never_asks_more_than_the_device_has():
    guard = GpuMemoryGuard(min_free_bytes=16 * 2**30, timeout_s=0.1, probe=lambda: (4 * 2**30, 4 * 2**30))
    assert guard.wait("ocr") < 0.05  # a fully free 4 GiB device is enough, not a timeout


def test_slim_outputs_keep_no_pixels_and_come_back_identical_from_the_artifact_store(tmp_path):
    """What the job's IO manager writes to disk: the work item without the images the artifact store holds, and
    the same item back (pixel for pixel, PNG being lossless) when a re-execution loads it in a new process."""
    import pickle

    import numpy as np
    from PIL import Image

    from imgtrans_pipeline.core.request import parse_request
    from imgtrans_pipeline.core.types import InpaintResult, RenderedImage, SourceImage
    from imgtrans_pipeline.orchestration.io_managers import rehydrate, slim
    from imgtrans_pipeline.pipeline import WorkItem
    from imgtrans_pipeline.storage import create_artifact_store

    def png(array: np.ndarray) -> bytes:
        import io

        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, "PNG")
        return buffer.getvalue()

    rng = np.random.default_rng(3)
    source = rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)
    mask = (rng.random((120, 90)) > 0.8).astype(np.uint8) * 255
    erased = rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)
    result = rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)
    store = create_artifact_store(tmp_path)
    item = WorkItem(request=parse_request({"request_id": "slim-1", "image_url": "https://example.com/a.png",
                                           "source_lang": "zh", "target_lang": "en"}))
    item.source = SourceImage(pixels=source, content_hash="0" * 64, source_format="png", byte_size=1,
                              png_bytes=png(source))
    item.inpainted = InpaintResult(mask=mask, pixels=erased, engine="opencv")
    item.rendered = RenderedImage(pixels=result, encoded=png(result), format="png", font="f.ttc")
    for name, data in (("source.png", item.source.png_bytes), ("mask.png", png(mask)),
                       ("inpainted.png", png(erased)), ("result.png", item.rendered.encoded)):
        item.artifacts[name] = store.put("slim-1", name, data, "image/png")

    light = slim(item)
    assert item.source.pixels is source  # the item itself is untouched: the next op still gets it whole
    assert len(pickle.dumps(light)) < 4_000 < source.nbytes
    back = rehydrate(pickle.loads(pickle.dumps(light)), store)
    assert np.array_equal(back.source.pixels, source) and back.source.png_bytes == item.source.png_bytes
    assert np.array_equal(back.inpainted.mask, mask) and np.array_equal(back.inpainted.pixels, erased)
    assert np.array_equal(back.rendered.pixels, result) and back.rendered.encoded == item.rendered.encoded

    store.delete("slim-1")  # gone from the store: a clear error naming the artifact, not a crash deep inside an op
    with pytest.raises(RuntimeError, match=r"source\.png is gone"):
        rehydrate(pickle.loads(pickle.dumps(light)), store)
