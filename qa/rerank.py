"""The second stage: the reader (qa.reader) reads the fused ranking's best
few candidates, and a small logistic model over the fused score and the
reader's turns them into the final order and scores.

Why a second stage and not one more fusion feature: the reader costs a
forward pass per sentence, so it reads only the best `n` of the fused
ranking, and what it says is only comparable among those.  The model also
carries its own abstention part (qa.abstain with the reader's features: a
sentence that merely shares the topic no longer looks like an answer) and
threshold.  Fitted by `python -m qa.eval.rerank_fit` on questions the reader
was never trained on; see docs/evaluation.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from qa.abstain import AbstentionModel, answer_scores

WEIGHTS_FILE = Path(__file__).with_name("rerank_weights.json")
FEATURES = ("fused_logit", "fused_gap", "reader", "reader_gap", "reader_rank", "lead")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def features(prob: np.ndarray, reader: np.ndarray, lead: np.ndarray) -> np.ndarray:
    """FEATURES of the n candidates read (fused order, best first); `lead`:
    1.0 where the candidate is its article's first sentence.  A news lead
    names everything the story is about, so it shares the most words with
    any question on the story, yet answers few of them (news tune half:
    docs/evaluation.md, current numbers)."""
    fl = _logit(prob)
    rank = np.empty(len(reader))
    rank[np.argsort(-reader, kind="stable")] = np.arange(len(reader))
    return np.column_stack([fl, fl - fl[0], reader, reader - reader.max(), 1.0 / (1.0 + rank), lead])


@dataclass(frozen=True)
class RerankModel:
    n: int  # candidates the reader reads
    coef: np.ndarray
    bias: float
    threshold: float
    abstention: AbstentionModel | None = None
    info: dict = field(default_factory=dict)

    def probabilities(self, prob: np.ndarray, reader: np.ndarray, lead: np.ndarray) -> np.ndarray:
        """P(answers the question) of each candidate read, from its fused
        probability and the reader's logit (all in fused order)."""
        z = features(prob, reader, lead) @ self.coef + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))

    def rerank(self, prob: np.ndarray, reader: np.ndarray, lead: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(new order of all candidates, their probabilities in that order):
        the read ones by the second stage, the rest after them in fused order."""
        n = len(reader)
        p2 = self.probabilities(prob[:n], reader, lead[:n])
        head = np.argsort(-p2, kind="stable")
        tail = np.arange(n, len(prob))
        # the unread keep their fused order and stay below every read one
        tail_p = np.minimum(prob[n:], float(p2.min()) * 0.999) if n else prob[n:]
        return np.concatenate([head, tail]), np.concatenate([p2[head], tail_p])

    def answer_scores(self, prob: np.ndarray, X: np.ndarray, qtype: str, reader: np.ndarray) -> np.ndarray:
        """Scores shown (best first, in reranked order): the best is P(answerable)."""
        if self.abstention is None or len(prob) == 0:
            return prob
        return answer_scores(prob, self.abstention.answerable(prob, X, qtype, reader))

    def to_json(self) -> dict:
        return {
            "features": list(FEATURES),
            "n": self.n,
            "coef": [round(float(c), 6) for c in self.coef],
            "bias": round(float(self.bias), 6),
            "threshold": self.threshold,
            "abstention": self.abstention.to_json() if self.abstention else None,
            "info": self.info,
        }


@lru_cache(maxsize=4)
def load_model(path: str | None = None) -> RerankModel | None:
    """The fitted second stage, or None when none ships (the engine then
    ranks by the fused score alone)."""
    p = Path(path) if path else WEIGHTS_FILE
    if not p.is_file():
        return None
    data = json.loads(p.read_text(encoding="utf-8"))
    if list(data.get("features", [])) != list(FEATURES):
        raise ValueError(f"{p} was fitted for other features: refit with python -m qa.eval.rerank_fit")
    abst = data.get("abstention")
    return RerankModel(
        int(data["n"]),
        np.asarray(data["coef"], dtype=np.float64),
        float(data["bias"]),
        float(data["threshold"]),
        AbstentionModel.from_json(abst) if abst else None,
        data.get("info", {}),
    )
