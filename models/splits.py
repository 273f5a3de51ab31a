"""Walk-forward splits by time, with purging and an embargo.

The data is cut by **time**, never by row: with several symbols the rows at one timestamp are
interleaved, and all of them land on the same side of every boundary. The span from the first to
the last timestamp is divided into an initial training period followed by ``n_folds``
consecutive, non-overlapping test periods. Fold ``k`` tests on its period and trains only on
data before it: everything since the start (``expanding``) or a window of fixed length
(``sliding``).

Two rules keep the future out of training:

- **Purge.** A label at ``t`` is decided by the data up to ``label_end`` (see
  :mod:`models.labels`). A training row whose window ``[t, label_end]`` reaches into the test
  period, ``label_end >= test_start``, learnt from prices the test rows are scored on; it is
  dropped. Because training rows all sit before ``test_start``, that test is exact: no kept
  training window overlaps the test period.
- **Embargo.** Training rows with ``t`` in ``[test_start - embargo, test_start)`` are dropped as
  well. In the classic purged k-fold (López de Prado) the embargo follows the test fold, because
  training rows just after it carry features computed from test-period prices. A walk-forward
  never trains after its test fold, so the embargo sits before it instead: rolling features and
  serially correlated returns make the last rows before ``test_start`` near-copies of the first
  test rows even when their labels end in time, and a gap also mirrors the delay between
  training a model and trading it. Training after the test fold is not supported, so no
  embargo after it is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tradeflow.timeframes import MINUTE_MS

__all__ = ["Fold", "WalkForwardSpec", "walk_forward_splits"]


@dataclass(frozen=True)
class WalkForwardSpec:
    """How to cut a time span into walk-forward folds.

    Attributes:
        n_folds: The number of consecutive test periods.
        mode: ``expanding`` trains on everything before the test period; ``sliding`` on the
            ``train_size_minutes`` before it.
        min_train_fraction: The share of the span before the first test period, when
            ``test_size_minutes`` is not given; the rest is split into ``n_folds`` equal periods.
        train_size_minutes: The sliding window's length; by default the initial training period.
            Ignored by ``expanding``.
        test_size_minutes: Each test period's length; the test periods then end the span and the
            initial training period is whatever precedes them.
        embargo_minutes: Training rows this close before a test period are dropped.
        purge: Drop training rows whose label window reaches the test period. Turn it off only to
            measure what leakage does.
    """

    n_folds: int = 4
    mode: Literal["expanding", "sliding"] = "expanding"
    min_train_fraction: float = 0.5
    train_size_minutes: int | None = None
    test_size_minutes: int | None = None
    embargo_minutes: int = 0
    purge: bool = True

    def __post_init__(self) -> None:
        if self.n_folds < 1:
            raise ValueError(f"n_folds must be at least 1, got {self.n_folds}")
        if self.mode not in ("expanding", "sliding"):
            raise ValueError(f"mode must be 'expanding' or 'sliding', got {self.mode!r}")
        if not 0.0 < self.min_train_fraction < 1.0:
            raise ValueError(f"min_train_fraction must be in (0, 1), got {self.min_train_fraction}")
        if self.train_size_minutes is not None and self.train_size_minutes <= 0:
            raise ValueError(f"train_size_minutes must be positive, got {self.train_size_minutes}")
        if self.test_size_minutes is not None and self.test_size_minutes <= 0:
            raise ValueError(f"test_size_minutes must be positive, got {self.test_size_minutes}")
        if self.embargo_minutes < 0:
            raise ValueError(f"embargo_minutes must not be negative, got {self.embargo_minutes}")

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as plain values (for run parameters and reports)."""
        return {
            "n_folds": self.n_folds,
            "mode": self.mode,
            "min_train_fraction": self.min_train_fraction,
            "train_size_minutes": self.train_size_minutes,
            "test_size_minutes": self.test_size_minutes,
            "embargo_minutes": self.embargo_minutes,
            "purge": self.purge,
        }


