"""One registry shape for every stage's engines, and the process-wide engine cache beside it.

A registry maps an engine name (and its aliases) to the engine's constructor, named as ``"module:attribute"`` and
imported only when that engine is built, so listing or validating engines never loads torch, paddle or a model.
``create(name, **options)`` checks the options against the constructor's signature first: a misspelt or
unsupported option is a clear configuration error naming the engine, not a ``TypeError`` from deep inside.

Models are expensive to load, so :func:`cached_engine` builds each (stage, name, options) once per process,
whichever caller asks first: the Dagster resources of every run in a CLI or warm worker process, the benchmark,
the tests.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Generic, TypeVar

from ..core.errors import EngineError

T = TypeVar("T")


class EngineRegistry(Generic[T]):
    """Engines of one stage: name -> constructor (``"package.module:Class"``), aliases, option validation."""

    def __init__(self, stage: str, engines: Mapping[str, str], *, default: str,
                 aliases: Mapping[str, str] | None = None, label: str | None = None,
                 error: type[EngineError] = EngineError) -> None:
        self.stage = stage
        self.label = label or f"{stage} engine"  # how messages name one: "OCR engine", "inpainter"...
        self.error = error
        self._targets = dict(engines)
        self._aliases = {**{name: name for name in engines}, **(aliases or {})}
        if default not in self._targets:
            raise ValueError(f"default engine {default!r} is not registered for {stage}")
        self.default = default

    def names(self) -> tuple[str, ...]:
        return tuple(self._targets)

    def canonical(self, name: str | None) -> str:
        """The registered name ``name`` (or an alias of it) refers to; the default for an empty name."""
        key = (name or self.default).strip().lower()
        if key not in self._aliases:
            raise self.error(f"unknown {self.label} '{name}' (known: {', '.join(self._targets)})",
                             stage=self.stage, transient=False)
        return self._aliases[key]

    def constructor(self, name: str | None) -> Callable[..., T]:
        module_name, _, attribute = self._targets[self.canonical(name)].partition(":")
        return getattr(importlib.import_module(module_name), attribute)

    def check_options(self, name: str | None, options: Mapping[str, Any]) -> None:
        """Raise a permanent ``EngineError`` if the engine's constructor does not take ``options``."""
        try:
            inspect.signature(self.constructor(name)).bind(**options)
        except TypeError as exc:
            raise self.error(f"bad option for {self.label} '{self.canonical(name)}': {exc}",
                             stage=self.stage, transient=False) from exc

    def create(self, name: str | None = None, **options: Any) -> T:
        """Build the engine ``name`` with ``options`` (validated first); loading errors come from the engine."""
        self.check_options(name, options)
        return self.constructor(name)(**options)


# --- the process-wide cache -----------------------------------------------------------------------------------
_cache: dict[Hashable, Any] = {}
_lock = threading.Lock()


def cached_engine(key: Hashable, factory: Callable[[], T]) -> T:
    """The object ``factory`` builds, built once per process per ``key`` (thread-safe).

    Keys are tuples starting with the stage name, e.g. ``("ocr", "rapidocr", (("threads", 1),))``.
    """
    with _lock:
        if key not in _cache:
            _cache[key] = factory()
        return _cache[key]


def cached_engine_keys() -> frozenset[Hashable]:
    """What this process has loaded (the warm run workers report warm vs cold runs from it)."""
    with _lock:
        return frozenset(_cache)


def options_key(options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A hashable, order-independent form of constructor options, for cache keys."""
    return tuple(sorted((name, repr(value)) for name, value in options.items()))
