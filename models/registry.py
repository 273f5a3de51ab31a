"""Champion and challenger: who serves, and the rule that may change it.

A training run evaluates every configured model on the same walk-forward folds. Its best model
(by the promotion metric, out of sample) is the challenger. It replaces the champion only when it
beats the champion *on the same folds* by the configured margin: the champion's model (same
model, parameters, feature set and label: its ``spec_id``) must have been evaluated in this run
too. When it was not (the feature set or the label changed), the two cannot be compared fairly,
so the champion stays and the newcomer is only the challenger, until a person promotes it
(``tradeflow models promote``), which is recorded with its reason.

A model can also be *disabled* (its live hit rate fell under the floor); the signal stage then
runs without it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: The registry aliases.
CHAMPION_ALIAS, CHALLENGER_ALIAS = "champion", "challenger"

#: Metrics where lower is better; the others are higher-is-better.
LOWER_IS_BETTER = frozenset({"log_loss", "brier"})


@dataclass(frozen=True)
class Candidate:
    """One model of a training run, as the promotion rule sees it."""

    name: str
    version: str
    spec_id: str
    scores: Mapping[str, float]  # out-of-sample metrics over this run's folds


@dataclass(frozen=True)
class Decision:
    """The outcome of the promotion rule, with its evidence."""

    promote: bool
    challenger: str  # version
    champion_before: str | None  # version
    metric: str
    margin: float
    challenger_score: float
    champion_score: float | None  # the champion's model on the same folds, when comparable
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Return plain data (for the audit entry and the artifact)."""
        return asdict(self)


def _score(candidate: Candidate, metric: str) -> float:
    value = candidate.scores.get(metric)
    return float("nan") if value is None else float(value)


def beats(challenger: float, champion: float, metric: str, margin: float) -> bool:
    """Return whether ``challenger`` beats ``champion`` on ``metric`` by at least ``margin``."""
    if math.isnan(challenger) or math.isnan(champion):
        return False
    if metric in LOWER_IS_BETTER:
        return challenger <= champion - margin
    return challenger >= champion + margin


def best(candidates: Sequence[Candidate], metric: str) -> Candidate:
    """Return the best candidate on ``metric`` (NaN scores lose)."""

    def key(candidate: Candidate) -> float:
        value = _score(candidate, metric)
        if math.isnan(value):
            return -math.inf
        return -value if metric in LOWER_IS_BETTER else value

    return max(candidates, key=key)


def decide(
    candidates: Sequence[Candidate],
    champion: tuple[str, str] | None,
    metric: str,
    margin: float,
) -> Decision:
    """Apply the promotion rule.

    Args:
        candidates: This run's models, all evaluated on the same folds.
        champion: ``(version, spec_id)`` of the current champion, or None.
        metric: The out-of-sample metric to compare.
        margin: How much better (absolute) the challenger must be.
    """
    top = best(candidates, metric)
    score = _score(top, metric)
    if champion is None:
        return Decision(True, top.version, None, metric, margin, score, None,
                        f"no champion yet: {top.name} (v{top.version}) is the best of this run")  # fmt: skip
    version, spec_id = champion
    same = [c for c in candidates if c.spec_id == spec_id]
    if not same:
        return Decision(
            False, top.version, version, metric, margin, score, None,
            f"the champion (v{version}) was not evaluated on these folds (its model, feature set or label "
            "differs), so the two cannot be compared fairly; the newcomer stays challenger until a person "
            "promotes it",
        )  # fmt: skip
    baseline = _score(same[0], metric)
    if top.spec_id == spec_id:
        reason = f"the champion's own model is still the best on these folds ({metric} {score:.4f})"
        return Decision(False, top.version, version, metric, margin, score, baseline, reason)
    if beats(score, baseline, metric, margin):
        return Decision(
            True, top.version, version, metric, margin, score, baseline,
            f"{top.name} beats the champion's model on the same folds: {metric} {score:.4f} vs "
            f"{baseline:.4f} (margin {margin:g})",
        )  # fmt: skip
    return Decision(
        False, top.version, version, metric, margin, score, baseline,
        f"{top.name} does not beat the champion's model by the margin: {metric} {score:.4f} vs "
        f"{baseline:.4f} (needs {margin:g})",
    )  # fmt: skip


@dataclass(frozen=True)
class LiveStatus:
    """A model's hit rate on predictions it made after its training data ended."""

    predictions: int
    hits: int
    hit_rate: float
    floor: float
    window: int

    @property
    def enough(self) -> bool:
        """Return whether the window is full (a verdict needs that many predictions)."""
        return self.predictions >= self.window

    @property
    def below_floor(self) -> bool:
        """Return whether the hit rate over a full window is under the floor."""
        return self.enough and self.hit_rate < self.floor

    def to_dict(self) -> dict[str, Any]:
        """Return plain data."""
        return asdict(self) | {"enough": self.enough, "below_floor": self.below_floor}


def live_status(
    labels: Sequence[int], probabilities: Sequence[float], floor: float, window: int
) -> LiveStatus:
    """Return the hit rate of the newest ``window`` predictions (p > 0.5 means "up").

    ``labels`` and ``probabilities`` are in time order; only predictions whose outcome is known
    are passed.
    """
    pairs = list(zip(labels, probabilities, strict=True))[-window:]
    hits = sum(int((p > 0.5) == bool(y)) for y, p in pairs)
    rate = hits / len(pairs) if pairs else float("nan")
    return LiveStatus(len(pairs), hits, rate, floor, window)
