"""The FAISS side of qa.vector_store: the sentence vectors as a file in the
index folder (exact or IVF over 8-bit codes, by size: qa.vector_index).

A FAISS file is written whole, once per build, and its row numbers are the
build's sentence ids, so this store gathers rows (and honours deletes) in
memory and builds the index in `persist`; reading is
qa.vector_index.VectorIndex, opened by qa.index_store.  Milvus
(qa.milvus_store) instead deletes and searches a live collection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from qa import vector_index as vi
from qa.vector_store import FAISS

FILE = "sentences.faiss"  # qa.index_format.SENTENCE_FAISS


class FaissStore:
    """VectorStore (qa.vector_store) writing `folder`/sentences.faiss."""

    kind = FAISS

    def __init__(self, folder: Path, previous: tuple[Any, dict] | None = None) -> None:
        """`previous`: an old IVF index's training to reuse
        (qa.vector_index.reusable_training)."""
        self.folder, self.previous = Path(folder), previous
        self._ids: list[np.ndarray] = []
        self._vecs: list[np.ndarray] = []
        self._docs: list[np.ndarray] = []
        self._dropped: set[int] = set()
        self.index: vi.VectorIndex | None = None

    def add(self, ids: np.ndarray, vectors: np.ndarray, doc_idx: np.ndarray) -> None:
        # kept by reference: the builder's one array of vectors is never copied
        self._ids.append(np.asarray(ids, dtype=np.int64))
        self._vecs.append(vectors)
        self._docs.append(np.asarray(doc_idx, dtype=np.int64))

    def delete_docs(self, doc_idx: list[int]) -> int:
        docs = np.concatenate(self._docs) if self._docs else np.zeros(0, np.int64)
        ids = np.concatenate(self._ids) if self._ids else np.zeros(0, np.int64)
        gone = set(ids[np.isin(docs, np.asarray(list(doc_idx), dtype=np.int64))].tolist()) - self._dropped
        self._dropped |= gone
        return len(gone)

    def count(self) -> int:
        return int(sum(len(i) for i in self._ids)) - len(self._dropped)

    def _rows(self) -> np.ndarray:
        """The kept vectors in id order; ids must then be 0..n-1 (FAISS rows
        are the sentence ids the metadata uses)."""
        if len(self._vecs) == 1 and not self._dropped:
            ids, vecs = self._ids[0], self._vecs[0]
            if np.array_equal(ids, np.arange(len(ids))):
                return np.asarray(vecs, dtype=np.float32)
        ids = np.concatenate(self._ids)
        keep = ~np.isin(ids, np.fromiter(self._dropped, dtype=np.int64, count=len(self._dropped)))
        vecs = np.concatenate([np.asarray(v, dtype=np.float32) for v in self._vecs])[keep]
        ids = ids[keep]
        order = np.argsort(ids, kind="stable")
        if not np.array_equal(ids[order], np.arange(len(ids))):
            raise ValueError(
                "FAISS rows are the sentence ids: after adds and deletes they must be 0..n-1 "
                "(renumber the sentences, as a build does)"
            )
        return vecs[order]

    def persist(self) -> dict:
        """Build (exact or IVF, tuned) and write the file; returns the
        manifest's vector_index["sentences"] entry."""
        import faiss

        vectors = self._rows()
        index, params = vi.build_index(vectors, previous=self.previous)
        self.previous = None
        path = self.folder / FILE
        faiss.write_index(index, str(path))
        # the loader memory-maps the file only at exactly this size
        params["file_bytes"] = path.stat().st_size
        self.index = vi.VectorIndex(index, vectors, params)
        return params

    @property
    def ntotal(self) -> int:
        return self.count()

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.index is None:
            raise RuntimeError("persist() the FAISS store before searching it")
        return self.index.search(q, k)
