"""Lexical evidence at query time: BM25 over sentences, and term coverage.

BM25 says how well one sentence matches.  Coverage says which of the
question's words (weighted by rarity) appear in the sentence, in its
neighbours, or anywhere in its article: a question is usually written about an
article, and its answer sentence rarely repeats all of it, so an article that
holds every rare word of the question lends its sentences credibility.  Both
read the same posting lists the bm25s index saved at build time; terms are made
by `qa.textnorm.lexical_terms`, exactly as the builder made them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qa.doc_map import DocMap
from qa.textnorm import lexical_terms


@dataclass(frozen=True)
class QueryTerms:
    terms: list[str]  # every lexical term of the query, in order
    ids: np.ndarray  # vocabulary ids of the distinct known terms
    weights: np.ndarray  # their idf, normalised with the unknown terms' share
    unknown: int  # query terms the corpus never uses


class Lexical:
    def __init__(self, bm25, language: str = "english", stopwords: bool = True, k1: float = 1.2) -> None:  # noqa: ANN001
        self.bm25 = bm25
        self.language, self.stopwords, self.k1 = language, stopwords, k1
        self.vocab: dict[str, int] = bm25.vocab_dict
        self.indptr = np.asarray(bm25.scores["indptr"])
        self.indices = bm25.scores["indices"]
        self.n = int(bm25.scores["num_docs"])
        df = np.diff(self.indptr).astype(np.float64)
        self.idf = np.log1p((max(self.n, 1) - df + 0.5) / (df + 0.5))
        self.max_idf = float(self.idf.max()) if len(self.idf) else 1.0

    def terms(self, text: str) -> QueryTerms:
        terms = lexical_terms(text, self.language, self.stopwords)
        ids = np.array(sorted({self.vocab[t] for t in terms if t in self.vocab}), dtype=np.int64)
        unknown = len({t for t in terms if t not in self.vocab})
        w = self.idf[ids] if len(ids) else np.zeros(0)
        total = float(w.sum()) + unknown * self.max_idf
        return QueryTerms(terms, ids, w / total if total > 0 else w, unknown)

    def known_share(self, text: str) -> float:
        q = self.terms(text)
        known = len(q.terms) - sum(t not in self.vocab for t in q.terms)
        return known / len(q.terms) if q.terms else 1.0

    def scores(self, q: QueryTerms) -> tuple[np.ndarray, float]:
        """BM25 of every sentence, and the best score the query could reach
        (each term matched once in a sentence of average length), which turns a
        raw score into a share comparable across questions."""
        if len(q.ids) == 0:
            return np.zeros(self.n, dtype=np.float32), 0.0
        ids = [self.vocab[t] for t in q.terms if t in self.vocab]  # repeated words count again, as in bm25s
        s = np.asarray(self.bm25.get_scores_from_ids(ids), dtype=np.float32)
        best = float(sum(self.idf[i] for i in ids) + q.unknown * self.max_idf) * (self.k1 + 1)
        return s, best

    def coverage(self, q: QueryTerms, cand: np.ndarray, docs: DocMap) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weighted share of the query's terms found in each candidate sentence,
        in it or its two neighbours, and anywhere in its article(s)."""
        sent = np.zeros(len(cand))
        ctx = np.zeros(len(cand))
        doc = np.zeros(len(cand))
        if len(cand) == 0 or len(q.ids) == 0:
            return sent, ctx, doc
        prev, nxt = docs.prev_sent[cand], docs.next_sent[cand]
        pos, cdocs = docs.docs_of(cand)
        has = np.zeros(self.n + 1, dtype=bool)  # slot n stands for "no neighbour"
        doc_has = np.zeros(docs.n_docs, dtype=bool)
        for t, w in zip(q.ids, q.weights):
            post = np.asarray(self.indices[self.indptr[t] : self.indptr[t + 1]])
            has[post] = True
            in_sent = has[cand]
            sent += w * in_sent
            ctx += w * (in_sent | has[np.where(prev >= 0, prev, self.n)] | has[np.where(nxt >= 0, nxt, self.n)])
            if len(post):
                _, pdocs = docs.docs_of(post)
                doc_has[pdocs] = True
                hit = np.zeros(len(cand), dtype=bool)
                hit[pos[doc_has[cdocs]]] = True
                doc += w * hit
                doc_has[pdocs] = False
            has[post] = False
        return sent, ctx, doc
