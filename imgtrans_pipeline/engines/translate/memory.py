"""The translation memory: curated whole-text translations that win over every engine, per catalogue or shop.

Semantics (README "Terminology across a catalogue"):
- An entry maps one whole source text (an OCR block) in one language pair to its translation. It is
  authoritative: a block whose text matches an entry takes the entry's translation without an engine call, in
  every later request, whatever engine is configured. Entries come from people (a reviewer's approved correction,
  ``origin="reviewer"``), from another system (``imgtrans tm import``, ``origin="import"``) or from code
  (``TranslationMemory.add``); engine output is never written here: it stays in the translation cache, keyed by
  engine and model, so changing the engine re-translates what nobody curated.
- Texts match after normalisation (``normalise_text``: NFKC, outer and repeated whitespace, case), so an OCR
  read with a full-width "％" or an extra space still finds its entry. Only whole texts match: terms inside
  longer texts are the glossary's job.
- ``scope`` is '' for the global memory or a catalogue/shop id (a request's ``options.glossary_scope``): a lookup
  with a scope prefers that scope's entry and falls back to the global one.

One SQLite file (WAL; one connection per process behind a lock), like the translation cache, so every worker
process and the ``imgtrans tm`` commands share it. JSONL and CSV move it between systems (``export_entries`` /
``import_entries``); an import checks every row and reports the bad ones by line without applying them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from ...core.errors import InvalidRequest
from ...core.languages import normalize_language
from ...core.request import validate_scope
from ...core.sqlite import SqliteFile

FIELDS = ("source", "translation", "source_lang", "target_lang", "scope", "origin", "created_at", "updated_at")
REQUIRED = ("source", "translation", "source_lang", "target_lang")
_ORIGIN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
FORMATS = ("jsonl", "csv")


def normalise_text(text: str) -> str:
    """The key a text is looked up by: NFKC, whitespace runs collapsed, outer whitespace dropped, casefolded."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().casefold()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any, name: str) -> float | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be an ISO 8601 time string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} {value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@dataclass(frozen=True)
class MemoryEntry:
    source: str  # the source text as it was entered (lookups use its normalised form)
    translation: str
    source_lang: str
    target_lang: str
    scope: str = ""  # '' = global, else a catalogue/shop id
    origin: str = "api"  # who made it: reviewer, import, api, ...
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_row(self) -> dict[str, str]:
        """The entry as an export row (times in ISO 8601 UTC)."""
        row = {k: v for k, v in asdict(self).items() if k not in ("created_at", "updated_at")}
        return {**row, "created_at": _iso(self.created_at), "updated_at": _iso(self.updated_at)}

    def provenance(self) -> dict[str, str]:
        """What a translation's record says about the entry it came from."""
        return {"scope": self.scope, "entry_origin": self.origin, "entry_updated_at": _iso(self.updated_at)}


@dataclass
class RowError:
    line: int  # 1-based line of the file (CSV: the header is line 1)
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    applied: bool = True  # False for a dry run

    @property
    def valid(self) -> int:
        return self.added + self.updated + self.unchanged

    def summary(self) -> str:
        verb = "imported" if self.applied else "would import (dry run)"
        text = f"{verb} {self.valid} row(s): {self.added} added, {self.updated} updated, {self.unchanged} unchanged"
        if self.errors:
            text += f"; {len(self.errors)} bad row(s) not imported"
        return text


