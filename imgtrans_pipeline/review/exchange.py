"""The round trip for outside translators: ``imgtrans export`` writes the blocks of the requests under review to a
CSV or XLIFF 1.2 file, ``imgtrans import`` applies the translations changed in it and re-renders exactly those
requests.

One row (CSV) or ``trans-unit`` (XLIFF) per block: request id, block index, source text, current translation,
the request's quality score and the revision it was exported at. On import, a request is applied as a whole or
not at all: a row naming an unknown request or block, a source text that is not the stored one, or a request whose
revision moved on since the export (someone re-rendered it) is reported and that request is left untouched; the
other requests are applied. A file that cannot be read as a whole (not CSV/XLIFF, missing columns, bad numbers,
XML with a DTD) applies nothing.

CSV columns: ``request_id, block, source, translation, score, revision`` (UTF-8 with BOM, so spreadsheet programs
keep CJK text). XLIFF 1.2: one ``<file>`` per request (``original`` = request id, ``imgtrans:revision`` and
``imgtrans:score`` attributes in our namespace), ``trans-unit id="<request id>#<block>"`` with ``<source>`` and
``<target>``; the score and reasons in a ``<note>`` for the translator.
"""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET  # parsing goes through _parse_xml (no DTD, defusedxml if present)
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..names import OCR_JSON, STATE_NEEDS_REVIEW, TRANSLATION_JSON
from ..storage import get_json
from ..storage.base import ArtifactStore
from . import state as review_state
from .rerender import BlockEdit, RerenderResult
from .state import ReviewError

CSV_COLUMNS = ("request_id", "block", "source", "translation", "score", "revision")
XLIFF_NS = "urn:oasis:names:tc:xliff:document:1.2"
IMGTRANS_NS = "urn:imgtrans-pipeline:review"
FORMATS = ("csv", "xliff")


class MalformedFile(ReviewError):
    kind = "malformed_file"


@dataclass
class Row:
    request_id: str
    block: int
    source: str
    translation: str
    score: float | None
    revision: int
    where: str = ""  # line or unit, for messages


