"""Article metadata (index_build.metadata): what each format declares about
its article (date, outlet, author, URL) reaches every source of an answer,
through a real build, a real index and the real engine.  Pages here are
written for the test (the saved news pages of ../shared/bench stay there)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from index_build.metadata import front_matter, make, parse_date
from qa.chat_render import citation, render_result

PAGE = """<!doctype html><html><head>
<title>Harbour bridge to close for repairs | Coastal Courier</title>
<meta property="og:title" content="Harbour bridge to close for repairs">
<meta property="og:site_name" content="Coastal Courier">
<meta property="article:published_time" content="2024-03-12T08:30:00+00:00">
<meta name="author" content="Dana Whitfield">
<link rel="canonical" href="https://courier.example.com/news/harbour-bridge-repairs">
</head><body><nav>Home | News | Sport</nav><article>
<h1>Harbour bridge to close for repairs</h1>
<p>The harbour bridge will close for six weeks from May so that engineers can replace its corroded cables.</p>
<p>Ferries will run every ten minutes while the bridge is shut, the council said on Tuesday.</p>
<p>The bridge carries about 40,000 vehicles a day and opened in 1932.</p>
</article><footer>Copyright Coastal Courier</footer></body></html>
"""


@pytest.mark.parametrize(
    "value, iso",
    [
        ("2024-03-12", "2024-03-12"),
        ("2024-03-12T08:30:00Z", "2024-03-12"),
        ("2024-03-12T08:30:00+01:00", "2024-03-12"),
        ("Mon, 06 Jan 2020 10:00:00 GMT", "2020-01-06"),
        ("6 January 2020", "2020-01-06"),
        ("January 6, 2020", "2020-01-06"),
        ("Monday, 6 January 2020", "2020-01-06"),
        ("3rd May 2021", "2021-05-03"),
        ("last Tuesday", None),
        ("2024-02-30", None),
        ("", None),
        (None, None),
    ],
)
def test_dates_parse_to_iso_or_not_at_all(value, iso) -> None:
    assert parse_date(value) == iso


def test_cleaning_drops_placeholders_and_unsafe_links_and_reports_bad_dates() -> None:
    m = make("sometime in spring", "The Tico Times | Costa Rica News | Travel", "No Author", "javascript:alert(1)")
    assert (m.published, m.outlet, m.author, m.url) == (None, "The Tico Times", None, None)
    assert m.warnings and "sometime in spring" in m.warnings[0]


def test_front_matter_blocks_and_header_lines() -> None:
    fields, body = front_matter("---\ntitle: Floods\ndate: 2023-11-09\nsource: Valley News\n---\n\nRain fell.\n")
    assert fields == {"title": "Floods", "published": "2023-11-09", "outlet": "Valley News"}
    assert body == "Rain fell.\n"
    fields, body = front_matter("Title: Floods\nDate: 9 November 2023\nURL: https://x.example/f\n\nRain fell.")
    assert fields == {"title": "Floods", "published": "9 November 2023", "url": "https://x.example/f"}
    assert body == "Rain fell."
    # an article whose first words merely look like a header stays as it is
    text = "Source: a council spokesman said the road would reopen.\nIt did not."
    assert front_matter(text) == ({}, text)


@pytest.fixture(scope="module")
def dated_index(tmp_path_factory) -> tuple[Path, dict]:
    from index_build import build
    from qa.config import BuildConfig

    root = tmp_path_factory.mktemp("dated")
    src = root / "articles"
    src.mkdir()
    (src / "courier.html").write_text(PAGE, encoding="utf-8")
    (src / "valley.md").write_text(
        "---\ntitle: Valley floods\ndate: 9 November 2023\nauthor: Sam Reyes\n"
        "source: Valley News\n---\n\nThe river rose two metres overnight and flooded "
        "forty homes in the lower valley.\n\nVolunteers filled sandbags until dawn.\n",
        encoding="utf-8",
    )
    (src / "wire.txt").write_text(
        "Date: the day before yesterday\nSource: Wire Service\n\nThe central bank kept "
        "its main interest rate at 4.5% for a third month in a row.\n",
        encoding="utf-8",
    )
    (src / "0001_a7c3.txt").write_text(
        "Officials confirmed that the museum will reopen its east wing to visitors "
        "in June after a two-year restoration of the painted ceilings.\n"
        "The work cost about 12 million euros.\n",
        encoding="utf-8",
    )
    # two reports of one story; the older words it closer to the question
    (src / "toll-monday.txt").write_text(
        "Date: 2024-05-06\nSource: Coastal Courier\n\nValley floods death toll rises\n\nThe death toll from the "
        "valley floods rose to 12 on Monday, the regional health office said.\n",
        encoding="utf-8",
    )
    (src / "toll-friday.txt").write_text(
        "Date: 2024-05-10\nSource: Valley News\n\nUpdate\n\nThe death toll from the floods rose to 31 on Friday, "
        "the regional health office said.\n",
        encoding="utf-8",
    )
    out = root / "index"
    report = build([src], out, BuildConfig(progress=False), log=lambda m: None)
    return out, report.to_dict()


def test_the_build_stores_what_each_format_declares(dated_index) -> None:
    index, report = dated_index
    assert report["metadata"] == {"published": 4, "outlet": 5, "author": 2, "url": 1}
    assert [w["path"].endswith("wire.txt") for w in report["metadata_warnings"]] == [True]
    con = sqlite3.connect(index / "meta.sqlite")
    rows = {r[0]: r[1:] for r in con.execute("SELECT doc_id, title, published, outlet, author, url FROM documents")}
    assert rows["courier"] == (
        "Harbour bridge to close for repairs",
        "2024-03-12",
        "Coastal Courier",
        "Dana Whitfield",
        "https://courier.example.com/news/harbour-bridge-repairs",
    )
    assert rows["valley"] == ("Valley floods", "2023-11-09", "Valley News", "Sam Reyes", None)
    assert rows["wire"][1:] == (None, "Wire Service", None, None)  # a date never guessed
    # no headline: titled by its first words, never by the hash-like file name
    assert rows["0001_a7c3"][0].startswith("Officials confirmed that the museum will reopen")
    assert len(rows["0001_a7c3"][0]) <= 81 and rows["0001_a7c3"][0].endswith("…")
    text = con.execute("SELECT text FROM documents WHERE doc_id = 'valley'").fetchone()[0]
    assert "date:" not in text and text.startswith("The river rose")  # front matter is not quoted


def test_every_source_of_an_answer_carries_its_metadata(dated_index) -> None:
    import qa

    res = qa.load(dated_index[0], warm=False).ask("How long will the harbour bridge be closed?")
    s = res.answers[0].sources[0]
    assert "six weeks" in res.answers[0].text
    assert (s.published, s.outlet, s.author, s.url) == (
        "2024-03-12",
        "Coastal Courier",
        "Dana Whitfield",
        "https://courier.example.com/news/harbour-bridge-repairs",
    )
    d = json.loads(json.dumps(res.to_dict()))["answers"][0]["sources"][0]
    assert {k: d[k] for k in ("published", "outlet", "author", "url")} == {
        "published": "2024-03-12",
        "outlet": "Coastal Courier",
        "author": "Dana Whitfield",
        "url": "https://courier.example.com/news/harbour-bridge-repairs",
    }
    html = render_result(res)
    assert 'href="https://courier.example.com/news/harbour-bridge-repairs"' in html
    assert 'rel="noopener noreferrer"' in html and "12 Mar 2024" in html and "Coastal Courier" in html
    assert "Dana Whitfield" in citation(s)


def test_the_command_line_prints_and_serialises_the_citation(dated_index) -> None:
    q = "How high did the river rise?"
    out = subprocess.run(
        [sys.executable, "-m", "qa", "ask", q, "--index", str(dated_index[0])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "Valley News, 2023-11-09: Valley floods [valley]" in out.stdout
    js = subprocess.run(
        [sys.executable, "-m", "qa", "ask", q, "--index", str(dated_index[0]), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    src = json.loads(js.stdout)["answers"][0]["sources"][0]
    assert (src["outlet"], src["published"], src["author"], src["url"]) == (
        "Valley News",
        "2023-11-09",
        "Sam Reyes",
        None,
    )


def test_an_index_of_the_previous_format_asks_for_a_full_rebuild(dated_index, tmp_path) -> None:
    import shutil

    import qa
    from qa.errors import IndexLoadError

    old = tmp_path / "old"
    shutil.copytree(dated_index[0], old)
    m = json.loads((old / "manifest.json").read_text(encoding="utf-8"))
    m["format_version"] = 1
    (old / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    with pytest.raises(IndexLoadError, match="--full"):
        qa.load(old, warm=False)


def test_filters_search_only_the_articles_they_keep(dated_index) -> None:
    import qa

    engine = qa.load(dated_index[0], warm=False)
    q = "How long will the harbour bridge be closed?"
    assert "six weeks" in engine.ask(q, since="2024-01-01").answers[0].text
    before = engine.ask(q, until="2023-12-31")
    assert before.answers and all(
        s.published and s.published <= "2023-12-31" for a in before.answers for s in a.sources
    )
    valley = engine.ask("What happened in the valley?", outlets=["valley news"], k=10)
    assert valley.answers and {s.outlet for a in valley.answers for s in a.sources} == {"Valley News"}
    # the filter is applied in the search: a narrow one still finds its article's best sentences
    rate = engine.ask("interest rate", outlets=["Wire Service"])
    assert "4.5%" in rate.answers[0].text
    with pytest.raises(ValueError, match="no article matches the filter.*2023-11-09 to 2024-05-10"):
        engine.ask(q, since="2030-01-01")
    with pytest.raises(ValueError, match="since must be a date like 2024-01-31"):
        engine.ask(q, since="last week")
    with pytest.raises(ValueError, match="swap them"):
        engine.ask(q, since="2024-02-01", until="2024-01-01")


def test_a_question_about_now_puts_the_newest_report_first(dated_index) -> None:
    import qa

    engine = qa.load(dated_index[0], warm=False)
    plain = engine.ask("What is the death toll from the valley floods?")
    assert "12" in plain.answers[0].text and "31" in plain.answers[1].text  # best match first
    now = engine.ask("What is the death toll from the valley floods so far?")
    assert "31" in now.answers[0].text and now.answers[0].sources[0].published == "2024-05-10"
    assert "12" in now.answers[1].text and now.found
    assert [a.score for a in now.answers] == sorted((a.score for a in now.answers), reverse=True)
    # the chat's "by date" view lists the quotes oldest first: how the story developed
    view = render_result(now).split('<details class="sqa-bydate">', 1)[1].split("</details>", 1)[0]
    assert view.index("6 May 2024") < view.index("rose to 12") < view.index("10 May 2024") < view.index("rose to 31")


# Real BBC reports of one statement at two moments (BBC files carry no dates, so the dump gives them): the
# Aviator's takings ($75m, then $90m) and the tsunami's toll (100,000 in Indonesia; 140,000 in all).
_STORIES = ("entertainment/053", "entertainment/363", "business/411", "politics/208")
_QUESTIONS = {
    "How much money has The Aviator taken so far?": ("The Aviator has taken $75m", "which has taken $90m"),
    "How many people has the tsunami killed so far?": ("more than 100,000 people", "94,000 of the 140,000"),
}


def _bbc_dump(folder: Path, dates: dict[str, str]) -> Path:
    from tests.conftest import bench_path

    bbc = bench_path("bbc")
    files = sorted((bbc / "entertainment").glob("*.txt"))[:30] + [bbc / f"{s}.txt" for s in _STORIES]
    folder.mkdir(parents=True)
    with open(folder / "bbc.jsonl", "w", encoding="utf-8") as out:
        for p in dict.fromkeys(files):
            key = f"{p.parent.name}/{p.stem}"
            title, _, body = p.read_text(encoding="utf-8", errors="replace").partition("\n")
            row = {"id": key.replace("/", "-"), "headline": title.strip(), "body": body.strip()}
            out.write(json.dumps({**row, "date": dates.get(key, "2004-11-01"), "source": "BBC News"}) + "\n")
    return folder


@pytest.mark.parametrize("newer", [0, 1])
def test_real_reports_of_a_statement_come_newest_first_when_asked_about_now(newer: int, tmp_path: Path) -> None:
    import qa
    from index_build import build
    from qa.config import BuildConfig

    # each story's two reports dated one way round, then the other: the order must follow the dates
    early, late = ("2005-01-05", "2005-01-20") if newer else ("2005-01-20", "2005-01-05")
    dates = {"entertainment/053": early, "business/411": early, "entertainment/363": late, "politics/208": late}
    src = _bbc_dump(tmp_path / "src", dates)
    build([src], tmp_path / "index", BuildConfig(progress=False), log=lambda m: None)
    engine = qa.load(tmp_path / "index", warm=False)
    for q, reports in _QUESTIONS.items():
        res = engine.ask(q)
        first_two = [a.text for a in res.answers[:2]]
        assert res.found and all(any(r in t for t in first_two) for r in reports), (q, first_two)
        assert reports[newer] in first_two[0], (q, first_two)
        assert res.answers[0].sources[0].published == "2005-01-20"


def test_the_command_line_filters_and_says_when_nothing_matches(dated_index) -> None:
    index = str(dated_index[0])
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "qa",
            "ask",
            "What did the central bank do?",
            "--index",
            index,
            "--outlet",
            "wire service",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert {s["outlet"] for a in json.loads(ok.stdout)["answers"] for s in a["sources"]} == {"Wire Service"}
    bad = subprocess.run(
        [sys.executable, "-m", "qa", "ask", "What did the central bank do?", "--index", index, "--since", "2031-01-01"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 1 and bad.stderr.startswith("error: no article matches the filter (since 2031-01-01)")
    assert len(bad.stderr.strip().splitlines()) == 1