class TranslationMemory(SqliteFile):
    """Scoped, curated (source text, pair) → translation entries in one SQLite file; ``":memory:"`` works too."""

    SCHEMA = (
        """CREATE TABLE IF NOT EXISTS memory (
            source_lang TEXT NOT NULL, target_lang TEXT NOT NULL, scope TEXT NOT NULL, source_key TEXT NOT NULL,
            source_text TEXT NOT NULL, translation TEXT NOT NULL, origin TEXT NOT NULL,
            created_at REAL NOT NULL, updated_at REAL NOT NULL,
            PRIMARY KEY (source_lang, target_lang, scope, source_key)
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS memory_by_target ON memory (target_lang, scope, updated_at)",
    )

    # -- lookups ---------------------------------------------------------------------------------------------

    def lookup_many(self, texts: Iterable[str], source_lang: str, target_lang: str,
                    scope: str = "") -> dict[str, MemoryEntry]:
        """The entry for each of ``texts`` that has one (keyed by the text as given): the scope's, else global."""
        by_key: dict[str, list[str]] = {}
        for text in texts:
            key = normalise_text(text)
            if key:
                by_key.setdefault(key, []).append(text)
        if not by_key:
            return {}
        scopes = list(dict.fromkeys([scope, ""]))
        found: dict[str, MemoryEntry] = {}
        keys = list(by_key)
        with self._lock:
            conn = self._connection()
            rows: list[tuple[Any, ...]] = []
            for start in range(0, len(keys), 400):
                chunk = keys[start:start + 400]
                rows += conn.execute(
                    "SELECT source_key, source_text, translation, scope, origin, created_at, updated_at FROM memory"
                    f" WHERE source_lang=? AND target_lang=? AND scope IN ({','.join('?' * len(scopes))})"
                    f" AND source_key IN ({','.join('?' * len(chunk))})",
                    (source_lang, target_lang, *scopes, *chunk)).fetchall()
        # The scope's own entry wins over the global one: apply global rows first, scoped rows over them.
        for key, source, translation, row_scope, origin, created, updated in sorted(rows, key=lambda r: r[3] != ""):
            entry = MemoryEntry(source, translation, source_lang, target_lang, row_scope, origin, created, updated)
            for text in by_key[key]:
                found[text] = entry
        return found

    def lookup(self, text: str, source_lang: str, target_lang: str, scope: str = "") -> MemoryEntry | None:
        return self.lookup_many([text], source_lang, target_lang, scope).get(text)

    def changed_since(self, timestamp: float, target_lang: str, scope: str = "",
                      source_lang: str | None = None) -> bool:
        """Whether an entry a request of this target (and scope) would use was added or changed at or after
        ``timestamp`` (a result made before that may have used an older translation)."""
        query = ("SELECT 1 FROM memory WHERE target_lang=? AND scope IN (?, '') AND updated_at>=?"
                 + (" AND source_lang=?" if source_lang else "") + " LIMIT 1")
        params: tuple[Any, ...] = (target_lang, scope, timestamp, *((source_lang,) if source_lang else ()))
        with self._lock:
            return self._connection().execute(query, params).fetchone() is not None

    def entries(self, source_lang: str | None = None, target_lang: str | None = None,
                scope: str | None = None) -> Iterator[MemoryEntry]:
        """Every entry (optionally of one pair side or scope), in a stable order."""
        where, params = [], []
        for column, value in (("source_lang", source_lang), ("target_lang", target_lang), ("scope", scope)):
            if value is not None:
                where.append(f"{column}=?")
                params.append(value)
        query = ("SELECT source_text, translation, source_lang, target_lang, scope, origin, created_at, updated_at"
                 " FROM memory" + (f" WHERE {' AND '.join(where)}" if where else "")
                 + " ORDER BY source_lang, target_lang, scope, source_key")
        with self._lock:
            rows = self._connection().execute(query, params).fetchall()
        for row in rows:
            yield MemoryEntry(*row)

    def __len__(self) -> int:
        with self._lock:
            return int(self._connection().execute("SELECT COUNT(*) FROM memory").fetchone()[0])

    # -- writes ----------------------------------------------------------------------------------------------

    def add(self, source: str, translation: str, source_lang: str, target_lang: str, scope: str = "",
            origin: str = "api") -> MemoryEntry:
        """Add or replace the entry of ``source`` in this pair and scope (e.g. a reviewer's approved correction)."""
        entry = check_entry({"source": source, "translation": translation, "source_lang": source_lang,
                             "target_lang": target_lang, "scope": scope, "origin": origin})
        self.put_many([entry])
        return self.lookup(entry.source, entry.source_lang, entry.target_lang, entry.scope) or entry

    def put_many(self, entries: Sequence[MemoryEntry]) -> tuple[int, int, int]:
        """Write checked entries in one transaction; (added, updated, unchanged). An entry keeps its
        ``created_at``; ``updated_at`` is now unless the entry carries its own (an import of an export)."""
        added = updated = unchanged = 0
        now = time.time()
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                for e in entries:
                    key = normalise_text(e.source)
                    prior = conn.execute(
                        "SELECT translation, origin, created_at FROM memory WHERE source_lang=? AND target_lang=?"
                        " AND scope=? AND source_key=?", (e.source_lang, e.target_lang, e.scope, key)).fetchone()
                    if prior is not None and prior[0] == e.translation and prior[1] == e.origin:
                        unchanged += 1
                        continue
                    created = prior[2] if prior is not None else (e.created_at or now)
                    conn.execute("INSERT OR REPLACE INTO memory VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                 (e.source_lang, e.target_lang, e.scope, key, e.source.strip(), e.translation,
                                  e.origin, created, e.updated_at or now))
                    if prior is None:
                        added += 1
                    else:
                        updated += 1
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return added, updated, unchanged

    def delete(self, source: str, source_lang: str, target_lang: str, scope: str = "") -> bool:
        with self._lock:
            cursor = self._connection().execute(
                "DELETE FROM memory WHERE source_lang=? AND target_lang=? AND scope=? AND source_key=?",
                (source_lang, target_lang, scope, normalise_text(source)))
            return cursor.rowcount > 0

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # -- moving between systems ------------------------------------------------------------------------------

    def export_entries(self, out: IO[str], fmt: str = "jsonl", **filters: str | None) -> int:
        """Write every entry (or those matching ``filters``: source_lang, target_lang, scope) as JSONL or CSV."""
        count = 0
        if fmt == "csv":
            writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
            writer.writeheader()
        for entry in self.entries(**filters):
            if fmt == "csv":
                writer.writerow(entry.to_row())
            else:
                out.write(json.dumps(entry.to_row(), ensure_ascii=False) + "\n")
            count += 1
        return count

    def import_entries(self, text: str, fmt: str, *, origin: str = "import", dry_run: bool = False) -> ImportReport:
        """Check every row of a JSONL or CSV export (``FIELDS``; the first four required); write the good ones
        in one transaction (not for a dry run) and report the bad ones by line. A row repeating an earlier row's
        text, pair and scope with another translation is a bad row: which one is meant cannot be told."""
        report = ImportReport(applied=not dry_run)
        good: dict[tuple[str, str, str, str], tuple[int, MemoryEntry]] = {}
        for line, row in parse_rows(text, fmt, report.errors):
            try:
                entry = check_entry(row, default_origin=origin)
            except ValueError as error:
                report.errors.append(RowError(line, str(error)))
                continue
            key = (entry.source_lang, entry.target_lang, entry.scope, normalise_text(entry.source))
            if key in good and good[key][1].translation != entry.translation:
                report.errors.append(RowError(line, f"{entry.source!r} ({entry.source_lang}->{entry.target_lang}, "
                                                    f"scope {entry.scope or 'global'!r}) was given another "
                                                    f"translation on line {good[key][0]}"))
                continue
            good.setdefault(key, (line, entry))
        report.errors.sort(key=lambda e: e.line)
        entries = [entry for _line, entry in good.values()]
        if dry_run:
            existing = {(e.source_lang, e.target_lang, e.scope, normalise_text(e.source)): e
                        for e in self.entries()}
            for key, (_line, entry) in good.items():
                prior = existing.get(key)
                if prior is None:
                    report.added += 1
                elif prior.translation == entry.translation and prior.origin == entry.origin:
                    report.unchanged += 1
                else:
                    report.updated += 1
            return report
        report.added, report.updated, report.unchanged = self.put_many(entries)
        return report