@dataclass
class ImportReport:
    applied: list[RerenderResult] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # request id -> what was wrong (nothing applied to it)

    @property
    def ok(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        out = [f"{r.request_id}: re-rendered, revision {r.revision} (blocks "
               f"{', '.join(str(c['block']) for c in r.changes)})" for r in self.applied]
        out += [f"{rid}: unchanged" for rid in self.unchanged]
        out += [f"{rid}: NOT APPLIED: {reason}" for rid, reason in self.errors.items()]
        return out


# --- export -------------------------------------------------------------------------------------------------------

def export_rows(store: ArtifactStore, state: str | None = STATE_NEEDS_REVIEW) -> list[Row]:
    rows: list[Row] = []
    for entry in review_state.list_reviews(store, state):
        request_id = entry["request_id"]
        record = review_state.load(store, request_id) or entry
        pairs = get_json(store, request_id, TRANSLATION_JSON).get("pairs", [])
        score = record.get("score")
        for index, pair in enumerate(pairs):
            rows.append(Row(request_id, index, pair["source"], pair["translation"],
                            None if score is None else float(score), int(record["revision"])))
    return rows


def write_csv(rows: list[Row], path: Path) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow([row.request_id, row.block, row.source, row.translation,
                             "" if row.score is None else f"{row.score:.4f}", row.revision])


def write_xliff(rows: list[Row], path: Path, store: ArtifactStore | None = None) -> None:
    ET.register_namespace("", XLIFF_NS)
    ET.register_namespace("imgtrans", IMGTRANS_NS)
    root = ET.Element(f"{{{XLIFF_NS}}}xliff", {"version": "1.2"})
    files: dict[str, ET.Element] = {}
    for row in rows:
        body = files.get(row.request_id)
        if body is None:
            record = review_state.load(store, row.request_id) if store is not None else None
            attributes = {"original": row.request_id, "datatype": "plaintext",
                          "source-language": (record or {}).get("source_lang") or "x-unknown",
                          "target-language": (record or {}).get("target_lang") or "x-unknown",
                          f"{{{IMGTRANS_NS}}}revision": str(row.revision)}
            if row.score is not None:
                attributes[f"{{{IMGTRANS_NS}}}score"] = f"{row.score:.4f}"
            file_element = ET.SubElement(root, f"{{{XLIFF_NS}}}file", attributes)
            body = files[row.request_id] = ET.SubElement(file_element, f"{{{XLIFF_NS}}}body")
        unit = ET.SubElement(body, f"{{{XLIFF_NS}}}trans-unit", {"id": f"{row.request_id}#{row.block}"})
        ET.SubElement(unit, f"{{{XLIFF_NS}}}source").text = row.source
        ET.SubElement(unit, f"{{{XLIFF_NS}}}target").text = row.translation
        if row.score is not None:
            ET.SubElement(unit, f"{{{XLIFF_NS}}}note").text = f"quality score {row.score:.2f}"
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def export(store: ArtifactStore, path: Path, fmt: str, state: str | None = STATE_NEEDS_REVIEW) -> int:
    """Write the blocks of the requests in ``state``; returns how many rows."""
    rows = export_rows(store, state)
    if fmt == "csv":
        write_csv(rows, path)
    elif fmt == "xliff":
        write_xliff(rows, path, store)
    else:
        raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    return len(rows)


# --- reading a file back ------------------------------------------------------------------------------------------

def _int(value: Any, what: str, where: str) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise MalformedFile(f"{where}: {what} {value!r} is not a whole number") from None


def _score(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def read_csv(data: str) -> list[Row]:
    reader = csv.DictReader(io.StringIO(data.lstrip("\ufeff")))
    missing = [c for c in ("request_id", "block", "source", "translation", "revision")
               if c not in (reader.fieldnames or [])]
    if missing:
        raise MalformedFile(f"CSV header lacks column(s) {', '.join(missing)} (expected {', '.join(CSV_COLUMNS)})")
    rows = []
    try:
        for record in reader:
            where = f"line {reader.line_num}"
            if None in record or any(record.get(c) is None for c in ("request_id", "block", "translation")):
                raise MalformedFile(f"{where}: wrong number of fields")
            rows.append(Row(record["request_id"].strip(), _int(record["block"], "block", where), record["source"],
                            record["translation"], _score(record.get("score")),
                            _int(record["revision"], "revision", where), where))
    except csv.Error as error:
        raise MalformedFile(f"CSV: {error}") from None
    return rows


def _parse_xml(data: bytes) -> ET.Element:
    # Files come from outside: no DTD at all (entity expansion bombs, external entities).
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise MalformedFile("XLIFF: a DTD or entity declaration is not accepted")
    try:
        import defusedxml.ElementTree as safe  # type: ignore[import-untyped]

        parse = safe.fromstring
    except ImportError:
        parse = ET.fromstring  # DTDs refused above
    try:
        return parse(data)
    except ET.ParseError as error:
        raise MalformedFile(f"XLIFF: not well-formed XML ({error})") from None


def read_xliff(data: bytes) -> list[Row]:
    root = _parse_xml(data)
    if root.tag != f"{{{XLIFF_NS}}}xliff":
        raise MalformedFile(f"XLIFF: the root element is {root.tag}, not an XLIFF 1.2 <xliff>")
    rows = []
    for file_element in root.findall(f"{{{XLIFF_NS}}}file"):
        request_id = file_element.get("original", "")
        where = f"<file original={request_id!r}>"
        revision = _int(file_element.get(f"{{{IMGTRANS_NS}}}revision"), "imgtrans:revision", where)
        score = _score(file_element.get(f"{{{IMGTRANS_NS}}}score"))
        for unit in file_element.iter(f"{{{XLIFF_NS}}}trans-unit"):
            unit_id = unit.get("id", "")
            prefix, _, block = unit_id.rpartition("#")
            if prefix != request_id:
                raise MalformedFile(f"{where}: trans-unit id {unit_id!r} is not '<request id>#<block>'")
            source, target = unit.find(f"{{{XLIFF_NS}}}source"), unit.find(f"{{{XLIFF_NS}}}target")
            if source is None or target is None:
                raise MalformedFile(f"trans-unit {unit_id!r} lacks <source> or <target>")
            rows.append(Row(request_id, _int(block, "block", f"trans-unit {unit_id!r}"), "".join(source.itertext()),
                            "".join(target.itertext()), score, revision, f"trans-unit {unit_id!r}"))
    return rows


def read_file(path: Path) -> list[Row]:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise MalformedFile(f"cannot read {path}: {error.strerror}") from None
    if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return read_xliff(data)
    try:
        return read_csv(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise MalformedFile(f"{path} is neither XLIFF nor UTF-8 CSV") from None


# --- import ---------------------------------------------------------------------------------------------------------

Rerender = Callable[..., RerenderResult]


def _check(store: ArtifactStore, request_id: str, rows: list[Row]) -> list[BlockEdit]:
    """The edits of one request's rows, or a ``ReviewError`` saying why none of them may be applied."""
    record = review_state.load(store, request_id)
    if record is None or not store.exists(request_id, TRANSLATION_JSON):
        raise review_state.UnknownRequest(f"unknown request (not under review in {store!r})")
    revisions = {row.revision for row in rows}
    if revisions != {int(record["revision"])}:
        raise review_state.RevisionConflict(
            f"exported at revision {', '.join(map(str, sorted(revisions)))}, now at revision {record['revision']} "
            f"(changed since the export by {record['history'][-1].get('by')}); export again")
    if record["state"] == review_state.REJECTED:
        raise review_state.WrongState("the request was rejected")
    blocks = get_json(store, request_id, OCR_JSON).get("blocks", [])
    pairs = get_json(store, request_id, TRANSLATION_JSON).get("pairs", [])
    edits = []
    seen: set[int] = set()
    for row in rows:
        if not 0 <= row.block < len(blocks):
            raise review_state.UnknownBlock(f"{row.where}: no block {row.block} (the request has {len(blocks)})")
        if row.block in seen:
            raise ReviewError(f"{row.where}: block {row.block} appears twice")
        seen.add(row.block)
        if row.source.strip() != pairs[row.block]["source"].strip():
            raise ReviewError(f"{row.where}: block {row.block}'s source text is not the stored one")
        if not row.translation.strip():
            raise ReviewError(f"{row.where}: block {row.block}'s translation is empty")
        if row.translation.strip() != pairs[row.block]["translation"].strip():
            edits.append(BlockEdit(block=row.block, text=row.translation))
    return edits


def apply_import(store: ArtifactStore, rows: list[Row], rerender: Rerender, *, by: str = "import"
                 ) -> ImportReport:
    """Check each request's rows, then re-render the requests whose translations changed (expecting the exported
    revision, so a concurrent change is a conflict, not an overwrite)."""
    report = ImportReport()
    by_request: dict[str, list[Row]] = {}
    for row in rows:
        by_request.setdefault(row.request_id, []).append(row)
    for request_id, request_rows in by_request.items():
        try:
            edits = _check(store, request_id, request_rows)
            if not edits:
                report.unchanged.append(request_id)
                continue
            report.applied.append(rerender(request_id, edits, expected_revision=request_rows[0].revision, by=by))
        except ReviewError as error:
            report.errors[request_id] = error.message
        except Exception as error:  # one request's storage trouble must not hide what happened to the others
            report.errors[request_id] = f"{type(error).__name__}: {error}"
    return report
