"""Serving the champion: its probabilities on new rows, and its walk-forward predictions.

The signal stage asks for the model that :func:`models.training.serving_version` names (the
champion unless it was disabled); without one it runs on the other feature families alone.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from models.tracking import MlflowTracker
from models.training import serving_version, version_id


def serving(tracker: MlflowTracker) -> tuple[str | None, str | None]:
    """Return the serving version and its audit id (``None, None`` without a usable champion)."""
    version = serving_version(tracker)
    return (version, None if version is None else version_id(tracker, version))


def probabilities(tracker: MlflowTracker, version: str | None, rows: pd.DataFrame) -> dict[str, float | None]:
    """Return the model's probability of a rise for each row's symbol (None without a model).

    Rows lacking any of the model's features get None rather than a guess.
    """
    if version is None or rows.empty:
        return {str(symbol): None for symbol in rows.get("symbol", [])}
    model = tracker.load_version(version)
    columns = list(model.feature_names_in_)
    missing = [column for column in columns if column not in rows.columns]
    if missing:
        return {str(symbol): None for symbol in rows["symbol"]}
    found = model.predict_proba(rows[columns])[:, 1]
    return {str(s): (None if math.isnan(p) else float(p)) for s, p in zip(rows["symbol"], found, strict=True)}


def walk_forward_predictions(tracker: MlflowTracker, version: str | None) -> pd.DataFrame | None:
    """Return the version's out-of-sample walk-forward predictions (None if it has none)."""
    return None if version is None else tracker.oos_predictions(version)


def serving_model(tracker: MlflowTracker) -> dict[str, Any] | None:
    """Return the serving model itself, for the streaming flow's hot path (None without one).

    ``{"model": CalibratedModel, "version": registry version, "version_id": audit id}``.
    """
    version, identifier = serving(tracker)
    if version is None:
        return None
    return {"model": tracker.load_version(version), "version": version, "version_id": identifier}
