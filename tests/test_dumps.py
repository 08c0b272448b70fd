"""News as people hold it: JSONL/CSV exports (one article a row), RSS/Atom
feed files and Word files, through the real builder, index and engine.
Every file here is written by the test."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROWS = [
    {
        "id": "a1",
        "headline": "Harbour bridge to close",
        "body": "The harbour bridge will close for six weeks from "
        "May so that engineers can replace its corroded cables. Ferries will run every ten minutes.",
        "pubDate": "Tue, 12 Mar 2024 08:30:00 GMT",
        "link": "https://courier.example.com/bridge",
        "source": "Coastal Courier",
        "byline": "Dana Whitfield",
    },
    {
        "id": "a2",
        "headline": "Museum reopens",
        "body": "The museum will reopen its east wing in June after a two-year restoration of the painted ceilings.",
        "pubDate": "2024-04-02",
        "source": "Valley News",
    },
]


def _write_jsonl(path: Path, rows: list[dict], extra_lines: list[str] = ()) -> None:
    lines = [json.dumps(r) for r in rows] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _build(src: Path, out: Path, **cfg):
    from index_build import build
    from qa.config import BuildConfig

    return build([src], out, BuildConfig(progress=False, **cfg), log=lambda m: None)


@pytest.fixture(scope="module")
def dump_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("dumps")
    src = root / "sources"
    src.mkdir()
    _write_jsonl(
        src / "wire.jsonl",
        ROWS,
        ['{"id": "a3", "headline": "broken', json.dumps({"id": "a4", "body": ""}), "[1, 2, 3]"],
    )
    (src / "export.csv").write_text(
        "story_id,title,story_text,pub,url\n"
        's1,Rates held,"The central bank kept its main interest rate at 4.5% for a third month, citing sticky '
        'prices.",2024-02-01,https://wire.example.com/rates\n'
        "s2,No text here,,2024-02-02,\n",
        encoding="utf-8",
    )
    (src / "feed.rss").write_text(
        """<?xml version="1.0"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>
