"""The backtest engine: fills inside the bar, fees and slippage charged, latency, volume, holes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tradeflow.backtest.costs import CostModel, calibrate_costs, fill_price
from tradeflow.backtest.engine import BacktestConfig, Decisions, MarketData, run_backtest, run_signals
from tradeflow.strategy.allocation import AllocationLimits
from tradeflow.strategy.protections import ProtectionConfig
from tradeflow.timeframes import MINUTE_MS

T0 = 1_790_000_000_000 - (1_790_000_000_000 % (24 * 60 * MINUTE_MS))
SYMBOLS = ("AAA/USDT", "BBB/USDT", "CCC/USDT", "DDD/USDT", "EEE/USDT")


def candles(seed: int, bars: int = 6000, holes: float = 0.0, drift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(drift, 0.002, bars)))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0, 0.001, bars)) * close
    frame = pd.DataFrame(
        {
            "timestamp": T0 + MINUTE_MS * np.arange(bars, dtype=np.int64),
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.uniform(5, 50, bars),
        }
    )
    keep = rng.random(bars) >= holes
    keep[0] = True
    return frame[keep].reset_index(drop=True)


def features_for(market_candles: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """A feature matrix with the decision columns: trends from past closes only."""
    frames = []
    for symbol, frame in market_candles.items():
        close = frame["close"]
        trend = (close / close.shift(60) - 1).fillna(0.0).to_numpy()
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "timestamp": frame["timestamp"],
                    **{f"tf{tf}_macd_histogram_relative": trend for tf in ("5m", "15m", "1h", "4h")},
                    "atr_percentile": 0.5,
                    "atr_relative": 0.004,
                    "profile_value_area_high_distance": -0.001,
                    "profile_value_area_low_distance": 0.001,
                    "realized_volatility_1440": 0.002,
                    "regime": "RANGING",
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def predictions_for(features: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = features.loc[(features["timestamp"] // MINUTE_MS) % 15 == 0, ["symbol", "timestamp"]].copy()
    rows["probability"] = rng.uniform(0.4, 0.7, len(rows))
    return rows


def run(
    config: BacktestConfig | None = None,
    holes: float = 0.0,
    costs: CostModel | None = None,
    symbols: tuple[str, ...] = SYMBOLS,
):  # type: ignore[no-untyped-def]
    data = {symbol: candles(i, holes=holes) for i, symbol in enumerate(symbols)}
    features = features_for(data)
    market = MarketData.from_candles(data)
    config = config or BacktestConfig()
    decisions = Decisions.build(market, features, predictions_for(features), config.decision_minutes)
    model = costs or CostModel(0.001, 0.0008, 0.0002, 0.05)
    return (
        data,
        market,
        run_backtest(market, decisions, config, dict.fromkeys(symbols, model), model_version="1"),
    )


def test_every_fill_lies_inside_its_bar_and_never_on_a_hole() -> None:
    data, _, result = run(holes=0.05)
    fills = result.fills
    assert len(fills) > 50
    for symbol, frame in data.items():
        bars = frame.set_index("timestamp")
        mine = fills[fills["symbol"] == symbol]
        assert mine["time"].isin(bars.index).all(), "a fill on a bar the venue never published"
        high = bars.loc[mine["time"], "high"].to_numpy()
        low = bars.loc[mine["time"], "low"].to_numpy()
        assert (mine["price"].to_numpy() <= high + 1e-9).all() and (
            mine["price"].to_numpy() >= low - 1e-9
        ).all()


def test_fees_and_slippage_are_charged_and_add_up_in_the_equity() -> None:
    _, _, result = run()
    fills, costs = result.fills, result.cost_summary()
    taker = fills["kind"].eq("entry")
    assert fills.loc[taker, "fee"].to_numpy() == pytest.approx(
        fills.loc[taker, "notional"].to_numpy() * 0.001
    )
    assert costs["fees"] > 0 and costs["spread"] > 0 and costs["market_impact"] > 0
    # Cash moves by exactly the fills' notional and fees.
    signed = np.where(fills["side"] == "buy", -1.0, 1.0) * fills["notional"] - fills["fee"]
    last = result.equity.iloc[-1]
    assert last["cash"] == pytest.approx(100_000.0 + signed.sum())
    trades = result.trades
    assert trades["fees"].sum() <= costs["fees"] + 1e-6


def test_entries_fill_no_earlier_than_the_bar_after_the_decision_or_after_the_latency() -> None:
    for latency, earliest in ((0, 1), (150_000, 3)):
        _, _, result = run(BacktestConfig(latency_ms=latency))
        signals = result.signals[result.signals["outcome"] == "entry"].set_index("id")
        entries = result.fills[result.fills["kind"] == "entry"].drop_duplicates("order_id")
        assert len(entries) > 10
        joined = result.trades.merge(signals[["time"]], left_on="signal_id", right_index=True)
        delays = (joined["entry_time"] - joined["time"]) // MINUTE_MS
        assert (delays >= earliest).all()


def test_fills_take_at_most_the_participation_share_of_bar_volume() -> None:
    config = BacktestConfig(participation=0.01)
    data, _, result = run(config)
    assert result.fills["partial"].any()
    volume = (
        pd.concat(data.values(), keys=data.keys()).reset_index(level=0).rename(columns={"level_0": "symbol"})
    )
    per_bar = result.fills.groupby(["symbol", "time"])["quantity"].sum().reset_index()
    joined = per_bar.merge(volume, left_on=["symbol", "time"], right_on=["symbol", "timestamp"])
    assert (joined["quantity"] <= 0.01 * joined["volume"] * (1 + 1e-9)).all()


def test_allocation_caps_hold_in_the_backtest() -> None:
    limits = AllocationLimits(max_symbol_weight=0.15, correlated_group_weight=0.5, risk_budget=1.0)
    _, _, result = run(BacktestConfig(allocation=limits))
    assert result.weights["target_weight"].abs().max() <= 0.15 + 1e-12
    # Fills follow the allocation: no position ever exceeds the cap by more than price drift.
    assert result.weights["actual_weight"].abs().max() <= 0.15 * 1.2


def test_drawdown_halt_closes_everything_and_stops_entries() -> None:
    config = BacktestConfig(protections=ProtectionConfig(max_drawdown=0.002, daily_loss_limit=0))
    _, _, result = run(config)
    events = result.protection_events
    assert "max_drawdown" in set(events["kind"])
    halted_at = int(events.loc[events["kind"] == "max_drawdown", "time"].iloc[0])
    later_entries = result.fills[
        (result.fills["kind"] == "entry") & (result.fills["time"] > halted_at + 60 * MINUTE_MS)
    ]
    assert later_entries.empty
    assert result.rejections["reason"].str.contains("trading halted").any()
    assert result.equity["exposure"].iloc[-1] == 0.0


def test_a_run_is_deterministic() -> None:
    _, _, first = run()
    _, _, second = run()
    pd.testing.assert_frame_equal(first.fills, second.fills)
    pd.testing.assert_frame_equal(first.equity, second.equity)


def test_fill_price_is_clamped_to_the_bar() -> None:
    assert fill_price(1, 100.0, 0.5, high=101.0, low=99.0) == 101.0
    assert fill_price(-1, 100.0, 0.5, high=101.0, low=99.0) == 99.0
    assert fill_price(1, 100.0, 0.001, high=101.0, low=99.0) == pytest.approx(100.1)


def test_costs_are_calibrated_from_order_books() -> None:
    mid, rows = 100.0, []
    for snapshot in range(3):
        for level in range(50):
            rows.append((snapshot, "ask", level, mid * (1.0005 + 0.0004 * level), 10.0))
            rows.append((snapshot, "bid", level, mid * (0.9995 - 0.0004 * level), 10.0))
    books = pd.DataFrame(rows, columns=["snapshot_ts", "side", "level", "price", "amount"])
    model = calibrate_costs(books, 0.001, 0.0008, CostModel())
    assert model.half_spread == pytest.approx(0.0005, rel=1e-6)
    # Within 1 % of the mid: 24 levels a side (100.05 + 0.04 k <= 101).
    asks = sum(100 * (1.0005 + 0.0004 * k) * 10 for k in range(24))
    bids = sum(100 * (0.9995 - 0.0004 * k) * 10 for k in range(24))
    assert model.depth == pytest.approx((asks + bids) / 2, rel=1e-9)
    assert model.impact_coefficient > 0 and model.source == "order books (3 snapshots)"
    spread, impact = model.slippage(0.25 * model.depth, 1.0)
    assert spread == model.half_spread and impact == pytest.approx(model.impact_coefficient * 0.5)
    assert calibrate_costs(None, 0.001, 0.0008, CostModel()).source == "config"


def test_signals_mode_buys_with_all_cash_and_sells_everything() -> None:
    data = {"AAA/USDT": candles(1, bars=500)}
    market = MarketData.from_candles(data)
    entries = np.zeros((1, 500), dtype=bool)
    exits = np.zeros((1, 500), dtype=bool)
    entries[0, [10, 20, 200]] = True
    exits[0, [100, 150, 300]] = True
    result = run_signals(market, entries, exits, {"AAA/USDT": CostModel(0.001, 0.001, 0.0, 0.0)})
    trades = result.trades
    assert len(trades) == 2
    opens = data["AAA/USDT"]["open"].to_numpy()
    assert trades["entry_price"].tolist() == pytest.approx([opens[11], opens[201]])
    assert trades["exit_price"].tolist() == pytest.approx([opens[101], opens[301]])
    first = 100_000 / (opens[11] * 1.001)
    assert trades["quantity"].iloc[0] == pytest.approx(first)
    assert math.isclose(result.equity["cash"].iloc[-1], result.equity["equity"].iloc[-1])


def test_signals_mode_never_spends_more_than_the_cash_with_slippage() -> None:
    times = T0 + MINUTE_MS * np.arange(4, dtype=np.int64)
    bars = pd.DataFrame(
        {"timestamp": times, "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.0, "volume": 1e9}
    )
    entries = np.array([[True, False, False, False]])
    result = run_signals(
        MarketData.from_candles({"X": bars}),
        entries,
        np.zeros((1, 4), dtype=bool),
        {"X": CostModel(0.001, 0.001, half_spread=0.005, impact_coefficient=0.0)},
    )
    [fill] = result.fills.itertuples()
    assert fill.price == pytest.approx(100.5)
    assert result.equity["cash"].iloc[-1] == pytest.approx(0.0, abs=1e-6)


def test_why_no_signal_is_counted_per_reason() -> None:
    from tradeflow.strategy.signals import SignalConfig

    strict = SignalConfig(long_threshold=0.9, long_threshold_bounds=(0.9, 0.95))
    _, _, result = run(BacktestConfig(signal=strict))
    assert result.trades.empty and result.fills.empty
    assert result.no_signal["inside the thresholds"] > 100
