"""Document vectors stored at build time (doc_vectors.npy) instead of computed
from every sentence vector at load, and the IVF training an incremental build
keeps from the previous index.  Real builder, real model, real FAISS."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from qa import index_format as fmt
from qa import vector_index as vi
from qa.doc_map import build_doc_map, document_vectors
from qa.errors import IndexLoadError
from qa.index_store import open_index
from tests.conftest import SEEDS, write_article
from tests.test_ann import _clustered

QUESTIONS = [
    "How long did the call between Biden and Netanyahu last on Sunday?",
    "How many hostages has Israel freed so far?",
    "What is happening in Rafah?",
    "Who is Yahya Sinwar?",
    "132 days",
    "What is the capital of France?",
]


def _copy(seed_index: Path, dst: Path) -> Path:
    shutil.copytree(seed_index, dst)
    return dst


def _edit_manifest(index: Path, edit) -> None:
    path = index / fmt.MANIFEST
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def _as_old_index(index: Path) -> None:
    """What an index built before doc_vectors.npy looks like."""
    (index / fmt.DOC_VECTORS).unlink()
    _edit_manifest(index, lambda d: d["vector_index"].pop("documents"))


def _answers(engine) -> list[list[tuple[str, float]]]:
    out = []
    for q in QUESTIONS:
        res = engine.ask(q, k=5)
        out.append([(a.text, float(a.score)) for a in res.answers] + [("found", float(res.found))])
    return out


def _same(a, b) -> None:
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert [t for t, _ in ra] == [t for t, _ in rb]
        assert np.allclose([s for _, s in ra], [s for _, s in rb], atol=1e-6, rtol=0)


def test_builder_stores_the_document_vectors(seed_index: Path) -> None:
    data = open_index(seed_index)
    try:
        n_docs = data.manifest.counts["documents"]
        assert data.manifest.vector_index["documents"] == {"file": fmt.DOC_VECTORS, "rows": n_docs}
        stored = data.doc_vectors
        assert not stored.flags.owndata and stored.dtype == np.float32  # read from the file, mapped
        assert stored.shape == (n_docs, data.manifest.dimension)
        # the same math as computing them at load: bit for bit
        computed = document_vectors(data.db, data.sentence_vectors)
        assert np.array_equal(np.asarray(stored), computed)
        old_way = build_doc_map(data.db, data.n_sentences, data.sentence_vectors)
        assert np.array_equal(old_way.doc_vectors, computed)
        assert np.allclose(np.linalg.norm(computed, axis=1), 1.0, atol=1e-5)
        new_way = build_doc_map(data.db, data.n_sentences, data.sentence_vectors, doc_vectors=stored)
        assert new_way.doc_vectors is stored
        for f in ("sent_doc_ptr", "sent_docs", "prev_sent", "next_sent", "sent_pas_ptr", "sent_pas"):
            assert np.array_equal(getattr(old_way, f), getattr(new_way, f))
    finally:
        data.close()


def test_answers_are_the_same_with_stored_document_vectors(engine) -> None:
    import qa

    stored = qa.load(engine.data.path)
    data = stored.data
    stored.docs = build_doc_map(data.db, data.n_sentences, data.sentence_vectors, doc_vectors=data.doc_vectors)
    assert stored.docs.doc_vectors is data.doc_vectors
    _same(_answers(engine), _answers(stored))


def test_index_built_before_document_vectors_still_loads(tmp_path: Path, seed_index: Path, engine) -> None:
    import qa

    old = _copy(seed_index, tmp_path / "old")
    _as_old_index(old)
    data = open_index(old)
    assert data.doc_vectors is None
    data.close()
    loaded = qa.load(old)
    assert np.array_equal(loaded.docs.doc_vectors, np.asarray(engine.data.doc_vectors))
    _same(_answers(engine), _answers(loaded))


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing", "doc_vectors.npy is missing"),
        ("rows", r"has shape \(2, 384\)"),
        ("dimension", r"has shape \(3, 12\)"),
        ("dtype", "float64"),
        ("not unit", "damaged document vector"),
        ("pickled", "pickled Python objects"),
        ("manifest rows", "records 7 document vectors for 3 documents"),
        ("manifest junk", "vector_index.documents must be"),
    ],
)
def test_damaged_document_vectors_name_the_fix(tmp_path: Path, seed_index: Path, damage: str, message: str) -> None:
    bad = _copy(seed_index, tmp_path / "bad")
    path = bad / fmt.DOC_VECTORS
    good = np.load(path)
    assert good.shape[0] == 3
    if damage == "missing":
        path.unlink()
    elif damage == "rows":
        np.save(path, good[:2])
    elif damage == "dimension":
        np.save(path, good[:, :12])
    elif damage == "dtype":
        np.save(path, good.astype(np.float64))
    elif damage == "not unit":
        np.save(path, good * 3)
    elif damage == "pickled":
        np.save(path, np.array([[object()] * 384] * 3, dtype=object), allow_pickle=True)
    elif damage == "manifest rows":
        _edit_manifest(bad, lambda d: d["vector_index"]["documents"].update(rows=7))
    else:
        _edit_manifest(bad, lambda d: d["vector_index"].update(documents="yes"))
    with pytest.raises(IndexLoadError, match=message) as e:
        open_index(bad)
    assert fmt.REBUILD_HINT in str(e.value) and "\n" not in str(e.value)


def test_ivf_training_is_reused_within_range(tmp_path: Path) -> None:
    base = _clustered(4400, seed=5)
    np.save(tmp_path / "old.npy", base[:4000])
    np.save(tmp_path / "new.npy", base)
    old_v = np.load(tmp_path / "old.npy", mmap_mode="r")
    new_v = np.load(tmp_path / "new.npy", mmap_mode="r")
    old_index, old_params = vi.build_index(old_v, exact_limit_=1000)
    assert old_params["trained_on"] == 4000 and old_params["training_reused"] is False
    import faiss

    faiss.write_index(old_index, str(tmp_path / "old.faiss"))
    old_params["file_bytes"] = (tmp_path / "old.faiss").stat().st_size  # as the builder records it
    prev = vi.reusable_training(tmp_path / "old.faiss", old_params, len(new_v), 384, exact_limit_=1000)
    assert prev is not None and prev[0].ntotal == 0 and prev[0].is_trained
    index, params = vi.build_index(new_v, exact_limit_=1000, previous=prev)
    assert params["training_reused"] is True and params["trained_on"] == 4000
    assert params["nprobe"] == old_params["nprobe"] and params["nlist"] == old_params["nlist"]
    assert index.ntotal == 4400
    assert np.array_equal(
        index.quantizer.reconstruct_n(0, index.nlist), old_index.quantizer.reconstruct_n(0, old_index.nlist)
    )
    assert np.array_equal(faiss.vector_to_array(index.sq.trained), faiss.vector_to_array(old_index.sq.trained))
    # the old vectors get the very codes the old index gave them
    assert np.array_equal(index.sa_encode(np.asarray(old_v[:50])), old_index.sa_encode(np.asarray(old_v[:50])))
    queries = vi.probe_queries(new_v, 200, seed=9)
    assert vi.recall_at_k(vi.VectorIndex(index, new_v, params), new_v, queries) >= 0.98
    # a reused index is reused again against the count it was first trained on
    faiss.write_index(index, str(tmp_path / "new.faiss"))
    params["file_bytes"] = (tmp_path / "new.faiss").stat().st_size
    assert vi.reusable_training(tmp_path / "new.faiss", params, 7900, 384, exact_limit_=1000) is not None
    # too far from the trained count, another dimension, another kind, too few, or unreadable: train afresh
    for n in (1999, 8001):
        assert vi.reusable_training(tmp_path / "old.faiss", old_params, n, 384, exact_limit_=1000) is None
    assert vi.reusable_training(tmp_path / "old.faiss", old_params, 4400, 256, exact_limit_=1000) is None
    assert vi.reusable_training(tmp_path / "old.faiss", old_params, 4400, 384, exact_limit_=5000) is None
    assert vi.reusable_training(tmp_path / "old.faiss", {"type": vi.FLAT}, 4400, 384, exact_limit_=1000) is None
    legacy = {k: v for k, v in old_params.items() if k != "trained_on"}
    assert vi.reusable_training(tmp_path / "old.faiss", legacy, 4400, 384, exact_limit_=1000) is None
    # vectors of other topics fall outside the kept 8-bit ranges: trained afresh, not clipped
    np.save(tmp_path / "other.npy", np.concatenate([base[:4000], _clustered(400, seed=77) * 1.0]))
    other = np.load(tmp_path / "other.npy", mmap_mode="r")
    prev = vi.reusable_training(tmp_path / "old.faiss", old_params, len(other), 384, exact_limit_=1000)
    assert prev is not None
    index, params = vi.build_index(other, exact_limit_=1000, previous=prev)
    assert params["training_reused"] is False and params["trained_on"] == 4400 and index.ntotal == 4400
    (tmp_path / "junk.faiss").write_bytes(b"not faiss" * 10)
    junk = dict(old_params, file_bytes=90)
    assert vi.reusable_training(tmp_path / "junk.faiss", junk, 4400, 384, exact_limit_=1000) is None
    shutil.copy(tmp_path / "old.faiss", tmp_path / "cut.faiss")
    with open(tmp_path / "cut.faiss", "r+b") as f:
        f.truncate(old_params["file_bytes"] - 5)
    assert vi.reusable_training(tmp_path / "cut.faiss", old_params, 4400, 384, exact_limit_=1000) is None
    assert vi.reusable_training(tmp_path / "none.faiss", old_params, 4400, 384, exact_limit_=1000) is None


def test_incremental_build_keeps_ivf_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import qa
    from index_build import build
    from qa.config import BuildConfig

    monkeypatch.setenv(vi.ENV_EXACT_LIMIT, "10")
    src = tmp_path / "src"
    shutil.copytree(SEEDS, src)
    out = tmp_path / "index"
    build([src], out, BuildConfig(progress=False), log=lambda m: None)
    first = json.loads((out / fmt.MANIFEST).read_text())["vector_index"]["sentences"]
    assert first["type"] == vi.IVF_SQ8 and first["training_reused"] is False
    # (the seeds train the IVF index on 27 sentences, whose 8-bit ranges any
    # new sentence overflows -- test_ivf_training_is_reused_within_range adds
    # new vectors -- so the new article repeats one: a new document, no new
    # sentence vector)
    seed = sorted(src.glob("*.txt"))[-1].read_text(encoding="utf-8")
    write_article(src, "zz-extra.txt", "Retold", seed.split("\n\n", 1)[1])
    build([src], out, BuildConfig(progress=False), log=lambda m: None)
    m = json.loads((out / fmt.MANIFEST).read_text())
    second = m["vector_index"]["sentences"]
    assert second["training_reused"] is True
    assert second["trained_on"] == first["trained_on"] and second["nprobe"] == first["nprobe"]
    assert m["counts"]["unique_sentences"] == first["trained_on"] and m["counts"]["documents"] == 4
    engine = qa.load(out)
    assert (
        "45 minutes" in engine.ask("How long did the call between Biden and Netanyahu last on Sunday?").answers[0].text
    )
    build([src], out, BuildConfig(progress=False, full=True), log=lambda m: None)
    third = json.loads((out / fmt.MANIFEST).read_text())["vector_index"]["sentences"]
    assert third["training_reused"] is False and third["trained_on"] == m["counts"]["unique_sentences"]


def test_an_index_with_the_old_passage_faiss_file_still_loads(seed_index: Path, tmp_path: Path) -> None:
    """Indexes built before 2026-12-04 also hold passages.faiss and describe it
    in the manifest; nothing reads it now, and such an index must load and
    answer as before (no forced rebuild)."""
    import faiss

    import qa

    old = tmp_path / "old"
    shutil.copytree(seed_index, old)
    pv = np.load(old / "passage_vectors.npy")
    flat = faiss.IndexFlatIP(pv.shape[1])
    flat.add(pv)
    faiss.write_index(flat, str(old / "passages.faiss"))
    m = json.loads((old / "manifest.json").read_text())
    assert "passages" not in m["vector_index"]  # the builder no longer writes it
    m["vector_index"]["passages"] = {"type": "flat", "file_bytes": (old / "passages.faiss").stat().st_size}
    (old / "manifest.json").write_text(json.dumps(m))
    res = qa.load(old).ask("How long did the call between Biden and Netanyahu last?")
    assert res.found and "45 minutes" in res.answers[0].text
