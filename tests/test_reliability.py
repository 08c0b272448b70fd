"""Reliability (issue 5): many users at once, rebuilds while serving, builds
killed at every phase, damaged or foreign indexes, hostile uploads.

(Hostile sources and hostile questions are in tests/test_hostile.py.)

Timings are printed as `figure:` lines, never asserted: the CI box is shared.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from index_build import build
from qa.config import BuildConfig
from qa.errors import IndexLoadError
from tests.conftest import REPO, SEEDS, run_cli, write_article
from tests.test_build import snapshot
from tests.test_chat import browser  # noqa: F401  (the chromium fixture)

QUIET = dict(log=lambda m: None)
# Gradio's queue trips pandas deprecations of its own; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*")
CALL_Q = "How long did the call between Biden and Netanyahu last?"
SEED_QUESTIONS = [
    CALL_Q,
    "How many hostages has Israel freed so far?",
    "What is Hamas demanding as a precondition for a deal?",
    "Where did Israel send a delegation for hostage talks?",
    "What did Biden and Netanyahu discuss on Thursday?",
    "How many days were the hostages held in captivity?",
    "What is happening in Rafah?",
    "Who quoted the senior administration official?",
    "What is the population of Tokyo?",
    "132 days",
]
NEW_FACT = "The Quokka Festival in Perth drew 12,345 visitors on Saturday, organisers said."
NEW_Q = "How many visitors did the Quokka Festival in Perth draw?"


def figure(capsys, text: str) -> None:
    """A measured figure, shown in the test log even when the test passes."""
    with capsys.disabled():
        print(f"\nfigure: {text}", flush=True)


def answer_key(res) -> list[tuple]:
    """What must be identical between two runs of one question on one index."""
    return [(a.text, a.sentence_id, tuple((s.doc_id, s.start, s.end) for s in a.sources)) for a in res.answers]


def add_new_article(src: Path) -> None:
    write_article(src, "quokka.txt", "Quokka Festival report", f"{NEW_FACT} The event ran for two days.")


# == 4. damaged or foreign indexes ============================================================


def _edit_manifest(d: Path, **changes) -> None:
    m = json.loads((d / "manifest.json").read_text())
    m.update(changes)
    (d / "manifest.json").write_text(json.dumps(m))


def _sql(d: Path, *statements: str) -> None:
    con = sqlite3.connect(d / "meta.sqlite")
    for s in statements:
        con.execute(s)
    con.commit()
    con.close()


def make_damaged_indexes(good: Path, root: Path) -> dict[str, tuple[Path, str]]:
    """{case: (index dir, the file its error must name)}: every way an index
    can be damaged, edited, mixed from two builds or made by another version."""
    import faiss

    from qa.index_format import FORMAT_VERSION

    cases: dict[str, tuple[Path, str]] = {}

    def case(name: str, names: str) -> Path:
        d = root / name
        shutil.copytree(good, d)
        cases[name] = (d, names)
        return d

    faiss_bytes = (good / "sentences.faiss").read_bytes()
    for cut in (0, 10, 45, len(faiss_bytes) // 2, len(faiss_bytes) - 1):
        (case(f"truncated-faiss-{cut}", "sentences.faiss") / "sentences.faiss").write_bytes(faiss_bytes[:cut])
    b = bytearray(faiss_bytes)
    b[8:16] = (10**12).to_bytes(8, "little")  # header claims a trillion vectors
    (case("faiss-header-lies", "sentences.faiss") / "sentences.faiss").write_bytes(bytes(b))
    (case("faiss-garbage", "sentences.faiss") / "sentences.faiss").write_bytes(b"IxFI" + os.urandom(len(faiss_bytes)))
    v = np.load(good / "sentence_vectors.npy")
    l2 = faiss.IndexFlatL2(v.shape[1])
    l2.add(v)
    faiss.write_index(l2, str(case("faiss-l2-metric", "sentences.faiss") / "sentences.faiss"))
    pv = np.load(good / "passage_vectors.npy")
    flat = faiss.IndexFlatIP(pv.shape[1])
    flat.add(pv)
    faiss.write_index(flat, str(case("faiss-of-passages", "sentences.faiss") / "sentences.faiss"))
    stretched = pv.copy()
    stretched[len(pv) // 2] *= 3.0
    np.save(case("passage-vector-damaged", "passage_vectors.npy") / "passage_vectors.npy", stretched)
    np.save(case("npy-from-another-build", "sentence_vectors.npy") / "sentence_vectors.npy", v[::-1].copy())
    (case("npy-truncated", "sentence_vectors.npy") / "sentence_vectors.npy").write_bytes(
        (good / "sentence_vectors.npy").read_bytes()[:1000]
    )
    _edit_manifest(case("manifest-other-model", "manifest.json"), model="sentence-transformers/all-mpnet-base-v2")
    _edit_manifest(case("manifest-other-dimension", "manifest.json"), dimension=768)
    _edit_manifest(case("manifest-dimension-text", "manifest.json"), dimension="384")
    _edit_manifest(case("manifest-unknown-version", "manifest.json"), format_version="1.0")
    _edit_manifest(case("manifest-older-version", "manifest.json"), format_version=0)
    _edit_manifest(
        case("built-by-newer-version", "manifest.json"),
        format_version=FORMAT_VERSION + 1,
        package_version="9.0.0",
        something_new={"a": 1},
    )
    m = json.loads((good / "manifest.json").read_text())
    m["counts"]["unique_sentences"] += 1
    (case("manifest-counts", "meta.sqlite") / "manifest.json").write_text(json.dumps(m))
    del m["model"]
    (case("manifest-no-model", "manifest.json") / "manifest.json").write_text(json.dumps(m))
    (case("manifest-not-json", "manifest.json") / "manifest.json").write_text('{"format_version": 1,')
    (case("manifest-missing", "manifest.json") / "manifest.json").unlink()
    (case("metadata-missing", "meta.sqlite") / "meta.sqlite").unlink()
    (case("metadata-garbage", "meta.sqlite") / "meta.sqlite").write_bytes(b"SQLite format 3\x00" + os.urandom(8192))
    (case("metadata-truncated", "meta.sqlite") / "meta.sqlite").write_bytes((good / "meta.sqlite").read_bytes()[:3000])
    _sql(case("metadata-sentence-row-missing", "meta.sqlite"), "DELETE FROM sentences WHERE sent_idx = 5")
    _sql(case("metadata-document-row-missing", "meta.sqlite"), "DELETE FROM documents WHERE doc_idx = 1")
    _sql(case("metadata-occurrences-missing", "meta.sqlite"), "DELETE FROM doc_sentences WHERE sent_no = 3")
    _sql(
        case("metadata-extra-row", "meta.sqlite"),
        f"INSERT INTO sentences VALUES ({len(v)}, 'An extra sentence.', 'h', 1, 1)",
    )
    _sql(
        case("metadata-ids-shifted", "meta.sqlite"),
        f"UPDATE sentences SET sent_idx = 100 WHERE sent_idx = {len(v) - 1}",
    )
    _sql(
        case("metadata-dangling-reference", "meta.sqlite"),
        "UPDATE doc_sentences SET sent_idx = 99 WHERE doc_idx = 0 AND sent_no = 2",
    )
    _sql(
        case("metadata-from-another-build", "manifest.json"),
        "UPDATE index_info SET value = '\"x\"' WHERE key = 'build_id'",
    )
    np.save(
        case("npy-pickled-objects", "sentence_vectors.npy") / "sentence_vectors.npy",
        np.array([{"a": 1}] * len(v), dtype=object),
        allow_pickle=True,
    )
    np.save(
        case("bm25-pickled-objects", "data.csc.index.npy") / "bm25" / "data.csc.index.npy",
        np.array([{"b": 2}] * 3, dtype=object),
        allow_pickle=True,
    )
    (case("bm25-vocabulary-garbage", "bm25") / "bm25" / "vocab.index.json").write_text("{not json")
    shutil.rmtree(case("bm25-missing", "bm25") / "bm25")
    return cases


_LOAD_ALL = r"""
import json, sys
import qa
for name, path in json.loads(sys.argv[1]).items():
    try:
        engine = qa.load(path)
        res = engine.ask("How long did the call between Biden and Netanyahu last?")
        out = {"loaded": True, "top": res.answers[0].text}
    except Exception as e:
        out = {"loaded": False, "type": type(e).__name__, "message": str(e)}
    print(json.dumps({"case": name, **out}), flush=True)
