"""Portfolio allocation: per-symbol signals in, target weights and order quantities out.

:func:`allocate` turns one :class:`AllocationInput` per symbol (direction, confidence,
volatility, regime, price and the venue's :class:`MarketRules`) into one :class:`TargetWeight`
per symbol, in these steps:

1. Volatility targeting: ``direction * confidence * target_volatility / volatility``. A flat
   signal, a zero confidence, or an unusable volatility or price gives weight 0.
2. Regime: in the volatile regime the weight is multiplied by ``volatile_regime_factor``.
3. Per-symbol cap: ``|weight|`` is clipped to ``max_symbol_weight``.
4. Correlated groups: the symbols whose correlation exceeds ``correlation_threshold`` (directly
   or through a chain of such symbols) form a group; when a group's sum of ``|weight|`` exceeds
   ``correlated_group_weight`` its weights are scaled down proportionally.
5. Gross: when the sum of ``|weight|`` exceeds ``max_gross_weight`` every weight is scaled down.
6. Risk budget: when the annualised portfolio volatility ``sqrt(w' Σ w)`` exceeds
   ``risk_budget`` every weight is scaled by ``risk_budget / volatility``.
7. Orders: ``quantity = weight * equity / price`` is rounded toward zero to the lot size; a
   quantity under the venue's minimum quantity or notional is not traded (weight 0). The final
   weight is ``quantity * price / equity``, never larger in magnitude than before rounding.
8. Risk budget again: rounding toward zero and dropping orders under the venue's minimums can
   *raise* the portfolio volatility when positions hedge one another (a dropped short leg leaves
   its long unhedged). If the rounded portfolio exceeds the budget, the step-6 weights are scaled
   down further and rounded again until it does not.

Steps 3 to 8 only ever shrink ``|weight|``, so every cap holds on the final weights.

Every step that sets or changes a weight appends a human-readable reason, with its numbers, to
that symbol's :attr:`TargetWeight.reasons`.

The portfolio volatility is conservative where the correlations are unknown: a correlation that is
missing (``correlation`` is ``None`` or lacks the symbol) or NaN counts as 1.0. A matrix filled
that way, or estimated pairwise-complete (see :func:`correlation_matrix`), need not be positive
semi-definite, and then ``w' Σ w`` can even be negative; its negative eigenvalues are lifted to
zero by adding a positive semi-definite matrix, which can only raise every portfolio's variance.

Everything here is pure: no I/O, numpy and pandas only.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from tradeflow.timeframes import DAY_MS, MINUTE_MS

FloatArray = npt.NDArray[np.float64]

#: Fewest complete return pairs a correlation needs; fewer give NaN.
MIN_CORRELATION_POINTS = 10

# Relative slack under which a portfolio volatility counts as within its budget (floating point
# noise of the scaling that brought it there); far below any tolerance that matters.
_BUDGET_SLACK = 1e-12
# Lot rounding forgives this fraction of a lot, so 0.3 / 0.1 = 2.9999999999999996 lots is 3 lots.
_LOT_TOLERANCE = 1e-9
# Direct rescales tried after rounding before falling back to a bisection on the scale.
_RESCALE_ATTEMPTS = 8
_BISECTION_STEPS = 60


def _is_number(value: object) -> bool:
    """Return whether ``value`` is a real number (not a bool)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class AllocationLimits:
    """The sizing rule and the caps every allocation respects.

    Attributes:
        target_volatility: Annualised volatility each position is sized to (volatility targeting).
        max_symbol_weight: Cap on ``|weight|`` per symbol, in (0, 1].
        correlation_threshold: Symbols whose correlation exceeds this form a group, in (0, 1].
        correlated_group_weight: Cap on a correlated group's sum of ``|weight|``, in (0, 1].
        risk_budget: Cap on the annualised portfolio volatility ``sqrt(w' Σ w)``.
        max_gross_weight: Cap on the sum of ``|weight|``, in (0, 1] (1.0 = no leverage).
        volatile_regime_factor: Size multiplier in the volatile regime, in [0, 1].
        volatile_regime: The regime label that triggers ``volatile_regime_factor``.
    """

    target_volatility: float = 0.20
    max_symbol_weight: float = 0.40
    correlation_threshold: float = 0.70
    correlated_group_weight: float = 0.50
    risk_budget: float = 0.25
    max_gross_weight: float = 1.0
    volatile_regime_factor: float = 0.5
    volatile_regime: str = "VOLATILE"

    def __post_init__(self) -> None:
        problems: list[str] = []
        for name in ("target_volatility", "risk_budget"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 < value < math.inf:
                problems.append(f"{name} must be a positive finite number, got {value!r}")
        for name in (
            "max_symbol_weight",
            "correlation_threshold",
            "correlated_group_weight",
            "max_gross_weight",
        ):
            value = getattr(self, name)
            if not _is_number(value) or not 0 < value <= 1:
                problems.append(f"{name} must be in (0, 1], got {value!r}")
        if not _is_number(self.volatile_regime_factor) or not 0 <= self.volatile_regime_factor <= 1:
            problems.append(f"volatile_regime_factor must be in [0, 1], got {self.volatile_regime_factor!r}")
        if not isinstance(self.volatile_regime, str):
            problems.append(f"volatile_regime must be a string, got {self.volatile_regime!r}")
        if problems:
            raise ValueError("invalid allocation limits: " + "; ".join(problems))


@dataclass(frozen=True)
class MarketRules:
    """An exchange's limits for one symbol.

    Attributes:
        min_notional: Order value below which the venue refuses the order.
        min_quantity: Smallest quantity the venue accepts.
        quantity_step: Lot size; 0 means any quantity.
        price_step: Tick size; 0 means any price.
    """

    min_notional: float = 0.0
    min_quantity: float = 0.0
    quantity_step: float = 0.0
    price_step: float = 0.0

    def __post_init__(self) -> None:
        problems = [
            f"{item.name} must be a non-negative finite number, got {value!r}"
            for item in dataclasses.fields(self)
            if not _is_number(value := getattr(self, item.name)) or not 0 <= value < math.inf
        ]
        if problems:
            raise ValueError("invalid market rules: " + "; ".join(problems))


@dataclass(frozen=True)
class AllocationInput:
    """What the allocation knows about one symbol.

    Attributes:
        symbol: The symbol, unique among one allocation's inputs.
        direction: +1 long, -1 short, 0 flat (no signal).
        confidence: The signal's confidence, in [0, 1].
        volatility: Annualised volatility of the symbol; NaN or <= 0 means it cannot be sized.
        regime: The symbol's market regime label.
        price: The current price, which turns a weight into a quantity; NaN or <= 0 means it
            cannot be sized.
        rules: The venue's limits for the symbol.
    """

    symbol: str
    direction: int
    confidence: float
    volatility: float
    regime: str
    price: float
    rules: MarketRules = field(default_factory=MarketRules)

    def __post_init__(self) -> None:
        problems: list[str] = []
        if isinstance(self.direction, bool) or self.direction not in (-1, 0, 1):
            problems.append(f"direction must be -1, 0 or 1, got {self.direction!r}")
        if not _is_number(self.confidence) or not 0 <= self.confidence <= 1:
            problems.append(f"confidence must be in [0, 1], got {self.confidence!r}")
        for name in ("volatility", "price"):
            if not _is_number(getattr(self, name)):
                problems.append(f"{name} must be a number, got {getattr(self, name)!r}")
        if problems:
            raise ValueError(f"invalid allocation input for {self.symbol!r}: " + "; ".join(problems))


@dataclass(frozen=True)
class TargetWeight:
    """The allocation's answer for one symbol.

    Attributes:
        symbol: The symbol.
        weight: Signed final weight (fraction of equity) after every cap and rounding.
        quantity: Signed quantity, a multiple of the lot size, rounded toward zero.
        notional: ``|quantity| * price``.
        reasons: Every step that set or changed the weight, in order, with its numbers.
    """

    symbol: str
    weight: float
    quantity: float
    notional: float
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Allocation:
    """Target weights for a set of symbols, with the portfolio's figures.

    Attributes:
        weights: One entry per input symbol, in input order.
        equity: The equity the quantities were sized against.
        gross_weight: Sum of ``|weight|`` of the final weights.
        portfolio_volatility: Annualised volatility of the final weights (the conservative
            estimate described in the module docstring).
        groups: The correlated groups (two symbols or more) found, in input order.
    """

    weights: dict[str, TargetWeight]
    equity: float
    gross_weight: float
    portfolio_volatility: float
    groups: tuple[tuple[str, ...], ...]

    def to_frame(self) -> pd.DataFrame:
        """Return one row per symbol: symbol, weight, quantity, notional, reasons ("; "-joined)."""
        rows = [
            {
                "symbol": target.symbol,
                "weight": target.weight,
                "quantity": target.quantity,
                "notional": target.notional,
                "reasons": "; ".join(target.reasons),
            }
            for target in self.weights.values()
        ]
        return pd.DataFrame(rows, columns=["symbol", "weight", "quantity", "notional", "reasons"])


class _Orders(NamedTuple):
    """Step 7's outcome for every symbol."""

    weights: FloatArray
    quantities: FloatArray
    notionals: FloatArray
    notes: list[list[str]]


def allocate(
    inputs: Sequence[AllocationInput],
    correlation: pd.DataFrame | None,
    equity: float,
    limits: AllocationLimits = AllocationLimits(),
) -> Allocation:
    """Turn per-symbol signals into capped target weights and venue-valid quantities.

    The steps, and the conservative treatment of unknown correlations, are described in the
    module docstring.

    Args:
        inputs: One input per symbol; symbols must be unique.
        correlation: Correlations between the symbols (a symbols x symbols frame, as
            :func:`correlation_matrix` returns), or ``None`` when unknown. Symbols it lacks are
            in no correlated group, and count as perfectly correlated for the risk budget.
        equity: The equity weights are fractions of, in quote currency.
        limits: The sizing rule and caps.

    Returns:
        The allocation, one :class:`TargetWeight` per input in input order.

    Raises:
        ValueError: if ``equity`` is not a positive finite number or a symbol repeats.
    """
    if not _is_number(equity) or not 0 < equity < math.inf:
        raise ValueError(f"equity must be a positive finite number, got {equity!r}")
    symbols = [item.symbol for item in inputs]
    repeated = sorted(symbol for symbol, count in Counter(symbols).items() if count > 1)
    if repeated:
        raise ValueError(f"each symbol may appear once; repeated: {', '.join(repeated)}")

    reasons: list[list[str]] = [[] for _ in inputs]
    weights = np.zeros(len(inputs))
    volatilities = np.zeros(len(inputs))
    for index, item in enumerate(inputs):
        weights[index] = _sized_weight(item, limits, reasons[index])
        if weights[index] != 0:
            volatilities[index] = item.volatility

    groups = (
        () if correlation is None else correlated_groups(correlation, symbols, limits.correlation_threshold)
    )
    position = {symbol: index for index, symbol in enumerate(symbols)}
    for group in groups:
        members = [position[symbol] for symbol in group]
        group_weight = float(np.abs(weights[members]).sum())
        if group_weight > limits.correlated_group_weight:
            factor = limits.correlated_group_weight / group_weight
            label = "+".join(group)
            for member in members:
                if weights[member] != 0:
                    weights[member] *= factor
                    reasons[member].append(
                        f"correlated group {label} at {_percent(group_weight)} over "
                        f"{_percent(limits.correlated_group_weight)}: scaled x{factor:.3g} "
                        f"-> {_percent(weights[member])}"
                    )

    gross_weight = float(np.abs(weights).sum())
    if gross_weight > limits.max_gross_weight:
        factor = limits.max_gross_weight / gross_weight
        weights *= factor
        for index in np.flatnonzero(weights).tolist():
            reasons[index].append(
                f"gross weight {_percent(gross_weight)} over {_percent(limits.max_gross_weight)}: "
                f"scaled x{factor:.3g} -> {_percent(weights[index])}"
            )

    filled = _filled_correlation(correlation, symbols)

    def volatility_of(candidate: FloatArray) -> float:
        return _portfolio_volatility(candidate, volatilities, filled)

    volatility = volatility_of(weights)
    if _over_budget(volatility, limits.risk_budget):
        factor = limits.risk_budget / volatility
        weights *= factor
        for index in np.flatnonzero(weights).tolist():
            reasons[index].append(
                f"portfolio volatility {_percent(volatility)} over budget {_percent(limits.risk_budget)}: "
                f"scaled x{factor:.3g} -> {_percent(weights[index])}"
            )

    orders = _to_orders(weights, inputs, equity)
    rounded_volatility = volatility_of(orders.weights)
    if _over_budget(rounded_volatility, limits.risk_budget):
        scale, orders = _fit_budget_after_rounding(
            weights,
            rounded_volatility,
            lambda scaled: _to_orders(scaled, inputs, equity),
            volatility_of,
            limits,
        )
        for index in np.flatnonzero(weights).tolist():
            reasons[index].append(
                f"portfolio volatility after rounding {_percent(rounded_volatility)} over budget "
                f"{_percent(limits.risk_budget)}: scaled x{scale:.3g} -> {_percent(weights[index] * scale)} "
                "and rounded again"
            )

    targets: dict[str, TargetWeight] = {}
    for index, item in enumerate(inputs):
        targets[item.symbol] = TargetWeight(
            symbol=item.symbol,
            weight=float(orders.weights[index]),
            quantity=float(orders.quantities[index]),
            notional=float(orders.notionals[index]),
            reasons=(*reasons[index], *orders.notes[index]),
        )
    return Allocation(
        weights=targets,
        equity=float(equity),
        gross_weight=float(np.abs(orders.weights).sum()),
        portfolio_volatility=volatility_of(orders.weights),
        groups=groups,
    )


def correlated_groups(
    correlation: pd.DataFrame, symbols: Sequence[str], threshold: float
) -> tuple[tuple[str, ...], ...]:
    """Return the connected components of the graph "correlation > threshold" among ``symbols``.

    Two symbols are linked when their correlation (either way round, should the matrix not be
    symmetric) exceeds ``threshold``; a missing or NaN correlation links nothing. Only components
    of two symbols or more are returned (a lone symbol is no group), each in the order of
    ``symbols``, ordered by their first member.
    """
    aligned = correlation.reindex(index=list(symbols), columns=list(symbols)).to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        above = aligned > threshold
    linked = above | above.T
    np.fill_diagonal(linked, False)
    seen: set[int] = set()
    groups: list[tuple[str, ...]] = []
    for start in range(len(symbols)):
        if start in seen:
            continue
        component = {start}
        frontier = [start]
        while frontier:
            current = frontier.pop()
            for neighbour in np.flatnonzero(linked[current]):
                if int(neighbour) not in component:
                    component.add(int(neighbour))
                    frontier.append(int(neighbour))
        seen |= component
        if len(component) > 1:
            groups.append(tuple(symbols[index] for index in sorted(component)))
    return tuple(groups)


def correlation_matrix(
    closes: pd.DataFrame, end: int, window_days: float = 30.0, timeframe_minutes: int = 60
) -> pd.DataFrame:
    """Return the pairwise correlation of the symbols' log returns over a trailing window.

    Only rows with ``end - window < timestamp <= end`` are used, so nothing after ``end`` can leak
    in. Rows are grouped into timeframe buckets (``timestamp // timeframe``); each symbol's close
    of a bucket is its last non-NaN close in it. A bucket's log return is against the previous
    bucket's close, so a bucket without a close (or with a non-positive one) leaves its return and
    the next one missing. Correlations are Pearson, pairwise-complete, and NaN when a pair has
    fewer than :data:`MIN_CORRELATION_POINTS` returns in common (or a series is constant).

    Args:
        closes: Close prices; index = timestamp in UTC milliseconds (integers), columns =
            symbols, NaN allowed.
        end: The last timestamp (UTC milliseconds) that may be used, inclusive.
        window_days: Length of the trailing window, in days.
        timeframe_minutes: Length of a return bucket, in minutes.

    Returns:
        A symbols x symbols frame, in the order of ``closes.columns``.

    Raises:
        ValueError: if ``window_days`` or ``timeframe_minutes`` is not positive.
    """
    if not _is_number(window_days) or not 0 < window_days < math.inf:
        raise ValueError(f"window_days must be a positive finite number, got {window_days!r}")
    if isinstance(timeframe_minutes, bool) or not isinstance(timeframe_minutes, int) or timeframe_minutes < 1:
        raise ValueError(f"timeframe_minutes must be a positive integer, got {timeframe_minutes!r}")
    columns = list(closes.columns)
    ordered = closes.sort_index(kind="stable")
    timestamps = ordered.index.to_numpy(dtype=np.int64)
    inside = (timestamps <= end) & (timestamps > end - window_days * DAY_MS)
    prices = ordered.to_numpy(dtype=float)[inside]
    with np.errstate(invalid="ignore"):
        prices = np.where(prices > 0, prices, np.nan)
    window = pd.DataFrame(prices, columns=columns)
    buckets = timestamps[inside] // (timeframe_minutes * MINUTE_MS)
    bucket_closes = window.groupby(buckets).last()
    if len(bucket_closes) > 0:
        bucket_closes = bucket_closes.reindex(range(int(buckets.min()), int(buckets.max()) + 1))
    log_returns = pd.DataFrame(
        np.log(bucket_closes.to_numpy(dtype=float)), index=bucket_closes.index, columns=columns
    ).diff()
    result = log_returns.corr(min_periods=MIN_CORRELATION_POINTS)
    return result.reindex(index=columns, columns=columns)


def round_price(price: float, rules: MarketRules) -> float:
    """Return ``price`` rounded to the nearest multiple of the tick size (unchanged when it is 0)."""
    step = rules.price_step
    if step == 0 or not math.isfinite(price):
        return price
    return _tidy(round(price / step) * step, step)


def _sized_weight(item: AllocationInput, limits: AllocationLimits, reasons: list[str]) -> float:
    """Return steps 1-3's weight for one symbol, appending their reasons."""
    if item.direction == 0:
        reasons.append("flat: no signal")
        return 0.0
    if item.confidence == 0:
        reasons.append("confidence 0: no position")
        return 0.0
    if not 0 < item.volatility < math.inf:
        reasons.append(f"volatility {item.volatility!r} unusable: cannot size, weight 0")
        return 0.0
    if not 0 < item.price < math.inf:
        reasons.append(f"price {item.price!r} unusable: cannot size, weight 0")
        return 0.0
    weight = item.direction * item.confidence * limits.target_volatility / item.volatility
    side = "long" if item.direction > 0 else "short"
    reasons.append(
        f"volatility target ({side}): {_decimal(limits.target_volatility)} / {_decimal(item.volatility)} "
        f"x confidence {_decimal(item.confidence)} = {_percent(weight)}"
    )
    if item.regime == limits.volatile_regime and limits.volatile_regime_factor != 1:
        weight *= limits.volatile_regime_factor
        size = (
            "half size"
            if limits.volatile_regime_factor == 0.5
            else f"size x{limits.volatile_regime_factor:.3g}"
        )
        reasons.append(f"{item.regime} regime: {size} -> {_percent(weight)}")
    if abs(weight) > limits.max_symbol_weight:
        capped = math.copysign(limits.max_symbol_weight, weight)
        reasons.append(
            f"per-symbol cap {_percent(limits.max_symbol_weight)}: {_percent(weight)} -> {_percent(capped)}"
        )
        weight = capped
    return weight


def _to_orders(weights: FloatArray, inputs: Sequence[AllocationInput], equity: float) -> _Orders:
    """Return step 7: weights turned into venue-valid quantities, and the weights they give."""
    count = len(inputs)
    final = np.zeros(count)
    quantities = np.zeros(count)
    notionals = np.zeros(count)
    notes: list[list[str]] = [[] for _ in range(count)]
    for index, item in enumerate(inputs):
        weight = float(weights[index])
        if weight == 0:
            continue
        rules, price = item.rules, item.price
        wanted = abs(weight) * equity / price
        quantity = wanted
        if rules.quantity_step > 0:
            lots = math.floor(wanted / rules.quantity_step + _LOT_TOLERANCE)
            quantity = _tidy(lots * rules.quantity_step, rules.quantity_step)
            if quantity == 0:
                notes[index].append(
                    f"quantity {wanted:.6g} rounded toward zero to lot {rules.quantity_step:g} is 0: "
                    "not traded"
                )
                continue
        if quantity < rules.min_quantity:
            notes[index].append(
                f"quantity {quantity:.10g} below min quantity {rules.min_quantity:g}: not traded"
            )
            continue
        notional = quantity * price
        if notional < rules.min_notional:
            notes[index].append(
                f"notional {notional:.6g} below min notional {rules.min_notional:g}: not traded"
            )
            continue
        # Never larger than before rounding: the lot tolerance and float noise may add an ulp.
        magnitude = min(notional / equity, abs(weight))
        final[index] = math.copysign(magnitude, weight)
        quantities[index] = math.copysign(quantity, weight)
        notionals[index] = notional
        if abs(quantity - wanted) > _LOT_TOLERANCE * wanted:
            notes[index].append(
                f"rounded toward zero to lot {rules.quantity_step:g}: quantity {wanted:.6g} -> "
                f"{quantity:.10g}, weight {_percent(weight, 4)} -> {_percent(final[index], 4)}"
            )
    return _Orders(final, quantities, notionals, notes)


def _fit_budget_after_rounding(
    weights: FloatArray,
    rounded_volatility: float,
    to_orders: Callable[[FloatArray], _Orders],
    volatility_of: Callable[[FloatArray], float],
    limits: AllocationLimits,
) -> tuple[float, _Orders]:
    """Return step 8: the scale of ``weights`` whose rounded orders meet the risk budget, and those orders.

    A few direct rescales settle almost every case. Should they not, a bisection on the scale
    between 0 (no positions: volatility 0, always within budget) and the last scale tried finds one
    that meets the budget, so the step always ends within it.
    """
    scale, volatility = 1.0, rounded_volatility
    for _ in range(_RESCALE_ATTEMPTS):
        scale *= limits.risk_budget / volatility
        orders = to_orders(weights * scale)
        volatility = volatility_of(orders.weights)
        if not _over_budget(volatility, limits.risk_budget):
            return scale, orders
    low, high = 0.0, scale
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2
        if volatility_of(to_orders(weights * middle).weights) > limits.risk_budget:  # strictly: never over
            high = middle
        else:
            low = middle
    return low, to_orders(weights * low)


def _filled_correlation(correlation: pd.DataFrame | None, symbols: Sequence[str]) -> FloatArray:
    """Return the correlation matrix of ``symbols`` with missing or NaN entries set to 1.0.

    The matrix is symmetrised (the mean of both ways round), clipped to [-1, 1], and its diagonal
    is 1.
    """
    count = len(symbols)
    if correlation is None:
        return np.ones((count, count))
    aligned = correlation.reindex(index=list(symbols), columns=list(symbols)).to_numpy(dtype=float)
    filled: FloatArray = np.clip(np.nan_to_num(aligned, nan=1.0), -1.0, 1.0)
    filled = (filled + filled.T) / 2
    np.fill_diagonal(filled, 1.0)
    return filled


def _portfolio_volatility(weights: FloatArray, volatilities: FloatArray, correlation: FloatArray) -> float:
    """Return ``sqrt(w' Σ w)`` over the symbols held, with ``Σ = diag(vol) C diag(vol)``.

    ``C`` is made positive semi-definite first (see :func:`_lift_to_semidefinite`), which can only
    raise the result.
    """
    held = np.flatnonzero(weights)
    if held.size == 0:
        return 0.0
    matrix = _lift_to_semidefinite(correlation[np.ix_(held, held)])
    exposures = weights[held] * volatilities[held]
    return math.sqrt(max(float(exposures @ matrix @ exposures), 0.0))


def _lift_to_semidefinite(matrix: FloatArray) -> FloatArray:
    """Return ``matrix`` plus the positive semi-definite matrix that zeroes its negative eigenvalues.

    ``x' M x`` can only grow, for every ``x``: the correction is added to ``matrix`` itself rather
    than rebuilding it from its eigenvectors, so no rounding can lower a portfolio's variance.
    """
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    negative = eigenvalues < 0
    if not negative.any():
        return matrix
    vectors = eigenvectors[:, negative]
    correction: FloatArray = (vectors * -eigenvalues[negative]) @ vectors.T
    lifted: FloatArray = matrix + correction
    return lifted


def _over_budget(volatility: float, budget: float) -> bool:
    """Return whether ``volatility`` exceeds ``budget`` by more than floating-point noise."""
    return volatility > budget * (1 + _BUDGET_SLACK)


def _tidy(value: float, step: float) -> float:
    """Return a multiple of ``step`` rounded to ``step``'s decimals: 0.30000000000000004 -> 0.3."""
    exponent = Decimal(repr(step)).as_tuple().exponent
    if isinstance(exponent, int) and exponent < 0:
        return round(value, -exponent)
    return value


def _percent(value: float, decimals: int = 1) -> str:
    """Return a weight as a short percentage: 0.215 -> "21.5%", 0.4 -> "40%"."""
    percent = float(value) * 100
    if percent != 0 and abs(percent) < 10**-decimals:
        return f"{percent:.2g}%"
    return f"{percent:.{decimals}f}".rstrip("0").rstrip(".") + "%"


def _decimal(value: float) -> str:
    """Return a volatility or confidence for a reason: two decimals, or two significant digits if small."""
    return f"{value:.2f}" if value == 0 or abs(value) >= 0.1 else f"{value:.2g}"
