"""Parity of the signals mode (:func:`run_signals`) with vectorbt's ``Portfolio.from_signals``.

The same entry and exit signals go through both. tradeflow fills a signal decided at bar i's close
at bar i+1's open; vectorbt fills at the bar its signal is on, so it gets the signals shifted by one
bar and ``price=open``. Both buy with all of the symbol's cash (``quantity = cash / (open * (1 +
fee))``), sell everything on an exit, ignore entries while in a position and exits while flat
(vectorbt's ``direction="longonly"``, ``accumulate=False``), and mark at the close.

Costs are the fee alone (no spread, no market impact). The signals are moving-average
crossovers (an entry where the fast average moves above the slow one, an exit where it moves back
to or below it), or dense random ones; an entry and an exit never fall on the same bar. (Where
they do, tradeflow takes the exit when holding and the entry when flat; none of vectorbt's
conflict modes is that state-dependent rule, so the tests keep such bars out.)

Compared: the number of trades, each trade's entry and exit times, prices, fees (tradeflow's
``fees`` is the entry fee plus the exit fee; vectorbt records them apart), quantity, pnl and
return, the position still open at the end, the orders, the equity at every bar's close and the
final equity, to 1e-9 relative.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradeflow.backtest.costs import CostModel
from tradeflow.backtest.engine import BacktestConfig, MarketData, run_signals
from tradeflow.timeframes import MINUTE_MS

vbt = pytest.importorskip("vectorbt")
# vectorbt 1.2's records_readable calls DataFrame.rename(inplace=True), which pandas deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.rename:DeprecationWarning")

T0 = 1_790_000_000_000 - (1_790_000_000_000 % (24 * 60 * MINUTE_MS))
RTOL = 1e-9
EQUITY = 100_000.0


def random_walk(seed: int, bars: int, start: float = 100.0) -> pd.DataFrame:
    """Seeded 1-minute candles on a full grid: a log-normal walk, opens near the previous close."""
    rng = np.random.default_rng(seed)
    close = start * np.exp(np.cumsum(rng.normal(0.0, 0.001, bars)))
    open_ = np.concatenate([[start], close[:-1]]) * np.exp(rng.normal(0.0, 0.0002, bars))
    wick = np.abs(rng.normal(0.0, 0.0005, bars))
    return pd.DataFrame({
        "timestamp": T0 + MINUTE_MS * np.arange(bars, dtype=np.int64),
        "open": open_, "high": np.maximum(open_, close) * (1 + wick),
        "low": np.minimum(open_, close) * (1 - wick), "close": close, "volume": rng.uniform(1.0, 50.0, bars),
    })  # fmt: skip


def crossover_signals(close: np.ndarray, fast: int, slow: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (entries, exits): the fast simple average crosses above the slow one, and back."""
    series = pd.Series(close)
    above = (series.rolling(fast).mean() > series.rolling(slow).mean()).to_numpy()
    before = np.concatenate([[False], above[:-1]])
    return above & ~before, ~above & before


def market_and_signals(
    candles: dict[str, pd.DataFrame], fast: int, slow: int
) -> tuple[MarketData, np.ndarray, np.ndarray]:
    market = MarketData.from_candles(candles)
    pairs = [crossover_signals(market.close[row], fast, slow) for row in range(len(market.symbols))]
    entries = np.stack([p[0] for p in pairs])
    exits = np.stack([p[1] for p in pairs])
    assert not (entries & exits).any()  # no bar with both: the conflict rules differ (module docstring)
    return market, entries, exits


