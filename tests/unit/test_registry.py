"""The promotion rule and live accuracy: pure decisions with their evidence."""

from __future__ import annotations

import math

from models.registry import Candidate, beats, best, decide, live_status


def candidate(name: str, version: str, auc: float, spec: str | None = None, **scores: float) -> Candidate:
    return Candidate(name, version, spec or f"{name}-spec", {"roc_auc": auc, **scores})


def test_the_first_training_promotes_its_best_model():
    decision = decide(
        [candidate("logistic", "1", 0.52), candidate("lightgbm", "2", 0.58)], None, "roc_auc", 0.01
    )
    assert decision.promote and decision.challenger == "2" and decision.champion_before is None


def test_a_challenger_must_beat_the_champions_model_on_the_same_folds_by_the_margin():
    run = [candidate("logistic", "4", 0.560, spec="L"), candidate("lightgbm", "5", 0.566, spec="G")]
    not_enough = decide(run, ("1", "L"), "roc_auc", 0.01)
    assert not not_enough.promote and not_enough.champion_score == 0.560 and not_enough.challenger == "5"
    assert "does not beat" in not_enough.reason
    enough = decide(run, ("1", "L"), "roc_auc", 0.005)
    assert enough.promote and enough.challenger_score == 0.566


def test_an_incomparable_champion_is_kept_and_lower_is_better_metrics_are_respected():
    run = [candidate("lightgbm", "7", 0.9, spec="G2")]
    kept = decide(run, ("3", "G1"), "roc_auc", 0.0)
    assert not kept.promote and kept.champion_score is None and "cannot be compared" in kept.reason
    assert beats(0.60, 0.65, "log_loss", 0.01) and not beats(0.60, 0.605, "log_loss", 0.01)
    assert (
        best(
            [candidate("a", "1", 0.5, log_loss=0.7), candidate("b", "2", 0.5, log_loss=0.6)], "log_loss"
        ).name
        == "b"
    )
    assert not beats(math.nan, 0.5, "roc_auc", 0.0)


def test_the_champions_own_model_staying_best_is_not_a_promotion():
    run = [candidate("lightgbm", "9", 0.6, spec="G"), candidate("logistic", "10", 0.55, spec="L")]
    decision = decide(run, ("2", "G"), "roc_auc", 0.0)
    assert not decision.promote and "still the best" in decision.reason


def test_live_hit_rate_needs_a_full_window_before_it_flags():
    labels = [1, 0, 1, 1, 0, 0, 1, 0, 1, 0]
    probabilities = [0.6, 0.7, 0.4, 0.8, 0.3, 0.6, 0.2, 0.4, 0.9, 0.45]
    status = live_status(labels, probabilities, floor=0.65, window=10)
    assert (status.predictions, status.hits) == (10, 6) and status.hit_rate == 0.6
    assert status.enough and status.below_floor
    assert not live_status(labels, probabilities, floor=0.55, window=10).below_floor
    short = live_status(labels[:5], probabilities[:5], floor=0.65, window=10)
    assert short.hit_rate == 0.6 and not short.enough and not short.below_floor
    assert live_status(labels, probabilities, floor=0.55, window=4).hits == 3  # only the newest four
