"""How lucky a backtest was: Monte Carlo by trade reshuffling and by block bootstrap.

Two resamplings, each compounding from an equity of 1:

* **Trade reshuffling** keeps the trades and changes their order: each scenario is a random
  permutation of the per-trade returns on equity. The final return is the same in every scenario
  (a product does not depend on the order of its factors); the path, hence the maximum drawdown,
  does. It answers "how deep could the drawdown have been with the same trades?".
* **Block bootstrap** rebuilds a history of the original length from circular blocks of
  ``block_length`` consecutive bar returns drawn with replacement, which keeps the short-range
  dependence (volatility clusters) inside each block. Final return and drawdown both vary.

Scenarios are computed in vectorised chunks of ``chunk`` rows, so memory stays at a few
``chunk x len(returns)`` arrays whatever the number of scenarios. Each method draws from its own
generator spawned from ``np.random.default_rng(seed)``, and numpy's generators consume their
stream the same way however a draw is split into calls, so the result depends on the seed only,
not on ``chunk``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "FINAL_RETURN_PERCENTILES",
    "DRAWDOWN_PERCENTILES",
    "VAR_LEVELS",
    "MonteCarloResult",
    "conditional_value_at_risk",
    "monte_carlo",
    "path_max_drawdowns",
    "resample_returns",
    "value_at_risk",
]

#: The percentiles of the bootstrap's final return in :meth:`MonteCarloResult.summary`.
FINAL_RETURN_PERCENTILES = (5, 25, 50, 75, 95)
#: The percentiles of both methods' maximum drawdown in :meth:`MonteCarloResult.summary`.
DRAWDOWN_PERCENTILES = (50, 95, 99)
#: The confidence levels of the value at risk and conditional value at risk, in percent.
VAR_LEVELS = (95, 99)


@dataclass(frozen=True, eq=False)
class MonteCarloResult:
    """The scenarios of :func:`monte_carlo`, one value per scenario and method.

    An empty input is a strategy that never moved: with no trade returns every reshuffled
    scenario has a final return and a drawdown of 0, and likewise the bootstrap with no bar
    returns.

    Attributes:
        scenarios: The number of scenarios of each method.
        trades: The number of trade returns reshuffled.
        bars: The number of bar returns bootstrapped.
        block_length: The bootstrap's block length in bars.
        seed: The seed of the random generator.
        drawdown_halt: The drawdown (a positive fraction) at which trading would be halted.
        seconds: Wall-clock time of the simulation.
        reshuffle_max_drawdown: Maximum drawdown of each reshuffled path, a positive fraction
            (the starting equity of 1 counts as a high).
        reshuffle_final_return: Final return of each reshuffled path. Compounding does not depend
            on the order, so every scenario holds the same value up to floating-point rounding;
            it is kept for completeness and as a check.
        bootstrap_final_return: Final return of each block-bootstrapped path.
        bootstrap_max_drawdown: Maximum drawdown of each block-bootstrapped path.
    """

    scenarios: int
    trades: int
    bars: int
    block_length: int
    seed: int
    drawdown_halt: float
    seconds: float
    reshuffle_max_drawdown: npt.NDArray[np.float64]
    reshuffle_final_return: npt.NDArray[np.float64]
    bootstrap_final_return: npt.NDArray[np.float64]
    bootstrap_max_drawdown: npt.NDArray[np.float64]

    def summary(self) -> dict[str, float]:
        """Return the distributions' percentiles, tail risk and halt probabilities.

        Keys: ``bootstrap_final_return_p{5,25,50,75,95}``; ``bootstrap_var_{95,99}`` and
        ``bootstrap_cvar_{95,99}`` (see :func:`value_at_risk`); ``reshuffle_final_return`` (its
        median; every scenario is equal); ``{reshuffle,bootstrap}_max_drawdown_p{50,95,99}``;
        ``{reshuffle,bootstrap}_halt_probability`` (share of scenarios whose maximum drawdown
        reaches ``drawdown_halt``); and ``seconds``. Everything is NaN without scenarios.
        """
        out: dict[str, float] = {}
        for percentile in FINAL_RETURN_PERCENTILES:
            out[f"bootstrap_final_return_p{percentile}"] = _percentile(
                self.bootstrap_final_return, percentile
            )
        for level in VAR_LEVELS:
            out[f"bootstrap_var_{level}"] = value_at_risk(self.bootstrap_final_return, level / 100)
            out[f"bootstrap_cvar_{level}"] = conditional_value_at_risk(
                self.bootstrap_final_return, level / 100
            )
        out["reshuffle_final_return"] = _percentile(self.reshuffle_final_return, 50)
        for method, drawdowns in (
            ("reshuffle", self.reshuffle_max_drawdown),
            ("bootstrap", self.bootstrap_max_drawdown),
        ):
            for percentile in DRAWDOWN_PERCENTILES:
                out[f"{method}_max_drawdown_p{percentile}"] = _percentile(drawdowns, percentile)
            out[f"{method}_halt_probability"] = (
                float(np.mean(drawdowns >= self.drawdown_halt)) if drawdowns.size else math.nan
            )
        out["seconds"] = self.seconds
        return out

    def to_dict(self) -> dict[str, float | int]:
        """Return the parameters and the :meth:`summary` as plain values (not the raw scenarios)."""
        parameters: dict[str, float | int] = {
            "scenarios": self.scenarios,
            "trades": self.trades,
            "bars": self.bars,
            "block_length": self.block_length,
            "seed": self.seed,
            "drawdown_halt": self.drawdown_halt,
        }
        return parameters | self.summary()


def monte_carlo(
    trade_returns: npt.ArrayLike,
    bar_returns: npt.ArrayLike,
    *,
    scenarios: int = 10_000,
    block_length: int = 24,
    drawdown_halt: float = 0.20,
    seed: int = 7,
    chunk: int = 1000,
) -> MonteCarloResult:
    """Return ``scenarios`` trade reshufflings and block bootstraps of a backtest.

    Args:
        trade_returns: Each trade's return on equity (its pnl over the equity before it), in
            order.
        bar_returns: The equity's simple return per bar (or per bucket, see
            :func:`resample_returns`), in order.
        scenarios: The number of scenarios of each method.
        block_length: Consecutive bar returns per bootstrap block; blocks wrap around the end.
        drawdown_halt: The drawdown at which trading would halt, for the halt probabilities.
        seed: Seed of ``np.random.default_rng``; the same seed gives the same scenarios.
        chunk: Scenarios computed at once; bounds memory, never changes the result.

    Raises:
        ValueError: If a count is out of range or a return is not finite.
    """
    started = time.perf_counter()
    trades = _returns(trade_returns, "trade_returns")
    bars = _returns(bar_returns, "bar_returns")
    if scenarios < 0:
        raise ValueError("scenarios must not be negative")
    if block_length < 1 or chunk < 1:
        raise ValueError("block_length and chunk must be at least 1")
    reshuffle_generator, bootstrap_generator = np.random.default_rng(seed).spawn(2)
    reshuffle_drawdown = np.zeros(scenarios)
    reshuffle_final = np.zeros(scenarios)
    bootstrap_drawdown = np.zeros(scenarios)
    bootstrap_final = np.zeros(scenarios)
    for first in range(0, scenarios, chunk):
        rows = slice(first, min(first + chunk, scenarios))
        count = rows.stop - rows.start
        if trades.size:
            shuffled = reshuffle_generator.permuted(np.broadcast_to(trades, (count, trades.size)), axis=1)
            reshuffle_final[rows], reshuffle_drawdown[rows] = _compound(shuffled)
        if bars.size:
            sampled = bars[_block_indices(bootstrap_generator, bars.size, block_length, count)]
            bootstrap_final[rows], bootstrap_drawdown[rows] = _compound(sampled)
    return MonteCarloResult(
        scenarios=scenarios,
        trades=int(trades.size),
        bars=int(bars.size),
        block_length=block_length,
        seed=seed,
        drawdown_halt=drawdown_halt,
        seconds=time.perf_counter() - started,
        reshuffle_max_drawdown=reshuffle_drawdown,
        reshuffle_final_return=reshuffle_final,
        bootstrap_final_return=bootstrap_final,
        bootstrap_max_drawdown=bootstrap_drawdown,
    )


def resample_returns(equity: pd.Series, minutes: int = 60) -> npt.NDArray[np.float64]:
    """Return the equity's simple return per bucket of ``minutes``, to keep a bootstrap small.

    Buckets are aligned to the Unix epoch (hours start on the hour). Each bucket's return is its
    last equity over the previous bucket's last, and the first bucket's is over the first bar's
    equity, so the returns compound to exactly the equity's total return. Buckets without bars
    are skipped: a gap's move lands in the next bucket with bars.

    Args:
        equity: Equity per bar, indexed by bar time in milliseconds, increasing.
        minutes: The bucket length.

    Returns:
        One return per bucket, in time order; empty with fewer than two bars.

    Raises:
        ValueError: If ``minutes`` is not positive.
    """
    if minutes < 1:
        raise ValueError("minutes must be at least 1")
    values = equity.to_numpy(dtype=np.float64)
    if values.size < 2:
        return np.zeros(0)
    buckets = np.asarray(equity.index, dtype=np.int64) // (minutes * 60_000)
    last = np.flatnonzero(np.append(buckets[1:] != buckets[:-1], True))
    closes = values[last]
    # The first bucket's return is over the first bar, unless that bucket holds the first bar only.
    anchors = closes if last[0] == 0 else np.concatenate(([values[0]], closes))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(anchors[1:] / anchors[:-1] - 1.0, dtype=np.float64)


def path_max_drawdowns(returns: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Return the maximum drawdown of each row of returns compounded from an equity of 1.

    The starting equity of 1 counts as a high, so a first loss is a drawdown.

    Args:
        returns: Simple returns, one path per row.

    Returns:
        One positive fraction per row (0 for a path that never fell).
    """
    return _compound(np.array(returns, dtype=np.float64, ndmin=2))[1]