"""


def load_each(cases: dict[str, tuple[Path, str]]) -> dict[str, dict]:
    """Load every damaged index in one subprocess (a segfault or abort shows
    as a signal, not a dead pytest): what each load did, by case."""
    r = subprocess.run(
        [sys.executable, "-c", _LOAD_ALL, json.dumps({k: str(d) for k, (d, _) in cases.items()})],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    got = {o["case"]: o for o in map(json.loads, r.stdout.splitlines())}
    assert r.returncode == 0, f"the loader died (signal {-r.returncode}) after {list(got)[-1:]}:\n{r.stderr[-2000:]}"
    assert set(got) == set(cases)
    return got


@pytest.mark.slow
def test_damaged_or_foreign_index_gives_one_clear_error(tmp_path: Path, seed_index: Path) -> None:
    cases = make_damaged_indexes(seed_index, tmp_path)
    got = load_each(cases)
    for name, (d, names) in cases.items():
        o = got[name]
        assert not o["loaded"], f"{name}: loaded and answered {o.get('top')!r}"
        msg = o["message"]
        assert o["type"] == "IndexLoadError", (name, o)
        assert "\n" not in msg, (name, msg)
        assert names in msg and str(d) in msg, f"{name}: does not name {names}: {msg}"
        assert "index_build --full" in msg, (name, msg)
    newer = got["built-by-newer-version"]["message"]
    assert "newer source-qa" in newer and "upgrade source-qa" in newer, newer
    assert "pickled Python objects" in got["npy-pickled-objects"]["message"]
    assert "pickled Python objects" in got["bm25-pickled-objects"]["message"]


def test_damaged_index_in_the_cli_and_the_chat(tmp_path: Path, seed_index: Path) -> None:
    from qa.chat_backend import ChatBackend, Unavailable

    idx = tmp_path / "index"
    shutil.copytree(seed_index, idx)
    (idx / "sentences.faiss").write_bytes((seed_index / "sentences.faiss").read_bytes()[:100])
    r = run_cli("qa", "ask", CALL_Q, "--index", str(idx))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "sentences.faiss" in lines[0], r.stderr
    backend = ChatBackend(idx, SEEDS)
    try:
        with pytest.raises(Unavailable) as e:
            backend.ask(CALL_Q)
        assert "sentences.faiss" in e.value.message and e.value.fix.endswith("--full")
        # repaired on disk: the same backend answers, no restart
        shutil.copy(seed_index / "sentences.faiss", idx / "sentences.faiss")
        os.utime(idx / "manifest.json")  # what a rebuild does: a new manifest
        assert "45 minutes" in backend.ask(CALL_Q).result.answers[0].text
    finally:
        backend.close()


def test_loading_never_unpickles(tmp_path: Path, seed_index: Path, monkeypatch) -> None:
    """Every way Python unpickles is booby-trapped while an index is loaded
    and asked; a pickled .npy is refused by name."""
    import _pickle

    import qa
    from qa.index_store import open_index

    calls: list[str] = []

    def trap(name):
        def f(*a, **k):
            calls.append(name)
            raise AssertionError(f"{name} called while loading an index")

        return f

    for mod in (pickle, _pickle):
        for name in ("load", "loads", "Unpickler"):
            monkeypatch.setattr(mod, name, trap(f"{mod.__name__}.{name}"))
    engine = qa.load(seed_index)
    res = engine.ask(CALL_Q, history=["What did Biden and Netanyahu discuss on Thursday?"])
    assert res.answers
    engine.data.close()

    bad = tmp_path / "index"
    shutil.copytree(seed_index, bad)
    n = len(np.load(seed_index / "passage_vectors.npy", mmap_mode="r"))
    monkeypatch.undo()
    np.save(bad / "passage_vectors.npy", np.array([[object()] * 384] * n, dtype=object), allow_pickle=True)
    for mod in (pickle, _pickle):
        for name in ("load", "loads", "Unpickler"):
            monkeypatch.setattr(mod, name, trap(f"{mod.__name__}.{name}"))
    with pytest.raises(IndexLoadError, match=r"passage_vectors\.npy holds pickled Python objects.*--full"):
        open_index(bad)
    assert calls == []


def test_index_built_with_a_model_this_machine_lacks(tmp_path: Path, seed_index: Path) -> None:
    import qa

    idx = tmp_path / "index"
    shutil.copytree(seed_index, idx)
    other = "sentence-transformers/all-mpnet-base-v2"  # consistently: built elsewhere, not edited
    _edit_manifest(idx, model=other)
    _sql(idx, f"UPDATE index_info SET value = '{json.dumps(other)}' WHERE key = 'model'")
    with pytest.raises(IndexLoadError, match=r"manifest\.json.*index_build --full"):
        qa.load(idx)


# == 3. the builder killed at every phase ========================================================

# Runs the real CLI with one pause injected (nothing in the builder knows about
# it): at the chosen point it says PAUSED and sleeps, and the test kills it -9.
_PAUSED_BUILD = r"""
import importlib, sys, time
phase, argv = sys.argv[1], sys.argv[2:]
B = importlib.import_module("index_build.build")
P = importlib.import_module("index_build.publish")
from qa import encoder as E

