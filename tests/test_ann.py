"""Size-dependent vector index: exact when small, IVF (or HNSW) over 8-bit
codes with exact re-scoring when large.  Real FAISS, real files on disk; the threshold
is lowered so a few thousand vectors (and the seeds) get the ANN index."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from qa import vector_index as vi
from qa.errors import IndexLoadError
from qa.index_store import open_index
from tests.conftest import SEEDS
from tests.test_reliability import load_each, make_damaged_indexes

CALL_Q = "How long did Biden and Netanyahu speak on Sunday?"


def _clustered(n: int, d: int = 384, clusters: int = 60, seed: int = 0) -> np.ndarray:
    """Unit vectors in topic clusters, roughly as sentence embeddings are."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    v = centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, d)).astype(np.float32) * 0.9
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def ann_index(tmp_path_factory) -> Path:
    """The seeds built by the real builder with the exact/ANN threshold at 10."""
    from index_build import build
    from qa.config import BuildConfig

    out = tmp_path_factory.mktemp("ann-index") / "index"
    old = os.environ.get(vi.ENV_EXACT_LIMIT)
    os.environ[vi.ENV_EXACT_LIMIT] = "10"
    try:
        build([SEEDS], out, BuildConfig(progress=False), log=lambda m: None)
    finally:
        if old is None:
            del os.environ[vi.ENV_EXACT_LIMIT]
        else:
            os.environ[vi.ENV_EXACT_LIMIT] = old
    return out


@pytest.mark.parametrize("kind", [vi.IVF_SQ8, vi.HNSW_SQ8])
def test_ann_reaches_recall_of_exact_search(tmp_path: Path, kind: str) -> None:
    # vectors on disk, memory-mapped, as the builder and the loader use them
    np.save(tmp_path / "v.npy", _clustered(4000))
    vecs = np.load(tmp_path / "v.npy", mmap_mode="r")
    flat, params = vi.build_index(vecs, exact_limit_=10_000)
    assert params == {"type": vi.FLAT} and flat.ntotal == 4000
    index, params = vi.build_index(vecs, exact_limit_=1000, kind=kind)
    assert params["type"] == kind
    if kind == vi.HNSW_SQ8:
        assert params["ef_search"] in vi.EF_LADDER
    else:
        assert params["nprobe"] in vi.NPROBE_LADDER and params["nlist"] == 4000 // 39
    assert params["tuned_recall_at_10"] >= vi.TARGET_RECALL
    queries = vi.probe_queries(vecs, 200, seed=7)  # not the ones it was tuned on
    ann = vi.VectorIndex(index, vecs, params)
    assert vi.recall_at_k(ann, vecs, queries, k=10) >= 0.98
    assert vi.recall_at_k(vi.VectorIndex(flat, vecs), vecs, queries, k=10) == 1.0
    if kind == vi.IVF_SQ8:  # the default nprobe scans every list here: a real approximation reaches it too
        nprobe, recall = vi.tune(ann, vecs, queries, target=0.98, ladder=(2, 4, 8, 16, 32))
        assert recall >= 0.98 and nprobe < params["nlist"] and index.nprobe == nprobe
    # scores are exact inner products, best first, like FAISS's
    scores, ids = ann.search(queries[:3], 10)
    assert ids.shape == (3, 10) and np.all(ids >= 0)
    assert np.allclose(scores, np.einsum("qkd,qd->qk", np.asarray(vecs)[ids], queries[:3]), atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)
    # exact_search agrees with FAISS's flat index
    _, want = flat.search(queries[:20], 10)
    assert (vi.exact_search(vecs, queries[:20], 10, chunk=700) == want).mean() > 0.99


def _as_hnsw(ann_index: Path, dst: Path) -> Path:
    """A copy of the ANN-built index whose sentences.faiss is HNSW instead."""
    import faiss

    shutil.copytree(ann_index, dst)
    v = np.load(dst / "sentence_vectors.npy", mmap_mode="r")
    index, params = vi.build_index(v, exact_limit_=10, kind=vi.HNSW_SQ8)
    faiss.write_index(index, str(dst / "sentences.faiss"))
    m = json.loads((dst / "manifest.json").read_text())
    m["vector_index"]["sentences"] = {**params, "file_bytes": (dst / "sentences.faiss").stat().st_size}
    (dst / "manifest.json").write_text(json.dumps(m))
    return dst


