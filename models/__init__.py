"""Machine learning: estimator specs, labels, walk-forward splits, training and evaluation.

Imports `tradeflow`, never `prefect`. Filled in by the model-training work; empty for now.
"""
