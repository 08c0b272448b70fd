"""Open an index directory for reading, checking that every part agrees with
the manifest, so a damaged or foreign index fails loudly at load time instead
of answering wrongly later.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa import index_format as fmt
from qa.errors import IndexLoadError


@dataclass
class IndexData:
    """Everything the retriever needs from disk (vectors memory-mapped)."""

    path: Path
    manifest: fmt.Manifest
    db: sqlite3.Connection
    sentence_index: Any  # faiss.Index
    passage_index: Any
    sentence_vectors: np.ndarray
    passage_vectors: np.ndarray
    bm25: Any  # bm25s.BM25

    @property
    def n_sentences(self) -> int:
        return int(self.sentence_index.ntotal)

    def close(self) -> None:
        self.db.close()


def _count(db: sqlite3.Connection, table: str) -> int:
    return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def open_index(index_dir: Path | str) -> IndexData:
    """Load and cross-check an index; IndexLoadError names the bad file and the fix."""
    import faiss

    root = Path(index_dir)
    manifest = fmt.Manifest.read(root)
    hint = fmt.REBUILD_HINT
    try:
        db = fmt.connect(root)
        n_sent, n_pass = _count(db, "sentences"), _count(db, "passages")
    except sqlite3.DatabaseError as e:
        raise IndexLoadError(f"{root / fmt.META_DB} is damaged ({e}): {hint}") from e
    want_s, want_p = manifest.counts.get("unique_sentences"), manifest.counts.get("passages")
    if (n_sent, n_pass) != (want_s, want_p):
        raise IndexLoadError(
            f"{root / fmt.META_DB} holds {n_sent} sentences / {n_pass} passages but the manifest says "
            f"{want_s} / {want_p}: {hint}"
        )

    def load_faiss(name: str, rows: int) -> Any:
        path = root / name
        if not path.is_file():
            raise IndexLoadError(f"{path} is missing: {hint}")
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as e:
            raise IndexLoadError(f"{path} is damaged (FAISS could not read it): {hint}") from e
        if index.d != manifest.dimension or index.ntotal != rows:
            raise IndexLoadError(
                f"{path} has {index.ntotal} vectors of dimension {index.d}, the manifest says "
                f"{rows} of dimension {manifest.dimension}: {hint}"
            )
        return index

    def load_vectors(name: str, rows: int) -> np.ndarray:
        path = root / name
        if not path.is_file():
            raise IndexLoadError(f"{path} is missing: {hint}")
        try:
            vecs = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as e:
            raise IndexLoadError(f"{path} is damaged ({e}): {hint}") from e
        if vecs.shape != (rows, manifest.dimension) or vecs.dtype != np.float32:
            raise IndexLoadError(f"{path} has shape {vecs.shape} {vecs.dtype}, expected ({rows}, {manifest.dimension}) float32: {hint}")
        return vecs

    s_index = load_faiss(fmt.SENTENCE_FAISS, n_sent)
    p_index = load_faiss(fmt.PASSAGE_FAISS, n_pass)
    s_vecs = load_vectors(fmt.SENTENCE_VECTORS, n_sent)
    p_vecs = load_vectors(fmt.PASSAGE_VECTORS, n_pass)

    import bm25s

    bm_dir = root / fmt.BM25_DIR
    if not bm_dir.is_dir():
        raise IndexLoadError(f"{bm_dir} is missing: {hint}")
    try:
        bm25 = bm25s.BM25.load(str(bm_dir), mmap=True, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - bm25s raises whatever numpy/json raise
        raise IndexLoadError(f"{bm_dir} is damaged ({type(e).__name__}): {hint}") from e
    if int(bm25.scores["num_docs"]) != n_sent:
        raise IndexLoadError(f"{bm_dir} covers {bm25.scores['num_docs']} sentences, expected {n_sent}: {hint}")
    return IndexData(root, manifest, db, s_index, p_index, s_vecs, p_vecs, bm25)