def test_ann_index_round_trips_through_the_loader(ann_index: Path, tmp_path: Path) -> None:
    import faiss

    import qa

    m = json.loads((ann_index / "manifest.json").read_text())
    p = m["vector_index"]["sentences"]
    assert p["type"] == vi.ANN_KIND == vi.IVF_SQ8 and p["nprobe"] >= 1 and p["rerank"] >= 1
    # passages are read by row, never searched: no FAISS index of them
    assert "passages" not in m["vector_index"] and not (ann_index / "passages.faiss").exists()
    data = open_index(ann_index)
    try:
        assert isinstance(data.sentence_index, vi.VectorIndex) and data.sentence_index.kind == vi.IVF_SQ8
        assert isinstance(data.sentence_index.index, faiss.IndexIVFScalarQuantizer)
        assert data.sentence_index.index.nprobe == m["vector_index"]["sentences"]["nprobe"]
        n = data.n_sentences
        assert n == m["counts"]["unique_sentences"] == 46
        _, ids = data.sentence_index.search(np.asarray(data.sentence_vectors[:5]), 1)
        assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]
        # more candidates than there are vectors: padded with -1, as FAISS does
        _, ids = data.sentence_index.search(np.asarray(data.sentence_vectors[:1]), n + 5)
        assert ids[0, -5:].tolist() == [-1] * 5 and sorted(ids[0, :-5]) == list(range(n))
    finally:
        data.close()
    engine = qa.load(ann_index)
    assert "45 minutes" in engine.ask(CALL_Q).answers[0].text
    # an HNSW sentence index (the other approximate kind) loads and answers too
    hnsw = _as_hnsw(ann_index, tmp_path / "hnsw")
    data = open_index(hnsw)
    try:
        assert data.sentence_index.kind == vi.HNSW_SQ8 and isinstance(data.sentence_index.index, faiss.IndexHNSWSQ)
        assert data.sentence_index.index.hnsw.efSearch == data.manifest.vector_index["sentences"]["ef_search"]
        _, ids = data.sentence_index.search(np.asarray(data.sentence_vectors[:5]), 1)
        assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]
    finally:
        data.close()
    assert "45 minutes" in qa.load(hnsw).ask(CALL_Q).answers[0].text


def test_old_manifest_without_vector_index_loads_as_flat(seed_index: Path, tmp_path: Path) -> None:
    idx = tmp_path / "index"
    shutil.copytree(seed_index, idx)
    m = json.loads((idx / "manifest.json").read_text())
    assert m["vector_index"]["sentences"] == {"type": "flat", "file_bytes": (idx / "sentences.faiss").stat().st_size}
    del m["vector_index"]
    (idx / "manifest.json").write_text(json.dumps(m))
    data = open_index(idx)
    try:
        assert data.sentence_index.kind == vi.FLAT and data.n_sentences == 46
    finally:
        data.close()


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_damaged_or_mismatched_ann_files_fail_loudly(ann_index: Path, seed_index: Path, tmp_path: Path) -> None:
    import faiss

    cases: dict[str, tuple[Path, str, str]] = {}  # name: (dir, file named, words of the message)
    v = np.load(ann_index / "sentence_vectors.npy")
    # a flat index where the manifest names IVF
    d = _copy(ann_index, tmp_path / "flat-for-ivf")
    shutil.copy(seed_index / "sentences.faiss", d / "sentences.faiss")
    cases["flat-for-ivf"] = (d, "sentences.faiss", "not the IVF")
    # an IVF file where the manifest says flat (an older manifest): too small for flat vectors
    d = _copy(seed_index, tmp_path / "ivf-for-flat")
    shutil.copy(ann_index / "sentences.faiss", d / "sentences.faiss")
    cases["ivf-for-flat"] = (d, "sentences.faiss", "truncated")
    # IVF built over other vectors (another build of the same size)
    d = _copy(ann_index, tmp_path / "ivf-of-other-vectors")
    other, _ = vi.build_index(v[::-1].copy(), exact_limit_=10)
    faiss.write_index(other, str(d / "sentences.faiss"))
    cases["ivf-of-other-vectors"] = (d, "sentences.faiss", "different build")
    # inverted lists holding ids that are not rows 0..n-1
    d = _copy(ann_index, tmp_path / "ivf-foreign-ids")
    ivf = faiss.read_index(str(ann_index / "sentences.faiss"))
    ivf.reset()
    ivf.add_with_ids(v, np.arange(len(v), dtype=np.int64) + 1000)
    faiss.write_index(ivf, str(d / "sentences.faiss"))
    cases["ivf-foreign-ids"] = (d, "sentences.faiss", "is damaged")
    # 16-bit codes: another index than the manifest's
    d = _copy(ann_index, tmp_path / "ivf-fp16")
    sq4 = faiss.IndexIVFScalarQuantizer(
        faiss.IndexFlatIP(v.shape[1]), v.shape[1], 1, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
    )
    sq4.train(v)
    sq4.add(v)
    faiss.write_index(sq4, str(d / "sentences.faiss"))
    cases["ivf-fp16"] = (d, "sentences.faiss", "not the IVF")
    # HNSW where the manifest names IVF, and the reverse
    hnsw = _as_hnsw(ann_index, tmp_path / "hnsw-src")
    d = _copy(ann_index, tmp_path / "hnsw-for-ivf")
    shutil.copy(hnsw / "sentences.faiss", d / "sentences.faiss")
    cases["hnsw-for-ivf"] = (d, "sentences.faiss", "not the IVF")
    d = _copy(hnsw, tmp_path / "ivf-for-hnsw")
    shutil.copy(ann_index / "sentences.faiss", d / "sentences.faiss")
    cases["ivf-for-hnsw"] = (d, "sentences.faiss", "not the HNSW")
    # a graph link pointing outside the index (would read out of bounds;
    # FAISS >= 1.1x refuses it itself, the loader checks it for older ones)
    d = _copy(hnsw, tmp_path / "hnsw-bad-link")
    idx = faiss.read_index(str(hnsw / "sentences.faiss"))
    nb = faiss.rev_swig_ptr(idx.hnsw.neighbors.data(), idx.hnsw.neighbors.size())
    nb[np.flatnonzero(nb >= 0)[3]] = 10**6
    faiss.write_index(idx, str(d / "sentences.faiss"))
    cases["hnsw-bad-link"] = (d, "sentences.faiss", "is damaged")
    # one byte cut off the end: FAISS's memory-mapped reader would not notice
    d = _copy(ann_index, tmp_path / "ivf-last-byte-cut")
    (d / "sentences.faiss").write_bytes((ann_index / "sentences.faiss").read_bytes()[:-1])
    cases["ivf-last-byte-cut"] = (d, "sentences.faiss", "damaged")
    # an edited manifest: unknown index type, or no search depth
    d = _copy(ann_index, tmp_path / "manifest-unknown-type")
    m = json.loads((d / "manifest.json").read_text())
    m["vector_index"]["sentences"]["type"] = "ivf_pq"
    (d / "manifest.json").write_text(json.dumps(m))
    cases["manifest-unknown-type"] = (d, "manifest.json", "vector_index.sentences")
    d = _copy(ann_index, tmp_path / "manifest-no-nprobe")
    m = json.loads((d / "manifest.json").read_text())
    del m["vector_index"]["sentences"]["nprobe"]
    (d / "manifest.json").write_text(json.dumps(m))
    cases["manifest-no-nprobe"] = (d, "manifest.json", "nprobe")
    for name, (d, names, words) in cases.items():
        with pytest.raises(IndexLoadError) as e:
            open_index(d)
        msg = str(e.value)
        assert names in msg and str(d) in msg and words in msg and "index_build --full" in msg, (name, msg)


