"""Persistence of intermediate outputs: the per-translation assets' and the translate_images job's.

Both keep work items *slim* on disk: without the images, which every stage has already written to the artifact
store (source, mask, inpainted and result images are what make an item ~30 MB at 800x800); a load puts them back
from the store. Dagster's default filesystem IO manager would pickle every output whole and never delete it
(measured: 3.3 GB per 100 requests through the job).

* Assets (backfills): a whole partition range runs in one step, which Dagster's filesystem IO manager refuses to
  persist. Each partition's item gets its own file (``<storage>/translations/<asset>/<partition>.pkl``), so a range
  can be written at once and read back in any composition: a later run over a different range, or a re-execution
  from failure, loads exactly the partitions it needs.
* The job's op outputs: handed to the next op in memory within the run, plus a slim copy per step for re-execution
  from failure in another process (``<storage>/items/<run_id>/<step>/<output>.pkl``).
"""

import dataclasses
import io
import pickle
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from dagster import (
    Field,
    InitResourceContext,
    InputContext,
    IOManager,
    OutputContext,
    io_manager,
)
from PIL import Image

from ..names import INPAINTED_PNG, MASK_PNG, SOURCE_PNG, find_result_name, result_name
from ..pipeline import WorkItem
from ..storage.base import ArtifactStore


def _decode(data: bytes, mode: str) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert(mode)).copy()


def slim(item: WorkItem) -> WorkItem:
    """A copy without the images the artifact store already holds (they are what makes an item ~30 MB)."""
    light = dataclasses.replace(item)
    if light.source is not None and SOURCE_PNG in item.artifacts:
        light.source = dataclasses.replace(light.source, pixels=None, png_bytes=b"")  # type: ignore[arg-type]
    if light.inpainted is not None and {MASK_PNG, INPAINTED_PNG} <= item.artifacts.keys():
        light.inpainted = dataclasses.replace(light.inpainted, mask=None, pixels=None)  # type: ignore[arg-type]
    if light.rendered is not None and find_result_name(item.artifacts) and not item.reused_from:
        light.rendered = dataclasses.replace(light.rendered, pixels=None, encoded=b"")  # type: ignore[arg-type]
    return light


def rehydrate(item: WorkItem, store: ArtifactStore) -> WorkItem:
    """Put back what :func:`slim` left out, from the request's stored artifacts."""

    def read(name: str) -> bytes:
        try:
            return store.get(item.request_id, name)
        except Exception as error:
            raise RuntimeError(f"cannot load request {item.request_id} from its stored outputs: artifact "
                               f"{name} is gone ({error}); run it again from the start") from error

    if item.source is not None and item.source.pixels is None:
        data = read(SOURCE_PNG)
        item.source = dataclasses.replace(item.source, pixels=_decode(data, "RGB"), png_bytes=data)
    if item.inpainted is not None and item.inpainted.pixels is None:
        item.inpainted = dataclasses.replace(item.inpainted, mask=_decode(read(MASK_PNG), "L"),
                                             pixels=_decode(read(INPAINTED_PNG), "RGB"))
    if item.rendered is not None and item.rendered.pixels is None:
        data = read(find_result_name(item.artifacts) or result_name("png"))
        item.rendered = dataclasses.replace(item.rendered, pixels=_decode(data, "RGB"), encoded=data)
    return item


