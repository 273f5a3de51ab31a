"""Derived columns of the order book and trades suites (pure pandas/numpy, no GX).

An order book batch holds one or more snapshots, one row per level: ``snapshot_ts``, ``side``
(``bid``/``ask``), ``level`` (0 = best), ``price``, ``amount``. Ordering and crossing are
properties of a snapshot, not of a row, so they become per-row derived columns a built-in
expectation can bound: ``bid_step`` (this bid's price minus the better one's: must be negative),
``ask_step`` (must be positive), ``spread`` (best ask minus best bid of the row's snapshot: must
be positive) and ``relative_spread`` (spread over mid: within the configured bound).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tradeflow.quality.candles import MAX_LISTED
from tradeflow.timeframes import iso

BOOK_COLUMNS = ("snapshot_ts", "side", "level", "price", "amount")
TRADE_COLUMNS = ("id", "timestamp", "side", "price", "amount")


def derive_order_book(book: pd.DataFrame) -> pd.DataFrame:
    """Return the book rows with ``bid_step``, ``ask_step``, ``spread`` and ``relative_spread``."""
    frame = book.loc[:, list(BOOK_COLUMNS)].copy()
    frame = frame.sort_values(["snapshot_ts", "side", "level"], kind="stable").reset_index(drop=True)
    price = frame["price"].to_numpy(dtype=np.float64)
    same_side = (frame["snapshot_ts"].shift() == frame["snapshot_ts"]) & (
        frame["side"].shift() == frame["side"]
    )
    step = np.where(same_side.to_numpy(), price - np.r_[np.nan, price[:-1]], np.nan)
    is_bid = (frame["side"] == "bid").to_numpy()
    is_ask = (frame["side"] == "ask").to_numpy()
    frame["bid_step"] = np.where(is_bid, step, np.nan)
    frame["ask_step"] = np.where(is_ask, step, np.nan)
    best_bid = frame[is_bid].groupby("snapshot_ts")["price"].max()
    best_ask = frame[is_ask].groupby("snapshot_ts")["price"].min()
    spread = (best_ask - best_bid).reindex(frame["snapshot_ts"]).to_numpy(dtype=np.float64)
    mid = ((best_ask + best_bid) / 2).reindex(frame["snapshot_ts"]).to_numpy(dtype=np.float64)
    frame["spread"] = spread
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["relative_spread"] = spread / mid
    return frame


def observe_order_book(frame: pd.DataFrame, max_spread: float) -> dict[str, dict[str, Any]]:
    """Return the observed values of the book checks that have details beyond GX's counts."""
    snapshots = frame.groupby("snapshot_ts", sort=True).agg(
        spread=("spread", "first"), relative_spread=("relative_spread", "first")
    )
    times = snapshots.index.to_numpy(dtype=np.int64)
    spreads = snapshots["spread"].to_numpy(dtype=np.float64)
    relative = snapshots["relative_spread"].to_numpy(dtype=np.float64)

    def entry(i: int) -> dict[str, Any]:
        return {
            "snapshot_ts": int(times[i]),
            "snapshot_utc": iso(int(times[i])),
            "spread": None if np.isnan(spreads[i]) else float(spreads[i]),
            "relative_spread": None if np.isnan(relative[i]) else round(float(relative[i]), 6),
        }

    crossed = [entry(int(i)) for i in np.flatnonzero(np.nan_to_num(spreads, nan=1.0) <= 0)]
    wide = [entry(int(i)) for i in np.flatnonzero(np.nan_to_num(relative, nan=0.0) > max_spread)]
    return {
        "book_not_crossed": {
            "snapshots": len(times),
            "crossed": len(crossed),
            "listed": crossed[:MAX_LISTED],
        },
        "spread_within_bounds": {
            "max_spread": max_spread,
            "snapshots": len(times),
            "too_wide": len(wide),
            "listed": (wide or [entry(i) for i in range(len(times))])[:MAX_LISTED],
        },
    }


def derive_trades(trades: pd.DataFrame) -> pd.DataFrame:
    """Return the trade rows as the trades suite reads them (no derived columns needed)."""
    return trades.loc[:, list(TRADE_COLUMNS)].copy()