<title>Island Gazette</title><link>https://gazette.example.org</link><description>News</description>
<item><title>Ferry fares rise</title><link>https://gazette.example.org/fares</link>
<pubDate>Mon, 06 Jan 2020 10:00:00 GMT</pubDate><author>news@gazette.example.org (Sam Reyes)</author>
<description>Short teaser.</description>
<content:encoded><![CDATA[<p>Ferry fares to the island will rise by 8% in April, the operator said.</p>
<p>Season tickets are not affected.</p>]]></content:encoded></item>
<item><title>Lighthouse repainted</title><link>https://gazette.example.org/lighthouse</link>
<description>The old lighthouse on the north cape has been repainted red and white for the first time since 1990.</description>
</item></channel></rss>""",
        encoding="utf-8",
    )
    report = _build(src, root / "index", columns={"text": "story_text", "published": "pub", "id": "story_id"})
    return root, src, report.to_dict()


def test_each_row_and_item_is_an_article_with_its_metadata(dump_index) -> None:
    import qa

    root, _, report = dump_index
    engine = qa.load(root / "index", warm=False)
    rows = {r[0]: r[1:] for r in engine.sql("SELECT doc_id, title, published, outlet, author, url FROM documents")}
    assert rows["wire/a1"] == (
        "Harbour bridge to close",
        "2024-03-12",
        "Coastal Courier",
        "Dana Whitfield",
        "https://courier.example.com/bridge",
    )
    assert rows["wire/a2"] == ("Museum reopens", "2024-04-02", "Valley News", None, None)
    assert rows["export/s1"] == ("Rates held", "2024-02-01", None, None, "https://wire.example.com/rates")
    assert rows["feed/1"][:3] == ("Ferry fares rise", "2020-01-06", "Island Gazette")
    assert rows["feed/1"][4] == "https://gazette.example.org/fares"
    assert rows["feed/2"][0] == "Lighthouse repainted"
    assert set(rows) == {"wire/a1", "wire/a2", "export/s1", "feed/1", "feed/2"}
    # the full text of a feed item, not its teaser
    res = engine.ask("How much will ferry fares rise?")
    assert "8%" in res.answers[0].text and res.answers[0].sources[0].outlet == "Island Gazette"
    res = engine.ask("What rate did the central bank keep?")
    assert "4.5%" in res.answers[0].text and res.answers[0].sources[0].doc_id == "export/s1"


def test_bad_rows_are_skipped_and_counted_with_their_lines(dump_index) -> None:
    _, _, report = dump_index
    by = {Path(d["path"]).name: d for d in report["dump_rows"]}
    wire = by["wire.jsonl"]
    assert (wire["articles"], wire["rows_skipped"]) == (2, 3)
    assert [(k["line"], k["reason"].split(" (")[0]) for k in wire["first_skipped"]] == [
        (3, "broken JSON"),
        (4, "no text"),
        (5, "not a JSON object"),
    ]
    assert (by["export.csv"]["articles"], by["export.csv"]["rows_skipped"]) == (1, 1)
    assert by["feed.rss"]["articles"] == 2


def test_a_dump_without_a_text_column_names_the_columns_it_found(tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _write_jsonl(src / "odd.jsonl", [{"id": 1, "words": "The council met on Monday and approved the budget."}])
    (src / "ok.txt").write_text("Budget\n\nThe council approved the budget on Monday night.\n", encoding="utf-8")
    report = _build(src, tmp_path / "index").to_dict()
    [skip] = report["files_skipped"]
    assert skip["path"].endswith("odd.jsonl") and "no text column (found: id, words)" in skip["reason"]
    assert "--columns text=COLUMN" in skip["reason"]
    report = _build(src, tmp_path / "index2", columns={"text": "words"}).to_dict()
    assert not report["files_skipped"] and report["documents"] == 2


def test_adding_rows_rebuilds_only_them(tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _write_jsonl(src / "wire.jsonl", ROWS)
    first = _build(src, tmp_path / "index").to_dict()
    more = ROWS + [
        {
            "id": "a9",
            "headline": "Pier opens",
            "body": "The new pier opened to walkers on Saturday after three years of work.",
            "pubDate": "2024-05-04",
        }
    ]
    _write_jsonl(src / "wire.jsonl", more)
    second = _build(src, tmp_path / "index").to_dict()
    assert second["documents"] == 3
    assert second["sentences_embedded"] == 1 and second["sentences_reused"] == first["unique_sentences"]


def test_a_row_over_the_size_cap_is_skipped_not_the_dump(tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    big = {"id": "big", "body": "Word " * 3000 + "end."}
    _write_jsonl(src / "wire.jsonl", ROWS + [big])
    report = _build(src, tmp_path / "index", max_file_bytes=4000).to_dict()
    d = report["dump_rows"][0]
    assert d["articles"] == 2 and d["rows_skipped"] == 1 and "cap" in d["first_skipped"][0]["reason"]


def test_word_files_are_read_with_their_core_properties(tmp_path) -> None:
    import docx

    from index_build.readers import read

    doc = docx.Document()
    doc.add_paragraph("The city will plant 5,000 trees along its main roads this winter.")
    doc.add_paragraph("The first saplings arrive in November.")
    doc.core_properties.title = "Trees for the city"
    doc.core_properties.author = "Press Office"
    doc.core_properties.created = dt.datetime(2023, 10, 2, 9, 0)
    p = tmp_path / "release.docx"
    doc.save(p)
    got = read(p)
    assert got.text == (
        "The city will plant 5,000 trees along its main roads this winter.\n\nThe first saplings arrive in November."
    )
    assert got.title == "Trees for the city"
    assert (got.meta.published, got.meta.author) == ("2023-10-02", "Press Office")
    bad = tmp_path / "broken.docx"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    from index_build.readers import Unreadable

    with pytest.raises(Unreadable, match="docx"):
        read(bad)


def test_a_bad_columns_option_is_a_usage_error(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "index_build", str(tmp_path), "--index", str(tmp_path / "i"), "--columns", "words"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "--columns entry 'words' is not FIELD=COLUMN" in out.stderr


def test_the_chat_upload_checks_a_dump_before_saving_it(tmp_path) -> None:
    from qa.chat_backend import ChatBackend, UploadRejected

    backend = ChatBackend(tmp_path / "index", tmp_path / "sources")
    odd = tmp_path / "odd.csv"
    odd.write_text("id,words\n1,The council approved the budget.\n", encoding="utf-8")
    with pytest.raises(UploadRejected, match=r"no text column \(found: id, words\)"):
        backend.save_upload("odd.csv", odd)
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"id": 1, "body": ""}\n', encoding="utf-8")
    with pytest.raises(UploadRejected, match="no usable rows .line 1: no text."):
        backend.save_upload("empty.jsonl", empty)
    good = tmp_path / "good.jsonl"
    _write_jsonl(good, ROWS)
    assert backend.save_upload("good.jsonl", good) == "good.jsonl"
    assert not (tmp_path / "sources" / "odd.csv").exists()
    backend.close()
