"""Where each unique sentence sits: its documents, its neighbours, its passages.

A sentence alone is often too short to show that it answers a question (the
question names the topic, the sentence only says "It lasted 45 minutes"), so
the ranker looks at the sentence's surroundings too.  These maps are built once
per loaded index from `doc_sentences`, as flat numpy arrays (CSR style), so
that per-question lookups are vectorised and cost microseconds.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import numpy as np

from qa.vector_rows import Rows


def _csr(keys: np.ndarray, vals: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(keys, kind="stable")
    counts = np.bincount(keys, minlength=n)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, vals[order]


def _expand(indptr: np.ndarray, vals: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All CSR rows of `keys` at once: (position in `keys`, value) pairs."""
    starts, lens = indptr[keys], indptr[keys + 1] - indptr[keys]
    pos = np.repeat(np.arange(len(keys)), lens)
    flat = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))
    return pos, vals[flat]


def max_per(pos: np.ndarray, vals: np.ndarray, n: int, fill: float = 0.0) -> np.ndarray:
    """Per-key maximum of `vals` (one row per (position, value) pair, as
    `_expand` makes them: `pos` sorted; `vals` 1-d or 2-d) over keys 0..n-1,
    `fill` where a key has none.

    Most sentences occur once, so `pos` is usually 0..n-1 already and the
    values are the answer: no `np.maximum.at` (a slow scatter) at all."""
    if len(pos) == n and (n == 0 or (pos[0] == 0 and bool((np.diff(pos) == 1).all()))):  # one each
        return np.asarray(vals, dtype=np.float64)
    out = np.full((n,) + vals.shape[1:], fill)
    np.maximum.at(out, pos, vals)
    return out


