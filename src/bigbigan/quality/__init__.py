"""Judging a trained model: the evaluation classifier, metrics and `bigbigan evaluate`."""
