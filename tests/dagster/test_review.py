"""The review loop without Redis: the quality gate holds CLI results, export → edit → import re-renders exactly the
changed request (a rerender_request run), revisions are kept, and two concurrent re-renders stay consistent."""

from __future__ import annotations

import csv
import threading

import numpy as np
import pytest
from dagster import DagsterInstance, RunsFilter
from PIL import Image

from imgtrans_pipeline import names
from imgtrans_pipeline.cli import main
from imgtrans_pipeline.engines.translate.memory import TranslationMemory
from imgtrans_pipeline.orchestration.resources import stage_runner
from imgtrans_pipeline.review import BlockEdit, RevisionConflict, UnknownBlock, WrongState
from imgtrans_pipeline.review import rerender as rerender_module
from imgtrans_pipeline.review.exchange import MalformedFile, apply_import, read_file
from imgtrans_pipeline.review.service import ReviewService
from imgtrans_pipeline.review.state import list_reviews
from imgtrans_pipeline.storage import get_json
from tests.support.imagegen import text_image
from tests.support.review import HELD_TEXTS, held_by_cli


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    """Three images translated by the CLI with every result held for review (IMGTRANS_REVIEW_BELOW=1.01)."""
    tmp = tmp_path_factory.mktemp("review")
    with held_by_cli(tmp, "--out", str(tmp / "out"), IMGTRANS_TRANSLATION_MEMORY=str(tmp / "memory.sqlite")) as code:
        yield tmp, code


def service() -> ReviewService:
    return ReviewService()


def test_gate_holds_every_result_and_delivers_nothing(held, capsys):
    tmp, code = held
    assert code == 0
    store = service().store
    pending = list_reviews(store)
    assert len(pending) == 3
    for entry in pending:
        meta = get_json(store, entry["request_id"], names.META_JSON)
        assert meta["status"] == "needs_review" and entry["revision"] == 1 and entry["created_at"]
        assert "below IMGTRANS_REVIEW_BELOW=1.01" in meta["review"]["why"]
        assert entry["score"] == meta["quality"]["score"]
        assert store.exists(entry["request_id"], "result.png")  # artifacts stored...
    assert not (tmp / "out").exists() or not list((tmp / "out").iterdir())  # ...but not delivered


def test_export_edit_import_rerenders_only_the_changed_request(held, render_reader, tmp_path, capsys):
    store = service().store
    before = {e["request_id"]: store.get(e["request_id"], "result.png") for e in list_reviews(store)}
    exported = tmp_path / "review.csv"
    assert main(["export", "--state", "needs_review", "--format", "csv", "--out", str(exported)]) == 0
    with exported.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and {r["revision"] for r in rows} == {"1"} and all(r["score"] for r in rows)
    target = next(r for r in rows if r["source"] == "全新升级")
    original = target["translation"]
    target["translation"] = "Fresh Cotton Linen"
    with exported.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    capsys.readouterr()
    assert main(["import", str(exported), "--by", "alice"]) == 0
    out = capsys.readouterr().out
    assert f"{target['request_id']}: re-rendered, revision 2 (blocks 0)" in out
    assert "1 request(s) re-rendered, 2 unchanged, 0 not applied" in out

    rid = target["request_id"]
    result = np.asarray(Image.open(store.path(rid, "result.png")).convert("RGB"))
    read = render_reader(result).lower()
    assert "cotton" in read and "linen" in read, read
    meta = get_json(store, rid, names.META_JSON)
    assert meta["revision"]["number"] == 2 and meta["revision"]["by"] == "alice"
    assert meta["revision"]["changes"] == [{"block": 0, "field": "text", "from": original,
                                            "to": "Fresh Cotton Linen"}]
    assert meta["status"] == "needs_review"  # a correction is not an approval
    assert store.get(rid, "rev-1.result.png") == before[rid]  # the old revision is kept
    assert get_json(store, rid, "rev-1.meta.json").get("revision") is None
    for other, data in before.items():
        if other != rid:
            assert store.get(other, "result.png") == data and "revision" not in get_json(store, other, "meta.json")
    with DagsterInstance.get() as instance:
        runs = instance.get_runs(RunsFilter(job_name=names.RERENDER_JOB, tags={names.TAG_FIRST_REQUEST: rid}))
    assert len(runs) == 1 and runs[0].tags[names.TAG_SOURCE] == names.SOURCE_REVIEW

    # The same file again: that request moved on since the export, the others are unchanged.
    assert main(["import", str(exported)]) == 1
    out = capsys.readouterr().out
    assert f"{rid}: NOT APPLIED: exported at revision 1, now at revision 2" in out
    assert get_json(store, rid, names.META_JSON)["revision"]["number"] == 2


