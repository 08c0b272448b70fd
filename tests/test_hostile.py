"""Hostile input (issue 5, points 5 and 6): sources built to break a builder,
and questions and article text built to break the engine and the chat's HTML.

The hostile files are made at test time in tmp_path.  The build runs in a
subprocess so that its peak RSS can be measured on its own; the figure is
printed (`figure:` lines) and bounded generously (a memory guarantee, not a
timing).
"""

from __future__ import annotations

import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from index_build import readers, segment
from qa.config import MAX_FILE_BYTES, MAX_SENTENCE_CHARS
from tests.conftest import REPO, SEEDS

CALL_Q = "How long did the call between Biden and Netanyahu last?"
PEAK_RSS_LIMIT_MB = 2048  # measured ~1 GB (torch + the model are most of it)

LATIN1_NAME = b"caf\xe9 cr\xeape.txt"  # shown as "café crêpe"
WEIRD_NAME = 'it\'s "quoted" — ünïcødé 📰 news.txt'
# (file, question, words the top answer must hold) for every good hostile file
FACTS = [
    ("latin1.txt", "How much did the café in Zürich charge for an espresso?", "£4.50"),
    ("mixed.txt", "How many passengers did the Malmö ferry carry across the Øresund?", "812 passengers"),
    ("mixed.txt", "How long did the São Paulo choir sing at the festival?", "95 minutes"),
    ("rtl-emoji.txt", "Why was the rocket launch from Kourou delayed?", "high winds"),
    (WEIRD_NAME, "How many visitors did the Quokka Festival in Perth draw?", "12,345 visitors"),
    ("one-line.txt", "How many puffins did the lighthouse keeper on Skellig Rock count?", "4,321 puffins"),
    ("nested.html", "What depth did the deep-sea probe Nereus reach?", "10,902 metres"),
]
ARABIC = "أعلنت الحكومة عن خطة جديدة للنقل العام يوم الاثنين."
HEBREW = "הממשלה הודיעה על תוכנית חדשה לתחבורה ציבורית."


def figure(capsys, text: str) -> None:
    """A measured figure, shown in the test log even when the test passes."""
    with capsys.disabled():
        print(f"\nfigure: {text}", flush=True)


def _pdf_without_text(path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 60, style="F")  # a "scan": graphics, no text layer
    pdf.output(str(path))


def deep_html(depth: int, fact: str) -> str:
    return (
        "<html><head><title>Deep sea record</title></head><body>"
        + "<div><span>" * depth
        + f"<p>{fact}</p>"
        + "</span></div>" * depth
        + "<p>The expedition returns to port next month.</p><script>var x = 'SCRIPTTEXT';</script></body></html>"
    )


