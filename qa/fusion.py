"""Fusing dense and lexical evidence into one calibrated score per sentence.

Each candidate sentence gets a small feature vector (dense cosine, BM25 as a
share of the query's best possible BM25, the best cosine of a passage around
it, ranks, whether it holds the kind of thing the question asks for); a
logistic model fitted on the dev half of SQuAD (`python -m qa.eval --fit`)
turns it into the probability that the sentence answers the question.  That
probability is the answer's score, and the abstention threshold is set on it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

WEIGHTS_FILE = Path(__file__).with_name("fusion_weights.json")

FEATURES = (
    "dense", "bm25_share", "passage", "dense_gap", "bm25_rel", "rrf_dense", "rrf_bm25",
    "type_match", "type_miss", "log_len", "cov_sent", "cov_ctx", "cov_doc", "doc_dense", "doc_dense_gap",
    "passage_gap", "cov_sent_gap", "cov_ctx_gap", "cov_doc_gap", "bm25_share_gap",
    "cov_title", "doc_sat", "phrase",
    "dense_in_doc_gap", "cov_sent_in_doc_gap", "bm25_share_in_doc_gap", "passage_in_doc_gap", "log_doc_candidates",
)

_NUMBER = re.compile(r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|"
                     r"fifty|hundred|thousand|million|billion|dozen|half|third|quarter)\b", re.I)
_DATE = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})\b|\b(january|february|march|april|may|june|july|august|september|"
                   r"october|november|december|monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
                   r"yesterday|today|tomorrow|century|decade|week|month|year|morning|evening|night|"
                   r"spring|summer|autumn|winter)\b", re.I)
_NAME = re.compile(r"(?<!^)(?<![.!?]\s)\b[A-Z][a-z]+")


def question_type(question: str) -> str:
    """What kind of answer the question wants: number, date, name, or any."""
    q = question.lower()
    if re.search(r"\bhow (many|much|long|old|far|big|large|often)\b|\bwhat (percentage|percent|number|amount)\b", q):
        return "number"
    if re.search(r"\bwhen\b|\bwhat (year|day|date|time|month|century)\b|\bwhich (year|day|month)\b", q):
        return "date"
    if re.search(r"\bwho(m|se)?\b|\bwhere\b|\bwhich (country|city|company|team|person|party)\b", q):
        return "name"
    return "any"


FACTS = ("n_words", "number", "date", "name")  # per-sentence facts the features read


def sentence_facts(text: str) -> tuple[int, bool, bool, bool]:
    """What a sentence could answer, computed once per sentence (engines memoise it)."""
    return len(text.split()), bool(_NUMBER.search(text)), bool(_DATE.search(text)), bool(_NAME.search(text))


def has_type(sentence: str, qtype: str) -> bool:
    if qtype == "number":
        return bool(_NUMBER.search(sentence))
    if qtype == "date":
        return bool(_DATE.search(sentence))
    if qtype == "name":
        return bool(_NAME.search(sentence))
    return True


@dataclass(frozen=True)
class FusionModel:
    """Logistic model over standardised features and their pairwise products.

    Products let the evidence interact (a rare-word match counts for more when
    the article is on topic; a number only matters for "how many" questions)
    while the score stays a calibrated probability and the model a few
    hundred numbers in JSON.
    """

    mean: np.ndarray
    scale: np.ndarray
    linear: np.ndarray  # (f,)
    quadratic: np.ndarray  # (f, f), upper triangle used
    bias: float
    threshold: float  # answers below this probability are "closest matches"
    mmr_lambda: float  # 1.0 = plain ranking
    info: dict

    def score(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.zeros(0)
        Z = (X - self.mean) / self.scale
        z = Z @ self.linear + np.einsum("ni,ij,nj->n", Z, self.quadratic, Z) + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


@lru_cache(maxsize=4)
def load_model(path: str | None = None) -> FusionModel:
    data = json.loads(Path(path or WEIGHTS_FILE).read_text(encoding="utf-8"))
    f = len(FEATURES)
    if list(data.get("features", [])) != list(FEATURES):
        raise ValueError(f"{path or WEIGHTS_FILE} was fitted for other features: refit with python -m qa.eval squad --fit")
    quad = np.zeros((f, f))
    iu = np.triu_indices(f)
    quad[iu] = np.asarray(data["quadratic"], dtype=np.float64)
    return FusionModel(np.asarray(data["mean"], dtype=np.float64), np.asarray(data["scale"], dtype=np.float64),
                       np.asarray(data["linear"], dtype=np.float64), quad, float(data["bias"]),
                       float(data["threshold"]), float(data.get("mmr_lambda", 1.0)), data.get("info", {}))


@dataclass
class Evidence:
    """Raw per-candidate evidence gathered by the engine (arrays align)."""

    dense: np.ndarray  # cosine of question and sentence
    bm25: np.ndarray
    bm25_best: float  # the query's best possible BM25 (for a share)
    passage: np.ndarray  # best cosine of a passage holding the sentence
    cov_sent: np.ndarray  # idf-weighted share of query terms in the sentence
    cov_ctx: np.ndarray  # ... in it or its neighbours
    cov_doc: np.ndarray  # ... anywhere in its article
    doc_dense: np.ndarray  # cosine of question and the article's centroid
    cov_title: np.ndarray  # share of query terms in the article's title
    doc_sat: np.ndarray  # query terms weighted by how many of the article's sentences use them
    phrase: np.ndarray  # share of the question's word pairs found side by side in the sentence
    doc: np.ndarray  # the article of each candidate's first occurrence
    facts: np.ndarray  # (n, len(FACTS)) from sentence_facts
    qtype: str


def features(ev: Evidence) -> np.ndarray:
    """Feature matrix (n_candidates x len(FEATURES)); rows align with the inputs."""
    dense, bm25 = ev.dense, ev.bm25
    n = len(dense)
    X = np.zeros((n, len(FEATURES)), dtype=np.float64)
    if n == 0:
        return X
    d_rank = np.empty(n)
    d_rank[np.argsort(-dense, kind="stable")] = np.arange(n)
    b_rank = np.empty(n)
    b_rank[np.argsort(-bm25, kind="stable")] = np.arange(n)
    bmax = float(bm25.max())
    X[:, 0] = dense
    X[:, 1] = bm25 / ev.bm25_best if ev.bm25_best > 0 else 0.0
    X[:, 2] = ev.passage
    X[:, 3] = dense - float(dense.max())
    X[:, 4] = bm25 / bmax if bmax > 0 else 0.0
    X[:, 5] = 10.0 / (10.0 + d_rank)
    X[:, 6] = np.where(bm25 > 0, 10.0 / (10.0 + b_rank), 0.0)
    if ev.qtype != "any":
        match = ev.facts[:, FACTS.index(ev.qtype)].astype(np.float64)
        X[:, 7] = match
        X[:, 8] = 1.0 - match
    X[:, 9] = np.log1p(ev.facts[:, 0])
    X[:, 10] = ev.cov_sent
    X[:, 11] = ev.cov_ctx
    X[:, 12] = ev.cov_doc
    X[:, 13] = ev.doc_dense
    X[:, 14] = ev.doc_dense - float(ev.doc_dense.max())
    # within-question gaps: how far behind the question's best candidate
    for col, src in ((15, 2), (16, 10), (17, 11), (18, 12), (19, 1)):
        X[:, col] = X[:, src] - X[:, src].max()
    X[:, 20] = ev.cov_title
    X[:, 21] = ev.doc_sat
    X[:, 22] = ev.phrase
    # against the other candidates of the same article: is this its best sentence?
    _, inv, counts = np.unique(ev.doc, return_inverse=True, return_counts=True)
    for col, src in ((23, 0), (24, 10), (25, 1), (26, 2)):
        best = np.full(len(counts), -np.inf)
        np.maximum.at(best, inv, X[:, src])
        X[:, col] = X[:, src] - best[inv]
    X[:, 27] = np.log1p(counts[inv])
    return X