@pytest.mark.slow
def test_every_damage_to_an_ann_index_gives_one_clear_error(ann_index: Path, tmp_path: Path) -> None:
    """The reliability suite's damaged indexes, made from an IVF-built index."""
    cases = make_damaged_indexes(ann_index, tmp_path)
    got = load_each(cases)
    for name, (d, names) in cases.items():
        o = got[name]
        assert not o["loaded"], f"{name}: loaded and answered {o.get('top')!r}"
        assert o["type"] == "IndexLoadError" and "\n" not in o["message"], (name, o)
        assert names in o["message"] and str(d) in o["message"], (name, o["message"])


def test_coarse_scan_finds_the_exact_top_k_with_exact_scores(tmp_path: Path) -> None:
    """The 8-bit scan of a flat index only chooses candidates: the results
    are the float32 scan's, scores included (clustered vectors: many close
    scores, where 8-bit rounding would reorder a plain 8-bit search)."""
    np.save(tmp_path / "v.npy", _clustered(6000, clusters=20))
    vecs = np.load(tmp_path / "v.npy", mmap_mode="r")
    flat, params = vi.build_index(vecs, exact_limit_=10_000)
    coarse = vi.VectorIndex(flat, vecs, params, coarse_scan=True)
    assert coarse.coarse is not None and coarse.coarse.ntotal == 6000
    queries = vi.probe_queries(vecs, 100, seed=3)
    for k in (1, 50, 200):
        want_s, want = flat.search(queries, k)
        got_s, got = coarse.search(queries, k)
        assert all(set(a) == set(b) for a, b in zip(want, got))
        assert np.allclose(got_s, want_s, atol=1e-5) and np.all(np.diff(got_s, axis=1) <= 0)
    # more wanted than there are: -1 ids past the end, as FAISS gives
    five = np.asarray(vecs[:5])
    small = vi.VectorIndex(vi.build_index(five, exact_limit_=10)[0], five, coarse_scan=True)
    s, ids = small.search(queries[:2], 8)
    assert ids.shape == (2, 8) and np.all(ids[:, 5:] == -1) and sorted(ids[0, :5]) == [0, 1, 2, 3, 4]