def make_hostile_sources(src: Path) -> dict[str, str]:
    """Seeds plus every kind of hostile file; returns {file name: what must happen}."""
    shutil.copytree(SEEDS, src)
    # 50 MB of text: over the per-file limit, skipped without being read
    line = "Report: the harbour authority logged ships and ferries in the port today, officials said. " * 10 + "\n"
    with open(src / "big.txt", "w", encoding="utf-8") as f:
        for _ in range(50 * 2**20 // len(line) + 1):
            f.write(line)
    # one 1 MB line of sentences (they dedupe to one), and one with no full stop at all
    (src / "one-line.txt").write_text(
        "Puffin count " + "The lighthouse keeper on Skellig Rock counted 4,321 puffins this spring. " * 14000,
        encoding="utf-8",
    )
    (src / "run-on.txt").write_text("Run on\n\n" + "lorem " * (2**20 // 6), encoding="utf-8")
    # nested far deeper than libxml2 parses (256 levels)
    (src / "nested.html").write_text(
        deep_html(5000, "The deep-sea probe Nereus reached a depth of 10,902 metres on Tuesday."), encoding="utf-8"
    )
    _pdf_without_text(src / "scan.pdf")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("story.txt", "A story inside a zip. " * 200)
    (src / "archive.txt").write_bytes(buf.getvalue())
    # symlinks: a loop of two files, a folder that links to its parent, a device, and a named pipe
    (src / "loop-a.txt").symlink_to("loop-b.txt")
    (src / "loop-b.txt").symlink_to("loop-a.txt")
    (src / "sub").mkdir()
    (src / "sub" / "again").symlink_to("..", target_is_directory=True)
    (src / "zero.txt").symlink_to("/dev/zero")
    os.mkfifo(src / "pipe.txt")
    # legacy and mixed encodings
    (src / "latin1.txt").write_bytes(
        "Zürich café prices\n\nThe café on Bahnhofstrasse in Zürich charged £4.50 for an espresso in March. "
        "Regulars called the price “outrageous”.\n".encode("cp1252")
    )
    (src / "mixed.txt").write_bytes(
        "Nordic and Brazilian news\n\n".encode()
        + "The Malmö ferry carried 812 passengers across the Øresund on Friday.\n\n".encode("utf-8")
        + "The São Paulo choir sang for 95 minutes at the festival in Curitiba.\n".encode("cp1252")
    )
    # right-to-left scripts and emoji
    (src / "rtl-emoji.txt").write_text(
        f"أخبار 📰 news\n\nThe 🚀 rocket launch from Kourou was delayed by 3 days because of high winds 🌬️. "
        f"{ARABIC} {HEBREW} Engineers 👩‍🚀 said the weather should clear by Thursday.\n",
        encoding="utf-8",
    )
    # a name with spaces, quotes and unicode
    (src / WEIRD_NAME).write_text(
        "Quokka Festival report\n\nThe Quokka Festival in Perth drew 12,345 visitors on Saturday, organisers said.\n",
        encoding="utf-8",
    )
    # a file name that is not UTF-8 (Latin-1 bytes, as old archives have): SQLite refuses the raw name
    with open(os.path.join(os.fsencode(src), LATIN1_NAME), "wb") as f:
        f.write(b"Harbour cafe\n\nThe harbour cafe in Brest served 777 crepes on its opening day.\n")
    return {
        "big.txt": "over the 20 MB limit",
        "scan.pdf": "no text layer",
        "archive.txt": "binary",
        "loop-a.txt": "looping symlink",
        "loop-b.txt": "looping symlink",
        "zero.txt": "not a regular file",
        "pipe.txt": "not a regular file",
    }


def run_build_measured(
    src: Path, index: Path, *extra: str, timeout: float = 900
) -> tuple[subprocess.CompletedProcess, int]:
    """`python -m index_build` in a subprocess; (result, its own peak RSS in MB).

    The peak is VmHWM of the build's own address space: getrusage's ru_maxrss
    would also count the pytest process it was forked from."""
    code = (
        "import re, sys\nfrom index_build.cli import main\nrc = main(sys.argv[1:])\n"
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
        "print(f'peak_rss_kb={hwm}', file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    r = subprocess.run(
        [sys.executable, "-c", code, str(src), "--index", str(index), "--json", *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    m = re.search(r"peak_rss_kb=(\d+)", r.stderr)
    return r, (int(m.group(1)) // 1024 if m else -1)


@pytest.fixture(scope="module")
def hostile_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    src, index = root / "sources", root / "index"
    expect_skipped = make_hostile_sources(src)
    r, peak_mb = run_build_measured(src, index)
    return {"src": src, "index": index, "run": r, "peak_mb": peak_mb, "expect_skipped": expect_skipped}


@pytest.mark.slow
def test_hostile_sources_build_finishes_in_bounded_memory(hostile_build, capsys) -> None:
    r, src = hostile_build["run"], hostile_build["src"]
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    rep = json.loads(r.stdout)
    skipped = {Path(s["path"]).name: s["reason"] for s in rep["files_skipped"]}
    for name, why in hostile_build["expect_skipped"].items():
        assert name in skipped, (name, skipped)
        assert why in skipped[name], (name, skipped[name])
        assert f"warning: skipping {src / name}" in r.stderr
    assert "--max-file-mb" in skipped["big.txt"]
    # everything else was read: seeds, encodings, RTL, the odd name, the 1 MB lines, the deep HTML
    assert set(skipped) == set(hostile_build["expect_skipped"]), skipped
    assert rep["files_read"] == 3 + 8
    assert {e["encoding"] for e in rep["legacy_encodings"]} == {"cp1252", "utf-8+cp1252"}
    peak = hostile_build["peak_mb"]
    figure(
        capsys,
        f"hostile-sources build: peak RSS {peak} MB, {rep['seconds']:.1f} s, "
        f"{rep['files_read']} files read, {len(skipped)} skipped, {rep['sentences']} sentences "
        f"-> {rep['unique_sentences']} unique",
    )
    assert 0 < peak < PEAK_RSS_LIMIT_MB, f"peak RSS {peak} MB"


@pytest.mark.slow
def test_hostile_sources_answers_stay_correct(hostile_build, seed_index) -> None:
    import qa

    assert hostile_build["run"].returncode == 0, hostile_build["run"].stderr[-3000:]
    engine = qa.load(hostile_build["index"])
    seeds = qa.load(seed_index)
    try:
        for name, question, needle in FACTS:
            res = engine.ask(question, k=3)
            top = res.answers[0]
            assert res.found and needle in top.text, (question, [a.text for a in res.answers])
            assert top.sources[0].doc_id == Path(name).stem, (question, top.sources[0])
            assert top.sources[0].path == str(hostile_build["src"] / name)
        # the seeds answer as they do in an index of the seeds alone
        for q in (CALL_Q, "How many hostages has Israel freed so far?", "Where did Israel send a delegation?"):
            assert engine.ask(q, k=1).answers[0].text == seeds.ask(q, k=1).answers[0].text, q
        rows = engine.sql("SELECT text FROM sentences")
        texts = [t for (t,) in rows]
        assert max(len(t) for t in texts) <= MAX_SENTENCE_CHARS
        assert ARABIC in texts or any(ARABIC in t for t in texts)  # right-to-left text kept verbatim
        assert not any("Ã" in t or "\ufffd" in t for t in texts), "mojibake from a mixed-encoding file"
        # the 1 MB line of one repeated sentence is one unique sentence; the run-on line a few pieces
        assert sum("4,321 puffins" in t for t in texts) <= 2  # the first carries the line's "Puffin count" prefix
        runon = [t for t in texts if t.startswith("lorem")]
        assert runon and len(set(runon)) <= 3
        # the deep HTML's text around the nest is there, its script is not
        doc = engine.sql("SELECT title, text FROM documents WHERE doc_id = 'nested'")[0]
        assert doc[0] == "Deep sea record" and "The expedition returns to port next month." in doc[1]
        assert "SCRIPTTEXT" not in doc[1]
        # nothing of what was skipped made it in
        res = engine.ask("How many crepes did the harbour cafe serve?", k=1)
        src = res.answers[0].sources[0]
        assert "777 crepes" in res.answers[0].text and src.doc_id == "café crêpe", src
        assert src.path == str(hostile_build["src"] / "café crêpe.txt")
        assert json.loads(json.dumps(res.to_dict()))["answers"][0]["sources"][0]["doc_id"] == "café crêpe"
        ids = {d for (d,) in engine.sql("SELECT doc_id FROM documents")}
        assert ids.isdisjoint({"big", "scan", "archive", "loop-a", "loop-b", "zero", "pipe"})
    finally:
        engine.data.close()
        seeds.data.close()


# -- the readers, one hostile file at a time (fast) --------------------------------------


def test_pipe_and_device_are_refused_without_reading(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")  # opening it for a blocking read would hang forever
    (tmp_path / "zero.txt").symlink_to("/dev/zero")  # reading it would never end
    for name in ("pipe.txt", "zero.txt"):
        with pytest.raises(readers.Unreadable, match="not a regular file"):
            readers.read(tmp_path / name)


def test_oversize_file_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    p = tmp_path / "big.txt"
    with open(p, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(readers.Unreadable, match=r"over the 20 MB limit .*--max-file-mb"):
        readers.read(p, max_bytes=MAX_FILE_BYTES)


def test_mixed_utf8_and_cp1252_file_decodes_each_part(tmp_path: Path) -> None:
    p = tmp_path / "mixed.txt"
    p.write_bytes(
        "Malmö and Øresund.\n".encode() + "São Paulo, “quoted”, £5.\n".encode("cp1252") + "Zoë’s café.\n".encode()
    )
    got = readers.read(p)
    assert got.text == "Malmö and Øresund.\nSão Paulo, “quoted”, £5.\nZoë’s café.\n"
    assert got.encoding == "utf-8+cp1252"
    # a plain cp1252 file is still plain cp1252, even with one accidental UTF-8 pair in it
    p.write_bytes("Crème brûlée costs £4 in Zürich; Â£ looks odd.".encode("cp1252"))
    got = readers.read(p)
    assert got.encoding == "cp1252" and got.text == "Crème brûlée costs £4 in Zürich; Â£ looks odd."
    # a UTF-8 file with one broken byte keeps its accents (it used to be read as cp1252 mojibake)
    p.write_bytes("Café in Malmö, crème brûlée. ".encode() * 3 + b"\xff")
    assert readers.read(p).text.startswith("Café in Malmö, crème brûlée.")


@pytest.mark.parametrize("depth", [100, 300, 5000, 50000])
def test_deeply_nested_html_keeps_its_text(tmp_path: Path, depth: int) -> None:
    p = tmp_path / "deep.html"
    p.write_text(deep_html(depth, "The probe reached 10,902 metres."), encoding="utf-8")
    got = readers.read(p)
    assert "The probe reached 10,902 metres." in got.text
    assert "The expedition returns to port next month." in got.text
    assert "SCRIPTTEXT" not in got.text and got.title == "Deep sea record"


def test_a_reader_crash_is_a_skip_not_a_build_failure(tmp_path: Path, monkeypatch) -> None:
    def boom(path, data=None):  # noqa: ANN001
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setitem(readers.READERS, ".html", boom)
    p = tmp_path / "x.html"
    p.write_text("<p>hello</p>")
    with pytest.raises(readers.Unreadable, match="html reader failed on it .RecursionError"):
        readers.read(p)


@pytest.mark.timeout(120)
def test_paragraph_split_is_linear_in_lines() -> None:
    """300k lines in one block: a scan per line was quadratic (hours)."""
    text = "Server log\n" + "\n".join(f"entry {i} ok" for i in range(300_000)) + "\nThe end came at noon.\n"
    paras = segment.paragraphs(text)
    assert len(paras) > 1 and text[paras[-1].start : paras[-1].end] == "The end came at noon."


@pytest.mark.parametrize(
    "text",
    [
        "lorem " * 2000,
        "x" * 9000,
        "A normal sentence. " + "word " * 3000 + "end. Short one.",
        ("abc " * 499 + "\n") * 8,
    ],
)
def test_run_on_sentences_are_cut_at_spaces(text: str) -> None:
    spans = [s for _, ss in segment.split(text) for s in ss]
    pieces = [text[s.start : s.end] for s in spans]
    assert all(0 < len(p) <= MAX_SENTENCE_CHARS for p in pieces)
    assert all(p == p.strip() for p in pieces)
    assert "".join(pieces).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")
    if " " in text:
        assert all(not p.startswith("orem") for p in pieces)  # cut at spaces, not inside words


# -- hostile questions (point 6) -------------------------------------------------------


class _LiveMarkup(HTMLParser):
    """What a browser would make of the HTML: every tag and attribute."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        self.tags.append((tag, attrs))

    handle_startendtag = handle_starttag


# every tag and attribute our renderer itself emits; anything else came from the data
_OUR_TAGS = {
    "div",
    "p",
    "strong",
    "ol",
    "li",
    "blockquote",
    "span",
    "a",
    "details",
    "summary",
    "ul",
    "mark",
    "q",
    "code",
    "h3",
    "input",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "select",  # the sources panel's outlet and date filters and its sort buttons
    "option",
    "label",
    "button",
}
_OUR_ATTRS = {
    "class",
    "href",
    "title",
    "style",
    "data-start",
    "data-doc",
    "data-count",
    "type",
    "placeholder",
    "aria-label",
    "aria-live",
    "aria-sort",
    "value",  # an outlet option: escaped like every other attribute value
    "data-key",  # the sources panel's sort keys
    "data-title",
    "data-outlet",
    "data-date",
    "data-file",
    "data-sentences",
}


def assert_no_live_markup(out: str, *data: str) -> None:
    """`out` (rendered from `data`) has only our own tags and attributes, no
    link but our article links, no Markdown/LaTeX syntax outside tags, and
    shows every piece of data as text."""
    p = _LiveMarkup()
    p.feed(out)
    p.close()
    for tag, attrs in p.tags:
        assert tag in _OUR_TAGS, (tag, out)
        for name, value in attrs:
            assert name in _OUR_ATTRS, (tag, name, out)
            if name == "href":
                assert (value or "").startswith("#sqa-doc="), (value, out)
            if name == "style":
                assert re.fullmatch(r"width:\d{1,3}%", value or ""), (value, out)
    text_outside_tags = re.sub(r"<[^>]*>", "", out)
    bare = re.sub(r"&(#\d+|[a-z]+);", "", text_outside_tags)
    for ch in "<>*_`[]$\\~|#&":
        assert ch not in bare, (ch, out)  # every such character is an entity
    shown = html.unescape(text_outside_tags)
    for d in data:
        d = re.sub("[\ud800-\udfff]", "\ufffd", d)
        folded = " ".join(d.replace("\x00", "").replace("\r", " ").split())
        if folded:
            assert folded in " ".join(shown.split()), (d, out)


def _result(question: str, text: str, title: str, doc_id: str, path: str, before: list[str], found: bool):
    from qa.answers import Answer, Context, Result, Source

    src = Source(doc_id, title, path, 0, 0, len(text), text)
    ans = Answer(
        text,
        0.5,
        [src, Source(doc_id + "x", title, path, 1, 0, len(text), text)],
        Context(doc_id, before, [text]),
        0,
        weak=not found,
    )
    return Result(question, question, found, [ans], followup=True, threshold=0.33)


def test_render_property_no_live_markup() -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from qa import chat_render as R

    # any unicode, with the characters that matter over-represented
    nasty = st.text(
        alphabet=st.one_of(
            st.characters(),
            st.characters(categories=["Cs"]),
            st.sampled_from(list("<>&\"'`*_[]()$#\\|~!{}/=:;\n\r\x00 ")),
        ),
        max_size=80,
    )
    words = st.sampled_from(
        [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(2)>",
            "javascript:alert(3)",
            "**bold**",
            "$$x^2$$",
            "[l](javascript:x)",
            "&amp;",
            "&#60;b&#62;",
            "\u202eevil",
            "<!--",
            "]]>",
            "<a href='x'>",
            '" onmouseover="x',
        ]
    )
    text = st.lists(st.one_of(nasty, words), max_size=4).map("".join)

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(question=text, sentence=text, title=text, doc_id=text, path=text, before=text, found=st.booleans())
    def check(question, sentence, title, doc_id, path, before, found) -> None:
        res = _result(question, sentence, title, doc_id, path, [before], found)
        out = R.render_result(res)
        assert_no_live_markup(out, sentence, title, before, question if res.followup else "")
        out.encode("utf-8")  # no lone surrogate: the reply can be sent
        shown = re.sub("[\ud800-\udfff]", "\ufffd", question)
        assert_no_live_markup(R.render_question(question), shown)
        assert html.unescape(R.render_question(question)) == shown.replace("\x00", "").replace("\r", " ")
        cites = R.cites_of(res, 1, question)
        art = R.render_article(doc_id, title, path, before + sentence, cites, focus=0)
        assert_no_live_markup(art, title)
        assert_no_live_markup(R.render_error(sentence, title, before), sentence, title, before)
        rows = [R.DocRow(doc_id, title, path, 3), R.DocRow(path, title, doc_id, 2, outlet=sentence, published=before)]
        assert_no_live_markup(R.render_sources(rows, question, 1.0, 5, path), title)

    check()


@pytest.fixture(scope="module")
def seed_engine(seed_index):
    import qa

    engine = qa.load(seed_index)
    yield engine
    engine.data.close()


@pytest.mark.slow
def test_ask_property_result_or_value_error(seed_engine, capsys) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from qa.answers import Result

    question = st.one_of(
        st.text(max_size=120),
        st.text(alphabet=st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=40),
        st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=40),
        st.sampled_from(
            [
                "",
                " ",
                "\x00",
                "?",
                "\u202e",
                "💥" * 50,
                "a" * 2001,
                "How long did it last?",
                "Biden " * 400,
                "<script>",
                "\ud800 call",
                "last \udfff?",
                "\ufeff",
                "NaN",
                "%s%n",
            ]
        ),
    )
    turn = st.one_of(
        st.text(max_size=60),
        st.none(),
        st.integers(),
        st.floats(),
        st.fixed_dictionaries(
            {
                "role": st.sampled_from(["user", "assistant", "x"]),
                "content": st.one_of(st.text(max_size=40), st.none(), st.integers()),
            }
        ),
        st.lists(st.text(max_size=10), max_size=3),
    )
    # mostly well-formed, so that most examples get as far as an answer
    history = st.one_of(
        st.none(),
        st.lists(turn, max_size=25),
        st.lists(st.text(max_size=60), max_size=4),
        st.lists(turn, max_size=3),
        st.text(max_size=20),
        st.integers(),
    )
    k = st.one_of(st.integers(1, 10), st.integers(1, 10), st.integers(-3, 60), st.sampled_from([None, "5", 2.5, True]))
    outcomes: Counter = Counter()

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(q=question, h=history, k=k)
    def check(q, h, k) -> None:
        try:
            res = seed_engine.ask(q, history=h, k=k)
        except ValueError:
            outcomes["ValueError"] += 1
            return
        outcomes["answered"] += 1
        assert isinstance(res, Result)
        assert isinstance(res.found, bool) and isinstance(res.query, str) and res.query
        assert 1 <= len(res.answers) <= min(k, 50)
        scores = [a.score for a in res.answers]
        assert all(0.0 <= s <= 1.0 for s in scores)
        for a in res.answers:
            assert a.sources and all(s.text and s.end > s.start for s in a.sources)
        json.dumps(res.to_dict())  # serialisable for the API

    check()
    figure(capsys, f"ask property: {outcomes['answered']} answered, {outcomes['ValueError']} ValueError, nothing else")
    assert outcomes["answered"] >= 10 and outcomes["ValueError"] >= 3, outcomes  # the property was not vacuous
