"""Requests held by the quality gate (``IMGTRANS_REVIEW_BELOW=1.01``: every result is held), for the review tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from imgtrans_pipeline import names
from tests.support.dagster_services import prepare_home
from tests.support.imagegen import text_image

HELD_TEXTS = (["全新升级"], ["免费送货上门"], ["限时特价"])


def gate_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A Dagster home and a local artifact store under ``tmp``, with every result held for review."""
    home = prepare_home(tmp / "dagster_home")
    return {"DAGSTER_HOME": str(home), "IMGTRANS_REVIEW_BELOW": "1.01", "IMGTRANS_ARTIFACTS": str(tmp / "artifacts"),
            "IMGTRANS_TRANSLATION_CACHE": str(tmp / "cache.sqlite"), **extra}


def images(tmp: Path, texts: Any = HELD_TEXTS, *, prefix: str = "in", width: int = 380, height: int = 140,
           font_size: int = 42) -> list[Path]:
    return [text_image(lines, width=width, height=height, font_size=font_size).save(tmp / f"{prefix}{i}.png")
            for i, lines in enumerate(texts)]


@contextmanager
def held_by_cli(tmp: Path, *args: str, **env: str) -> Iterator[int]:
    """Translate :data:`HELD_TEXTS` with ``imgtrans translate`` (no Redis) while the gate holds every result; yields
    the exit code with the environment still set, then restores it."""
    from imgtrans_pipeline.cli import main
    from imgtrans_pipeline.core.settings import reset_settings

    with pytest.MonkeyPatch.context() as patch:
        for key, value in gate_env(tmp, **env).items():
            patch.setenv(key, value)
        patch.delenv("IMGTRANS_REDIS_URL", raising=False)
        reset_settings()
        try:
            yield main(["translate", *map(str, images(tmp)), "--to", "en", "--from", "zh", "--json", *args])
        finally:
            reset_settings()


def run_as_redis_intake(request_ids: tuple[str, str], tmp: Path, instance: Any, *, width: int,
                        height: int, font_size: int) -> str:
    """Two requests translated by one in-process run tagged as the Redis intake sensor starts it (publish settles
    each through Redis); returns the run id."""
    from imgtrans_pipeline.orchestration.definitions import build_definitions

    paths = images(tmp, HELD_TEXTS[:2], prefix="req", width=width, height=height, font_size=font_size)
    requests = [{"request_id": rid, "image_url": str(path), "source_lang": "zh", "target_lang": "en"}
                for rid, path in zip(request_ids, paths, strict=True)]
    job = build_definitions().resolve_job_def(names.TRANSLATE_JOB)
    result = job.execute_in_process(run_config=names.run_config(requests), instance=instance,
                                    tags={names.TAG_SOURCE: names.SOURCE_REDIS})
    assert result.success
    return result.run_id
