"""BM25 over the unique sentences (bm25s: sparse matrices, plain numpy, saved
as .npy + JSON, never pickled)."""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from qa.config import LexicalConfig
from qa.textnorm import lexical_terms


def corpus_terms(texts: list[str], cfg: LexicalConfig) -> list[list[str]]:
    """`lexical_terms(t, cfg.language, cfg.stopwords)` of every text."""
    return list(_iter_terms(texts, cfg))


def _iter_terms(texts: Iterable[str], cfg: LexicalConfig) -> Iterator[list[str]]:
    """corpus_terms one text at a time, with each distinct word stemmed once
    (a corpus repeats its words: stemming them one sentence at a time was
    most of the cost of building BM25)."""
    from qa.textnorm import _stemmer, _stopwords, words

    stop = _stopwords(cfg.stopwords)
    stemmer = _stemmer(cfg.language)
    if stemmer is None:
        for t in texts:
            yield lexical_terms(t, cfg.language, cfg.stopwords)
        return
    stem_word = stemmer.stemWord
    memo: dict[str, str] = {}
    for t in texts:
        terms = []
        for w in words(t):
            if w in stop:
                continue
            s = memo.get(w)
            if s is None:
                s = memo[w] = stem_word(w)
            terms.append(s)
        yield terms


@dataclass
class TermIds:
    """Every text's term ids end to end (`terms`, int32) and each text's
    count of them (`lens`), with the vocabulary they index.  Flat arrays, not
    a list of lists: Python ints in lists take many times the memory at a
    million sentences (docs/performance.md, build memory).  `ids`/`vocab` are
    what bm25s.BM25.index takes from an object."""

    terms: np.ndarray
    lens: np.ndarray
    vocab: dict[str, int]

    @property
    def ids(self) -> "TermIds":
        return self

    def rows(self) -> list[list[int]]:
        return [a.tolist() for a in np.split(self.terms, np.cumsum(self.lens)[:-1])] if len(self.lens) else []


def corpus_term_ids(texts: list[str], cfg: LexicalConfig) -> TermIds:
    """corpus_terms as ids into a vocabulary numbered in order of first
    appearance (deterministic, unlike bm25s's own set-ordered vocabulary)."""
    vocab: dict[str, int] = {}
    terms = array("i")
    lens = array("q")
    for row in _iter_terms(texts, cfg):
        for t in row:
            i = vocab.get(t)
            if i is None:
                i = vocab[t] = len(vocab)
            terms.append(i)
        lens.append(len(row))
    return TermIds(
        np.frombuffer(terms, dtype=np.int32).copy() if len(terms) else np.zeros(0, np.int32),
        np.frombuffer(lens, dtype=np.int64).copy() if len(lens) else np.zeros(0, np.int64),
        vocab,
    )


def bm25_scores(ids: TermIds | list[list[int]], n_vocab: int, k1: float, b: float) -> dict:
    """The score matrix bm25s builds (method "lucene": the default), computed
    with whole-array numpy instead of one small array per sentence: the same
    float64 arithmetic rounded to float32, the same CSC layout (columns =
    terms, rows sorted), so the saved index is the one bm25s would save."""
    import math
    from itertools import chain

    if isinstance(ids, TermIds):
        lens, terms = ids.lens, ids.terms.astype(np.int64)
    else:
        lens = np.fromiter((len(r) for r in ids), dtype=np.int64, count=len(ids))
        terms = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lens.sum()))
    n_docs = len(lens)
    docs = np.repeat(np.arange(n_docs, dtype=np.int64), lens)
    pairs, tf = np.unique((terms << 32) | docs, return_counts=True)  # sorted by term, then sentence
    del terms, docs
    col = pairs >> 32
    row = pairs & 0xFFFFFFFF
    del pairs
    df = np.bincount(col, minlength=n_vocab)
    idf = np.zeros(n_vocab, dtype=np.float32)
    for t, d in enumerate(df.tolist()):  # math.log, as bm25s does, not numpy's vectorised log
        if d:
            idf[t] = math.log(1 + (n_docs - d + 0.5) / (d + 0.5))
    avg = lens.mean() if n_docs else np.float64(0.0)
    tf32 = tf.astype(np.float32).astype(np.float64)
    tfc = tf32 / (k1 * ((1 - b) + b * lens[row] / avg) + tf32)
    data = (idf[col].astype(np.float64) * tfc).astype(np.float32)
    indptr = np.zeros(n_vocab + 1, dtype=np.int64)
    np.cumsum(np.bincount(col, minlength=n_vocab), out=indptr[1:])
    return {"data": data, "indices": row.astype(np.int32), "indptr": indptr, "num_docs": n_docs}


def build_bm25(texts: list[str], cfg: LexicalConfig, out_dir: Path) -> int:
    """Index `texts` (row i = unique sentence i) into `out_dir`; returns vocabulary size."""
    import bm25s

    class _BM25(bm25s.BM25):
        def build_index_from_ids(self, unique_token_ids, corpus_token_ids, show_progress=True, leave_progress=False):
            if self.method != "lucene" or self.dtype != "float32" or self.int_dtype != "int32":
                return super().build_index_from_ids(
                    unique_token_ids, corpus_token_ids.rows(), show_progress, leave_progress
                )
            self.nonoccurrence_array = None
            return bm25_scores(corpus_token_ids, len(unique_token_ids), self.k1, self.b)

    ids = corpus_term_ids(texts, cfg)
    retriever = _BM25(k1=cfg.k1, b=cfg.b)
    retriever.index(ids, show_progress=False)  # adds the empty token "" as bm25s does for tokens
    retriever.save(str(out_dir), show_progress=False)
    return len(retriever.vocab_dict)