def test_approved_correction_becomes_memory_for_later_requests(held, tmp_path, capsys):
    """Issue 12 item 4: approving a corrected result writes the reviewer's text into the translation memory, and a
    later image with the same source text gets it before any engine."""
    tmp, _ = held
    svc = service()
    rid = next(e["request_id"] for e in list_reviews(svc.store)
               if svc.details(e["request_id"])["blocks"][0]["source"] == "全新升级")
    svc.rerender(rid, [BlockEdit(0, text="Brand-new Edition")], by="erin")
    done = svc.approve(rid, by="erin")
    assert done["state"] == "approved" and done["remembered"] == 1
    entry = TranslationMemory(str(tmp / "memory.sqlite")).lookup("全新升级", "zh", "en")
    assert entry is not None and entry.translation == "Brand-new Edition" and entry.origin == "reviewer"

    later = text_image(["全新升级"], width=380, height=140, font_size=40).save(tmp_path / "later.png")
    capsys.readouterr()
    assert main(["translate", str(later), "--to", "en", "--from", "zh", "--out", str(tmp_path / "out"),
                 "--json"]) == 0
    new = next(e["request_id"] for e in list_reviews(svc.store) if e["request_id"] not in {rid}
               and svc.details(e["request_id"])["blocks"][0]["source"] == "全新升级")
    pair = get_json(svc.store, new, names.TRANSLATION_JSON)["pairs"][0]
    assert pair["translation"] == "Brand-new Edition" and pair["via"]["origin"] == "memory", pair


def test_xliff_round_trip_and_bad_rows(held, tmp_path):
    svc = service()
    exported = tmp_path / "review.xlf"
    assert main(["export", "--format", "xliff", "--out", str(exported)]) == 0
    rows = read_file(exported)
    assert len(rows) == 3
    by_id = {r.request_id: r for r in rows}
    first, second, third = sorted(by_id)
    text = exported.read_text(encoding="utf-8")
    # An unknown block for one request, an unknown request: reported, the valid request still applied.
    text = text.replace(f'id="{second}#0"', f'id="{second}#7"').replace(f'original="{third}"', 'original="nope-1"')
    text = text.replace(f'id="{third}#0"', 'id="nope-1#0"')
    edited = by_id[first].translation + " now"
    text = text.replace(f"<target>{by_id[first].translation}</target>", f"<target>{edited}</target>", 1)
    exported.write_text(text, encoding="utf-8")
    report = apply_import(svc.store, read_file(exported), svc.rerender, by="bob")
    assert [r.request_id for r in report.applied] == [first]
    assert "no block 7" in report.errors[second] and "unknown request" in report.errors["nope-1"]
    assert get_json(svc.store, first, "translation.json")["pairs"][0]["translation"] == edited
    assert get_json(svc.store, second, "review.json")["revision"] == by_id[second].revision  # untouched


@pytest.mark.parametrize("content", [
    "request_id,block\nx,1\n",  # missing columns
    "request_id,block,source,translation,score,revision\nx,one,a,b,1,1\n",  # not a number
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xliff>&a;</xliff>',  # a DTD
    "<xliff version='1.2' xmlns='urn:oasis:names:tc:xliff:document:1.2'><file",  # not well-formed
])
def test_malformed_files_apply_nothing(held, tmp_path, content, capsys):
    path = tmp_path / "bad.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(MalformedFile):
        read_file(path)
    assert main(["import", str(path)]) == 2
    assert "nothing applied" in capsys.readouterr().err


def test_concurrent_rerenders_end_with_one_consistent_revision(held):
    svc = service()
    rid = list_reviews(svc.store)[-1]["request_id"]
    start = get_json(svc.store, rid, "review.json")["revision"]
    runner = stage_runner(svc._resources)
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def review(name: str) -> None:
        barrier.wait()
        try:
            outcomes[name] = rerender_module.rerender(runner, rid, [BlockEdit(0, text=f"Sale by {name}")],
                                                      expected_revision=start, by=name)
        except RevisionConflict as error:
            outcomes[name] = error

    threads = [threading.Thread(target=review, args=(name,)) for name in ("ann", "ben")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    won = [n for n, o in outcomes.items() if not isinstance(o, Exception)]
    lost = [n for n, o in outcomes.items() if isinstance(o, RevisionConflict)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    record = get_json(svc.store, rid, "review.json")
    meta = get_json(svc.store, rid, "meta.json")
    translation = get_json(svc.store, rid, "translation.json")["pairs"][0]["translation"]
    assert record["revision"] == meta["revision"]["number"] == start + 1
    assert translation == f"Sale by {won[0]}" and meta["revision"]["by"] == won[0]
    # Without an expected revision, the second reviewer's change is made on top: revision start + 2.
    later = rerender_module.rerender(runner, rid, [BlockEdit(0, text="Sale by both")], by="ben")
    assert later.revision == start + 2 and svc.store.exists(rid, f"rev-{start + 1}.result.png")
    with pytest.raises(UnknownBlock):
        rerender_module.rerender(runner, rid, [BlockEdit(5, text="x")])


def test_approve_and_reject_without_redis(held):
    svc = service()
    first, second = [e["request_id"] for e in list_reviews(svc.store)][:2]
    done = svc.approve(first, by="carol")
    assert done["state"] == "approved" and not done["delivered_through_intake"]
    assert get_json(svc.store, first, "meta.json")["status"] == "succeeded"
    with pytest.raises(WrongState):
        svc.approve(first)
    svc.reject(second, reason="wrong product name", by="dan")
    meta = get_json(svc.store, second, "meta.json")
    assert meta["status"] == "rejected" and meta["error"]["reason"] == "rejected by dan: wrong product name"
    assert {e["request_id"] for e in list_reviews(svc.store)}.isdisjoint({first, second})
    details = svc.details(first)  # what a review page shows
    assert details["state"] == "approved" and [b["source"] for b in details["blocks"]] in [list(t) for t in HELD_TEXTS]