@dataclass(frozen=True, eq=False)
class Fold:
    """One walk-forward fold: row positions and the time bounds they were chosen by.

    All bounds are UTC milliseconds and half-open: training rows have ``train_start <= t <
    train_end`` (``train_end`` is ``test_start`` minus the embargo) and test rows ``test_start
    <= t < test_end``.

    Attributes:
        index: The fold's number, 0 for the earliest test period.
        train_indices: Positions (into the arrays given to ``walk_forward_splits``) of the
            training rows, ascending.
        test_indices: Positions of the test rows, ascending.
        train_start: The training window's first time.
        train_end: The training window's end (exclusive).
        test_start: The test period's first time.
        test_end: The test period's end (exclusive).
        purged: Training-window rows dropped because their label reached the test period.
        embargoed: Rows dropped because they fell in the embargo.
    """

    index: int
    train_indices: npt.NDArray[np.int64]
    test_indices: npt.NDArray[np.int64]
    train_start: int
    train_end: int
    test_start: int
    test_end: int
    purged: int
    embargoed: int

    def to_dict(self) -> dict[str, int]:
        """Return the bounds and row counts (not the indices) as plain values."""
        return {
            "fold": self.index,
            "train_rows": int(self.train_indices.size),
            "test_rows": int(self.test_indices.size),
            "train_start": self.train_start,
            "train_end": self.train_end,
            "test_start": self.test_start,
            "test_end": self.test_end,
            "purged": self.purged,
            "embargoed": self.embargoed,
        }


def _test_boundaries(first: int, end: int, spec: WalkForwardSpec) -> list[int]:
    """Return the ``n_folds + 1`` boundaries of the test periods within ``[first, end)``."""
    if spec.test_size_minutes is not None:
        length = spec.test_size_minutes * MINUTE_MS
        start = end - spec.n_folds * length
        if start <= first:
            raise ValueError(
                f"{spec.n_folds} test periods of {spec.test_size_minutes} minutes leave no training "
                "data before the first one"
            )
        return [start + k * length for k in range(spec.n_folds)] + [end]
    # Boundaries fall on whole minutes from the first row, so folds start at a candle's open.
    start = first + _whole_minutes((end - first) * spec.min_train_fraction)
    return [start + _whole_minutes(k * (end - start) / spec.n_folds) for k in range(spec.n_folds)] + [end]


def _whole_minutes(duration_ms: float) -> int:
    """Return ``duration_ms`` rounded down to whole minutes, in ms."""
    return int(duration_ms // MINUTE_MS) * MINUTE_MS


def walk_forward_splits(
    timestamps: npt.ArrayLike, label_end: npt.ArrayLike, spec: WalkForwardSpec
) -> list[Fold]:
    """Return the walk-forward folds of the rows at ``timestamps``.

    Args:
        timestamps: Each row's time (int UTC ms), in any order; rows of several symbols may share
            a timestamp.
        label_end: Each row's label end (ms), at or after its timestamp.
        spec: How to cut the span.

    Returns:
        ``spec.n_folds`` folds in time order. Test periods are consecutive and disjoint; every
        training row precedes its fold's test period, keeps its label window out of it (when
        ``spec.purge``) and lies outside the embargo.

    Raises:
        ValueError: If the arrays disagree in length, a label ends before its row, there are too
            few distinct times, or a fold ends up with no training or no test rows.
    """
    times = np.asarray(timestamps, dtype=np.int64)
    ends = np.asarray(label_end, dtype=np.int64)
    if times.ndim != 1 or times.shape != ends.shape:
        raise ValueError("timestamps and label_end must be one-dimensional and of equal length")
    if times.size == 0:
        raise ValueError("no rows to split")
    if bool(np.any(ends < times)):
        raise ValueError("a label ends before its row's timestamp")
    first = int(times.min())
    # The span ends when the last one-minute candle closes.
    end = int(times.max()) + MINUTE_MS
    boundaries = _test_boundaries(first, end, spec)
    embargo = spec.embargo_minutes * MINUTE_MS
    # The sliding window's length; by default the initial training period.
    window = spec.train_size_minutes * MINUTE_MS if spec.train_size_minutes else boundaries[0] - first

    folds = []
    for index in range(spec.n_folds):
        test_start, test_end = boundaries[index], boundaries[index + 1]
        train_start = first if spec.mode == "expanding" else test_start - window
        train_end = test_start - embargo
        in_window = (times >= train_start) & (times < test_start)
        embargoed = in_window & (times >= train_end)
        purged = in_window & ~embargoed & (ends >= test_start) if spec.purge else np.zeros_like(in_window)
        train = np.flatnonzero(in_window & ~embargoed & ~purged).astype(np.int64)
        test = np.flatnonzero((times >= test_start) & (times < test_end)).astype(np.int64)
        if test.size == 0:
            raise ValueError(f"fold {index} has no test rows in [{test_start}, {test_end})")
        if train.size == 0:
            raise ValueError(
                f"fold {index} has no training rows before {test_start} after purging and the embargo"
            )
        folds.append(
            Fold(
                index=index,
                train_indices=train,
                test_indices=test,
                train_start=max(train_start, first),
                train_end=train_end,
                test_start=test_start,
                test_end=test_end,
                purged=int(purged.sum()),
                embargoed=int(embargoed.sum()),
            )
        )
    return folds
