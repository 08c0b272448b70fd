"""Question-level abstention (qa.abstain) with the fitted weights, and on the
real engine over the seeds."""

from __future__ import annotations

import numpy as np
import pytest

from qa.abstain import QUESTION_FEATURES, answer_scores, question_features
from qa.fusion import FEATURES, load_model


def test_scores_keep_the_fused_order_and_the_best_is_p_answerable() -> None:
    prob = np.array([0.2, 0.1, 0.05])
    s = answer_scores(prob, 0.8)
    assert s[0] == pytest.approx(0.8) and list(np.argsort(-s)) == [0, 1, 2]
    assert s[1] == pytest.approx(0.4)  # half the best's fused probability, half its score
    assert len(answer_scores(np.zeros(0), 0.5)) == 0


def test_no_candidates_is_a_question_without_an_answer() -> None:
    model = load_model().abstention
    assert model is not None, "the shipped weights carry an abstention model"
    f = question_features(np.zeros(0), np.zeros((0, len(FEATURES))), "any")
    assert f.shape == (len(QUESTION_FEATURES),)
    assert model.answerable(np.zeros(0), np.zeros((0, len(FEATURES))), "any") < load_model().threshold


def test_more_evidence_means_more_likely_answerable() -> None:
    """The fitted model reads evidence the right way round: the same
    candidates with a stronger best sentence are likelier answered."""
    model = load_model()
    X = np.zeros((3, len(FEATURES)))
    X[:, FEATURES.index("dense")] = [0.3, 0.2, 0.1]
    weak = model.abstention.answerable(np.array([0.05, 0.02, 0.01]), X, "any")
    X2 = X.copy()
    X2[0, FEATURES.index("dense")] = 0.8
    X2[0, FEATURES.index("cov_sent")] = 1.0
    strong = model.abstention.answerable(np.array([0.9, 0.02, 0.01]), X2, "any")
    assert strong > weak and strong >= model.threshold > weak


def test_engine_scores_are_the_abstention_scores(engine) -> None:
    """What ask returns: found exactly when the best score clears the
    threshold, weak exactly below it, scores in the fused order."""
    for q in ("How long did Biden and Netanyahu talk on Sunday?", "What is the capital of France?"):
        res = engine.ask(q, k=5)
        scores = [a.score for a in res.answers]
        assert scores == sorted(scores, reverse=True)
        assert res.found == (scores[0] >= res.threshold)
        assert all(a.weak == (a.score < res.threshold) for a in res.answers)
    assert engine.ask("How long did Biden and Netanyahu talk on Sunday?").found
    assert not engine.ask("What is the capital of France?").found
