"""The Milvus vector store (Milvus Lite files here): the same answers as the
FAISS index, atomic publishing through an alias, a failed build that leaves
the previous collection serving, and clear errors for unreachable stores."""

from __future__ import annotations

import json
import shlex
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SEEDS, bench_path, run_cli, write_article

pytestmark = pytest.mark.slow


def _build(sources, index: Path, store: str):
    from index_build import build
    from qa.config import BuildConfig

    return build(
        sources if isinstance(sources, list) else [sources],
        index,
        BuildConfig(progress=False, store=store),
        log=lambda m: None,
    )


def _manifest(index: Path) -> dict:
    return json.loads((index / "manifest.json").read_text(encoding="utf-8"))


def _client(db: Path):
    from qa.milvus_store import connect
    from qa.vector_store import parse_store

    return connect(parse_store(f"milvus:{db}"))


@pytest.fixture(scope="module")
def milvus_seeds(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("milvus-seeds")
    db, index = root / "vectors.db", root / "index"
    _build(SEEDS, index, f"milvus:{db}")
    return index, db


def _seed_questions() -> list[tuple[str, list[str]]]:
    from qa.eval.seeds import load_gold

    gold = load_gold()
    out = [(it["question"], []) for it in gold["answerable"]]
    out += [(it["question"], []) for it in gold["unanswerable"]]
    out += [(c["turns"][-1], c["turns"][:-1]) for c in gold["conversations"]]
    out += [(t["turns"][1], [t["turns"][0]]) for t in gold["topic_shifts"]]
    return out


def _same_results(a, b) -> None:
    assert a.found == b.found and a.query == b.query
    assert [x.text for x in a.answers] == [x.text for x in b.answers]
    assert np.allclose([x.score for x in a.answers], [x.score for x in b.answers], atol=1e-3)
    assert [[s.doc_id for s in x.sources] for x in a.answers] == [[s.doc_id for s in x.sources] for x in b.answers]


def test_milvus_store_answers_every_seed_question_as_faiss_does(engine, milvus_seeds):
    import qa

    index, _ = milvus_seeds
    m = _manifest(index)
    assert m["store"]["kind"] == "milvus" and m["store"]["index"] == "FLAT"
    assert not (index / "sentences.faiss").exists()  # searched in Milvus only
    milvus = qa.load(index, warm=False)
    assert milvus.data.sentence_index.kind == "milvus"
    assert milvus.data.n_sentences == engine.data.n_sentences == m["store"]["rows"]
    questions = _seed_questions()
    assert len(questions) >= 50
    for q, history in questions:
        _same_results(engine.ask(q, history=history), milvus.ask(q, history=history))


def test_milvus_store_matches_faiss_on_a_squad_sample(tmp_path):
    """Exact search both ways over 40 SQuAD paragraphs: identical top answers."""
    import qa

    paras = [
        json.loads(line)
        for line in bench_path("squad_v1.1", "squad_dev_v1.1_paragraphs.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()[:40]
    ]
    ids = {p["para_id"] for p in paras}
    questions = [
        q["question"]
        for q in map(
            json.loads,
            bench_path("squad_v1.1", "squad_dev_v1.1_questions.jsonl").read_text(encoding="utf-8").splitlines(),
        )
        if q["para_id"] in ids
    ][:80]
    src = tmp_path / "src"
    for i, p in enumerate(paras):
        write_article(src, f"{i:03d}.txt", p["title"].replace("_", " "), p["context"])
    _build(src, tmp_path / "faiss", "faiss")
    _build(src, tmp_path / "milvus", f"milvus:{tmp_path / 'v.db'}")
    a, b = qa.load(tmp_path / "faiss", warm=False), qa.load(tmp_path / "milvus", warm=False)
    assert len(questions) == 80
    for q in questions:
        _same_results(a.ask(q), b.ask(q))


def test_rebuilds_publish_through_the_alias_and_keep_one_old_collection(tmp_path):
    import qa
    from qa.errors import IndexLoadError

    src, index, db = tmp_path / "src", tmp_path / "index", tmp_path / "v.db"
    shutil.copytree(SEEDS, src)
    store = f"milvus:{db}#news"
    _build(src, index, store)
    first = _manifest(index)["store"]
    shutil.copytree(index, tmp_path / "first-index")  # a reader still holding the first build

    gone = sorted(src.iterdir())[0]
    gone.unlink()
    report = _build(src, index, store)
    second = _manifest(index)["store"]
    assert second["collection"] != first["collection"] and second["alias"] == "news"
    assert second["rows"] == report.unique_sentences
    client = _client(db)
    assert client.describe_alias("news")["collection_name"] == second["collection"]
    assert {first["collection"], second["collection"]} <= set(client.list_collections())
    engine = qa.load(index, warm=False)
    cited = {s.path for q, h in _seed_questions()[:15] for a in engine.ask(q, history=h).answers for s in a.sources}
    assert cited and not any(Path(p).name == gone.name for p in cited)
    engine.data.close()

    # a third build drops the first build's collection, and an index that
    # still names it says so instead of answering from the wrong vectors
    shutil.copy(SEEDS / gone.name, gone)
    _build(src, index, store)
    third = _manifest(index)["store"]
    names = set(client.list_collections())
    assert third["collection"] in names and second["collection"] in names and first["collection"] not in names
    assert client.describe_alias("news")["collection_name"] == third["collection"]
    with pytest.raises(IndexLoadError, match="not in .*rebuild"):
        qa.load(tmp_path / "first-index", warm=False)


def test_a_failed_build_drops_its_collection_and_the_old_one_serves(tmp_path, monkeypatch):
    import importlib

    import qa
    from qa.errors import BuildError

    build_mod = importlib.import_module("index_build.build")

    src, index, db = tmp_path / "src", tmp_path / "index", tmp_path / "v.db"
    shutil.copytree(SEEDS, src)
    _build(src, index, f"milvus:{db}")
    before = (index / "manifest.json").read_bytes()
    collections = set(_client(db).list_collections())
    write_article(src, "new.txt", "Storm", "A storm closed the port of Haifa for two days on Monday.")

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(build_mod, "_write_vectors", disk_full)
    with pytest.raises(BuildError, match="nothing was changed"):
        _build(src, index, f"milvus:{db}")
    monkeypatch.undo()
    assert (index / "manifest.json").read_bytes() == before
    assert set(_client(db).list_collections()) == collections  # the new collection is gone
    res = qa.load(index, warm=False).ask("How long did Biden and Netanyahu talk on Sunday?")
    assert res.answers and "45 minutes" in res.answers[0].text


@pytest.mark.parametrize("kind", ["faiss", "milvus"])
def test_both_stores_add_delete_by_document_count_persist_and_search(tmp_path, kind):
    from qa.faiss_store import FaissStore
    from qa.milvus_store import MilvusStore
    from qa.vector_store import VectorStore, parse_store

    if kind == "faiss":
        store = FaissStore(tmp_path)
    else:
        store = MilvusStore.create(parse_store(f"milvus:{tmp_path / 'v.db'}#unit"), "0123456789abcdef", 4, 6)
    assert isinstance(store, VectorStore) and store.kind == kind
    vecs = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1]]
    store.add(np.arange(6), vecs, np.array([0, 0, 1, 1, 2, 2]))
    assert store.count() == 6
    assert store.delete_docs([2]) == 2 and store.delete_docs([2]) == 0 and store.count() == 4
    store.persist()
    assert store.ntotal == 4
    scores, ids = store.search(np.eye(4, dtype=np.float32)[:2], 6)
    assert ids.shape == (2, 6) and ids[0][0] == 0 and ids[1][0] == 1 and scores[0][0] == pytest.approx(1.0)
    assert set(ids[0][ids[0] >= 0].tolist()) == {0, 1, 2, 3} and (ids[0][4:] == -1).all()
    if kind == "faiss":
        assert (tmp_path / "sentences.faiss").is_file()
        gap = FaissStore(tmp_path)
        gap.add(np.arange(4), vecs[:4], np.array([0, 1, 0, 1]))
        gap.delete_docs([0])  # rows 0 and 2 gone: FAISS rows must stay the ids 0..n-1
        with pytest.raises(ValueError, match="0..n-1"):
            gap.persist()
    else:
        assert store.delete_docs([1]) == 2 and store.count() == 2  # a live collection deletes in place
        _, ids = store.search(np.eye(4, dtype=np.float32)[:1], 4)
        assert set(ids[0][ids[0] >= 0].tolist()) == {0, 1}


