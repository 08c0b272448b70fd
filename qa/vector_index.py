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

# Below this many vectors the index is exact (IndexFlatIP): flat search grows
# with the corpus, and up to here it still costs less than embedding the
# question.  Timings: docs/index-format.md#measurements-behind-the-settings.
# SOURCE_QA_EXACT_LIMIT overrides it (tests, benchmarks).
EXACT_LIMIT = 50_000
ENV_EXACT_LIMIT = "SOURCE_QA_EXACT_LIMIT"

FLAT = "flat"
HNSW_SQ8 = "hnsw_sq8"
IVF_SQ8 = "ivf_sq8"
KINDS = (FLAT, HNSW_SQ8, IVF_SQ8)
# The approximate index built above EXACT_LIMIT: IVF over 8-bit codes.  HNSW
# stopped short of the recall target on vectors rich in near-duplicates, as
# news is (docs/index-format.md); it stays readable (KINDS) and buildable
# (build_index(kind=...)).
ANN_KIND = IVF_SQ8
# nprobe from 128 up, the depth real SQuAD questions needed: the data-made
# probes can be far easier than questions, so tuning may only raise it
# (docs/index-format.md#measurements-behind-the-settings).
NPROBE_LADDER = (128, 192, 256, 384, 512)
HNSW_M = 32
EF_CONSTRUCTION = 80
# efSearch from 64 up, for the same reason (the engine asks for 100+ results,
# so FAISS searches at ef >= 200 there anyway)
EF_LADDER = (64, 96, 128, 192, 256, 384, 512)
# recall@10 the build tunes nprobe/efSearch for, on probe_queries.  Real
# questions can be harder than the probes, hence the margin over the 0.98
# target (docs/index-format.md#measurements-behind-the-settings).
TARGET_RECALL = 0.998
RERANK = 2  # ANN candidates per wanted result, re-scored exactly
COARSE_MARGIN = 32  # extra candidates of an 8-bit scan (VectorIndex(coarse_scan=True)), re-scored exactly
TRAIN_SAMPLE = 100_000
ADD_CHUNK = 65_536
TUNE_QUERIES = 300
# An incremental build keeps the previous IVF index's training (coarse
# centroids and 8-bit ranges) and its tuned nprobe while the vector count
# stays within these factors of the count it was trained on: re-training is
# the slowest part of a large rebuild, and adding a few articles changes
# neither the centroids nor the value ranges measurably.  Outside the range
# (or with --full) the index is trained afresh.
REUSE_RANGE = (0.5, 2.0)
# ... and while every vector decodes from the kept 8-bit ranges within these
# bounds.  A vector outside the training sample gets a component clipped now
# and then in a fresh index too, so these allow that much and keep a margin
# from the loader's check for another build's vectors (0.1 / 0.99); measured
# errors: docs/index-format.md#measurements-behind-the-settings.
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
        vector, and right after the question's embedding has evicted the
        caches it reads them from memory: a quarter of the bytes is a faster
        scan, with the same top results once re-scored.  The copy costs 1
        byte per dimension, made at load.  Timings and the check of the
        results: docs/index-format.md#measurements-behind-the-settings."""
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
    memory (scores plus argpartition's int64 ids; see docs/performance.md,
    build memory) and costs no speed."""
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
    plus isotropic noise (`noise` times its length), re-normalised.  On
    SQuAD dev their cosines to their best and 10th neighbour match real
    questions', so they are as hard for the ANN index as questions are (a
    lone perturbed vector is easier); see docs/index-format.md."""
    rows = int(vectors.shape[0])
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(rows, size=min(n, rows), replace=False))
    near = exact_search(vectors, np.asarray(vectors[pick], dtype=np.float32), neighbours)
    base = np.stack([np.asarray(vectors[np.sort(r)], dtype=np.float32).mean(axis=0) for r in near])
    base /= np.maximum(np.linalg.norm(base, axis=1, keepdims=True), 1e-12)
    d = base.shape[1]
    q = base + rng.standard_normal(base.shape).astype(np.float32) * (noise / np.sqrt(d))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
