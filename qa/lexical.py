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

from collections import Counter
from dataclasses import dataclass

import numpy as np

from qa.doc_map import DocMap, max_per
from qa.textnorm import _stemmer, _stopwords, lexical_terms, words


@dataclass(frozen=True)
class QueryTerms:
    terms: list[str]  # every lexical term of the query, in order
    ids: np.ndarray  # vocabulary ids of the distinct known terms
    weights: np.ndarray  # their idf, normalised with the unknown terms' share
    unknown: int  # query terms the corpus never uses


class Lexical:
    def __init__(self, bm25, language: str = "english", stopwords: bool = True, k1: float = 1.2) -> None:  # noqa: ANN001
        # plain arrays over the same mapped memory: a np.memmap slice builds a
        # memmap object each time, and a question takes a dozen slices
        bm25.scores = {k: np.asarray(v) if isinstance(v, np.memmap) else v for k, v in bm25.scores.items()}
        self.bm25 = bm25
        self.language, self.stopwords, self.k1 = language, stopwords, k1
        self.vocab: dict[str, int] = bm25.vocab_dict
        self.indptr = np.asarray(bm25.scores["indptr"])
        self.indices = bm25.scores["indices"]
        self.n = int(bm25.scores["num_docs"])
        df = np.diff(self.indptr).astype(np.float64)
        self.idf = np.log1p((max(self.n, 1) - df + 0.5) / (df + 0.5))
        self.max_idf = float(self.idf.max()) if len(self.idf) else 1.0
        self.title_docs: dict[int, np.ndarray] = {}

    def index_titles(self, titles: list[str]) -> None:
        """Remember which articles' titles use each term: a headline naming
        the question's subject vouches for the whole article."""
        by_term: dict[int, list[int]] = {}
        for d, title in enumerate(titles):
            for t in set(lexical_terms(title or "", self.language, self.stopwords)):
                i = self.vocab.get(t)
                if i is not None:
                    by_term.setdefault(i, []).append(d)
        self.title_docs = {i: np.asarray(ds, dtype=np.int64) for i, ds in by_term.items()}

    def terms(self, text: str) -> QueryTerms:
        terms = lexical_terms(text, self.language, self.stopwords, query=True)
        ids = np.array(sorted({self.vocab[t] for t in terms if t in self.vocab}), dtype=np.int64)
        unknown = len({t for t in terms if t not in self.vocab})
        w = self.idf[ids] if len(ids) else np.zeros(0)
        total = float(w.sum()) + unknown * self.max_idf
        return QueryTerms(terms, ids, w / total if total > 0 else w, unknown)

    def stem_words(self, ws: list[str]) -> list[str]:
        """The stems of already lower-cased words, as query terms are stemmed."""
        stem = _stemmer(self.language)
        return stem.stemWords(ws) if stem is not None else list(ws)

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

    def coverage(self, q: QueryTerms, cand: np.ndarray, docs: DocMap) -> dict[str, np.ndarray]:
        """Weighted share of the query's terms found in each candidate sentence,
        in it or its two neighbours, anywhere in its article (title included),
        in the article's title, and a saturating count over the article's
        sentences (a term the article keeps using is what it is about)."""
        out = {k: np.zeros(len(cand)) for k in ("sent", "ctx", "doc", "title", "doc_sat")}
        if len(cand) == 0 or len(q.ids) == 0:
            return out
        prev, nxt = docs.prev_sent[cand], docs.next_sent[cand]
        prev, nxt = np.where(prev >= 0, prev, self.n), np.where(nxt >= 0, nxt, self.n)
        pos, cdocs = docs.docs_of(cand)
        # Article-level counts for the candidates' articles only, from their
        # sentences: counting a term's whole posting list per article cost
        # time in proportion to the corpus (docs/performance.md, ask p50 at 1M).
        udocs, uinv = np.unique(cdocs, return_inverse=True)
        dpos, dsents = docs.sentences_of_docs(udocs)
        has = np.zeros(self.n + 1, dtype=bool)  # slot n stands for "no neighbour"
        counts = np.zeros((len(q.ids), len(pos)))  # per term, per occurrence: the term's uses in that article
        titled = np.zeros((len(q.ids), len(pos)), dtype=bool)
        for r, (t, w) in enumerate(zip(q.ids, q.weights)):
            post = np.asarray(self.indices[self.indptr[t] : self.indptr[t + 1]])
            has[post] = True
            in_sent = has[cand]
            out["sent"] += w * in_sent
            out["ctx"] += w * (in_sent | has[prev] | has[nxt])
            counts[r] = np.bincount(dpos, weights=has[dsents], minlength=len(udocs))[uinv]
            has[post] = False
            docs_titled = self.title_docs.get(int(t))
            if docs_titled is not None:
                titled[r] = np.isin(cdocs, docs_titled)
        # best occurrence per candidate and term (all terms at once), weighted over the terms
        w = np.asarray(q.weights, dtype=np.float64)
        for key, per_occ in (("doc", (counts > 0) | titled), ("title", titled), ("doc_sat", counts / (counts + 1.0))):
            out[key] = max_per(pos, per_occ.T.astype(np.float64), len(cand)) @ w
        return out


def phrase_share(question: str, sentences: list[str]) -> np.ndarray:
    """Share of the question's adjacent word pairs (not both stop words) that
    stand side by side in each sentence: "45 minutes", "Super Bowl"."""
    stop = _stopwords(True)
    qw = words(question)
    pairs = [f" {a} {b} " for a, b in zip(qw, qw[1:]) if not (a in stop and b in stop)]
    if not pairs or not sentences:
        return np.zeros(len(sentences))
    # one C-level scan of all candidates per pair instead of pairs x sentences `in` tests
    joined = "\n".join(sentences)
    starts = np.cumsum([0] + [len(t) + 1 for t in sentences[:-1]])
    counts = np.zeros(len(sentences))
    hit = np.zeros(len(sentences), dtype=bool)
    for p, times in Counter(pairs).items():
        found, at = [], joined.find(p)
        while at >= 0:
            found.append(at)
            at = joined.find(p, at + 1)
        if found:
            hit[:] = False
            hit[np.searchsorted(starts, found, side="right") - 1] = True  # a sentence counts once per pair
            counts[hit] += times
    return counts / len(pairs)