def pause():
    print(f"PAUSED {phase}", file=sys.stderr, flush=True)
    time.sleep(3600)

def hook(obj, name, when="before", nth=1):
    orig, calls = getattr(obj, name), [0]
    def hooked(*a, **k):
        calls[0] += 1
        if when == "before" and calls[0] == nth:
            pause()
        out = orig(*a, **k)
        if when == "after" and calls[0] == nth:
            pause()
        return out
    setattr(obj, name, hooked)

if phase == "reading":              # 2 of 4 files read
    hook(B.docs_mod, "load", "after", 2)
elif phase == "embedding":          # the first batch of sentences encoded
    orig_encode = E.Encoder.encode
    def encode(self, texts, batch_size=32, precision=None, on_batch=None, **kw):
        if on_batch is None:
            return orig_encode(self, texts, batch_size, precision, **kw)
        def first(n):
            on_batch(n)
            pause()
        return orig_encode(self, texts, batch_size, precision, first, **kw)
    E.Encoder.encode = encode
elif phase == "writing-metadata":   # meta.sqlite written in the temp dir, vectors not yet
    hook(B, "_write_vectors")
elif phase == "publishing":         # complete and fsynced in the temp dir, not yet swapped in
    hook(P, "_exchange")
elif phase == "swapped":            # swapped in; the old index not yet deleted
    hook(P, "_exchange", "after")
