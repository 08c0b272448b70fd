"""Dense vector search that follows the index size: exact below a threshold,
approximate (IVF over 8-bit scalar-quantised codes -- or HNSW over them --
re-scored exactly against the float32 vectors) above it.

Shared by the builder (which makes and tunes the FAISS index) and the loader
(which opens it memory-mapped and wraps it in `VectorIndex`).  The kind of
index and its search-time parameters are recorded in the manifest
(`Manifest.vector_index`), so the retriever never guesses.

Public helpers (also used by benchmarks/scale.py):

- `build_index(vectors, exact_limit=None, previous=None) -> (faiss index, params)`
- `reusable_training(path, params, n, d)`: an old IVF index's training, for `previous`
- `VectorIndex(index, vectors, params, coarse_scan=False)`: `.search(q, k)`, `.ntotal`
- `exact_search(vectors, queries, k)`: brute force in row chunks (memmap-friendly)
- `recall_at_k(index, vectors, queries, k=10) -> float`: vs exact
- `tune(index, vectors, queries, ...)`: smallest nprobe/efSearch reaching a recall
- `probe_queries(vectors, n)`: question-like query vectors made from the data
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np

from qa.vector_rows import Rows

# Below this many vectors the index is exact (IndexFlatIP).  Flat search for
# one question on 1 thread (least of 600, a quiet core): 0.26 ms at 10k,
# 1.2 ms at 25k, 3.2 ms at 50k, 6.6 ms at 100k, 14.6 ms at 200k vectors --
# paid twice per question (sentences and passages) -- while IVF at nprobe
# 128 plus exact re-scoring costs ~1 ms at 100k and a few ms at 1M.  At 50k
# exact search still costs less than embedding the question (~7 ms).
# SOURCE_QA_EXACT_LIMIT overrides it (tests, benchmarks).
EXACT_LIMIT = 50_000
ENV_EXACT_LIMIT = "SOURCE_QA_EXACT_LIMIT"

FLAT = "flat"
HNSW_SQ8 = "hnsw_sq8"
IVF_SQ8 = "ivf_sq8"
KINDS = (FLAT, HNSW_SQ8, IVF_SQ8)
# The approximate index built above EXACT_LIMIT.  IVF over 8-bit codes: on
# synthetic 1M vectors like the scale benchmark's (SQuAD sentence vectors
# plus noise: ~100 close copies of each) HNSW (M 32, efConstruction 80)
# topped out at recall@10 0.93 (ef 512) for SQuAD questions, while IVF with
# ~4 sqrt(n) lists reached 0.995 / 0.998 / 0.999 at nprobe 64 / 128 / 256.
# HNSW stays readable (KINDS) and buildable (build_index(kind=...)).
ANN_KIND = IVF_SQ8
# nprobe from 128 up: SQuAD questions reached recall@10 0.996 (100k vectors,
# 1265 lists) and 0.998 (1M, 4000 lists) there, but the data-made probes
# can be far easier than questions (1M: probes 1.000 at nprobe 8 where the
# questions got 0.946), so tuning may only raise it.
NPROBE_LADDER = (128, 192, 256, 384, 512)
HNSW_M = 32
EF_CONSTRUCTION = 80
# from 64 up: on SQuAD questions ef 16/32/64 gave recall@10 0.970/0.988/0.995
# at 10k while the data-made probes already passed 0.99 at 16 (the floor
# costs ~0.03 ms; the engine asks for 100+ results, so ef >= 200 there anyway)
EF_LADDER = (64, 96, 128, 192, 256, 384, 512)
# recall@10 the build tunes nprobe/efSearch for, on probe_queries.  Real
# questions can be harder than the probes (SQuAD, 100k vectors: HNSW probes
# 0.997 at ef 64 where questions got 0.986), hence the margin over 0.98.
TARGET_RECALL = 0.998
RERANK = 2  # ANN candidates per wanted result, re-scored exactly
COARSE_MARGIN = 32  # extra candidates of an 8-bit scan (VectorIndex(coarse_scan=True)), re-scored exactly
TRAIN_SAMPLE = 100_000
ADD_CHUNK = 65_536
TUNE_QUERIES = 300
# An incremental build keeps the previous IVF index's training (coarse
# centroids and 8-bit ranges) and its tuned nprobe while the vector count
# stays within these factors of the count it was trained on: re-training
# costs ~47 s at 100k and ~7 min at 1M, adding a few articles changes
# neither the centroids nor the value ranges measurably.  Outside the range
# (or with --full) the index is trained afresh.
REUSE_RANGE = (0.5, 2.0)
# ... and while every vector decodes from the kept 8-bit ranges within these
# bounds.  A vector outside the training sample gets a component clipped now
# and then in a fresh index too (clustered synthetic vectors, 100k trained:
# 99% of unseen ones err <= 0.0007 per component, the worst of 2000 0.024,
# cosine >= 0.997; 4k trained: 0.03 / 0.053 / 0.995); the loader takes
# 0.1 / 0.99 for another build's vectors, so these keep a margin from it.
REUSE_MAX_ERROR = 0.07
REUSE_MIN_COSINE = 0.993


def exact_limit() -> int:
    v = os.environ.get(ENV_EXACT_LIMIT, "").strip()
    return int(v) if v else EXACT_LIMIT


def bytes_per_vector(kind: str, d: int) -> int:
    """Least file bytes per vector (a smaller file is truncated)."""
    return 4 * d if kind == FLAT else d


def _chunks(n: int, size: int = ADD_CHUNK):
    for i in range(0, n, size):
        yield i, min(n, i + size)


def _rows(vectors: Rows, lo: int, hi: int) -> np.ndarray:
    return np.ascontiguousarray(vectors[lo:hi], dtype=np.float32)


def build_index(
    vectors: np.ndarray,
    exact_limit_: int | None = None,
    *,
    kind: str | None = None,
    m: int = HNSW_M,
    ef_construction: int = EF_CONSTRUCTION,
    nlist: int | None = None,
    target: float = TARGET_RECALL,
    tune_queries: np.ndarray | None = None,
    seed: int = 0,
    previous: tuple[Any, dict] | None = None,
) -> tuple[Any, dict]:
    """The FAISS index for `vectors` (float32, unit length, possibly a memmap)
    and the parameters the manifest records for it.

    Vectors are added in chunks, so no full extra copy is made beside
    `vectors` (the quantised codes are a quarter of its size).

    `previous`: (trained empty index, params) from `reusable_training` -- an
    IVF index whose training and tuned nprobe are kept instead of training
    and tuning again (only when the size asks for an IVF index at all).
    """
    faiss: Any = importlib.import_module("faiss")  # untyped: its generated stubs miss SWIG's overloads

    n, d = int(vectors.shape[0]), int(vectors.shape[1])
    limit = exact_limit() if exact_limit_ is None else int(exact_limit_)
    if n < max(limit, 1):
        index = faiss.IndexFlatIP(d)
        for lo, hi in _chunks(n):
            index.add(_rows(vectors, lo, hi))
        return index, {"type": FLAT}
    kind = kind or ANN_KIND
    if previous is not None and kind == IVF_SQ8 and int(previous[0].d) == d:
        index, params = previous
        if _add_checked(index, vectors):
            return index, params
        del index, previous  # new vectors outside the ranges it was trained on: train afresh
    rng = np.random.default_rng(seed)
    if kind == HNSW_SQ8:
        index = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        train_n = TRAIN_SAMPLE
        params = {
            "type": HNSW_SQ8,
            "m": m,
            "ef_construction": ef_construction,
            "quantizer": "SQ8",
            "rerank": RERANK,
            "ef_search": EF_LADDER[-1],
        }
    elif kind == IVF_SQ8:
        # ~4 sqrt(n) lists, each with at least the 39 training points k-means wants
        nlist = int(nlist or max(1, min(round(4 * np.sqrt(n)), n // 39)))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        index.own_fields = True
        quantizer.this.disown()
        index.cp.spherical = True  # unit vectors: centroids on the sphere
        index.cp.seed = seed
        train_n = max(TRAIN_SAMPLE, 40 * nlist)
        params = {
            "type": IVF_SQ8,
            "nlist": nlist,
            "quantizer": "SQ8",
            "rerank": RERANK,
            "nprobe": NPROBE_LADDER[-1],
            "trained_on": n,
            "training_reused": False,
        }
    else:
        raise ValueError(f"unknown vector index kind {kind!r}")
    sample = np.sort(rng.choice(n, size=min(n, train_n), replace=False))
    index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
    del sample
    for lo, hi in _chunks(n):
        index.add(_rows(vectors, lo, hi))
    queries = probe_queries(vectors, TUNE_QUERIES, seed=seed + 1) if tune_queries is None else tune_queries
    key, ladder = ("ef_search", EF_LADDER) if kind == HNSW_SQ8 else ("nprobe", NPROBE_LADDER)
    value, recall = tune(VectorIndex(index, vectors, params), vectors, queries, target=target, ladder=ladder)
    params.update({key: value}, tuned_recall_at_10=round(recall, 4), tuned_queries=int(len(queries)))
    return index, params


def _add_checked(index: Any, vectors: np.ndarray) -> bool:
    """Add `vectors` to an IVF-SQ8 index trained on other (older) vectors,
    checking that each decodes within REUSE_MAX_ERROR / REUSE_MIN_COSINE
    (8-bit ranges clip a component outside them): False, with the index
    left partly filled, at the first chunk holding one that does not.
    Encoding once and adding the codes costs what `index.add` does."""
    n = int(vectors.shape[0])
    for lo, hi in _chunks(n):
        x = _rows(vectors, lo, hi)
        codes = index.sa_encode(x)
        got = index.sa_decode(codes)
        err = np.abs(got - x).max(axis=1)
        cos = np.einsum("ij,ij->i", got, x) / np.maximum(np.einsum("ij,ij->i", x, x), 1e-12)
        if len(x) and (float(err.max()) > REUSE_MAX_ERROR or float(cos.min()) < REUSE_MIN_COSINE):
            return False
        index.add_sa_codes(codes)
    return int(index.ntotal) == n


def reusable_training(
    path: Any, params: dict, n: int, d: int, exact_limit_: int | None = None
) -> tuple[Any, dict] | None:
    """The training of the IVF index at `path` (built with `params`, from the
    manifest of the index being replaced), for `n` new vectors of dimension
    `d`: (an empty IVF index with its coarse centroids and 8-bit ranges, the
    params to record: its nlist and tuned nprobe, `training_reused` true,
    `trained_on` the count it was trained on), or None when it must be
    trained afresh: not IVF, another dimension, `n` outside REUSE_RANGE of
    the trained count, too few vectors for an ANN index, or a file FAISS
    cannot read as the index the params describe.  (`build_index` still
    trains afresh if a new vector falls outside the kept 8-bit ranges.)

    The old file is memory-mapped and only its centroids and quantiser
    ranges are copied: its inverted lists are never read."""
    faiss: Any = importlib.import_module("faiss")  # untyped: its generated stubs miss SWIG's overloads

    limit = exact_limit() if exact_limit_ is None else int(exact_limit_)
    if not isinstance(params, dict) or params.get("type") != IVF_SQ8 or n < max(limit, 1):
        return None
    trained_on, nlist, nprobe = params.get("trained_on"), params.get("nlist"), params.get("nprobe")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (trained_on, nlist, nprobe)):
        return None  # an index from before `trained_on` was recorded: train afresh
    assert isinstance(trained_on, int)
    lo, hi = REUSE_RANGE
    if not lo * trained_on <= n <= hi * trained_on:
        return None
    try:
        # only a file of exactly the size its build recorded (a damaged one
        # is not handed to FAISS's reader)
        if os.path.getsize(path) != params.get("file_bytes"):
            return None
        old = faiss.read_index(str(path), getattr(faiss, "IO_FLAG_MMAP", 0))
        ok = (
            isinstance(old, faiss.IndexIVFScalarQuantizer)
            and old.d == d
            and old.nlist == nlist
            and old.sq.qtype == faiss.ScalarQuantizer.QT_8bit
            and old.metric_type == faiss.METRIC_INNER_PRODUCT
            and old.is_trained
            and old.quantizer.ntotal == nlist
        )
        if not ok:
            return None
        centroids = old.quantizer.reconstruct_n(0, nlist)
        quantizer = faiss.IndexFlatIP(d)
        quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        index.own_fields = True
        quantizer.this.disown()
        index.sq = old.sq  # the trained value ranges (a copy)
        index.by_residual = old.by_residual
        index.is_trained = True
        del old
    except (RuntimeError, MemoryError, OSError, AttributeError):
        return None
    keep = ("type", "nlist", "quantizer", "rerank", "nprobe", "tuned_recall_at_10", "tuned_queries", "trained_on")
    out = {k: params[k] for k in keep if k in params}
    out["training_reused"] = True
    return index, out


def apply_params(index: Any, params: dict) -> None:
    """Search-time parameters from the manifest."""
    if params.get("type") == HNSW_SQ8:
        index.hnsw.efSearch = int(params["ef_search"])
    elif params.get("type") == IVF_SQ8:
        index.nprobe = int(params["nprobe"])


class VectorIndex:
    """A FAISS index plus the exact vectors it was built from.

    `search(q, k)` returns (scores, ids) like FAISS: best first, exact
    inner products, -1 ids where fewer than k exist.  An approximate index is
    asked for `rerank * k` candidates, which are re-scored against the
    float32 vectors (memory-mapped), so scores are exact and SQ8 rounding
    never reorders the results.
    """

    def __init__(self, index: Any, vectors: Rows, params: dict | None = None, coarse_scan: bool = False) -> None:
        """`coarse_scan` (exact kind only): scan an 8-bit copy of the vectors
        made here, for `k + COARSE_MARGIN` candidates, and re-score those
        against the float32 vectors.  A flat scan of one question reads every
        vector, and right after the question's embedding (whose ~90 MB of
        weights evict the caches) it reads them from memory: at 10k SQuAD
        sentences the scan plus re-scoring took 1.78 ms cold in float32,
        1.15 in float16, 0.90 in 8 bits (one global range, FAISS
        QT_8bit_uniform), ~1/4 of what ranking a question costs.  The same
        results: on all 10,570 SQuAD questions the top 50 and top 200 equal
        the float32 scan's but for two exact ties at the last rank (as with
        float16); on every fifth question a margin of 16 already sufficed
        (4-bit codes needed 50, product quantisation 200).  The copy costs 1
        byte per dimension (19 MB at the 50k-vector exact limit) and ~20 ms
        per 10k at load."""
        self.index = index
        self.vectors = vectors
        self.params = dict(params or {"type": FLAT})
        self.kind = self.params.get("type", FLAT)
        apply_params(index, self.params)
        self.coarse = _coarse_copy(vectors) if coarse_scan and self.kind == FLAT and len(vectors) else None

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def d(self) -> int:
        return int(self.index.d)

    def reconstruct(self, i: int) -> np.ndarray:
        return np.asarray(self.vectors[int(i)], dtype=np.float32)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(np.atleast_2d(q), dtype=np.float32)
        n = self.ntotal
        if self.kind == FLAT:
            if self.coarse is None:
                return self.index.search(q, k)
            _, cand = self.coarse.search(q, min(n, k + COARSE_MARGIN))
        else:
            kk = min(n, max(k * int(self.params.get("rerank", RERANK)), k))
            _, cand = self.index.search(q, kk)
        return self._rescored(q, cand, k)

    def _rescored(self, q: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The best k of each row's candidates by their exact float32 scores."""
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        ids = np.full((len(q), k), -1, dtype=np.int64)
        for r in range(len(q)):
            c = cand[r][cand[r] >= 0]  # distinct: FAISS returns each id once
            if self.kind != FLAT:
                c = np.sort(c)  # the memmap (or file) is read in file order
            if not len(c):
                continue
            s = np.asarray(self.vectors[c], dtype=np.float32) @ q[r]
            top = np.argsort(-s, kind="stable")[:k]
            scores[r, : len(top)] = s[top]
            ids[r, : len(top)] = c[top]
        return scores, ids


