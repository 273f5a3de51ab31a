"""Machine learning: labels, walk-forward splits, estimators, metrics and the walk-forward run.

- ``labels``: fixed-horizon direction and triple-barrier labels, net of fees, with label ends.
- ``splits``: purged, embargoed walk-forward folds by time.
- ``estimators``: LightGBM, logistic regression and random forest behind one interface, with
  probabilities calibrated on the latest held-out training rows.
- ``metrics``: classification metrics and the economic score of trading the predictions.
- ``walkforward``: runs it all per fold and model, and fits the final models.
- ``training``, ``tracking``, ``registry``: one training end to end, MLflow, promotion.

Imports `tradeflow`, never `prefect`; MLflow stays inside ``tracking``.
"""