from index_build.cli import main
sys.exit(main(argv))
"""

KILL_PHASES = ["reading", "embedding", "writing-metadata", "publishing", "swapped"]


@pytest.mark.slow
@pytest.mark.parametrize("phase", KILL_PHASES)
def test_build_killed_at_any_phase(tmp_path: Path, seed_index: Path, phase: str) -> None:
    import qa

    src, idx = tmp_path / "sources", tmp_path / "index"
    shutil.copytree(SEEDS, src)
    build([src], idx, BuildConfig(progress=False), **QUIET)
    before = snapshot(idx)
    engine = qa.load(idx)
    answers = {q: answer_key(engine.ask(q, k=3)) for q in SEED_QUESTIONS[:4]}
    engine.data.close()
    add_new_article(src)

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_BUILD, phase, str(src), "--index", str(idx), "--full", "--no-progress"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("PAUSED"):
                break
        assert seen and seen[-1].startswith("PAUSED"), "".join(seen)
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(60)
    assert proc.returncode == -signal.SIGKILL

    stale = list(tmp_path.glob(".index.building-*"))
    engine = qa.load(idx)
    try:
        if phase == "swapped":
            # the new index was already in place: it is complete, and the old one waits in a temp dir
            assert len(stale) == 1 and snapshot(stale[0]) == before
            assert "12,345 visitors" in engine.ask(NEW_Q, k=1).answers[0].text
        else:
            # the old index is exactly as it was and answers exactly as before
            assert snapshot(idx) == before
            assert {q: answer_key(engine.ask(q, k=3)) for q in answers} == answers
            # the temp dir exists from just before BM25 (before the embeddings), so
            # only a kill while reading leaves none; the next build removes it
            assert len(stale) == (0 if phase == "reading" else 1), stale
    finally:
        engine.data.close()

    # the next build just works, and clears what the killed one left
    rep = build([src], idx, BuildConfig(progress=False), **QUIET)
    assert rep.stale_temp_dirs_removed == len(stale)
    assert not list(tmp_path.glob(".index.building-*"))
    engine = qa.load(idx)
    try:
        assert "12,345 visitors" in engine.ask(NEW_Q, k=1).answers[0].text
        assert answer_key(engine.ask(CALL_Q, k=1))[0][0] == answers[CALL_Q][0][0]
    finally:
        engine.data.close()


# == 1. many users at once ===========================================================================

PREFIXES = [
    "",
    "Tell me: ",
    "Quick question: ",
    "I would like to know: ",
    "Please answer this. ",
    "From the articles: ",
    "Can you check? ",
    "Another one: ",
    "Question for the sources: ",
]
SUFFIXES = ["", " Thanks.", " Please quote the source.", " (asking for a report)", " I need this today."]
LOAD_POOL = [(f"{p}{q}{s}", []) for p in PREFIXES for s in SUFFIXES for q in SEED_QUESTIONS]  # 450 distinct
FOLLOWUPS = [
    ("How long did it last?", ["What did Biden and Netanyahu discuss on Thursday?"]),
    ("How long did it last?", [CALL_Q]),
    ("And what about Rafah?", ["What is Hamas demanding as a precondition for a deal?"]),
    ("Who said that?", ["How many hostages has Israel freed so far?"]),
    ("How many were freed?", ["What did Netanyahu say about the hostages?"]),
]


def percentile(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs), p)) if xs else float("nan")


def api_key(d: dict) -> tuple:
    """answer_key() of an /ask reply (JSON)."""
    return (
        d["found"],
        tuple(
            (a["text"], a["sentence_id"], tuple((s["doc_id"], s["start"], s["end"]) for s in a["sources"]))
            for a in d["answers"]
        ),
    )


def engine_key(res) -> tuple:
    return (res.found, tuple((t, i, s) for t, i, s in answer_key(res)))


@pytest.fixture
def chat_site(tmp_path: Path):
    """A running chat over a temp copy of the seeds, built from that copy."""
    from qa.chat_backend import ChatBackend
    from tests.test_chat import start

    src, idx = tmp_path / "sources", tmp_path / "index"
    shutil.copytree(SEEDS, src)
    build([src], idx, BuildConfig(progress=False), **QUIET)
    backend = ChatBackend(idx, src)
    backend.refresh()
    demo, url = start(backend)
    yield {"url": url, "backend": backend, "sources": src, "index": idx, "root": tmp_path}
    demo.close()
    backend.close()


def _reference(index: Path, pool: list[tuple[str, list[str]]], k: int) -> list[tuple]:
    """Single-threaded answers of a fresh engine: what every concurrent reply must equal."""
    import qa

    engine = qa.load(index)
    try:
        return [engine_key(engine.ask(q, history=h, k=k)) for q, h in pool]
    finally:
        engine.data.close()


@pytest.mark.slow
def test_engine_is_safe_to_share_between_threads(seed_index: Path, capsys) -> None:
    """8 threads x 50 questions on one Engine answer exactly as one thread.
    Its caches start empty and neighbouring threads share half their
    questions, so the encoder (also twice on one text at once), FAISS, BM25
    and SQLite all run concurrently."""
    import qa

    work = [LOAD_POOL[25 * n : 25 * n + 50] for n in range(8)]
    items = LOAD_POOL[: 25 * 7 + 50]
    expected = dict(zip((q for q, _ in items), _reference(seed_index, items, 5)))
    engine = qa.load(seed_index)
    errors: list[BaseException] = []
    got: list[tuple[str, tuple]] = []
    lat: list[float] = []
    barrier = threading.Barrier(8)

    def client(n: int) -> None:
        todo = list(work[n])
        random.Random(n).shuffle(todo)
        barrier.wait()
        for q, _ in todo:
            try:
                t0 = time.perf_counter()
                res = engine.ask(q, k=5)
                lat.append(time.perf_counter() - t0)
                got.append((q, engine_key(res)))
            except BaseException as e:  # noqa: BLE001 - every failure is a finding
                errors.append(e)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    wall = time.perf_counter() - t0
    engine.data.close()
    assert not errors, errors[:3]
    assert len(got) == 400
    wrong = [(q, key[1][:1], expected[q][1][:1]) for q, key in got if key != expected[q]]
    assert not wrong, wrong[:3]
    figure(
        capsys,
        f"engine, 8 threads x 50 questions: {400 / wall:.0f} questions/s, latency p50 "
        f"{percentile(lat, 50) * 1000:.0f} ms, p95 {percentile(lat, 95) * 1000:.0f} ms",
    )


@pytest.fixture
def chat_process(tmp_path: Path):
    """`qa chat` in its own process (as users run it), over a temp copy of the seeds."""
    from tests.test_chat import free_port, start_chat

    src, idx = tmp_path / "sources", tmp_path / "index"
    shutil.copytree(SEEDS, src)
    build([src], idx, BuildConfig(progress=False), **QUIET)
    port = free_port()
    proc, lines = start_chat(["--index", str(idx), "--sources", str(src), "--port", str(port), "--no-upload"])
    try:
        yield {"url": f"http://127.0.0.1:{port}/", "index": idx, "log": lines}
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.slow
def test_load_8_clients_through_the_api(chat_process, capsys) -> None:
    """8 gradio_client clients x 50 questions (45 new to the server, 5
    follow-ups) against one `qa chat`: no error, and every reply identical to
    a single-threaded run of the same questions."""
    from gradio_client import Client

    url, k = chat_process["url"], 3
    work = [LOAD_POOL[50 + 45 * n : 50 + 45 * (n + 1)] + FOLLOWUPS for n in range(8)]
    alone_work = LOAD_POOL[:50]
    items = sorted({(q, tuple(h)) for w in work + [alone_work] for q, h in w})
    expected = dict(zip(items, _reference(chat_process["index"], [(q, list(h)) for q, h in items], k)))
    assert "45 minutes" in expected[(CALL_Q, ())][1][0][0]  # the reference itself is right

    def run_client(n: int, todo: list, barrier: threading.Barrier | None, out: list, errors: list) -> None:
        client = Client(url, verbose=False)
        todo = list(todo)
        random.Random(n).shuffle(todo)
        if barrier is not None:
            barrier.wait()
        for q, h in todo:
            try:
                t0 = time.perf_counter()
                d = client.predict(q, h, k, api_name="/ask")
                out.append(((q, tuple(h)), time.perf_counter() - t0, api_key(d)))
            except BaseException as e:  # noqa: BLE001
                errors.append((q, repr(e)))

    # one client alone first: the latency without contention
    alone: list = []
    errors: list = []
    run_client(99, alone_work, None, alone, errors)
    barrier = threading.Barrier(8)
    out: list = []
    threads = [threading.Thread(target=run_client, args=(n, work[n], barrier, out, errors)) for n in range(8)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    wall = time.perf_counter() - t0
    assert not errors, errors[:3]
    assert len(out) == 400 and len(alone) == 50
    wrong = [(item[0], key[1][:1], expected[item][1][:1]) for item, _, key in out + alone if key != expected[item]]
    assert not wrong, f"{len(wrong)} replies differ from the single-threaded run, e.g. {wrong[:2]}"
    assert "Traceback" not in "".join(chat_process["log"])
    lat = [s for _, s, _ in out]
    one = [s for _, s, _ in alone]
    figure(
        capsys,
        f"API, 8 gradio_client clients x 50 questions against `qa chat` (2 engine workers): p50 "
        f"{percentile(lat, 50) * 1000:.0f} ms, p95 {percentile(lat, 95) * 1000:.0f} ms, "
        f"max {max(lat) * 1000:.0f} ms, {400 / wall:.1f} questions/s; one client alone: p50 "
        f"{percentile(one, 50) * 1000:.0f} ms, p95 {percentile(one, 95) * 1000:.0f} ms",
    )


# == 2. rebuilds while serving =========================================================================

REBUILD_POOL = [(q, []) for q in SEED_QUESTIONS[:6]] + [(NEW_Q, []), ("Where is the harbour frozen?", [])]


@pytest.mark.slow
def test_rebuild_while_serving_every_reply_from_one_index(chat_site, capsys) -> None:
    """Questions flow while an upload rebuilds the index (v1), then while
    someone runs index_build on the same folder (v2).  Each reply equals the
    single-threaded answer of v0, v1 or v2 -- ids, texts and spans of one
    index, never a mix -- each client only moves forward, and the new
    articles are answerable with no restart."""
    from gradio_client import Client

    url, k, backend = chat_site["url"], 3, chat_site["backend"]
    src, idx = chat_site["sources"], chat_site["index"]
    versions = [_reference(idx, REBUILD_POOL, k)]
    stop = threading.Event()
    replies: list[list[tuple[float, float, int, tuple]]] = [[] for _ in range(4)]
    errors: list = []

    def run_client(n: int) -> None:
        client = Client(url, verbose=False)
        rng = random.Random(n)
        while not stop.is_set():
            i = rng.randrange(len(REBUILD_POOL))
            q, h = REBUILD_POOL[i]
            try:
                t0 = time.perf_counter()
                d = client.predict(q, h, k, api_name="/ask")
                replies[n].append((t0, time.perf_counter(), i, api_key(d)))
            except BaseException as e:  # noqa: BLE001
                errors.append((q, repr(e)))

    threads = [threading.Thread(target=run_client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        # v1: an upload (what the "Add articles" tab calls); sorts first, so every sentence id moves
        up = chat_site["root"] / "upload.txt"
        up.write_text(f"Quokka Festival report\n\n{NEW_FACT} The event ran for two days.\n", encoding="utf-8")
        t_build = time.perf_counter()
        outcome = backend.add_articles([("0000 quokka.txt", up)])
        t_v1 = time.perf_counter()
        assert outcome.error is None and outcome.saved == ["0000_quokka.txt"], outcome
        versions.append(_reference(idx, REBUILD_POOL, k))
        time.sleep(2)
        # v2: someone runs the builder on the folder behind the chat's back
        write_article(
            src,
            "0001_harbour.txt",
            "Harbour news",
            "The harbour in Wellington froze over on Tuesday for the first time in 40 years.",
        )
        r = run_cli("index_build", str(src), "--index", str(idx), "--no-progress")
        assert r.returncode == 0, r.stderr
        t_v2 = time.perf_counter()
        versions.append(_reference(idx, REBUILD_POOL, k))
        time.sleep(3)
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    assert not errors, errors[:3]
    assert all(versions[0][i] != versions[1][i] for i in range(6)), "the upload did not move the sentence ids"

    during = 0
    for n, rs in enumerate(replies):
        current = 0
        for asked, answered, i, key in rs:
            matches = [v for v in range(3) if versions[v][i] == key]
            assert matches, f"client {n}: a reply to {REBUILD_POOL[i][0]!r} matches no index: {key[1][:1]}"
            ahead = [v for v in matches if v >= current]
            assert ahead, f"client {n} went back from index v{current} to v{matches}"
            current = min(ahead)
            during += asked < t_v1 and answered > t_build  # in flight while the upload rebuilt
        assert current == 2, f"client {n} never saw the last index"
    assert during > 0, "no question was answered while the upload rebuilt the index"
    # answerable at once, no restart
    d = Client(url, verbose=False).predict(NEW_Q, [], 1, api_name="/ask")
    assert d["found"] and "12,345 visitors" in d["answers"][0]["text"]
    assert d["answers"][0]["sources"][0]["file"] == "0000_quokka.txt"
    d = Client(url, verbose=False).predict("Where did the harbour freeze over?", [], 1, api_name="/ask")
    assert "Wellington" in d["answers"][0]["text"]
    figure(
        capsys,
        f"rebuild while serving: {sum(map(len, replies))} replies from 4 clients, {during} in flight during the "
        f"{t_v1 - t_build:.1f} s upload rebuild, index swapped twice (upload, then index_build at "
        f"+{t_v2 - t_v1:.1f} s), every reply from one index",
    )


# == 7. hostile uploads =================================================================================


def _tree(root: Path, skip: tuple[Path, ...]) -> dict[str, str]:
    """Every file under root (but not under `skip`) with its sha256."""
    import hashlib

    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink() and not any(p.is_relative_to(s) for s in skip):
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _article(title: str, fact: str) -> str:
    return f"{title}\n\n{fact} Officials confirmed the figures on Monday.\n"


@pytest.fixture
def upload_site(tmp_path: Path):
    """Sources two levels below tmp_path, with sentinel files where a
    traversal would land, and an index built from the sources."""
    from qa.chat_backend import ChatBackend

    site = tmp_path / "site"
    src, idx = site / "a" / "b" / "sources", site / "a" / "b" / "index"
    shutil.copytree(SEEDS, src)
    for rel in ("a/sentinel.txt", "a/b/sentinel.txt", "a/etc/passwd.txt", "abs-target.txt"):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text("sentinel: must never change\n")
    (src / "link.txt").symlink_to(site / "abs-target.txt")  # a symlink already in the sources
    build([src], idx, BuildConfig(progress=False), **QUIET)
    backend = ChatBackend(idx, src)
    backend.refresh()
    yield {"site": site, "sources": src, "index": idx, "backend": backend, "uploads": tmp_path / "uploads"}
    backend.close()


@pytest.mark.slow
def test_hostile_upload_names_and_sizes(upload_site) -> None:
    site, src, backend = upload_site["site"], upload_site["sources"], upload_site["backend"]
    up = upload_site["uploads"]
    up.mkdir()
    before = _tree(site, (src, upload_site["index"]))
    seeds_before = snapshot(src)

    made: list[Path] = []

    def f(name: str, data: bytes | str) -> Path:
        made.append(up / f"upload-{len(made)}")
        made[-1].write_bytes(data.encode() if isinstance(data, str) else data)
        return made[-1]

    big = up / "big"
    with open(big, "wb") as fh:
        fh.truncate(21 * 2**20)  # sparse: 21 MB of nothing
    uploads = [
        ("../../sentinel.txt", f("", _article("Traversal one", "The Oslo tram carried 7,001 riders."))),
        ("../../etc/passwd.txt", f("", _article("Traversal two", "The Bergen ferry sailed 31 times."))),
        (str(site / "abs-target.txt"), f("", _article("Absolute path", "The Tromsø bridge is 1,036 metres long."))),
        ("..\\..\\windows\\win.ini.md", f("", _article("Backslashes", "The Turku library lent 9,210 books."))),
        ("con.txt", f("", _article("Device name", "The Narvik railway moved 4,410 tonnes of ore."))),
        ("NUL.md", f("", _article("Another device", "The Umeå choir had 88 singers."))),
        ("link.txt", f("", _article("Over a symlink", "The Kiruna mine is 1,365 metres deep."))),
        (
            "<script>alert(1)</script> \"q\" 'a' ünï.txt",
            f("", _article("Markup name", "The Lund fair had 512 stalls.")),
        ),
        ("a\x00b\n.txt", f("", _article("Control characters", "The Visby wall is 3.4 km long."))),
        ("   .txt", f("", _article("No stem", "The Malmö arena seats 15,500 people."))),
        ("x" * 400 + ".txt", f("", _article("Long name", "The Gävle goat stood 13 metres tall."))),
        ("empty.txt", f("", b"")),
        ("big.txt", big),
        ("evil.exe", f("", "MZ binary")),
        ("noextension", f("", "text")),
        ("photo.txt", f("", b"\x89PNG\r\n\x1a\n" + bytes(range(256)))),
        ("again.txt", up / "upload-0"),  # the same bytes as the first upload
    ]
    out = backend.add_articles(uploads)
    assert out.error is None, out.error
    rejected = dict(out.rejected)
    assert rejected == {
        "empty.txt": "empty file",
        "big.txt": "21.0 MB is over the 20 MB limit per file",
        "evil.exe": rejected["evil.exe"],
        "noextension": rejected["noextension"],
        "photo.txt": rejected["photo.txt"],
        "again.txt": "already in the sources as sentinel.txt",
    }, rejected
    assert "unsupported file type" in rejected["evil.exe"] and "unsupported" in rejected["noextension"]
    assert "binary" in rejected["photo.txt"]
    assert out.saved == [
        "sentinel.txt",
        "passwd.txt",
        "abs-target.txt",
        "win.ini.md",
        "con_.txt",
        "NUL_.md",
        "link-2.txt",
        "script_q_a_ünï.txt",
        "ab.txt",
        "article.txt",
        "x" * 80 + ".txt",
    ], out.saved

    # nothing outside the sources folder changed, nothing in it was overwritten
    assert _tree(site, (src, upload_site["index"])) == before
    after = snapshot(src)
    assert {k: v for k, v in after.items() if k in seeds_before} == seeds_before
    assert set(after) - set(seeds_before) == set(out.saved)
    assert all((src / n).is_file() and not (src / n).is_symlink() and (src / n).parent == src for n in out.saved)
    assert not [p for p in src.iterdir() if p.name.startswith(".")], "an upload temp file was left behind"
    # and the index has them
    res = backend.ask("How deep is the Kiruna mine?").result
    assert "1,365 metres" in res.answers[0].text and res.answers[0].sources[0].doc_id == "link-2"

    # 100 files at once: refused as a whole, nothing saved
    many = [(f"many{i}.txt", f("", _article(f"Article {i}", f"Item {i} happened."))) for i in range(100)]
    out = backend.add_articles(many)
    assert out.error and "100 files at once is over the limit of 50" in out.error and not out.saved
    assert snapshot(src) == after


@pytest.mark.slow
def test_hostile_uploads_through_the_browser(upload_site, browser, tmp_path: Path) -> None:
    """The same through the real page: Gradio's upload route, our handler."""
    from tests.test_chat import Page, start

    site, src, backend = upload_site["site"], upload_site["sources"], upload_site["backend"]
    demo, url = start(backend)
    page = Page(browser, url, tmp_path)
    before = _tree(site, (src, upload_site["index"]))
    seeds_before = snapshot(src)
    try:
        page.page.locator("button[role='tab']:has-text('Add articles')").first.click()
        files = [
            {
                "name": "../../sentinel.txt",
                "mimeType": "text/plain",
                "buffer": _article("Traversal", "The Oslo tram carried 7,001 riders.").encode(),
            },
            {
                "name": "con.txt",
                "mimeType": "text/plain",
                "buffer": _article("Device name", "The Narvik railway moved 4,410 tonnes of ore.").encode(),
            },
            {
                "name": "<img src=x onerror=alert(1)>.txt",
                "mimeType": "text/plain",
                "buffer": _article("Markup name", "The Lund fair had 512 stalls.").encode(),
            },
            {"name": "empty.txt", "mimeType": "text/plain", "buffer": b""},
        ]
        page.page.locator("#sqa-upload input[type='file']").set_input_files(files)
        status = page.page.locator("#sqa-upload-status .sqa-upload-outcome")
        from playwright.sync_api import expect

        expect(status, f"upload never finished; screenshot: {page.shot('upload-timeout')}").to_be_visible(
            timeout=180_000
        )
        shot = page.shot("uploaded")
        text = status.inner_text()
        assert "Added 3 articles" in text, f"{text!r}; screenshot: {shot}"
        assert "empty.txt: empty file" in text, f"{text!r}; screenshot: {shot}"
        assert page.page.locator("#sqa-upload-status img").count() == 0, f"markup in a name rendered; {shot}"
        page.page.wait_for_timeout(300)
        assert page.dialogs == [], page.dialogs
        added = set(snapshot(src)) - set(seeds_before)
        assert len(added) == 3 and "con_.txt" in added and "sentinel.txt" in added, added
        assert all((src / n).parent == src for n in added)
        assert _tree(site, (src, upload_site["index"])) == before
        reply, shot = page.ask("How many tonnes of ore did the Narvik railway move?", "after-upload")
        assert "4,410 tonnes" in reply.locator(".sqa-quote").first.inner_text(), f"screenshot: {shot}"
    finally:
        page.close()
        demo.close()


