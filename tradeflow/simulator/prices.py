"""The shared "true" price path of each symbol, a pure function of absolute UTC time.

Every venue of a cluster derives its prices from these paths, so venues agree closely. A path
is served one UTC day at a time: 1441 log prices at the day's minute boundaries (the last point
is the next day's first), so day blocks join without a jump and can be generated in any order.

Random walk: day-start levels come from a Levy-style midpoint construction over 512-day spans
whose end points are seeded levels around the base price, so any day's level costs nine hashed
draws instead of a sum over all history. Inside a day, fat-tailed one-minute returns with a
seeded per-day volatility regime are shaped into a Brownian bridge between the two day levels.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from tradeflow.simulator import rng
from tradeflow.simulator.cache import LruCache
from tradeflow.simulator.replay import load_recording, palindrome_index
from tradeflow.simulator.spec import SymbolSpec
from tradeflow.simulator.timeframes import DAY_MINUTES, MINUTE_MS

_TOP_SPAN_DAYS = 512
_REGIME_SIGMA = 0.35
_T_DOF = 4.0
_MINUTES_PER_YEAR = 365.0 * DAY_MINUTES

_DAY_CACHE: LruCache[tuple[object, ...], NDArray[np.float64]] = LruCache(maxsize=2048)


class TruePath(Protocol):
    """A deterministic log-price path served one UTC day at a time."""

    def day_log_prices(self, day: int) -> NDArray[np.float64]:
        """Return the 1441 log prices at the minute boundaries of a UTC day (read-only)."""
        ...

    def minute_sigma(self, day: int) -> float:
        """Return the typical std-dev of a one-minute log return on that day."""
        ...


class RandomWalkPath:
    """A seeded random walk around ``base_price`` with daily volatility regimes."""

    def __init__(self, world_seed: int, spec: SymbolSpec) -> None:
        """Build the path of one symbol.

        Args:
            world_seed: Cluster-wide seed shared by all venues.
            spec: The symbol; base_price and annual_volatility shape the walk.
        """
        self._seed = world_seed
        self._spec = spec
        self._log_base = math.log(spec.base_price)
        self._sigma_day = spec.annual_volatility / math.sqrt(365.0)
        self._sigma_minute = spec.annual_volatility / math.sqrt(_MINUTES_PER_YEAR)
        # Levels wander about +-0.5 sigma_annual around the base, so base_price stays meaningful.
        self._sigma_top = 0.5 * spec.annual_volatility
        self._anchor_cache: LruCache[int, float] = LruCache(maxsize=4096)

    def _top_level(self, j: int) -> float:
        return self._sigma_top * rng.normal(self._seed, self._spec.symbol, "top", j)

    def _compute_anchor(self, day: int) -> float:
        span = _TOP_SPAN_DAYS
        j = day // span
        lo, hi = j * span, (j + 1) * span
        v_lo, v_hi = self._top_level(j), self._top_level(j + 1)
        while hi - lo > 1:
            if day == lo:
                return v_lo
            mid = (lo + hi) // 2
            # A Brownian bridge over (hi - lo) days has variance sigma^2 (hi - lo) / 4 mid-way.
            z = rng.normal(self._seed, self._spec.symbol, "bridge", lo, hi)
            v_mid = 0.5 * (v_lo + v_hi) + self._sigma_day * math.sqrt((hi - lo) / 4.0) * z
            if day < mid:
                hi, v_hi = mid, v_mid
            else:
                lo, v_lo = mid, v_mid
        return v_lo if day == lo else v_hi

    def anchor(self, day: int) -> float:
        """Return the log price at the start of a UTC day."""
        return self._log_base + self._anchor_cache.get_or_create(day, lambda: self._compute_anchor(day))

    def regime(self, day: int) -> float:
        """Return the day's volatility multiplier (log-normal, mean 1)."""
        z = rng.normal(self._seed, self._spec.symbol, "regime", day)
        return math.exp(_REGIME_SIGMA * z - 0.5 * _REGIME_SIGMA**2)

    def minute_sigma(self, day: int) -> float:
        """Return the std-dev of a one-minute log return on that day."""
        return self._sigma_minute * self.regime(day)

    def _compute_day(self, day: int) -> NDArray[np.float64]:
        gen = rng.generator(self._seed, self._spec.symbol, "minutes", day)
        # Student-t(4) scaled to unit variance gives crypto-like fat tails.
        eps = gen.standard_t(_T_DOF, DAY_MINUTES) / math.sqrt(_T_DOF / (_T_DOF - 2.0))
        walk = np.empty(DAY_MINUTES + 1)
        walk[0] = 0.0
        np.cumsum(eps * self.minute_sigma(day), out=walk[1:])
        frac = np.arange(DAY_MINUTES + 1) / DAY_MINUTES
        a0, a1 = self.anchor(day), self.anchor(day + 1)
        out: NDArray[np.float64] = a0 + frac * (a1 - a0) + (walk - frac * walk[-1])
        out.setflags(write=False)
        return out

    def day_log_prices(self, day: int) -> NDArray[np.float64]:
        """Return the 1441 log prices at the minute boundaries of a UTC day."""
        key = ("rw", self._seed, self._spec, day)
        return _DAY_CACHE.get_or_create(key, lambda: self._compute_day(day))