@dataclass(frozen=True)
class DocMap:
    sent_doc_ptr: np.ndarray  # CSR: sentence -> documents holding it
    sent_docs: np.ndarray
    prev_sent: np.ndarray  # sentence before its first occurrence (-1: none)
    next_sent: np.ndarray  # sentence after it (-1: none)
    sent_pas_ptr: np.ndarray  # CSR: sentence -> passages holding an occurrence
    sent_pas: np.ndarray
    doc_vectors: Rows  # normalised mean of each document's sentence vectors
    n_docs: int
    doc_sent_ptr: np.ndarray  # CSR: document -> its answer-sentence occurrences
    doc_sents: np.ndarray

    def sentences_of_docs(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in `docs`, sentence) for every occurrence in `docs`."""
        return _expand(self.doc_sent_ptr, self.doc_sents, docs)

    def docs_of(self, sents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in `sents`, document) for every occurrence of `sents`."""
        return _expand(self.sent_doc_ptr, self.sent_docs, sents)

    def passages_of(self, sents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in `sents`, passage) for every passage holding one of `sents`."""
        return _expand(self.sent_pas_ptr, self.sent_pas, sents)


def _occurrences(db: sqlite3.Connection) -> tuple[np.ndarray, np.ndarray, int]:
    """(document, sentence) of every answer-sentence occurrence in document
    order, and the number of documents."""
    cur = db.execute("SELECT doc_idx, sent_idx FROM doc_sentences WHERE sent_idx IS NOT NULL ORDER BY doc_idx, sent_no")
    chunks = [np.zeros((0, 2), dtype=np.int64)]
    while rows := cur.fetchmany(65_536):  # never a list of every row (docs/performance.md, dumps)
        chunks.append(np.asarray(rows, dtype=np.int64).reshape(-1, 2))
    occ = np.concatenate(chunks)
    n_docs = int(db.execute("SELECT COUNT(*) FROM documents").fetchone()[0])
    return occ[:, 0], occ[:, 1], n_docs


def _centroids(doc: np.ndarray, sent: np.ndarray, n_docs: int, n_sentences: int, sentence_vectors: Rows) -> np.ndarray:
    dim = sentence_vectors.shape[1] if sentence_vectors.ndim == 2 else 0
    from scipy import sparse  # already a dependency of bm25s and sentence-transformers

    member = sparse.csr_matrix((np.ones(len(sent), np.float32), (doc, sent)), shape=(n_docs, n_sentences))
    if not isinstance(sentence_vectors, np.ndarray):  # a qa.vector_rows.RowFile
        sentence_vectors = np.asarray(sentence_vectors)
    doc_vecs = np.asarray(member @ sentence_vectors, dtype=np.float32) if dim else np.zeros((n_docs, 0), np.float32)
    norms = np.linalg.norm(doc_vecs, axis=1, keepdims=True)
    doc_vecs /= np.where(norms > 0, norms, 1.0)
    return doc_vecs


def document_vectors(db: sqlite3.Connection, sentence_vectors: np.ndarray) -> np.ndarray:
    """Each document's normalised sum (= normalised mean) of its sentence
    vectors, one per occurrence, float32 (zero for a document without
    answer sentences).  The builder stores it (index_format.DOC_VECTORS):
    computing it reads every sentence vector, which a load should not."""
    doc, sent, n_docs = _occurrences(db)
    return _centroids(doc, sent, n_docs, int(sentence_vectors.shape[0]), sentence_vectors)


def build_doc_map(
    db: sqlite3.Connection, n_sentences: int, sentence_vectors: Rows, doc_vectors: Rows | None = None
) -> DocMap:
    """`doc_vectors`: the stored document vectors (IndexData.doc_vectors);
    None (an index built before they were stored) computes them here from
    `sentence_vectors`, reading all of them."""
    doc, sent, n_docs = _occurrences(db)
    sent_doc_ptr, sent_docs = _csr(sent, doc, n_sentences)

    # neighbours within the same document, taken at each sentence's first occurrence
    same_prev = np.r_[False, doc[1:] == doc[:-1]]
    same_next = np.r_[doc[:-1] == doc[1:], False]
    prev_of_row = np.where(same_prev, np.r_[-1, sent[:-1]], -1)
    next_of_row = np.where(same_next, np.r_[sent[1:], -1], -1)
    first_row = np.full(n_sentences, -1, dtype=np.int64)
    rows = np.arange(len(sent))
    first_row[sent[::-1]] = rows[::-1]  # last write wins -> the first occurrence
    prev_sent = np.full(n_sentences, -1, dtype=np.int64)
    next_sent = np.full(n_sentences, -1, dtype=np.int64)
    has = first_row >= 0
    prev_sent[has] = prev_of_row[first_row[has]]
    next_sent[has] = next_of_row[first_row[has]]

    pairs = np.asarray(
        db.execute(
            "SELECT ds.sent_idx, p.passage_idx FROM passages p JOIN doc_sentences ds "
            "ON ds.doc_idx = p.doc_idx AND ds.sent_no BETWEEN p.first_sent_no AND p.last_sent_no "
            "WHERE ds.sent_idx IS NOT NULL"
        ).fetchall(),
        dtype=np.int64,
    ).reshape(-1, 2)
    s_ptr, s_pas = _csr(pairs[:, 0], pairs[:, 1], n_sentences)

    doc_vecs: Rows
    if doc_vectors is None:
        doc_vecs = _centroids(doc, sent, n_docs, n_sentences, sentence_vectors)
    elif len(doc_vectors) != n_docs:
        raise ValueError(f"{len(doc_vectors)} document vectors for {n_docs} documents")
    else:
        doc_vecs = doc_vectors
    doc_sent_ptr = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(np.bincount(doc, minlength=n_docs), out=doc_sent_ptr[1:])  # `doc` is sorted: `sent` is the CSR
    return DocMap(sent_doc_ptr, sent_docs, prev_sent, next_sent, s_ptr, s_pas, doc_vecs, n_docs, doc_sent_ptr, sent)