@pytest.mark.parametrize("where", ["_write_metadata", "_write_vectors", "build_bm25"])
def test_disk_full_while_writing_is_one_clear_error(tmp_path: Path, seed_index: Path, monkeypatch, where) -> None:
    import errno
    import importlib

    B = importlib.import_module("index_build.build")
    from qa.errors import BuildError

    idx = tmp_path / "index"
    shutil.copytree(seed_index, idx)
    before = snapshot(idx)
    real = getattr(B, where)

    def full(*a, **k):
        real(*a, **k)  # part of it is on disk already
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(B, where, full)
    with pytest.raises(BuildError, match=r"No space left on device.*previous index is as it was.*free some disk"):
        build([SEEDS], idx, BuildConfig(progress=False, full=False), **QUIET)
    assert snapshot(idx) == before
    assert not list(tmp_path.glob(".index.building-*"))


def test_a_second_build_of_an_index_stops_or_waits(tmp_path: Path) -> None:
    """Two builds of one index never run at once: the builder stops with one
    line naming the fix (BuildRunningError, a BuildError), and the
    evaluation's shared-index builder waits for the lock instead."""
    from index_build import publish
    from qa.errors import BuildError, BuildRunningError
    from qa.eval.common import build_index

    src = tmp_path / "src"
    write_article(src, "a.txt", "Bridge shut", "The bridge was closed after inspectors found cracks in its beams.")
    out = tmp_path / "index"
    with publish.build_lock(out):
        with pytest.raises(BuildRunningError, match="another build of .* is running: wait for it to finish") as e:
            build([src], out, BuildConfig(progress=False), log=lambda m: None)
        assert isinstance(e.value, BuildError)
    held = threading.Event()

    def hold() -> None:
        with publish.build_lock(out):
            held.set()
            time.sleep(1.5)

    t = threading.Thread(target=hold)
    t.start()
    held.wait()
    t0 = time.monotonic()
    assert build_index([src], out) == out
    t.join()
    assert time.monotonic() - t0 >= 1.0  # it waited for the other build, then built
    assert (out / "manifest.json").is_file()