def test_bad_store_values_are_one_line_errors(tmp_path, seed_index):
    import qa
    from qa.errors import IndexLoadError
    from qa.vector_store import parse_store

    for bad, why in (
        ("redis:x", "unknown vector store"),
        ("milvus:", "names no Milvus"),
        ("milvus:vectors", "must end in .db"),
        ("milvus:v.db#9x", "not valid"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_store(bad)
    r = run_cli("index_build", str(SEEDS), "--index", str(tmp_path / "i"), "--store", "redis:x", "--no-progress")
    assert r.returncode == 1 and "unknown vector store" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "i").exists()
    with pytest.raises(IndexLoadError, match="keeps its sentence vectors in faiss"):
        qa.load(seed_index, warm=False, store=f"milvus:{tmp_path / 'v.db'}")


def test_an_unreachable_server_fails_fast_with_a_clear_error(tmp_path, monkeypatch, milvus_seeds):
    """A port that accepts connections and never answers: the build and a
    question both stop after the timeout with one line, and nothing is written."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    monkeypatch.setenv("SOURCE_QA_MILVUS_TIMEOUT", "2")
    try:
        t0 = time.monotonic()
        r = run_cli(
            "index_build",
            str(SEEDS),
            "--index",
            str(tmp_path / "i"),
            "--no-progress",
            "--store",
            f"milvus:http://127.0.0.1:{port}",
            timeout=120,
        )
        took = time.monotonic() - t0
        assert r.returncode == 1, r.stderr
        err = r.stderr.strip().splitlines()[-1]
        assert f"cannot reach Milvus at http://127.0.0.1:{port} within 2 s" in err and "nothing was changed" in err
        assert "Traceback" not in r.stderr and not (tmp_path / "i").exists()
        assert took < 60  # model load + 2 s, not a hang
        index, _ = milvus_seeds
        r = run_cli(
            "qa",
            "ask",
            "How long did they talk?",
            "--index",
            str(index),
            "--store",
            f"milvus:http://127.0.0.1:{port}",
            timeout=120,
        )
        assert r.returncode == 1 and "cannot reach Milvus" in r.stderr and "Traceback" not in r.stderr
    finally:
        silent.close()


def test_a_lite_file_open_in_another_process_is_named_as_such(milvus_seeds):
    import qa

    index, db = milvus_seeds
    holder = qa.load(index, warm=False)  # this process now serves the file
    r = run_cli("qa", "ask", "How long did they talk?", "--index", str(index), timeout=120)
    assert r.returncode == 1 and "open in another process" in r.stderr and "Traceback" not in r.stderr
    assert holder.ask("How long did Biden and Netanyahu talk on Sunday?").answers


def test_the_chat_rebuilds_into_the_store_its_index_was_built_with(milvus_seeds, tmp_path):
    """An upload rebuild, and the fix command the chat shows, keep the Milvus
    store: a rebuild into FAISS would leave the chat's collection behind."""
    from qa.chat_backend import ChatBackend

    index, db = milvus_seeds
    backend = ChatBackend(index, SEEDS, log=lambda m: None)
    try:
        assert backend._build_config().store == f"milvus:{db}#source_qa"
        cmd = shlex.split(backend.build_command())
        assert cmd[cmd.index("--store") + 1] == f"milvus:{db}#source_qa"
    finally:
        backend.close()
    other = ChatBackend(tmp_path / "none", SEEDS, log=lambda m: None, store=f"milvus:{tmp_path / 'n.db'}")
    cmd = shlex.split(other.build_command())
    assert cmd[cmd.index("--store") + 1] == f"milvus:{tmp_path / 'n.db'}"