def value_at_risk(final_returns: npt.ArrayLike, confidence: float) -> float:
    """Return the value at risk of ``final_returns`` at ``confidence``, as a positive loss.

    The ``confidence`` quantile of the losses ``-final_returns`` (linear interpolation): at 95 %,
    the loss exceeded in 5 % of scenarios. Negative when even that tail gains; NaN without values.
    """
    losses = -np.asarray(final_returns, dtype=np.float64)
    if losses.size == 0:
        return math.nan
    return float(np.quantile(losses, confidence)) + 0.0  # + 0.0: no "-0.0" for a zero loss


def conditional_value_at_risk(final_returns: npt.ArrayLike, confidence: float) -> float:
    """Return the conditional value at risk (expected shortfall) of ``final_returns``.

    The mean of the losses ``-final_returns`` at or beyond the :func:`value_at_risk`, as a
    positive loss; NaN without values.
    """
    losses = -np.asarray(final_returns, dtype=np.float64)
    if losses.size == 0:
        return math.nan
    threshold = np.quantile(losses, confidence)
    return float(losses[losses >= threshold].mean()) + 0.0


def _returns(values: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    """Return ``values`` as a one-dimensional float array, checking every value is finite."""
    array = np.asarray(values, dtype=np.float64).ravel()
    if not bool(np.all(np.isfinite(array))):
        raise ValueError(f"{name} must be finite")
    return array


def _block_indices(
    generator: np.random.Generator, length: int, block_length: int, count: int
) -> npt.NDArray[np.intp]:
    """Return ``count`` rows of ``length`` indices made of circular blocks with random starts."""
    blocks = -(-length // block_length)
    starts = generator.integers(0, length, size=(count, blocks))
    indices = (starts[:, :, np.newaxis] + np.arange(block_length)).reshape(count, -1)[:, :length]
    return np.asarray(indices % length, dtype=np.intp)


def _compound(
    returns: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Return the final return and maximum drawdown of each row compounded from an equity of 1.

    Overwrites ``returns`` with the equity path, to keep a chunk's memory at two such arrays.
    """
    if returns.shape[1] == 0:
        zeros = np.zeros(returns.shape[0])
        return zeros, zeros.copy()
    path = np.add(returns, 1.0, out=returns)
    np.cumprod(path, axis=1, out=path)
    highs = np.maximum.accumulate(path, axis=1)
    np.maximum(highs, 1.0, out=highs)
    np.divide(path, highs, out=highs)
    return path[:, -1] - 1.0, 1.0 - highs.min(axis=1)


def _percentile(values: npt.NDArray[np.float64], percentile: float) -> float:
    """Return the ``percentile`` of ``values`` (linear interpolation); NaN without values."""
    return float(np.percentile(values, percentile)) if values.size else math.nan