def _coarse_copy(vectors: Rows) -> Any:
    """An 8-bit FAISS copy of `vectors` for `VectorIndex(coarse_scan=True)`:
    one range for every dimension, read from (up to) TRAIN_SAMPLE rows."""
    import faiss

    index = faiss.IndexScalarQuantizer(
        int(vectors.shape[1]), faiss.ScalarQuantizer.QT_8bit_uniform, faiss.METRIC_INNER_PRODUCT
    )
    index.train(_rows(vectors, 0, min(int(vectors.shape[0]), TRAIN_SAMPLE)))
    for lo, hi in _chunks(int(vectors.shape[0])):
        index.add(_rows(vectors, lo, hi))
    return index


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 32_768) -> np.ndarray:
    """Ids of the exact top-k by inner product, computed in row chunks so a
    memory-mapped matrix is never copied whole.  The chunk bounds the scratch
    memory (scores plus argpartition's int64 ids: 120 MB for 300 queries;
    131,072 rows took 900 MB at the builder's peak) and costs no speed."""
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    n = int(vectors.shape[0])
    k = min(k, n)
    best_s = np.full((len(q), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    for lo, hi in _chunks(n, chunk):
        s = q @ _rows(vectors, lo, hi).T
        kk = min(k, hi - lo)
        part = np.argpartition(s, s.shape[1] - kk, axis=1)[:, -kk:]  # the kk largest, no negated copy
        best_s = np.concatenate([best_s, np.take_along_axis(s, part, axis=1)], axis=1)
        best_i = np.concatenate([best_i, part + lo], axis=1)
        if best_s.shape[1] > k:
            keep = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
            best_s = np.take_along_axis(best_s, keep, axis=1)
            best_i = np.take_along_axis(best_i, keep, axis=1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, axis=1)


def recall_at_k(
    index: Any, vectors: np.ndarray, queries: np.ndarray, k: int = 10, truth: np.ndarray | None = None
) -> float:
    """Share of the exact top-k (by inner product over `vectors`) that
    `index.search(queries, k)` returns: a VectorIndex or any FAISS index.
    `truth` (from exact_search) saves recomputing it across calls."""
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    if truth is None:
        truth = exact_search(vectors, q, k)
    k = truth.shape[1]
    if not len(q) or not k:
        return 1.0
    _, got = index.search(q, k)
    hits = sum(len(np.intersect1d(t, g[g >= 0])) for t, g in zip(truth, got))
    return hits / (len(q) * k)


def tune(
    index: VectorIndex,
    vectors: np.ndarray,
    queries: np.ndarray,
    target: float = TARGET_RECALL,
    k: int = 10,
    ladder: tuple[int, ...] | None = None,
) -> tuple[int, float]:
    """Smallest search depth (efSearch for HNSW, nprobe for IVF) of `ladder`
    whose recall@k on `queries` reaches `target` (the largest if none does):
    (depth, its recall).  Leaves it set on `index`."""
    key = "ef_search" if index.kind == HNSW_SQ8 else "nprobe"
    ladder = ladder or (EF_LADDER if index.kind == HNSW_SQ8 else NPROBE_LADDER)
    truth = exact_search(vectors, queries, k)
    recall = 0.0
    value = ladder[-1]
    for value in ladder:
        index.params[key] = value
        apply_params(index.index, index.params)
        recall = recall_at_k(index, vectors, queries, k, truth=truth)
        if recall >= target:
            break
    return value, recall


def probe_queries(vectors: np.ndarray, n: int, seed: int = 0, neighbours: int = 8, noise: float = 0.8) -> np.ndarray:
    """Question-like query vectors made from the data alone (the builder has
    no questions): the mean of a stored vector's `neighbours` nearest ones
    plus isotropic noise (`noise` times its length), re-normalised.  Measured
    on SQuAD dev: real MiniLM questions score ~0.69 with their best sentence
    and ~0.51 with the 10th; these score ~0.66 / ~0.51, so they are as
    hard for the ANN index (a lone perturbed vector is easier: 0.71 / 0.35)."""
    rows = int(vectors.shape[0])
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(rows, size=min(n, rows), replace=False))
    near = exact_search(vectors, np.asarray(vectors[pick], dtype=np.float32), neighbours)
    base = np.stack([np.asarray(vectors[np.sort(r)], dtype=np.float32).mean(axis=0) for r in near])
    base /= np.maximum(np.linalg.norm(base, axis=1, keepdims=True), 1e-12)
    d = base.shape[1]
    q = base + rng.standard_normal(base.shape).astype(np.float32) * (noise / np.sqrt(d))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
