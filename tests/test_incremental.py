"""Incremental rebuilds: real builder, real model, real files.

An incremental build reuses the previous index's segmentation of every file
whose path and bytes are unchanged (and its vectors); what it produces must be
what a full build of the same files produces."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from index_build import build, readers
from index_build.lexical import corpus_term_ids, corpus_terms
from qa.config import BuildConfig, LexicalConfig
from qa.textnorm import lexical_terms
from tests.conftest import SEEDS, bench_path, write_article

QUIET = dict(log=lambda m: None)
BBC = ("politics/108.txt", "politics/291.txt", "sport/199.txt", "business/001.txt", "tech/001.txt", "tech/002.txt")
QUESTIONS = (
    "How long did Biden and Netanyahu speak?",
    "How many hostages has Israel freed?",
    "What did the union accept?",
)


def copy_bbc(src: Path, rel: str) -> None:
    (src / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(bench_path("bbc", rel), src / rel)


class ReadLog:
    """Which files the readers decoded (a reused file is never decoded)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []
        real = readers.read

        def read(path, data=None, max_bytes=None):
            self.paths.append(
                Path(path).name
                if Path(path).parent.name in ("src", "seeds")
                else f"{Path(path).parent.name}/{Path(path).name}"
            )
            return real(path, data, max_bytes)

        monkeypatch.setattr(readers, "read", read)


