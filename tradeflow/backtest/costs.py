"""What trading costs: fees, the spread, market impact — and fill prices that respect the bar.

A market order of notional ``N`` pays, on top of the fee, a slippage fraction

    cost(N) = half_spread + impact_coefficient * sqrt(N / depth)

away from its reference price (the bar's open for a decision taken at the previous close, the
trigger level for a stop). ``depth`` is the order-book notional within ``depth_band`` of the mid,
when the snapshot has stored books, else the bar's traded notional. The square-root law is the
usual shape of market impact; :func:`calibrate_costs` fits its coefficient by walking stored
order books with orders of several sizes.

Whatever the model says, a fill never lies outside the bar's low and high: a buy is capped at
the high, a sell floored at the low (:func:`fill_price`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

#: Order sizes, as fractions of the book's depth, that :func:`calibrate_costs` walks the book with.
_CALIBRATION_SIZES = (0.01, 0.05, 0.1, 0.25, 0.5)


@dataclass(frozen=True)
class CostModel:
    """Fees and slippage of one symbol on one venue.

    Attributes:
        taker_fee: Fee rate of market orders and stops.
        maker_fee: Fee rate of resting limit orders (take-profits).
        half_spread: Half the relative bid-ask spread.
        impact_coefficient: Coefficient of the square-root impact term.
        depth: Book notional within ``depth_band`` of the mid (None: use the bar's traded notional).
        source: Where the numbers came from (``order books (n snapshots)`` or ``config``).
    """

    taker_fee: float = 0.001
    maker_fee: float = 0.001
    half_spread: float = 0.0001
    impact_coefficient: float = 0.1
    depth: float | None = None
    source: str = "config"

    def slippage(self, notional: float, bar_notional: float) -> tuple[float, float]:
        """Return the (spread, impact) cost fractions of a market order of ``notional``."""
        depth = self.depth if self.depth else bar_notional
        impact = self.impact_coefficient * math.sqrt(notional / depth) if depth > 0 else 0.0
        return self.half_spread, impact

    def to_dict(self) -> dict[str, Any]:
        """Return the model as plain values."""
        return dict(self.__dict__)


def fill_price(side: int, reference: float, cost: float, high: float, low: float) -> float:
    """Return the price a ``side`` (+1 buy, -1 sell) order gets: reference plus cost, inside the bar."""
    price = reference * (1.0 + side * cost)
    return min(max(price, low), high)


def _walk(levels: pd.DataFrame, notional: float) -> float:
    """Return the average price of trading ``notional`` through ``levels``, best level first."""
    remaining, spent, quantity = notional, 0.0, 0.0
    for price, amount in zip(levels["price"].to_numpy(), levels["amount"].to_numpy(), strict=True):
        take = min(remaining, price * amount)
        spent += take
        quantity += take / price
        remaining -= take
        if remaining <= 0:
            break
    if remaining > 0 or quantity == 0:
        return math.nan
    return spent / quantity


def calibrate_costs(
    books: pd.DataFrame | None,
    taker_fee: float,
    maker_fee: float,
    default: CostModel,
    depth_band: float = 0.01,
) -> CostModel:
    """Fit the spread, depth and impact coefficient of one symbol from its stored order books.

    For every snapshot: the half spread, the notional within ``depth_band`` of the mid (both
    sides, averaged), and the cost of buying and selling 1 %, 5 %, 10 %, 25 % and 50 % of that
    depth by walking the book. The coefficient is the least-squares fit of
    ``cost - half_spread = k * sqrt(size / depth)``; half spread and depth are medians.
    Without books (or unusable ones) the configured ``default`` is returned with the fees.

    Args:
        books: ``snapshot_ts``, ``side`` (bid/ask), ``level``, ``price``, ``amount``.
        taker_fee: The venue's taker fee.
        maker_fee: The venue's maker fee.
        default: The model to use without books.
        depth_band: How far from the mid the depth is counted.
    """
    fallback = CostModel(
        taker_fee, maker_fee, default.half_spread, default.impact_coefficient, None, "config"
    )
    if books is None or books.empty:
        return fallback
    spreads, depths, xs, ys = [], [], [], []
    for _, snapshot in books.groupby("snapshot_ts", sort=True):
        asks = snapshot[snapshot["side"] == "ask"].sort_values("price")
        bids = snapshot[snapshot["side"] == "bid"].sort_values("price", ascending=False)
        if asks.empty or bids.empty:
            continue
        best_ask, best_bid = float(asks["price"].iloc[0]), float(bids["price"].iloc[0])
        if not 0 < best_bid < best_ask:
            continue
        mid = (best_ask + best_bid) / 2
        half = (best_ask - best_bid) / 2 / mid
        ask_depth = float((asks["price"] * asks["amount"])[asks["price"] <= mid * (1 + depth_band)].sum())
        bid_depth = float((bids["price"] * bids["amount"])[bids["price"] >= mid * (1 - depth_band)].sum())
        depth = (ask_depth + bid_depth) / 2
        if depth <= 0:
            continue
        spreads.append(half)
        depths.append(depth)
        for size in _CALIBRATION_SIZES:
            notional = size * depth
            for levels, sign in ((asks, 1.0), (bids, -1.0)):
                average = _walk(levels, notional)
                if not math.isnan(average):
                    xs.append(math.sqrt(size))
                    ys.append(sign * (average / mid - 1) - half)
    if not spreads:
        return fallback
    x, y = np.asarray(xs), np.asarray(ys)
    coefficient = float(max((x @ y) / (x @ x), 0.0)) if x.size else default.impact_coefficient
    return CostModel(
        taker_fee,
        maker_fee,
        float(np.median(spreads)),
        coefficient,
        float(np.median(depths)),
        f"order books ({len(spreads)} snapshots)",
    )
