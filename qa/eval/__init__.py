"""Evaluation harness: `python -m qa.eval` (SQuAD/ReQA, CANARD, seeds, real news)."""
