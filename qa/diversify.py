"""Maximal marginal relevance: keep the top k from being k wordings of one fact.

Dedup already merges identical and near-identical sentences at build time;
this handles the softer case of different sentences that say the same thing
(two outlets paraphrasing one statement).  `python -m qa.eval squad` measures
it against plain ranking, and the fitted `mmr_lambda` picks the trade-off.
"""

from __future__ import annotations

import numpy as np

POOL = 30  # only the best candidates compete for the top k


def mmr(prob: np.ndarray, vecs: np.ndarray, k: int, lam: float) -> list[int]:
    """Positions (into `prob`, which is sorted best first) of the k answers.

    lam = 1.0 is plain ranking; lower values trade relevance for novelty
    (each next pick is penalised by its cosine to the closest one chosen).
    """
    pool = list(range(min(len(prob), POOL)))
    if lam >= 1.0 or len(pool) <= 1:
        return pool[:k]
    chosen: list[int] = [pool.pop(0)]
    while pool and len(chosen) < k:
        sims = vecs[pool] @ vecs[chosen].T
        score = lam * prob[pool] - (1 - lam) * sims.max(axis=1)
        chosen.append(pool.pop(int(np.argmax(score))))
    return chosen


def redundancy(vecs: np.ndarray) -> float:
    """Mean pairwise cosine of a set of answers (lower = more diverse)."""
    n = len(vecs)
    if n < 2:
        return 0.0
    sims = vecs @ vecs.T
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))
