"""Persistence of the per-translation assets' intermediate outputs.

Backfills run a whole partition range in one step, which Dagster's filesystem IO manager refuses to persist. This
one stores each partition's work item in its own file (``<base>/<asset>/<partition>.pkl``), so a range can be
written at once and read back in any composition: a later run over a different range, or a re-execution from
failure, loads exactly the partitions it needs.
"""

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

from dagster import ConfigurableIOManager, InputContext, OutputContext

from ..stages import WorkItem


class TranslationItemsIOManager(ConfigurableIOManager):
    base_dir: str = ""  # empty: $DAGSTER_HOME/storage/translations

    def _root(self) -> Path:
        if self.base_dir:
            return Path(self.base_dir)
        return Path(os.environ.get("DAGSTER_HOME", tempfile.gettempdir())) / "storage" / "translations"

    def _path(self, asset_path: list[str], partition: str) -> Path:
        return self._root().joinpath(*asset_path, f"{partition}.pkl")

    def handle_output(self, context: OutputContext, obj: list[WorkItem]) -> None:
        by_partition = {item.request_id: item for item in obj}
        for partition in context.asset_partition_keys:
            path = self._path(list(context.asset_key.path), partition)
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            with temporary.open("wb") as handle:
                pickle.dump(by_partition.get(partition), handle, protocol=pickle.HIGHEST_PROTOCOL)
            temporary.replace(path)  # atomic: a crashed step never leaves half an item behind

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
                items.append(item)
        return items
