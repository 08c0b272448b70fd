"""The builder end to end: real model, real FAISS/BM25 files on disk."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from index_build import build
from qa.config import BuildConfig
from qa.encoder import load_encoder
from qa.index_store import open_index
from qa.textnorm import lexical_terms
from tests.conftest import REPO, SEEDS, bench_path, run_cli, write_article

QUIET = dict(log=lambda m: None)


def snapshot(index_dir: Path) -> dict[str, str]:
    """sha256 of every file in an index: proof that nothing changed."""
    return {
        str(p.relative_to(index_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(index_dir.rglob("*"))
        if p.is_file()
    }


def test_round_trip(seed_index: Path) -> None:
    data = open_index(seed_index)
    m = data.manifest
    assert m.counts["documents"] == 3 and m.counts["unique_sentences"] == data.n_sentences == 46
    assert m.counts["exact_duplicates_merged"] == 11
    assert m.model == "sentence-transformers/all-MiniLM-L6-v2" and m.dimension == 384 and m.normalized
    assert set(m.files) == {"000_d94e3a040fbeca26", "001_b75319ecbb0ee614", "002_35521e549324248f"}
    assert all(len(f["sha256"]) == 64 for f in m.files.values())
    # vectors are unit length and FAISS finds each sentence as its own nearest neighbour
    norms = np.linalg.norm(np.asarray(data.sentence_vectors), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-3)
    _, ids = data.sentence_index.search(np.asarray(data.sentence_vectors[:5]), 1)
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]
    # a query embedded by the model finds the right sentence
    enc = load_encoder(m.model, precision=m.precision)
    q = enc.encode(["How long did Biden and Netanyahu speak on Sunday?"])
    _, ids = data.sentence_index.search(q, 3)
    texts = [data.db.execute("SELECT text FROM sentences WHERE sent_idx=?", (int(i),)).fetchone()[0] for i in ids[0]]
    assert any("45 minutes" in t for t in texts)
    # BM25 over the same rows: an exact number wins
    scores = data.bm25.get_scores(lexical_terms("132 days captivity"))
    best = data.db.execute("SELECT text FROM sentences WHERE sent_idx=?", (int(np.argmax(scores)),)).fetchone()[0]
    assert "132 days in Hamas captivity" in best
    # every occurrence span points at its sentence's text (modulo near-dup wording)
    rows = data.db.execute(
        "SELECT d.text, ds.start, ds.end, s.text FROM doc_sentences ds JOIN documents d USING(doc_idx) "
        "JOIN sentences s USING(sent_idx)"
    ).fetchall()
    assert len(rows) == m.counts["sentences"]
    assert all(doc[a:b] == s for doc, a, b, s in rows)
    # captions are kept as text but not as answers
    caps = data.db.execute("SELECT COUNT(*) FROM doc_sentences WHERE sent_idx IS NULL").fetchone()[0]
    assert caps == 5  # 4 photo captions + seed 000's "Related articles:" link list
    data.close()


def test_incremental_rebuild_embeds_only_new_sentences(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(SEEDS, src)
    idx = tmp_path / "index"
    first = build([src], idx, BuildConfig(progress=False), **QUIET)
    assert first.sentences_embedded == 46 and first.sentences_reused == 0

    # one new article: four new sentences and one the seeds already have
    write_article(
        src,
        "003_new.txt",
        "Port strike ends",
        "Dock workers in Rotterdam ended a nine-day strike on Monday. "
        "The union accepted a 6 percent pay rise. Ships had queued for days outside the harbour. "
        "The officials cautioned that while a framework is in place, gaps remain. "
        "Cargo traffic is expected to return to normal by Friday.",
    )
    second = build([src], idx, BuildConfig(progress=False), **QUIET)
    assert second.sentences_embedded == 4
    assert second.sentences_reused == 46
    assert second.documents == 4 and second.unique_sentences == 50
    data = open_index(idx)
    shared = data.db.execute(
        "SELECT COUNT(*) FROM doc_sentences ds JOIN sentences s USING(sent_idx) "
        "WHERE s.text LIKE 'The officials cautioned%'"
    ).fetchone()[0]
    assert shared == 3
    data.close()

    # removing a file removes its sentences, and embeds nothing
    (src / "003_new.txt").unlink()
    third = build([src], idx, BuildConfig(progress=False), **QUIET)
    assert third.sentences_embedded == 0 and third.unique_sentences == 46
    data = open_index(idx)
    assert "003_new" not in data.manifest.files
    assert data.db.execute("SELECT COUNT(*) FROM sentences WHERE text LIKE '%Rotterdam%'").fetchone()[0] == 0
    data.close()

    # --full re-embeds everything
    full = build([src], idx, BuildConfig(progress=False, full=True), **QUIET)
    assert full.sentences_embedded == 46 and full.sentences_reused == 0


def test_bbc_sample_nested_ids_encoding_and_duplicates(tmp_path: Path) -> None:
    bbc = bench_path("bbc")
    src = tmp_path / "bbc"
    for rel in ("politics/108.txt", "politics/291.txt", "sport/199.txt", "business/001.txt", "tech/001.txt"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(bbc / rel, src / rel)
    rep = build([src], tmp_path / "index", BuildConfig(progress=False), **QUIET)
    assert rep.documents == 5
    assert rep.legacy_encodings == [{"path": str(src / "sport/199.txt"), "encoding": "cp1252"}]
    data = open_index(tmp_path / "index")
    ids = {r[0] for r in data.db.execute("SELECT doc_id FROM documents")}
    assert ids == {"politics/108", "politics/291", "sport/199", "business/001", "tech/001"}
    # the duplicate article: every sentence once, with both sources
    rows = data.db.execute(
        "SELECT ds.sent_idx, GROUP_CONCAT(d.doc_id) FROM doc_sentences ds JOIN documents d USING(doc_idx) "
        "WHERE d.doc_id IN ('politics/108','politics/291') AND ds.sent_idx IS NOT NULL GROUP BY ds.sent_idx"
    ).fetchall()
    assert rows and all(sorted(g.split(",")) == ["politics/108", "politics/291"] for _, g in rows)
    title = data.db.execute("SELECT title FROM documents WHERE doc_id='business/001'").fetchone()[0]
    assert title == (bbc / "business/001.txt").read_text().splitlines()[0].strip()
    text = data.db.execute("SELECT text FROM documents WHERE doc_id='sport/199'").fetchone()[0]
    assert "£" in text
    data.close()


def test_cli_report_and_json(tmp_path: Path) -> None:
    r = run_cli("index_build", str(SEEDS), "--index", str(tmp_path / "idx"), "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["unique_sentences"] == 46 and rep["exact_duplicates_merged"] == 11 and rep["files_read"] == 3
    assert rep["sentences_per_second"] > 0
    r = run_cli("index_build", str(SEEDS), "--index", str(tmp_path / "idx"))
    assert r.returncode == 0
    assert "unique sentences" in r.stdout and "identical sentences merged" in r.stdout


def test_skipped_files_warn_and_strict_fails(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(SEEDS, src)
    (src / "empty.txt").write_bytes(b"")
    (src / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 jpeg")
    r = run_cli("index_build", str(src), "--index", str(tmp_path / "idx"), "--json")
    assert r.returncode == 0, r.stderr
    skipped = {Path(s["path"]).name: s["reason"] for s in json.loads(r.stdout)["files_skipped"]}
    assert skipped == {"empty.txt": "empty file", "photo.jpg": skipped["photo.jpg"]}
    assert "unsupported file type" in skipped["photo.jpg"]
    assert "warning: skipping" in r.stderr and "empty.txt" in r.stderr
    before = snapshot(tmp_path / "idx")
    r = run_cli("index_build", str(src), "--index", str(tmp_path / "idx"), "--strict")
    assert r.returncode == 1
    assert "empty.txt" in r.stderr and "photo.jpg" in r.stderr and "--strict" in r.stderr
    assert snapshot(tmp_path / "idx") == before


@pytest.fixture()
def old_index(tmp_path: Path, seed_index: Path) -> Path:
    """A good index the failing builds below must leave untouched."""
    idx = tmp_path / "index"
    shutil.copytree(seed_index, idx)
    return idx


def _one_error_line(r: subprocess.CompletedProcess) -> str:
    lines = [line for line in r.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def test_bad_inputs_exit_1_and_leave_index_untouched(tmp_path: Path, old_index: Path) -> None:
    before = snapshot(old_index)
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "notes.docx").write_bytes(b"xx")
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [
        ([str(tmp_path / "missing")], "does not exist"),
        ([str(empty)], "no readable articles"),
        ([str(SEEDS), "--model", "no-such-org/no-such-model"], "not available offline"),
    ]
    for args, needle in cases:
        r = run_cli("index_build", *args, "--index", str(old_index))
        assert r.returncode == 1, (args, r.stderr)
        assert needle in _one_error_line(r)
        assert snapshot(old_index) == before
    r = run_cli("index_build", str(SEEDS), "--index", str(afile))
    assert r.returncode == 1 and "is a file" in _one_error_line(r)
    assert afile.read_text() == "x"


def test_read_only_index_dir(tmp_path: Path, old_index: Path) -> None:
    before = snapshot(old_index)
    old_index.chmod(0o555)
    try:
        r = run_cli("index_build", str(SEEDS), "--index", str(old_index), "--full")
    finally:
        old_index.chmod(0o755)
    assert r.returncode == 1 and "read-only" in _one_error_line(r)
    assert snapshot(old_index) == before


def test_usage_error_exits_2(tmp_path: Path) -> None:
    r = run_cli("index_build", "--no-such-flag")
    assert r.returncode == 2
    r = run_cli("index_build", "--batch-size", "0")
    assert r.returncode == 2


def _squad_articles(folder: Path, n: int) -> None:
    lines = bench_path("squad_v1.1", "squad_dev_v1.1_paragraphs.jsonl").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines[:n]):
        p = json.loads(line)
        write_article(folder, f"p{i:04d}.txt", p["title"].replace("_", " "), p["context"])


def _start_build(src: Path, idx: Path) -> subprocess.Popen:
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "index_build",
            str(src),
            "--index",
            str(idx),
            "--full",
            "--no-progress",
            "--precision",
            "fp32",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell running us in the background ignores SIGINT, and children
        # inherit that; a user's Ctrl-C reaches a builder with the default
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for(proc: subprocess.Popen, needle: str, timeout: float = 120) -> str:
    seen = ""
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        seen += line
        if needle in line:
            return seen
    raise AssertionError(f"never saw {needle!r}; stderr so far:\n{seen}")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_build_leaves_old_index(tmp_path: Path, old_index: Path, sig: int) -> None:
    src = tmp_path / "big"
    _squad_articles(src, 300)
    before = snapshot(old_index)
    proc = _start_build(src, old_index)
    _wait_for(proc, "embedding")
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert "previous index" in err and "unchanged" in err
        assert not list(old_index.parent.glob(f".{old_index.name}.building-*"))
    else:
        assert proc.returncode == -signal.SIGKILL
    assert snapshot(old_index) == before
    data = open_index(old_index)
    assert data.n_sentences == 46
    data.close()


@pytest.mark.slow
def test_stale_temp_dir_of_a_killed_build_is_removed(tmp_path: Path, old_index: Path) -> None:
    # what a build killed while writing leaves behind
    stale = old_index.parent / f".{old_index.name}.building-k1ll3d"
    stale.mkdir()
    (stale / "sentences.faiss").write_bytes(b"half written")
    rep = build([SEEDS], old_index, BuildConfig(progress=False), **QUIET)
    assert rep.stale_temp_dirs_removed == 1
    assert not stale.exists()
    assert open_index(old_index).n_sentences == 46
