"""Walk-forward splits: purge, embargo, order and disjointness, for any data and spec."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.splits import Fold, WalkForwardSpec, walk_forward_splits

MINUTE = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % MINUTE


def check_fold_invariants(
    folds: list[Fold], times: np.ndarray, ends: np.ndarray, spec: WalkForwardSpec
) -> None:
    """Every rule the splits promise, checked from the raw arrays."""
    assert len(folds) == spec.n_folds
    embargo = spec.embargo_minutes * MINUTE
    for k, fold in enumerate(folds):
        train, test = fold.train_indices, fold.test_indices
        assert fold.index == k
        assert train.size > 0 and test.size > 0
        assert np.intersect1d(train, test).size == 0
        # Train strictly before test, outside the embargo.
        assert times[train].max() < fold.test_start
        assert times[train].max() < fold.test_start - embargo
        assert times[train].min() >= fold.train_start
        if spec.purge:
            # No kept training label window [t, label_end] reaches the test period.
            assert ends[train].max() < fold.test_start
        # The test fold is exactly the rows in its period.
        expected_test = np.flatnonzero((times >= fold.test_start) & (times < fold.test_end))
        np.testing.assert_array_equal(test, expected_test)
        # Nothing eligible was dropped: the training set is exactly what the rules allow.
        window_start = (
            times.min() if spec.mode == "expanding" else fold.test_start - window_length(folds, times, spec)
        )
        eligible = (times >= window_start) & (times < fold.test_start - embargo)
        if spec.purge:
            eligible &= ends < fold.test_start
        np.testing.assert_array_equal(train, np.flatnonzero(eligible))
    for earlier, later in itertools.pairwise(folds):
        # Consecutive, in time order, disjoint.
        assert earlier.test_end == later.test_start
        assert earlier.test_start < later.test_start
        assert np.intersect1d(earlier.test_indices, later.test_indices).size == 0
    # The test periods cover everything from the first test time to the end.
    tested = np.concatenate([fold.test_indices for fold in folds])
    np.testing.assert_array_equal(np.sort(tested), np.flatnonzero(times >= folds[0].test_start))


def window_length(folds: list[Fold], times: np.ndarray, spec: WalkForwardSpec) -> int:
    if spec.train_size_minutes is not None:
        return spec.train_size_minutes * MINUTE
    return folds[0].test_start - int(times.min())


@st.composite
def split_cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, WalkForwardSpec]:
    minutes = draw(st.lists(st.integers(0, 1500), min_size=40, max_size=300, unique=True))
    symbols = draw(st.integers(1, 3))
    max_horizon = draw(st.integers(0, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # Every symbol has a row at each chosen minute, interleaved in a random row order.
    times = np.repeat(T0 + np.asarray(minutes, dtype=np.int64) * MINUTE, symbols)
    order = rng.permutation(times.size)
    times = times[order]
    ends = times + rng.integers(0, max_horizon + 1, size=times.size) * MINUTE
    use_test_size = draw(st.booleans())
    n_folds = draw(st.integers(1, 5))
    spec = WalkForwardSpec(
        n_folds=n_folds,
        mode=draw(st.sampled_from(["expanding", "sliding"])),
        min_train_fraction=draw(st.floats(0.2, 0.8)),
        train_size_minutes=draw(st.none() | st.integers(100, 1500)),
        test_size_minutes=draw(st.integers(20, 1000 // n_folds)) if use_test_size else None,
        embargo_minutes=draw(st.integers(0, 120)),
        purge=draw(st.booleans()),
    )
    return times, ends, spec


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(split_cases())
def test_no_training_label_overlaps_its_test_fold_and_the_folds_walk_forward(
    case: tuple[np.ndarray, np.ndarray, WalkForwardSpec],
) -> None:
    times, ends, spec = case
    try:
        folds = walk_forward_splits(times, ends, spec)
    except ValueError as error:
        # Refusing is allowed only for a fold the rules leave empty; check that it really is.
        message = str(error)
        empty_test = re.search(r"no test rows in \[(\d+), (\d+)\)", message)
        if empty_test:
            start, end = int(empty_test[1]), int(empty_test[2])
            assert not np.any((times >= start) & (times < end))
        else:
            assert "no training rows" in message or "leave no training" in message
        return
    check_fold_invariants(folds, times, ends, spec)


def test_rows_of_several_symbols_at_one_time_stay_together() -> None:
    minutes = np.arange(100)
    times = np.concatenate([T0 + minutes * MINUTE] * 3)  # three symbols, one block each
    ends = times + 5 * MINUTE
    folds = walk_forward_splits(times, ends, WalkForwardSpec(n_folds=2, min_train_fraction=0.5))
    for fold in folds:
        for indices in (fold.train_indices, fold.test_indices):
            assert np.bincount(indices // 100, minlength=3).tolist() == [indices.size // 3] * 3
            in_block = [set(indices[indices // 100 == s] % 100) for s in range(3)]
            assert in_block[0] == in_block[1] == in_block[2]


def test_purge_and_embargo_counts_on_a_hand_made_case() -> None:
    # Minutes 0..99, labels end 10 minutes later; two folds starting at minutes 50 and 75.
    times = T0 + np.arange(100) * MINUTE
    ends = times + 10 * MINUTE
    spec = WalkForwardSpec(n_folds=2, min_train_fraction=0.5, embargo_minutes=3)
    first, second = walk_forward_splits(times, ends, spec)
    assert (first.test_start - T0) // MINUTE == 50
    assert (second.test_start - T0) // MINUTE == 75
    # Minutes 47-49 embargoed; of 0-46, labels ending at or after minute 50 (t >= 40) purged.
    assert first.embargoed == 3
    assert first.purged == 7
    assert first.train_indices.tolist() == list(range(40))
    assert first.test_indices.tolist() == list(range(50, 75))
    assert second.train_indices.tolist() == list(range(65))
    without_purge = walk_forward_splits(
        times, ends, WalkForwardSpec(n_folds=2, embargo_minutes=3, purge=False)
    )
    assert without_purge[0].train_indices.tolist() == list(range(47))


def test_sliding_window_keeps_only_the_recent_past() -> None:
    times = T0 + np.arange(200) * MINUTE
    folds = walk_forward_splits(
        times, times, WalkForwardSpec(n_folds=2, mode="sliding", test_size_minutes=50, train_size_minutes=30)
    )
    assert [fold.train_indices.tolist() for fold in folds] == [list(range(70, 100)), list(range(120, 150))]


def test_a_fold_that_purging_empties_is_refused() -> None:
    times = T0 + np.arange(20) * MINUTE
    ends = times + 30 * MINUTE  # every label reaches past the whole span
    with pytest.raises(ValueError, match="no training rows"):
        walk_forward_splits(times, ends, WalkForwardSpec(n_folds=2))
    with pytest.raises(ValueError, match="before its row"):
        walk_forward_splits(times, times - 1, WalkForwardSpec(n_folds=2))
    with pytest.raises(ValueError, match="n_folds"):
        WalkForwardSpec(n_folds=0)