def check_entry(row: dict[str, Any], default_origin: str = "api") -> MemoryEntry:
    """A row as a ``MemoryEntry``, or ``ValueError`` saying what is wrong with it."""
    unknown = sorted(set(row) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))} (known: {', '.join(FIELDS)})")
    for name in REQUIRED:
        value = row.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError(f"{name} is missing or empty")
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, not {type(value).__name__}")
    try:
        source_lang = normalize_language(row["source_lang"], field="source_lang")
        target_lang = normalize_language(row["target_lang"], field="target_lang")
        scope = validate_scope(row.get("scope") or "", field="scope")
    except InvalidRequest as error:
        raise ValueError(str(error)) from None
    if source_lang == target_lang:
        raise ValueError(f"source_lang and target_lang are both {source_lang}")
    origin = row.get("origin") or default_origin
    if not isinstance(origin, str) or not _ORIGIN.fullmatch(origin):
        raise ValueError(f"origin {origin!r} must be a short lower-case word (e.g. reviewer, import)")
    created = _parse_time(row.get("created_at"), "created_at") or 0.0
    updated = _parse_time(row.get("updated_at"), "updated_at") or 0.0
    return MemoryEntry(row["source"].strip(), row["translation"].strip(), source_lang, target_lang, scope, origin,
                       created, updated)


def parse_rows(text: str, fmt: str, errors: list[RowError]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row) of a JSONL or CSV text; rows that cannot be read at all go to ``errors``. A CSV whose header
    lacks a required column raises ``ValueError`` (no row could be read right)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (use {' or '.join(FORMATS)})")
    if fmt == "jsonl":
        for line, raw in enumerate(text.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as error:
                errors.append(RowError(line, f"not JSON: {error.msg} at column {error.colno}"))
                continue
            if not isinstance(row, dict):
                errors.append(RowError(line, f"a JSON object is expected, not {type(row).__name__}"))
                continue
            yield line, row
        return
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise ValueError(f"the CSV header lacks {', '.join(missing)} (it has: {', '.join(header) or 'nothing'})")
    for row in reader:
        line = reader.line_num
        if None in row:  # more cells than header columns
            errors.append(RowError(line, f"{len(header) + len(row[None])} cells for {len(header)} columns"))
            continue
        if any(value is None for value in row.values()):
            errors.append(RowError(line, "fewer cells than columns"))
            continue
        yield line, {k: v for k, v in row.items() if v != "" or k in REQUIRED}


def format_of(path: str, fmt: str | None = None) -> str:
    """The format named, else the one the file name says (.csv; anything else is JSONL)."""
    if fmt:
        return fmt
    return "csv" if path.lower().endswith(".csv") else "jsonl"
