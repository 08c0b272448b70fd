"""Embeddings with a cache: a rebuild only encodes text it has not encoded before.

The cache is the previous index itself (its vectors and the text hashes next to
them), valid only when it was made by the same model at the same precision and
sequence length, so adding one article to a thousand encodes one article.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from qa.encoder import Encoder, EncoderPool, usable_cpus
from qa.textnorm import text_hash

# Texts encoded per call of the encoder: its result (chunk x dim float32, 6 MB
# at 384 dimensions) is the only vector memory besides the output array.
CHUNK_SIZE = 4096
REMOTE_CHUNK = 65_536  # texts per Ray job: 100 MB of vectors at 384 dimensions
# Encode in this many single-threaded processes (this one + workers) when at
# least POOL_MIN_TEXTS texts need encoding: below that, starting a worker
# (import torch, load the model: seconds of CPU) costs more than it gains.
POOL_MIN_TEXTS = 2000


def default_processes() -> int:
    return max(1, min(usable_cpus(), 4))


@dataclass
class EmbedStats:
    encoded: int = 0
    reused: int = 0


class VectorCache:
    """hash -> vector, read from an earlier index (memory-mapped)."""

    def __init__(self, hashes: list[str] | None = None, vectors: np.ndarray | None = None) -> None:
        self.rows = {h: i for i, h in enumerate(hashes or [])}
        self.vectors = vectors

    @classmethod
    def from_index(
        cls, index_dir: Path, table: str, vectors_file: str, model_key: str, old_key: str | None
    ) -> "VectorCache":
        """Vectors of an earlier index, if it was built with the same model key."""
        import sqlite3

        if old_key != model_key:
            return cls()
        db, vec = index_dir / "meta.sqlite", index_dir / vectors_file
        if not db.is_file() or not vec.is_file():
            return cls()
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            key = "sent_idx" if table == "sentences" else "passage_idx"
            hashes = [h for (h,) in con.execute(f"SELECT hash FROM {table} ORDER BY {key}")]
            con.close()
            vectors = np.load(vec, mmap_mode="r", allow_pickle=False)
        except Exception:  # noqa: BLE001 - a damaged old index just means no cache
            return cls()
        if vectors.ndim != 2 or len(vectors) != len(hashes):
            return cls()
        return cls(hashes, vectors)


def embed_texts(
    get_encoder: Callable[[], Encoder],
    dim: int,
    texts: list[str],
    cache: VectorCache,
    batch_size: int,
    progress: bool,
    label: str,
    log: Callable[[str], None] = lambda msg: None,
    chunk_size: int = CHUNK_SIZE,
    processes: int | None = None,
    pool: EncoderPool | None = None,
    hashes: list[str] | None = None,
    remote: Any = None,
) -> tuple[np.ndarray, list[str], EmbedStats]:
    """Vectors for `texts` (row-aligned), their hashes, and what was encoded;
    `hashes`: their `text_hash`es (the cache keys) if the caller has them.

    The model is only loaded (`get_encoder()`) when something is not cached, so
    a rebuild that changes nothing never pays for importing torch.  Large jobs
    are encoded by `processes` single-threaded processes (default: one per CPU,
    at most 4; see qa.encoder.EncoderPool); 1 encodes in this process only.

    `pool`: workers started earlier (`warm_pool`), whose model is loading or
    loaded.  A small job goes to them alone and this process never loads the
    model; a large one is shared between them and this process.

    `remote`: an entered index_build.ray_encode.RayEncoder: everything not
    cached is encoded on Ray instead (in chunks of REMOTE_CHUNK texts, so
    only one chunk's vectors exist besides the result).
    """
    if hashes is None:
        hashes = [text_hash(t) for t in texts]
    out = np.zeros((len(texts), dim), dtype=np.float32)
    stats = EmbedStats()
    # cached rows in one gather, not a row at a time (docs/performance.md, incremental)
    found = np.fromiter((cache.rows.get(h, -1) for h in hashes), dtype=np.int64, count=len(hashes))
    hit = found >= 0
    if cache.vectors is not None and hit.any():
        for lo in range(0, len(texts), chunk_size * 16):  # bounded scratch: 100 MB at 384 dimensions
            sl = slice(lo, lo + chunk_size * 16)
            cached = np.flatnonzero(hit[sl]) + lo
            out[cached] = cache.vectors[found[cached]]
    else:
        hit[:] = False
    stats.reused = int(hit.sum())
    todo: list[int] = np.flatnonzero(~hit).tolist()
    if todo and remote is not None:
        from tqdm.auto import tqdm

        log(f"embedding {len(todo)} {label} on Ray ({stats.reused} cached, {remote.precision}, {remote.actors} actors)")
        with tqdm(
            total=len(todo),
            desc=f"embedding {label} (Ray)",
            unit="sent",
            disable=not progress,
            file=sys.stderr,
            dynamic_ncols=True,
            leave=False,
        ) as bar:
            for start in range(0, len(todo), REMOTE_CHUNK):
                rows = todo[start : start + REMOTE_CHUNK]
                got = np.zeros((len(rows), dim), dtype=np.float32)
                remote.encode([texts[i] for i in rows], got, bar.update)
                out[rows] = got
        stats.encoded = len(todo)
    elif todo:
        from tqdm.auto import tqdm

        warm = pool if pool is not None and pool.healthy() else None
        encoder = None if warm is not None and len(todo) < POOL_MIN_TEXTS else get_encoder()
        if encoder is None:
            assert warm is not None  # no encoder here only when the warm pool encodes
            precision = warm.precision
        else:
            precision = encoder.precision
        log(f"embedding {len(todo)} {label} ({stats.reused} cached, {precision})")
        bar = tqdm(
            total=len(todo),
            desc=f"embedding {label}",
            unit="sent",
            disable=not progress,
            file=sys.stderr,
            dynamic_ncols=True,
            leave=False,
        )
        # Longest first over everything to encode (batches of similar length pad
        # little), then chunk by chunk straight into `out`: only one chunk's
        # vectors exist besides `out`, never a second full float32 copy.
        todo.sort(key=lambda i: -len(texts[i]))
        procs = default_processes() if processes is None else processes
        try:
            with (
                contextlib.nullcontext(warm)
                if warm is not None
                else EncoderPool(encoder, procs)
                if encoder is not None and procs > 1 and len(todo) >= POOL_MIN_TEXTS
                else contextlib.nullcontext()
            ) as shared:
                for start in range(0, len(todo), chunk_size):
                    rows = todo[start : start + chunk_size]
                    chunk = [texts[i] for i in rows]
                    if encoder is None:
                        assert shared is not None  # no encoder here only when the warm pool encodes
                        got = np.zeros((len(chunk), dim), dtype=np.float32)
                        shared.encode(None, chunk, got, batch_size, precision, bar.update, load=get_encoder)
                        out[rows] = got
                    else:
                        out[rows] = encoder.encode(chunk, batch_size=batch_size, on_batch=bar.update, pool=shared)
        finally:
            bar.close()
        stats.encoded = len(todo)
    return out, hashes, stats


def warm_pool(model_id: str, precision: str, processes: int | None = None) -> EncoderPool | None:
    """Encoder workers for a build that will probably encode something, started
    before it reads a file: importing torch and loading the model then runs
    beside reading, dedup and BM25 instead of after them, and it is most of
    the time an incremental build of a few articles takes (docs/performance.md,
    incremental).  None on a one-CPU machine, where it would only compete with
    this process.  The caller closes it."""
    procs = default_processes() if processes is None else processes
    return EncoderPool(model_id, procs, precision=precision) if procs > 1 else None


def write_mean_vectors(
    path: Path, groups: Iterable[list[int]], n: int, vectors: np.ndarray, chunk: int = 65_536
) -> None:
    """The `n` groups' normalised mean rows (as `mean_vectors`), written to a
    .npy file a chunk at a time: the whole matrix never exists in memory,
    however many passages a dump has (docs/performance.md, "Dumps")."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (n, vectors.shape[1])}
        )
        done = 0
        batch: list[list[int]] = []
        for g in groups:
            batch.append(g)
            if len(batch) == chunk:
                f.write(mean_vectors(batch, vectors).tobytes())
                done += len(batch)
                batch = []
        if batch:
            f.write(mean_vectors(batch, vectors).tobytes())
            done += len(batch)
    if done != n:
        raise ValueError(f"{done} groups for {n} rows")


def mean_vectors(groups: list[list[int]], vectors: np.ndarray) -> np.ndarray:
    """Normalised mean of the given rows, one output row per group."""
    out = np.zeros((len(groups), vectors.shape[1]), dtype=np.float32)
    for i, rows in enumerate(groups):
        m = vectors[rows].mean(axis=0)
        n = float(np.linalg.norm(m))
        out[i] = m / n if n > 0 else m
    return out
