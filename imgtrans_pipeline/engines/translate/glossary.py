"""Glossary files: one glossary for every request, optionally with sections per catalogue or shop.

``IMGTRANS_GLOSSARY`` names a JSON file in one of two shapes:

- flat, for every request: ``{"耐克": "Nike", "包邮": "Free shipping"}``
- scoped: ``{"*": {...every request...}, "shop-a": {...requests with glossary_scope "shop-a"...}}``

A request with ``options.glossary_scope`` uses the global section, then its scope's section over it, then the
request's own ``options.glossary`` over both (the later one wins for the same term).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...core.errors import InvalidRequest
from ...core.request import validate_scope

GLOBAL = "*"


def parse_glossary(data: Any, origin: str = "glossary") -> dict[str, dict[str, str]]:
    """``{scope: {term: translation}}`` ('' = global) from a flat or scoped glossary object; ``ValueError``
    naming the bad entry otherwise."""
    if not isinstance(data, dict):
        raise ValueError(f"{origin}: a JSON object is expected, not {type(data).__name__}")
    if not data:
        return {}
    scoped = [isinstance(v, dict) for v in data.values()]
    if any(scoped) and not all(scoped):
        raise ValueError(f"{origin}: mixes terms and scope sections; put global terms under \"{GLOBAL}\"")
    sections: Mapping[str, Any] = data if all(scoped) else {GLOBAL: data}
    out: dict[str, dict[str, str]] = {}
    for name, terms in sections.items():
        try:
            scope = "" if name == GLOBAL else validate_scope(name, field="scope")
        except InvalidRequest as error:
            raise ValueError(f"{origin}: section {name!r}: {error.reason}") from None
        if not scope and name != GLOBAL:
            raise ValueError(f"{origin}: an empty section name; use \"{GLOBAL}\" for global terms")
        for term, value in terms.items():
            if not isinstance(term, str) or not term.strip() or not isinstance(value, str):
                raise ValueError(f"{origin}: section {name!r}: {term!r} must map a non-empty term to a string")
        out[scope] = {k.strip(): v.strip() for k, v in terms.items()}
    return out


def load_glossary_file(path: str | Path) -> dict[str, dict[str, str]]:
    """The glossary file at ``path`` as ``{scope: {term: translation}}``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"glossary file {path}: {error}") from error
    return parse_glossary(data, origin=f"glossary file {path}")