def dump(index: Path) -> dict:
    """Everything an index holds except when it was built (vectors compared apart)."""
    con = sqlite3.connect(index / "meta.sqlite")
    try:
        out = {
            "documents": con.execute(
                "SELECT doc_idx, doc_id, title, path, text, sha256, encoding, n_sentences "
                "FROM documents ORDER BY doc_idx"
            ).fetchall(),
            "sentences": con.execute(
                "SELECT sent_idx, text, hash, n_occurrences, n_variants FROM sentences ORDER BY sent_idx"
            ).fetchall(),
            "doc_sentences": con.execute("SELECT * FROM doc_sentences ORDER BY doc_idx, sent_no").fetchall(),
            "passages": con.execute("SELECT * FROM passages ORDER BY passage_idx").fetchall(),
        }
    finally:
        con.close()
    return out


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory) -> dict:
    """seeds + 3 BBC articles built; then one BBC file deleted, one seed file
    changed, three BBC files added; rebuilt incrementally and, into another
    folder, in full."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("incremental")
    src = root / "src"
    shutil.copytree(SEEDS, src)
    for rel in BBC[:3]:
        copy_bbc(src, rel)
    inc, full = root / "inc", root / "full"
    first_log = ReadLog(mp)
    first = build([src], inc, BuildConfig(progress=False), **QUIET)
    mp.undo()

    changed = src / "001_b75319ecbb0ee614.txt"
    changed.write_text(
        changed.read_text(encoding="utf-8").rstrip()
        + "\n\nThe talks are due to resume in Cairo on Tuesday, a spokesman said.\n",
        encoding="utf-8",
    )
    (src / "politics" / "291.txt").unlink()
    for rel in BBC[3:]:
        copy_bbc(src, rel)
    write_article(
        src,
        "zz_port.txt",
        "Port strike ends",
        "Dock workers in Rotterdam ended a nine-day strike on Monday. "
        "The union accepted a 6 percent pay rise. Ships had queued for days outside the harbour.",
    )

    log = ReadLog(mp)
    second = build([src], inc, BuildConfig(progress=False), **QUIET)
    mp.undo()
    reference = build([src], full, BuildConfig(progress=False, full=True), **QUIET)
    return {
        "src": src,
        "inc": inc,
        "full": full,
        "first": first,
        "second": second,
        "reference": reference,
        "first_reads": first_log.paths,
        "reads": log.paths,
    }


def test_incremental_equals_full_build(rebuilt: dict) -> None:
    a, b = dump(rebuilt["inc"]), dump(rebuilt["full"])
    for table in a:
        assert a[table] == b[table], f"{table} differs between the incremental and the full build"
    for name in ("sentence_vectors.npy", "passage_vectors.npy"):
        va, vb = np.load(rebuilt["inc"] / name), np.load(rebuilt["full"] / name)
        assert va.shape == vb.shape
        assert float(np.min(np.sum(va * vb, axis=1))) > 0.999  # cached vs re-encoded: same up to batching noise
    ra, rb = rebuilt["second"], rebuilt["reference"]
    for field in (
        "documents",
        "sentences",
        "unique_sentences",
        "exact_duplicates_merged",
        "near_duplicates_merged",
        "passages",
        "non_answer_lines",
    ):
        assert getattr(ra, field) == getattr(rb, field), field
    assert (
        ra.legacy_encodings
        == rb.legacy_encodings
        == [{"path": str(rebuilt["src"] / "sport/199.txt"), "encoding": "cp1252"}]
    )
    assert ra.sentences_reused > 0 and rb.sentences_reused == 0


def test_incremental_answers_equal_full_build(rebuilt: dict) -> None:
    import qa

    inc, full = qa.load(rebuilt["inc"]), qa.load(rebuilt["full"])
    # BM25 is the same index, not just close
    for q in QUESTIONS:
        terms = lexical_terms(q, query=True)
        assert np.array_equal(inc.data.bm25.get_scores(terms), full.data.bm25.get_scores(terms))
        ra, rb = inc.ask(q, k=3), full.ask(q, k=3)
        assert [x.text for x in ra.answers] == [x.text for x in rb.answers]
        assert [[s.doc_id for s in x.sources] for x in ra.answers] == [
            [s.doc_id for s in x.sources] for x in rb.answers
        ]
        assert ra.found == rb.found
    assert "6 percent pay rise" in inc.ask("What did the union accept?", k=3).answers[0].text


def test_only_changed_and_new_files_are_read(rebuilt: dict) -> None:
    assert len(rebuilt["first_reads"]) == 6  # everything, the first time
    assert sorted(rebuilt["reads"]) == sorted(
        ["001_b75319ecbb0ee614.txt", "business/001.txt", "tech/001.txt", "tech/002.txt", "zz_port.txt"]
    )


def test_changed_file_is_read_again(rebuilt: dict) -> None:
    con = sqlite3.connect(rebuilt["inc"] / "meta.sqlite")
    text = con.execute("SELECT text FROM documents WHERE doc_id='001_b75319ecbb0ee614'").fetchone()[0]
    sha = con.execute("SELECT sha256 FROM documents WHERE doc_id='001_b75319ecbb0ee614'").fetchone()[0]
    n = con.execute(
        "SELECT COUNT(*) FROM sentences WHERE text LIKE 'The talks are due to resume in Cairo%'"
    ).fetchone()[0]
    con.close()
    assert "resume in Cairo" in text and n == 1
    import hashlib

    assert sha == hashlib.sha256((rebuilt["src"] / "001_b75319ecbb0ee614.txt").read_bytes()).hexdigest()


def test_deleted_file_disappears(rebuilt: dict) -> None:
    from qa.index_store import open_index

    data = open_index(rebuilt["inc"])
    try:
        assert "politics/291" not in data.manifest.files and "politics/108" in data.manifest.files
        assert data.db.execute("SELECT COUNT(*) FROM documents WHERE doc_id='politics/291'").fetchone()[0] == 0
        # politics/108 is a byte-identical copy of 291: its sentences stay, each counting only what is left
        counts = data.db.execute(
            "SELECT s.n_occurrences, (SELECT COUNT(*) FROM doc_sentences x WHERE x.sent_idx = s.sent_idx) "
            "FROM sentences s"
        ).fetchall()
        assert all(a == b for a, b in counts)
        assert (
            data.db.execute(
                "SELECT COUNT(*) FROM doc_sentences ds JOIN documents d USING(doc_idx) "
                "WHERE d.doc_id='politics/108' AND ds.sent_idx IS NOT NULL"
            ).fetchone()[0]
            > 5
        )
    finally:
        data.close()


def test_other_settings_or_full_read_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    shutil.copytree(SEEDS, src)
    idx = tmp_path / "idx"
    build([src], idx, BuildConfig(progress=False), **QUIET)
    log = ReadLog(monkeypatch)
    build([src], idx, BuildConfig(progress=False), **QUIET)
    assert log.paths == []  # nothing changed: nothing decoded
    build([src], idx, BuildConfig(progress=False, max_sentence_chars=500), **QUIET)
    assert len(log.paths) == 3  # another segmentation setting: every file again
    log.paths.clear()
    build([src], idx, BuildConfig(progress=False, max_sentence_chars=500, full=True), **QUIET)
    assert len(log.paths) == 3
    # the same bytes under another name are read again (the title can come from the name)
    log.paths.clear()
    (src / "000_d94e3a040fbeca26.txt").rename(src / "renamed.txt")
    rep = build([src], idx, BuildConfig(progress=False, max_sentence_chars=500), **QUIET)
    assert log.paths == ["renamed.txt"] and rep.documents == 3


def test_previous_index_damaged_means_read_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    shutil.copytree(SEEDS, src)
    idx = tmp_path / "idx"
    build([src], idx, BuildConfig(progress=False), **QUIET)
    before = dump(idx)
    (idx / "meta.sqlite").write_bytes(b"not a database")
    log = ReadLog(monkeypatch)
    build([src], idx, BuildConfig(progress=False), **QUIET)
    assert len(log.paths) == 3
    assert dump(idx) == before


def test_corpus_terms_are_lexical_terms() -> None:
    texts = [
        line for p in sorted(SEEDS.glob("*.txt")) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    texts += ["Running ran RUNS 5 days", "", "the of and", "Straße café naïve 2½ sacks"]
    for cfg in (LexicalConfig(), LexicalConfig(stopwords=False), LexicalConfig(language="")):
        want = [lexical_terms(t, cfg.language, cfg.stopwords) for t in texts]
        assert corpus_terms(texts, cfg) == want
        got = corpus_term_ids(texts, cfg)
        vocab = got.vocab
        inv = {i: t for t, i in vocab.items()}
        assert [[inv[i] for i in row] for row in got.rows()] == want
        assert sorted(vocab.values()) == list(range(len(vocab)))


def test_bm25_matrix_is_the_one_bm25s_builds() -> None:
    import bm25s

    from index_build.lexical import bm25_scores

    texts = [
        line for p in sorted(SEEDS.glob("*.txt")) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()
    ] + ["the of and", "hostages hostages hostages freed", ""]
    cfg = LexicalConfig()
    ids = corpus_term_ids(texts, cfg)
    vocab = ids.vocab
    ref = bm25s.BM25(k1=cfg.k1, b=cfg.b).build_index_from_ids(list(vocab.values()), ids.rows(), show_progress=False)
    for got in (bm25_scores(ids, len(vocab), cfg.k1, cfg.b), bm25_scores(ids.rows(), len(vocab), cfg.k1, cfg.b)):
        assert got["num_docs"] == ref["num_docs"] == len(texts)
        for key in ("data", "indices", "indptr"):
            assert got[key].dtype == ref[key].dtype and np.array_equal(got[key], ref[key]), key
