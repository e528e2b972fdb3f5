"""Which Dagster instance the command-line tools record their runs in."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..core.settings import get_settings, reset_settings


def dagster_instance() -> Any:
    """$DAGSTER_HOME's instance, else ``./.dagster_home`` (created, with the project's ``dagster.yaml``)."""
    from dagster import DagsterInstance

    if get_settings().dagster_home:
        return DagsterInstance.get()
    local = Path.cwd() / ".dagster_home"
    local.mkdir(exist_ok=True)
    project_yaml = Path.cwd() / "dagster.yaml"
    target = local / "dagster.yaml"
    if project_yaml.exists() and not target.exists():
        shutil.copyfile(project_yaml, target)
    # Dagster itself reads DAGSTER_HOME (here and in any process it starts): set it, and re-read the settings.
    os.environ["DAGSTER_HOME"] = str(local)
    reset_settings()
    return DagsterInstance.get()
