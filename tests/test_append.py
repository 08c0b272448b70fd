"""Rows appended to a dump are added to a copy of the index (index_build.append)
instead of a rebuild, and the result holds what a full build of the same files
holds; anything else that changed sends the build down the ordinary path.
Real builder, model, index files and engine; every file is written here."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

OLD_ROWS = [
    {
        "id": "a1",
        "headline": "Harbour bridge to close",
        "body": "The harbour bridge will close for six weeks from May so that engineers can replace its corroded "
        "cables. Ferries will run every ten minutes while the bridge is shut.",
        "date": "2024-03-12",
        "url": "https://courier.example.com/bridge",
        "source": "Coastal Courier",
    },
    {
        "id": "a2",
        "headline": "Museum reopens",
        "body": "The museum will reopen its east wing in June after a two-year restoration of the painted ceilings. "
        "Entry to the east wing will be free for the first month.",
        "date": "2024-04-02",
        "source": "Valley News",
    },
]
NEW_ROWS = [
    {
        "id": "b1",
        "headline": "Orchard wins award",
        "body": "A family orchard in the valley has won the national cider prize for its dry perry. "
        "The judges tasted more than four hundred entries over three days.",
        "date": "2024-05-20",
        "url": "https://valley.example.com/cider",
        "source": "Valley News",
    },
    {  # the bridge story again, under the same row id as before and another outlet
        "id": "a1",
        "headline": "Bridge closure confirmed",
        "body": "The harbour bridge will close for six weeks from May so that engineers can replace its corroded "
        "cables. Cyclists may still use the footpath on the east side.",
        "date": "2024-03-14",
        "source": "Harbour Herald",
    },
]
CSV_HEAD = "story_id,title,story_text,pub\n"
CSV_OLD = 's1,Rates held,"The central bank kept its main interest rate at 4.5% for a third month.",2024-02-01\n'
CSV_NEW = 's2,Rail strike,"Train drivers on the coast line will strike for two days next week over pay.",2024-02-09\n'


def _line(row: dict) -> str:
    return json.dumps(row) + "\n"


def _build(src: Path, out: Path, **cfg):
    from index_build import build
    from qa.config import BuildConfig

    return build([src], out, BuildConfig(progress=False, **cfg), log=lambda m: None)


def _sources(root: Path) -> Path:
    src = root / "sources"
    src.mkdir(parents=True)
    (src / "wire.jsonl").write_text("".join(_line(r) for r in OLD_ROWS), encoding="utf-8")
    (src / "export.csv").write_text(CSV_HEAD + CSV_OLD, encoding="utf-8")
    (src / "note.txt").write_text(
        "Title: Council note\n\nThe council approved a new library for the old market square on Monday.\n",
        encoding="utf-8",
    )
    return src


def _grow(src: Path) -> None:
    with open(src / "wire.jsonl", "a", encoding="utf-8") as f:
        f.write(_line(NEW_ROWS[0]) + "{broken\n" + _line(NEW_ROWS[1]))
    with open(src / "export.csv", "a", encoding="utf-8") as f:
        f.write(CSV_NEW)


def _contents(index: Path) -> dict:
    """What an index says about each article: every sentence's span and the
    unique sentence it belongs to (as text), keyed by doc id, plus counts."""
    con = sqlite3.connect(index / "meta.sqlite")
    try:
        docs = dict(con.execute("SELECT doc_idx, doc_id FROM documents"))
        texts = dict(con.execute("SELECT sent_idx, text FROM sentences"))
        spans = {
            (docs[d], n): (a, b, texts.get(s))
            for d, n, a, b, s in con.execute("SELECT doc_idx, sent_no, start, end, sent_idx FROM doc_sentences")
        }
        meta = {
            doc_id: (title, published, outlet, url)
            for doc_id, title, published, outlet, url in con.execute(
                "SELECT doc_id, title, published, outlet, url FROM documents"
            )
        }
        passages = con.execute("SELECT COUNT(*) FROM passages").fetchone()[0]
    finally:
        con.close()
    return {"spans": spans, "meta": meta, "passages": passages, "unique": len(texts)}


@pytest.fixture(scope="module")
def grown(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("append")
    src = _sources(root)
    cols = {"columns": {"text": "story_text", "published": "pub", "id": "story_id"}}
    first = _build(src, root / "index", **cols)
    _grow(src)
    appended = _build(src, root / "index", **cols)
    full = _build(src, root / "full", full=True, **cols)
    return {"root": root, "src": src, "cols": cols, "first": first, "appended": appended, "full": full}


def test_appended_rows_are_read_alone_and_added(grown: dict) -> None:
    first, rep = grown["first"], grown["appended"]
    assert first.appended is None  # a first build reads everything
    assert rep.appended == 3  # two JSONL rows and one CSV row; the broken line is skipped
    assert rep.documents == first.documents + 3
    wire = next(d for d in rep.dump_rows if d["path"].endswith("wire.jsonl"))
    assert wire["articles"] == 4 and wire["rows_skipped"] == 1
    assert wire["first_skipped"] == [{"line": 4, "reason": "broken JSON (JSONDecodeError)"}]  # numbering goes on
    # five new answer sentences, of which the bridge's first joins its earlier unique sentence: four encoded
    assert rep.sentences - first.sentences == 5
    assert rep.unique_sentences - first.unique_sentences == 4 == rep.sentences_embedded
    assert rep.sentences_reused == first.unique_sentences


def test_the_grown_index_holds_what_a_full_build_holds(grown: dict) -> None:
    a, f = _contents(grown["root"] / "index"), _contents(grown["root"] / "full")
    assert a["spans"] == f["spans"]  # same articles, same sentences, same unique sentence for each
    assert a["meta"] == f["meta"]
    assert a["passages"] == f["passages"] and a["unique"] == f["unique"]
    assert "wire/a1~2" in a["meta"]  # a row id seen before gets the next free doc id, as in a full build
    rep, full = grown["appended"].to_dict(), grown["full"].to_dict()
    for k in ("documents", "sentences", "unique_sentences", "passages", "metadata", "dump_rows"):
        assert rep[k] == full[k], k


def test_the_engine_answers_from_the_appended_rows_with_their_sources(grown: dict) -> None:
    import qa

    engine = qa.load(grown["root"] / "index")
    res = engine.ask("Which prize did the orchard win?")
    top = res.answers[0]
    assert "cider prize" in top.text
    assert top.sources[0].url == "https://valley.example.com/cider" and top.sources[0].published == "2024-05-20"
    res = engine.ask("How long will the harbour bridge be closed?")
    top = res.answers[0]
    assert "six weeks" in top.text
    assert {s.outlet for s in top.sources} == {"Coastal Courier", "Harbour Herald"}  # one quote, both reports
    assert "strike for two days" in engine.ask("How long will the train drivers strike?").answers[0].text


def test_an_unchanged_rebuild_and_appends_one_after_another(tmp_path: Path) -> None:
    import qa

    src, index = _sources(tmp_path), tmp_path / "index"
    (src / "export.csv").unlink()
    _build(src, index)
    before = _contents(index)
    same = _build(src, index)
    assert same.appended == 0 and same.sentences_embedded == 0
    assert _contents(index) == before
    for k, body in enumerate(["The ferry company ordered two electric boats today.", "The old pier will be rebuilt."]):
        with open(src / "wire.jsonl", "a", encoding="utf-8") as f:
            f.write(_line({**NEW_ROWS[0], "id": f"c{k}", "body": body}))
        again = _build(src, index)
        assert again.appended == 1 and again.sentences_embedded == 1
    engine = qa.load(index)
    assert "electric boats" in engine.ask("What did the ferry company order?").answers[0].text
    assert "pier" in engine.ask("What will happen to the old pier?").answers[0].text


@pytest.mark.parametrize("change", ["edit-row", "edit-file", "no-newline", "shrink", "columns"])
def test_any_other_change_rebuilds_from_every_file(change: str, tmp_path: Path) -> None:
    src = _sources(tmp_path)
    cols = {"columns": {"text": "story_text", "published": "pub", "id": "story_id"}}
    _build(src, tmp_path / "index", **cols)
    wire = src / "wire.jsonl"
    if change == "edit-row":  # same length, one word changed inside an earlier row, and a row added
        wire.write_text(
            wire.read_text(encoding="utf-8").replace("six weeks", "ten weeks") + _line(NEW_ROWS[0]), encoding="utf-8"
        )
    elif change == "edit-file":
        (src / "note.txt").write_text("Title: Council note\n\nThe council rejected the library plan.\n")
        with open(wire, "a", encoding="utf-8") as f:
            f.write(_line(NEW_ROWS[0]))
    elif change == "no-newline":  # the last row ran on: rows added after it change it
        wire.write_text(wire.read_text(encoding="utf-8").rstrip("\n"), encoding="utf-8")
        _build(src, tmp_path / "index", **cols)
        with open(wire, "a", encoding="utf-8") as f:
            f.write("\n" + _line(NEW_ROWS[0]))
    elif change == "shrink":
        wire.write_text(_line(OLD_ROWS[0]), encoding="utf-8")
    elif change == "columns":
        with open(wire, "a", encoding="utf-8") as f:
            f.write(_line(NEW_ROWS[0]))
        cols = {"columns": {"text": "story_text", "id": "story_id"}}
    rep = _build(src, tmp_path / "index", **cols)
    assert rep.appended is None
    full = _build(src, tmp_path / "full", full=True, **cols)
    assert _contents(tmp_path / "index") == _contents(tmp_path / "full")
    assert rep.documents == full.documents


def test_new_rows_that_cannot_be_read_alone_send_the_build_the_ordinary_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from index_build import dumps

    src = _sources(tmp_path)
    cols = {"columns": {"text": "story_text", "published": "pub", "id": "story_id"}}
    _build(src, tmp_path / "index", **cols)
    _grow(src)
    real = dumps.rows

    def failing(path, mapping=None, max_bytes=None, state=None, resume=None):
        if resume is not None:  # the file vanished or failed under the build, after the check
            raise OSError(5, "Input/output error")
        return real(path, mapping, max_bytes, state, resume)

    monkeypatch.setattr(dumps, "rows", failing)
    rep = _build(src, tmp_path / "index", **cols)
    assert rep.appended is None and rep.documents == 7
    full = _build(src, tmp_path / "full", full=True, **cols)
    assert _contents(tmp_path / "index") == _contents(tmp_path / "full") and full.documents == 7


def test_a_file_unusable_last_time_and_unchanged_does_not_stop_appending(tmp_path: Path) -> None:
    src = _sources(tmp_path)
    (src / "broken.txt").write_bytes(b"\x00\x01\x02 not text \x00" * 50)
    cols = {"columns": {"text": "story_text", "published": "pub", "id": "story_id"}}
    first = _build(src, tmp_path / "index", **cols)
    assert [s["path"] for s in first.files_skipped] == [str(src / "broken.txt")]
    _grow(src)
    rep = _build(src, tmp_path / "index", **cols)
    assert rep.appended == 3
    assert rep.files_skipped == first.files_skipped  # reported again, with its reason
    with open(src / "wire.jsonl", "a", encoding="utf-8") as f:
        f.write(_line({**NEW_ROWS[0], "id": "c9", "body": "The ferry company ordered two electric boats today."}))
    (src / "broken.txt").write_text("Title: Fixed\n\nThe broken file now holds a readable story about the harbour.\n")
    fixed = _build(src, tmp_path / "index", **cols)
    assert fixed.appended is None and not fixed.files_skipped  # it changed: everything is read, and it is found
