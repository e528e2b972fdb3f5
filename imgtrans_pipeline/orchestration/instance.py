"""Which Dagster instance the command-line tools record to and read from.

A module of its own (no Dagster import at module level) so that ``imgtrans`` sub-commands in other packages
(``monitoring.cli``) can use the same rule without importing ``imgtrans_pipeline.cli``, which imports them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any


def dagster_instance() -> Any:
    """The Dagster instance runs are recorded in: $DAGSTER_HOME, else ./.dagster_home with ./dagster.yaml."""
    from dagster import DagsterInstance

    home = os.environ.get("DAGSTER_HOME")
    if home:
        return DagsterInstance.get()
    local = Path.cwd() / ".dagster_home"
    local.mkdir(exist_ok=True)
    project_yaml = Path.cwd() / "dagster.yaml"
    target = local / "dagster.yaml"
    if project_yaml.exists() and not target.exists():
        shutil.copyfile(project_yaml, target)
    os.environ["DAGSTER_HOME"] = str(local)
    return DagsterInstance.get()