def run_vectorbt(
    market: MarketData, entries: np.ndarray, exits: np.ndarray, fee: float, equity: float = EQUITY
) -> object:
    """``Portfolio.from_signals`` on the same bars: signals shifted one bar, filled at the open.

    Every test calls it the same way: vectorbt's simulation loop is not in numba's disk cache, so
    each new combination of argument types costs a compile of about 4 s.
    """
    index = pd.to_datetime(market.times, unit="ms")  # UTC, tz-naive: vectorbt is slow on tz-aware
    columns = pd.Index(market.symbols)

    def frame(values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(values.T, index=index, columns=columns)

    return vbt.Portfolio.from_signals(
        close=frame(market.close),
        entries=frame(entries).shift(1, fill_value=False),
        exits=frame(exits).shift(1, fill_value=False),
        price=frame(market.open),
        fees=fee,
        init_cash=equity / len(market.symbols),
        direction="longonly",
        accumulate=False,
        cash_sharing=False,
        group_by=None,
        freq="1min",
    )


def assert_parity(market: MarketData, entries: np.ndarray, exits: np.ndarray, fee: float = 0.001) -> int:
    """Run both, require they agree, and return the number of closed trades."""
    costs = {s: CostModel(taker_fee=fee, maker_fee=fee, half_spread=0.0, impact_coefficient=0.0)
             for s in market.symbols}  # fmt: skip
    ours = run_signals(market, entries, exits, costs)
    pf = run_vectorbt(market, entries, exits, fee)

    records = pf.trades.records_readable  # type: ignore[attr-defined]
    theirs = records[records["Status"] == "Closed"]
    theirs = theirs.assign(
        symbol=theirs["Column"].astype(str),
        entry_time=pd.DatetimeIndex(theirs["Entry Timestamp"]).as_unit("ms").asi8,
        exit_time=pd.DatetimeIndex(theirs["Exit Timestamp"]).as_unit("ms").asi8,
    ).sort_values(["symbol", "entry_time"], kind="stable")
    trades = ours.trades.sort_values(["symbol", "entry_time"], kind="stable")

    assert len(trades) == len(theirs) > 0
    assert trades["symbol"].tolist() == theirs["symbol"].tolist()
    assert np.array_equal(trades["entry_time"].to_numpy(np.int64), theirs["entry_time"].to_numpy())
    assert np.array_equal(trades["exit_time"].to_numpy(np.int64), theirs["exit_time"].to_numpy())
    assert (trades["direction"] == 1).all()

    def close(ours_values: pd.Series, their_values: pd.Series | np.ndarray) -> None:
        np.testing.assert_allclose(
            ours_values.to_numpy(float), np.asarray(their_values, float), rtol=RTOL, atol=0
        )

    close(trades["entry_price"], theirs["Avg Entry Price"])
    close(trades["exit_price"], theirs["Avg Exit Price"])
    close(trades["quantity"], theirs["Size"])
    close(trades["fees"], theirs["Entry Fees"] + theirs["Exit Fees"])
    # pnl can be near zero: relative to the trade's notional instead.
    notional = (trades["quantity"] * trades["entry_price"]).to_numpy()
    assert np.all(np.abs(trades["pnl"].to_numpy() - theirs["PnL"].to_numpy()) <= RTOL * notional)
    # Both define a trade's return as its pnl over its entry notional (fees not included).
    assert np.all(np.abs(trades["return"].to_numpy() - theirs["Return"].to_numpy()) <= RTOL)

    # The position still open at the end: tradeflow keeps it out of its trades.
    still_open = records[records["Status"] == "Open"]
    held = ours.fills.groupby("symbol")["side"].count() % 2 == 1
    assert sorted(held[held].index) == sorted(still_open["Column"].astype(str))
    assert len(ours.fills) == len(pf.orders.records)  # type: ignore[attr-defined]

    value = pf.value()  # type: ignore[attr-defined]
    curve = (value.sum(axis=1) if isinstance(value, pd.DataFrame) else value).to_numpy()
    np.testing.assert_allclose(ours.equity["equity"].to_numpy(), curve, rtol=RTOL, atol=0)
    final = float(np.sum(pf.final_value()))  # type: ignore[attr-defined]
    assert ours.equity["equity"].iloc[-1] == pytest.approx(final, rel=RTOL, abs=0)
    return len(trades)


def test_random_walk_ma_crossover_matches_vectorbt() -> None:
    market, entries, exits = market_and_signals({"BTC/USDT": random_walk(11, 20_000)}, 10, 50)
    assert assert_parity(market, entries, exits) > 200


def test_zero_fees_and_slower_averages_match_vectorbt() -> None:
    market, entries, exits = market_and_signals({"ETH/USDT": random_walk(12, 20_000, 2_000.0)}, 30, 240)
    assert assert_parity(market, entries, exits, fee=0.0) > 20


def test_three_symbols_with_their_own_cash_match_vectorbt() -> None:
    starts = (("BTC/USDT", 21, 60_000.0), ("ETH/USDT", 22, 3_000.0), ("SOL/USDT", 23, 150.0))
    candles = {symbol: random_walk(seed, 20_000, price) for symbol, seed, price in starts}
    market, entries, exits = market_and_signals(candles, 15, 90)
    assert assert_parity(market, entries, exits) > 3 * 50


def test_back_to_back_signals_match_vectorbt() -> None:
    """Dense random signals: entries right after exits, exits right after entries, the last bar."""
    market = MarketData.from_candles({"BTC/USDT": random_walk(31, 5_000)})
    rng = np.random.default_rng(32)
    entries = rng.random((1, 5_000)) < 0.3
    exits = (rng.random((1, 5_000)) < 0.3) & ~entries
    entries[0, -1] = True  # a signal on the last bar has no next bar to fill on: dropped by both
    assert assert_parity(market, entries, exits) > 500


def test_initial_equity_is_split_like_vectorbt_init_cash() -> None:
    market, entries, exits = market_and_signals({"BTC/USDT": random_walk(41, 3_000)}, 5, 20)
    costs = {"BTC/USDT": CostModel(0.001, 0.001, 0.0, 0.0)}
    config = BacktestConfig(initial_equity=2_500.0, participation=np.inf, order_timeout_bars=10**9)
    ours = run_signals(market, entries, exits, costs, config)
    pf = run_vectorbt(market, entries, exits, 0.001, equity=2_500.0)
    assert len(ours.trades) == int((pf.trades.records_readable["Status"] == "Closed").sum())  # type: ignore[attr-defined]
    assert ours.equity["equity"].iloc[0] == pytest.approx(2_500.0, rel=RTOL)
    assert ours.equity["equity"].iloc[-1] == pytest.approx(float(np.sum(pf.final_value())), rel=RTOL, abs=0)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["UNKNOWN-BTC_1m.parquet", "XRP-ETH_1m.parquet"])
def test_real_binance_1m_candles_match_vectorbt(real_data: Path, name: str) -> None:
    """Recorded Binance 1m candles, holes kept: the grid is the file's own timestamps."""
    path = real_data / "binance" / name
    if not path.is_file():
        pytest.skip(f"{path} is not in the real data folder")
    frame = pd.read_parquet(path)
    frame["timestamp"] = frame["timestamp"].astype("int64")
    assert (np.diff(frame["timestamp"].to_numpy()) > MINUTE_MS).any()  # the file has holes
    market, entries, exits = market_and_signals({"PAIR/QUOTE": frame}, 10, 50)
    assert market.times.size == len(frame)  # nothing dropped, nothing added
    assert assert_parity(market, entries, exits) > 20