class ReplayPath:
    """A recorded close path rescaled to ``base_price`` and tiled as a palindrome."""

    def __init__(self, spec: SymbolSpec, file: Path, anchor_ms: int) -> None:
        """Build the path of one symbol from a recording.

        Args:
            spec: The symbol; base_price is the recording's first price after rescaling.
            file: The candle parquet.
            anchor_ms: A UTC midnight; a forward copy of the recording ends exactly there.
        """
        self._spec = spec
        self._file = file
        self._recording = load_recording(file)
        self._log_base = math.log(spec.base_price)
        length = len(self._recording.rel_log)
        self._length = length
        self._offset = anchor_ms // MINUTE_MS - (length - 1)

    @property
    def length_minutes(self) -> int:
        """Return how many one-minute steps one copy of the recording spans."""
        return self._length - 1

    @property
    def forward_start_minute(self) -> int:
        """Return a minute index (since the epoch) at which a forward copy starts."""
        return self._offset

    def minute_sigma(self, day: int) -> float:
        """Return the recording's typical one-minute log return std-dev."""
        return self._recording.minute_sigma

    def log_prices_at(self, minutes: NDArray[np.int64]) -> NDArray[np.float64]:
        """Return log prices at absolute minute boundaries."""
        idx = palindrome_index(minutes, self._length, self._offset)
        result: NDArray[np.float64] = self._log_base + self._recording.rel_log[idx]
        return result

    def _compute_day(self, day: int) -> NDArray[np.float64]:
        minutes = day * DAY_MINUTES + np.arange(DAY_MINUTES + 1, dtype=np.int64)
        out = self.log_prices_at(minutes)
        out.setflags(write=False)
        return out

    def day_log_prices(self, day: int) -> NDArray[np.float64]:
        """Return the 1441 log prices at the minute boundaries of a UTC day."""
        key = ("replay", self._spec, str(self._file), self._offset, day)
        return _DAY_CACHE.get_or_create(key, lambda: self._compute_day(day))


def resolve_replay_file(replay: str, data_root: str | None) -> Path:
    """Resolve a replay path against the cluster's data root.

    Raises:
        FileNotFoundError: The file does not exist.
    """
    path = Path(replay).expanduser()
    if not path.is_absolute() and data_root is not None:
        path = Path(data_root).expanduser() / path
    if not path.is_file():
        raise FileNotFoundError(f"replay file not found: {path}")
    return path.resolve()


@functools.lru_cache(maxsize=256)
def true_path(world_seed: int, spec: SymbolSpec, data_root: str | None, anchor_ms: int) -> TruePath:
    """Return the (shared, cached) true path of a symbol.

    Args:
        world_seed: Cluster-wide seed.
        spec: The symbol.
        data_root: Directory for relative replay paths.
        anchor_ms: UTC midnight at which a replay's forward copy ends (unused by random walks).
    """
    if spec.replay is None:
        return RandomWalkPath(world_seed, spec)
    return ReplayPath(spec, resolve_replay_file(spec.replay, data_root), anchor_ms)


def clear_caches() -> None:
    """Drop cached day blocks and path objects."""
    _DAY_CACHE.clear()
    true_path.cache_clear()
