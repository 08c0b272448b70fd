"""Whether the sources answer a question at all.

The fused score (qa.fusion) is the probability that one sentence answers the
question.  Whether *any* sentence does is a question-level call, and the whole
candidate list says more about it than its best score alone: how much
probability the top five share, how close the question's nearest sentence
comes in the embedding space, whether the best sentence holds the question's
words.  A small logistic model over those, fitted on the SQuAD dev half with
every question asked once with its article (answerable) and once with it
hidden (not), gives P(answerable).

On the SQuAD test half it refuses more off-topic questions than the best
sentence's score alone, at the same answer rate (docs/evaluation.md,
abstention).

Answers keep the fused ranking.  Their scores are rescaled so the best one
scores P(answerable) and the others in proportion to their fused
probability: one score, one threshold, for both "is there an answer" and
"is this quote one".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qa.features import FEATURES

TYPES = ("name", "date", "number", "measure", "share", "clock")  # "any" is the baseline
QUESTION_FEATURES = (
    "top_logit",
    "second_logit",
    "top5_log_mass",
    "top_dense",
    "top_cov_sent",
    "top_cov_doc",
    "max_dense",
    "top_kind_near",
    "top_lacks_kind",
) + tuple(f"asks_{t}" for t in TYPES)
# with the reader (qa.rerank): its logit for the best answer, its best logit
# of all read, and how far that one is ahead of the next
READER_FEATURES = ("reader_top", "reader_best", "reader_margin")
# 0/1 flags, left unstandardised: a rare flag standardised is a huge z, and
# any weight on it a swing of the score (docs/evaluation.md, abstention)
_N_FLAGS = 1 + len(TYPES)


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


def question_features(prob: np.ndarray, X: np.ndarray, qtype: str, reader: np.ndarray | None = None) -> np.ndarray:
    """QUESTION_FEATURES of one question from its candidates, best first
    (`prob` the fused probabilities, `X` their feature rows), and with
    `reader` (the reader's logits of the first candidates, same order) the
    READER_FEATURES after them."""
    base = _base_features(prob, X, qtype)
    if reader is None:
        return base
    if len(reader) == 0:
        return np.r_[base, -10.0, -10.0, 0.0]
    top2 = np.sort(reader)[::-1][:2]
    return np.r_[base, reader[0], top2[0], top2[0] - (top2[1] if len(top2) > 1 else -10.0)]


def _base_features(prob: np.ndarray, X: np.ndarray, qtype: str) -> np.ndarray:
    flags = [float(qtype == t) for t in TYPES]
    if len(prob) == 0:
        return np.array([_logit(0.0), _logit(0.0), np.log(1e-6), -1.0, 0.0, 0.0, -1.0, 0.0, 1.0] + flags)
    dense, cov_sent, cov_doc, near = (FEATURES.index(f) for f in ("dense", "cov_sent", "cov_doc", "type_near"))
    # the question wants a kind of thing (a time, a name, ...) and the best
    # sentence does not hold one beyond the question's own words
    lacks = X[0, FEATURES.index("type_miss")] + X[0, FEATURES.index("name_miss")]
    return np.array(
        [
            _logit(prob[0]),
            _logit(prob[1] if len(prob) > 1 else 0.0),
            np.log(max(float(prob[:5].sum()), 1e-6)),
            X[0, dense],
            X[0, cov_sent],
            X[0, cov_doc],
            float(X[:, dense].max()),
            X[0, near],
            float(lacks),
        ]
        + flags
    )


@dataclass(frozen=True)
class AbstentionModel:
    """Logistic model over standardised QUESTION_FEATURES -> P(answerable)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    bias: float
    uses_reader: bool = False  # READER_FEATURES follow QUESTION_FEATURES

    def answerable(self, prob: np.ndarray, X: np.ndarray, qtype: str, reader: np.ndarray | None = None) -> float:
        f = question_features(prob, X, qtype, reader if self.uses_reader else None)
        z = (f - self.mean) / self.scale
        return float(1.0 / (1.0 + np.exp(-np.clip(z @ self.coef + self.bias, -30, 30))))

    @property
    def features(self) -> tuple[str, ...]:
        return QUESTION_FEATURES + (READER_FEATURES if self.uses_reader else ())

    def to_json(self) -> dict:
        r6 = lambda v: [round(float(x), 6) for x in v]  # noqa: E731
        return {
            "features": list(self.features),
            "mean": r6(self.mean),
            "scale": r6(self.scale),
            "coef": r6(self.coef),
            "bias": round(float(self.bias), 6),
        }

    @classmethod
    def from_json(cls, data: dict) -> "AbstentionModel":
        names = tuple(data.get("features", []))
        if names not in (QUESTION_FEATURES, QUESTION_FEATURES + READER_FEATURES):
            raise ValueError("abstention model fitted for other features: refit with python -m qa.eval squad --fit")
        return cls(
            np.asarray(data["mean"], dtype=np.float64),
            np.asarray(data["scale"], dtype=np.float64),
            np.asarray(data["coef"], dtype=np.float64),
            float(data["bias"]),
            names != QUESTION_FEATURES,
        )


def fit(answerable: list[tuple], hidden: list[tuple], weights: np.ndarray | None = None) -> AbstentionModel:
    """Fit on questions asked with their answer in the index (`answerable`)
    and without it (`hidden`): each a (probabilities best first, feature rows,
    type[, reader logits]).  With reader logits, the model uses them."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    F = np.array([question_features(*a) for a in answerable] + [question_features(*h) for h in hidden])
    y = np.r_[np.ones(len(answerable)), np.zeros(len(hidden))]
    uses_reader = F.shape[1] > len(QUESTION_FEATURES)
    scaler = StandardScaler().fit(F)
    flags = slice(len(QUESTION_FEATURES) - _N_FLAGS, len(QUESTION_FEATURES))
    scaler.mean_[flags], scaler.scale_[flags] = 0.0, 1.0  # flags stay 0/1
    lr = LogisticRegression(C=1.0, max_iter=3000).fit(scaler.transform(F), y, sample_weight=weights)
    return AbstentionModel(scaler.mean_, scaler.scale_, lr.coef_[0], float(lr.intercept_[0]), uses_reader)


def answer_scores(prob: np.ndarray, p_answerable: float) -> np.ndarray:
    """Scores shown with the answers (best first): the best scores
    P(answerable), the rest in proportion to their fused probability, so the
    order is the fused one and one threshold serves both decisions."""
    if len(prob) == 0:
        return np.zeros(0)
    return p_answerable * prob / max(float(prob[0]), 1e-12)