def _write_atomically(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with temporary.open("wb") as handle:
        pickle.dump(obj, handle, protocol=pickle.HIGHEST_PROTOCOL)
    temporary.replace(path)  # atomic: a crashed step never leaves half an output behind


def _storage_root(init_context: InitResourceContext, configured: str, name: str) -> Path:
    if configured:
        return Path(configured)
    if init_context.instance is not None:  # where Dagster's own filesystem IO manager would write
        return Path(init_context.instance.storage_directory()) / name
    return Path(tempfile.gettempdir()) / f"imgtrans-{name}"


# --- the per-translation assets -------------------------------------------------------------------------------

class TranslationItemsIOManager(IOManager):
    """One slim work item per asset partition (see the module docstring)."""

    def __init__(self, root: Path, store: ArtifactStore) -> None:
        self.root = root
        self.store = store

    def _path(self, asset_path: list[str], partition: str) -> Path:
        return self.root.joinpath(*asset_path, f"{partition}.pkl")

    def handle_output(self, context: OutputContext, obj: list[WorkItem]) -> None:
        by_partition = {item.request_id: item for item in obj}
        for partition in context.asset_partition_keys:
            item = by_partition.get(partition)
            _write_atomically(self._path(list(context.asset_key.path), partition),
                              slim(item) if item is not None else None)

    def load_input(self, context: InputContext) -> list[WorkItem]:
        items: list[Any] = []
        for partition in context.asset_partition_keys:
            path = self._path(list(context.asset_key.path), partition)
            if not path.exists():
                raise FileNotFoundError(f"{context.asset_key.to_user_string()} of {partition} was never stored "
                                        f"({path}); materialize it first")
            with path.open("rb") as handle:
                item = pickle.load(handle)
            if item is not None:
                items.append(rehydrate(item, self.store))
        return items


# --- the translate_images job's op outputs --------------------------------------------------------------------

FINAL_STEP = "publish"  # the job's last op: once its output is stored, nothing of the run is loaded in-process
_MAX_LIVE_RUNS = 4  # runs whose outputs stay in memory at once (a run that failed never reaches FINAL_STEP)


class _LiveOutputs:
    """Op outputs of the runs executing in this process, handed to the next op as the very same objects."""

    def __init__(self) -> None:
        self._runs: OrderedDict[str, dict[tuple[str, str], Any]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, run_id: str, step: str, name: str, obj: Any) -> None:
        with self._lock:
            self._runs.setdefault(run_id, {})[(step, name)] = obj
            self._runs.move_to_end(run_id)
            while len(self._runs) > _MAX_LIVE_RUNS:
                self._runs.popitem(last=False)

    def get(self, run_id: str, step: str, name: str) -> Any:
        with self._lock:
            return self._runs.get(run_id, {}).get((step, name), _MISSING)

    def drop(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def runs(self) -> list[str]:
        with self._lock:
            return list(self._runs)


_MISSING = object()
LIVE_OUTPUTS = _LiveOutputs()


class WorkItemsIOManager(IOManager):
    """Outputs of ``translate_images``' ops: the objects themselves within the run's process, plus a slim copy
    on disk for re-execution from failure in another process.

    Why not Dagster's default filesystem IO manager: it pickles every op's output whole, i.e. the images of every
    request at every step (~31 MB per 800x800 request, measured), under ``$DAGSTER_HOME/storage``, and never
    deletes them: 3.3 GB per 100 requests. Every stage already stores its images in the artifact store, so the
    disk copy keeps the rest (a few KB per request) and reads the images back from the store when a
    re-execution in a new process loads it. Within the run, the next op gets the very objects: no pickling.
    """

    def __init__(self, base_dir: Path, store: ArtifactStore) -> None:
        self.base_dir = base_dir
        self.store = store

    def _path(self, run_id: str, step: str, name: str) -> Path:
        return self.base_dir / run_id / step / f"{name}.pkl"

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        run_id, step, name = context.run_id, context.step_key, context.name
        LIVE_OUTPUTS.put(run_id, step, name, obj)
        light = [slim(item) if isinstance(item, WorkItem) else item for item in obj] if isinstance(obj, list) else obj
        _write_atomically(self._path(run_id, step, name), light)
        if step == FINAL_STEP:
            LIVE_OUTPUTS.drop(run_id)

    def load_input(self, context: InputContext) -> Any:
        upstream = context.upstream_output
        assert upstream is not None and upstream.run_id is not None
        live = LIVE_OUTPUTS.get(upstream.run_id, upstream.step_key, upstream.name)
        if live is not _MISSING:
            return live
        path = self._path(upstream.run_id, upstream.step_key, upstream.name)
        if not path.exists():
            raise FileNotFoundError(f"output {upstream.name} of step {upstream.step_key} in run {upstream.run_id} "
                                    f"was never stored ({path})")
        with path.open("rb") as handle:
            obj = pickle.load(handle)
        if isinstance(obj, list):
            obj = [rehydrate(item, self.store) if isinstance(item, WorkItem) else item for item in obj]
        return obj


def _slim_io_manager(manager: type, folder: str, description: str) -> Any:
    """An IO manager factory for ``manager(root, store)``: files under ``<instance storage>/<folder>`` (or the
    configured ``base_dir``), images read back from the run's ``artifacts`` store."""

    @io_manager(
        required_resource_keys={"artifacts"},
        config_schema={"base_dir": Field(str, default_value="",
                                         description=f"empty: {folder}/ in the instance's storage directory")},
        description=description,
    )
    def factory(init_context: InitResourceContext) -> IOManager:
        root = _storage_root(init_context, init_context.resource_config["base_dir"], folder)
        return manager(root, init_context.resources.artifacts.store())

    return factory


translation_items_io_manager = _slim_io_manager(
    TranslationItemsIOManager, "translations",
    "Per-translation assets: one slim work item per partition; images come from the artifact store.")
work_items_io_manager = _slim_io_manager(
    WorkItemsIOManager, "items",
    "translate_images op outputs: in memory within a run, slim pickles (no images) on disk.")
