"""The streaming decider: the backtest's decisions on the same bars, and intents a venue accepts.

The parity test replays a backtest bar by bar through the decider: the same candles (warmed up,
then streamed one closed bar at a time), the same LightGBM champion (scored from the streamed
rows by the fast scorer, not from the batch matrix), and, as the ledger would, the backtest's
own fills, positions and equity. Every signal (fingerprint included), every outcome (entry,
held, blocked and why), every entry quantity and every exit must be the backtest's.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from models.estimators import fit_calibrated
from tradeflow.backtest.costs import CostModel
from tradeflow.backtest.engine import BacktestConfig, BacktestResult, Decisions, MarketData, run_backtest
from tradeflow.execution.bars import Bar
from tradeflow.execution.book import DepthSnapshot, DepthUpdate, LocalOrderBook
from tradeflow.execution.decider import ChurnDecider, Decider, DeciderConfig, Decision
from tradeflow.execution.risk import OrderIntent, PortfolioView, PreTradeRisk, RiskLimits
from tradeflow.execution.scoring import scorer_for
from tradeflow.features.build import build_feature_matrix, feature_columns
from tradeflow.features.spec import FeatureSpec
from tradeflow.strategy.allocation import AllocationLimits, MarketRules
from tradeflow.strategy.exits import ExitConfig
from tradeflow.strategy.protections import ProtectionConfig
from tradeflow.strategy.signals import SignalConfig
from tradeflow.timeframes import DAY_MS, MINUTE_MS

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
START = 1_790_000_000_000 - 1_790_000_000_000 % DAY_MS
WARM_DAYS, STREAM_MINUTES = 4, 600
SPLIT = START + WARM_DAYS * DAY_MS
DECISION_MINUTES = 5
#: Shorter windows than the default so four days are a full warm-up (the 4h MACD, the profile).
SPEC = FeatureSpec(
    volume_profile_window_minutes=720,
    regime_atr_window=1440,
    regime_atr_min_periods=240,
    regime_min_dwell=20,
    macd_fast=6,
    macd_slow=13,
    macd_signal=5,
)
SIGNAL = SignalConfig(long_threshold=0.51, long_threshold_bounds=(0.505, 0.6), cooldown_minutes=10)
EXITS = ExitConfig(time_exit_minutes=90)
PROTECTIONS = ProtectionConfig(
    cooldown_minutes=15, stop_guard_count=2, stop_guard_window_minutes=120, stop_guard_pause_minutes=30
)
ALLOCATION = AllocationLimits()
RULES = {symbol: MarketRules(min_notional=10.0, quantity_step=0.001, price_step=0.01) for symbol in SYMBOLS}
RESTING = ("stop", "trailing_stop", "breakeven_stop", "take_profit")


def trending_market(seed: int = 11) -> dict[str, pd.DataFrame]:
    """Correlated random walks with 3-hour trends, so the timeframes agree often enough to trade."""
    minutes = WARM_DAYS * 1440 + STREAM_MINUTES
    rng = np.random.default_rng(seed)
    trend = np.repeat(rng.choice([-1.0, 1.0, 1.0, 0.0], minutes // 180 + 1), 180)[:minutes]
    common = np.cumsum(rng.normal(0, 0.0008, minutes) + 0.00025 * trend)
    frames = {}
    for index, symbol in enumerate(SYMBOLS):
        close = 100.0 * (index + 1) * np.exp(common + np.cumsum(rng.normal(0, 0.0006, minutes)))
        open_ = np.concatenate([[close[0]], close[:-1]])
        spread = np.abs(rng.normal(0, 0.0004, minutes)) * close
        frames[symbol] = pd.DataFrame(
            {
                "timestamp": START + MINUTE_MS * np.arange(minutes, dtype=np.int64),
                "open": open_,
                "high": np.maximum(open_, close) + spread,
                "low": np.minimum(open_, close) - spread,
                "close": close,
                "volume": rng.uniform(50, 500, minutes),
            }
        )
    return frames


class EmptyBook:
    """An in-sync book with no levels: book features NaN, as in a matrix built without books."""

    in_sync = True

    def top(self, count: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        return [], []


def synced_book(symbol: str, mid: float, tick: float = 0.01, levels: int = 20) -> LocalOrderBook:
    """A local book synced from a snapshot around ``mid`` (bids and asks one tick apart)."""
    book = LocalOrderBook(symbol)
    bid = math.floor(mid / tick) * tick
    bids = tuple((round(bid - i * tick, 8), 5.0 + i) for i in range(levels))
    asks = tuple((round(bid + (i + 1) * tick, 8), 4.0 + i) for i in range(levels))
    book.on_snapshot(DepthSnapshot(100, bids, asks))
    book.on_update(DepthUpdate(101, 101, 0, (), ()))
    assert book.in_sync
    return book


@dataclasses.dataclass
class Replay:
    candles: dict[str, pd.DataFrame]
    result: BacktestResult
    decisions: list[Decision]
    model: Any


def decider_for(model: Any, **config: Any) -> Decider:
    settings = DeciderConfig(decision_minutes=DECISION_MINUTES, correlation_window_days=3.0, **config)
    return Decider(SPEC, SIGNAL, ALLOCATION, EXITS, PROTECTIONS, RULES, scorer_for(model), settings, "7")


@pytest.fixture(scope="module")
def replay() -> Replay:
    candles = trending_market()
    matrix = build_feature_matrix(candles, SPEC)
    names = feature_columns(matrix)
    train = matrix[matrix["timestamp"] < SPLIT - 60 * MINUTE_MS]
    ahead = {}
    for symbol, frame in candles.items():
        close = frame["close"].to_numpy()
        change = np.full(close.size, np.nan)
        change[:-15] = close[15:] / close[:-15] - 1.0
        ahead[symbol] = pd.Series(change, index=frame["timestamp"])
    labels = np.array([ahead[s][t] for s, t in zip(train["symbol"], train["timestamp"], strict=True)])
    known = ~np.isnan(labels)
    model = fit_calibrated(
        "lightgbm",
        train.loc[known, names],
        (labels[known] > 0).astype(int),
        params={"n_estimators": 40, "num_leaves": 15, "n_jobs": 1},  # one thread: robust to a busy machine
    )
    stretch = matrix[
        (matrix["timestamp"] >= SPLIT) & ((matrix["timestamp"] // MINUTE_MS) % DECISION_MINUTES == 0)
    ]
    probabilities = stretch[["symbol", "timestamp"]].assign(probability=model.predict_proba(stretch[names]))
    market = MarketData.from_candles(candles)
    decisions = Decisions.build(market, matrix, probabilities, DECISION_MINUTES)
    config = BacktestConfig(
        decision_minutes=DECISION_MINUTES,
        participation=math.inf,
        signal=SIGNAL,
        exits=EXITS,
        protections=PROTECTIONS,
        allocation=ALLOCATION,
        correlation_window_days=3.0,
    )
    costs = dict.fromkeys(SYMBOLS, CostModel(0.001, 0.0008, 0.0002, 0.05))
    result = run_backtest(market, decisions, config, costs, RULES, model_version="7")

    # The decider, fed as the session feeds it, with the backtest standing in for the venue and
    # the ledger: its fills (market orders before the bar's exits, resting exits after), its
    # positions and its equity.
    decider = decider_for(model, mark_equity=False)
    for symbol, frame in candles.items():
        decider.warm_up(symbol, frame[frame["timestamp"] < SPLIT])
    fills = {int(time): group for time, group in result.fills.groupby("time")}
    equity = result.equity.set_index("timestamp")["equity"]
    positions = dict.fromkeys(SYMBOLS, 0.0)

    def feed(frame: pd.DataFrame | None, time: int) -> None:
        for fill in () if frame is None else frame.itertuples():
            side = 1 if fill.side == "buy" else -1
            decider.on_fill(fill.symbol, side, fill.quantity, fill.price, time)
            positions[fill.symbol] += side * fill.quantity
            if abs(positions[fill.symbol]) < 1e-12:
                positions[fill.symbol] = 0.0

    for time in market.times[market.times >= int(decisions.times[0])].tolist():
        here = fills.get(time)
        resting = None if here is None else here[here["reason"].str.startswith(RESTING)]
        feed(None if here is None else here[~here["reason"].str.startswith(RESTING)], time)
        row = (time - START) // MINUTE_MS
        for symbol in SYMBOLS:
            candle = candles[symbol].iloc[row]
            decider.on_bar(
                symbol, Bar(time, candle.open, candle.high, candle.low, candle.close, candle.volume)
            )
        feed(resting, time)
        decider.mark_equity(time, float(equity[time]))
        if (time // MINUTE_MS) % DECISION_MINUTES == 0:
            marks = {symbol: decider.features.close(symbol) for symbol in SYMBOLS}
            portfolio = PortfolioView(float(equity[time]), float(equity[time]), dict(positions), marks)
            assert decider.on_book(SYMBOLS[0], EmptyBook(), time + MINUTE_MS, portfolio, {}) == []
    return Replay(candles, result, decider.drain(), model)


def test_signals_are_the_backtests_fingerprint_for_fingerprint(replay: Replay) -> None:
    signals = replay.result.signals
    assert len(signals) > 30 and (signals["outcome"] == "entry").sum() > 10, "the scenario must trade"
    ours = [(d.bar_time, d.symbol, d.signal_id) for d in replay.decisions if d.kind == "signal"]
    assert ours == list(zip(signals["time"], signals["symbol"], signals["id"], strict=True))


def test_every_outcome_is_the_backtests_with_the_same_reason(replay: Replay) -> None:
    signals = replay.result.signals
    theirs = dict(zip(zip(signals["time"], signals["symbol"], strict=True), signals["outcome"], strict=True))
    ours = {
        (d.bar_time, d.symbol): d.reason
        for d in replay.decisions
        if d.kind in ("entry", "held", "blocked") or (d.kind == "exit" and d.reason.startswith("exit: "))
    }
    assert ours.keys() == theirs.keys()
    for key, outcome in theirs.items():
        assert ours[key].startswith(outcome), key  # ours adds the allocation's reasons to an entry
    assert any(outcome.startswith("blocked: entries paused") for outcome in theirs.values())
    assert any(outcome.startswith("blocked: cooldown") for outcome in theirs.values())
    assert any(outcome.startswith("held: position already open") for outcome in theirs.values())


def test_entry_quantities_are_the_backtests_allocation(replay: Replay) -> None:
    fills = replay.result.fills
    entries = (
        fills[fills["kind"] == "entry"]
        .groupby("order_id")
        .agg(time=("time", "first"), symbol=("symbol", "first"), quantity=("quantity", "sum"))
    )
    theirs = {
        (t - MINUTE_MS, s): q
        for t, s, q in zip(entries["time"], entries["symbol"], entries["quantity"], strict=True)
    }
    ours = {(d.bar_time, d.symbol): d.quantity for d in replay.decisions if d.kind == "entry"}
    assert ours == theirs


def test_exits_are_the_backtests_on_the_same_bars(replay: Replay) -> None:
    """Stops and take-profits on the bar they trigger; market exits (time, cut-backs) a bar earlier."""
    fills = replay.result.fills
    exits = fills[fills["kind"] == "exit"]
    theirs = sorted(
        (int(time) if reason.startswith(RESTING) else int(time) - MINUTE_MS, symbol, reason)
        for time, symbol, reason in zip(exits["time"], exits["symbol"], exits["reason"], strict=True)
    )
    ours = sorted(
        [
            (d.bar_time, d.symbol, d.reason.split(" ")[0].rstrip(":"))
            for d in replay.decisions
            if d.kind == "exit" and not d.reason.startswith("exit: ")
        ]
        + [(d.bar_time, d.symbol, "rebalance to the caps") for d in replay.decisions if d.kind == "rebalance"]
    )
    assert len(theirs) > 20 and {"stop", "take_profit_1", "rebalance to the caps"} <= {
        r for _, _, r in theirs
    }
    assert ours == theirs


def test_protections_trigger_as_in_the_backtest(replay: Replay) -> None:
    """The same stop-guard pauses at the same times. A pause's end is recorded on the bar it ends
    here; the backtest, which skips bars when nothing can happen, records it on the next bar it
    steps (the pause is over for both from the same bar on)."""
    events = replay.result.protection_events
    theirs = [
        (int(t), f"{k}: {r}")
        for t, k, r in zip(events["time"], events["kind"], events["reason"], strict=True)
    ]
    ours = [(d.time_ms, d.reason) for d in replay.decisions if d.kind == "protection"]
    assert [reason for _, reason in ours] == [reason for _, reason in theirs]
    assert [e for e in ours if not e[1].startswith("resume")] == [
        e for e in theirs if not e[1].startswith("resume")
    ]
    assert any(reason.startswith("stop_guard") for _, reason in theirs)


def test_every_decision_carries_a_reason(replay: Replay) -> None:
    kinds = {d.kind for d in replay.decisions}
    assert {"signal", "no_signal", "entry", "held", "blocked", "exit", "fill", "protection"} <= kinds
    assert all(d.reason for d in replay.decisions)


# -- intents ---------------------------------------------------------------------------------


def decider_at_first_entry(replay: Replay) -> tuple[Decider, int, float]:
    """A fresh decider warmed up to the bar of the backtest's first entry decision."""
    signals = replay.result.signals
    first = signals[signals["outcome"] == "entry"].iloc[0]
    time, symbol = int(first["time"]), str(first["symbol"])
    decider = decider_for(replay.model)
    for name, frame in replay.candles.items():
        decider.warm_up(name, frame[frame["timestamp"] <= time])
    equity = float(replay.result.equity.set_index("timestamp")["equity"][time])
    assert symbol == "SOL/USDT", "the scenario's first entry"
    return decider, time, equity


def portfolio(decider: Decider, equity: float, positions: dict[str, float] | None = None) -> PortfolioView:
    marks = {symbol: decider.features.close(symbol) for symbol in SYMBOLS}
    return PortfolioView(equity, equity, positions or dict.fromkeys(SYMBOLS, 0.0), marks)


def test_an_entry_becomes_a_marketable_limit_order_the_risk_checks_accept(replay: Replay) -> None:
    decider, time, equity = decider_at_first_entry(replay)
    now = time + MINUTE_MS + 50
    book = synced_book("SOL/USDT", decider.features.close("SOL/USDT"))
    view = portfolio(decider, equity)
    intents = decider.on_book("SOL/USDT", book, now, view, {})
    assert len(intents) == 1
    intent = intents[0]
    entry = next(d for d in decider.drain() if d.kind == "entry")
    ask = book.best_ask()
    assert ask is not None
    assert intent.side == 1 and not intent.reduce_only
    assert intent.quantity == entry.quantity and round(intent.quantity / 0.001, 6).is_integer()
    assert intent.price == pytest.approx(math.ceil(ask[0] * 1.0005 / 0.01) * 0.01)
    assert intent.quantity * intent.price <= ALLOCATION.max_symbol_weight * equity * 1.001
    assert intent.quantity * intent.price >= RULES["SOL/USDT"].min_notional
    assert intent.client_order_id.startswith("tf-") and len(intent.client_order_id) <= 36
    assert decider.reason(intent.client_order_id) and "ml+" in (decider.reason(intent.client_order_id) or "")
    # The order traces back to its signal (the session records it in the ledger and the audit chain).
    signal = decider.signal_of(intent.client_order_id)
    assert signal is not None and signal.id == entry.signal_id and signal.symbol == "SOL/USDT"
    risk = PreTradeRisk(RiskLimits(max_order_notional=50_000.0))
    decision = risk.check(intent, decider.market_view("SOL/USDT", now), view)
    assert decision.accepted, decision.reason

    # The same decision taken again (a restart) proposes the same client order id.
    again, _, _ = decider_at_first_entry(replay)
    assert again.on_book("SOL/USDT", book, now, view, {}) == intents
    # While the order is in flight nothing more is proposed; once it ended unfilled, a retry is
    # a new order (a new id), no sooner than resend_ms later.
    assert decider.on_book("SOL/USDT", book, now + 10, view, {"SOL/USDT": intent.quantity}) == []
    assert decider.on_book("SOL/USDT", book, now + 100, view, {}) == []
    retry = decider.on_book("SOL/USDT", book, now + 2_100, view, {})
    assert [(i.side, i.quantity) for i in retry] == [(1, intent.quantity)]
    assert retry[0].client_order_id != intent.client_order_id
    # Half of it filled: the rest is proposed; all of it filled: nothing.
    half = round(intent.quantity / 2, 3)
    filled = portfolio(decider, equity, {"SOL/USDT": half, "BTC/USDT": 0.0, "ETH/USDT": 0.0})
    rest = decider.on_book("SOL/USDT", book, now + 4_200, filled, {})
    assert [(i.side, round(i.quantity, 9)) for i in rest] == [(1, round(intent.quantity - half, 9))]
    done = portfolio(decider, equity, {"SOL/USDT": intent.quantity, "BTC/USDT": 0.0, "ETH/USDT": 0.0})
    assert decider.on_book("SOL/USDT", book, now + 6_300, done, {}) == []
    assert "SOL/USDT" not in decider.targets


def test_no_intent_on_a_book_out_of_sync(replay: Replay) -> None:
    decider, time, equity = decider_at_first_entry(replay)
    book = LocalOrderBook("SOL/USDT")  # never synced: empty, not in sync
    assert decider.on_book("SOL/USDT", book, time + MINUTE_MS + 50, portfolio(decider, equity), {}) == []
    assert "SOL/USDT" in decider.targets, "the decision stands; the intent waits for a synced book"


def test_an_exit_is_reduce_only_and_never_larger_than_the_position(replay: Replay) -> None:
    decider, time, equity = decider_at_first_entry(replay)
    book = synced_book("SOL/USDT", decider.features.close("SOL/USDT"))
    now = time + MINUTE_MS + 50
    entry = decider.on_book("SOL/USDT", book, now, portfolio(decider, equity), {})[0]
    decider.on_fill("SOL/USDT", 1, entry.quantity, entry.price, now + 20)
    held = portfolio(decider, equity, {"SOL/USDT": entry.quantity, "BTC/USDT": 0.0, "ETH/USDT": 0.0})
    exits = decider.position_exits("SOL/USDT")
    assert exits is not None and exits.entry_price == entry.price
    stop = exits.stop_level()[0]
    crash = Bar(time + 2 * MINUTE_MS, stop, stop, stop * 0.98, stop * 0.99, 100.0)  # the bar after the fill's
    decider.on_bar("SOL/USDT", crash)
    assert any(d.kind == "exit" and d.reason.startswith("stop") for d in decider.drain())
    low_book = synced_book("SOL/USDT", stop * 0.99)
    intents = decider.on_book("SOL/USDT", low_book, now + MINUTE_MS, held, {})
    assert len(intents) == 1
    exit_ = intents[0]
    bid = low_book.best_bid()
    assert bid is not None
    assert exit_.side == -1 and exit_.reduce_only and exit_.quantity == entry.quantity
    assert exit_.price == pytest.approx(math.floor(bid[0] * 0.9995 / 0.01) * 0.01)
    risk = PreTradeRisk(RiskLimits(max_order_notional=50_000.0))
    assert risk.check(exit_, decider.market_view("SOL/USDT", now + MINUTE_MS), held).accepted
    # The exit filled: the position is closed and the protections know it was a stop.
    decider.on_fill("SOL/USDT", -1, exit_.quantity, exit_.price, now + MINUTE_MS + 30)
    flat = portfolio(decider, equity)
    assert decider.on_book("SOL/USDT", low_book, now + MINUTE_MS + 40, flat, {}) == []
    assert decider.protections.cooldowns.get("SOL/USDT", 0) > now


def test_a_remainder_under_the_minimum_notional_is_given_up_with_its_reason(replay: Replay) -> None:
    decider, time, equity = decider_at_first_entry(replay)
    book = synced_book("SOL/USDT", decider.features.close("SOL/USDT"))
    now = time + MINUTE_MS + 50
    entry = decider.on_book("SOL/USDT", book, now, portfolio(decider, equity), {})[0]
    dust = round(9.0 / entry.price, 3)
    almost = portfolio(decider, equity, {"SOL/USDT": entry.quantity - dust, "BTC/USDT": 0.0, "ETH/USDT": 0.0})
    assert decider.on_book("SOL/USDT", book, now + 2_100, almost, {}) == []
    reasons = [d.reason for d in decider.drain() if d.symbol == "SOL/USDT" and d.kind == "target"]
    assert any("under the minimum notional 10" in reason for reason in reasons), reasons
    assert "SOL/USDT" not in decider.targets


def test_a_drawdown_halt_exits_every_position_the_ledger_holds(replay: Replay) -> None:
    """Positions known only from the ledger (no fill reported) are adopted, and closed on a halt."""
    decider, time, equity = decider_at_first_entry(replay)
    now = time + MINUTE_MS + 50
    books = {symbol: synced_book(symbol, decider.features.close(symbol)) for symbol in SYMBOLS}
    held = {"BTC/USDT": 1.5, "ETH/USDT": 0.0, "SOL/USDT": 0.0}
    view = portfolio(decider, equity, held)
    decider.on_book("BTC/USDT", books["BTC/USDT"], now, view, {})
    exits = decider.position_exits("BTC/USDT")
    assert exits is not None and exits.quantity == 1.5, "the ledger's position is adopted"
    decider.mark_equity(now + 1_000, equity)
    decider.mark_equity(now + 2_000, equity * (1 - PROTECTIONS.max_drawdown) * 0.99)
    assert decider.protections.state == "HALTED"
    intents = decider.on_book("BTC/USDT", books["BTC/USDT"], now + 3_000, view, {})
    assert [(i.side, i.quantity, i.reduce_only) for i in intents] == [(-1, 1.5, True)]
    assert decider.reason(intents[0].client_order_id) == "exit: max drawdown halt"
    assert decider.on_book("SOL/USDT", books["SOL/USDT"], now + 3_100, view, {}) == [], (
        "no entry while halted"
    )


def test_the_session_builds_either_decider_from_settings() -> None:
    from tradeflow.config import Settings
    from tradeflow.execution.decider import build_decider, warm_up_minutes

    settings = Settings()
    assert warm_up_minutes(settings) == 44_641 and warm_up_minutes(settings, complete=False) == 10_140
    symbols = [spec.symbol for spec in settings.simulator.symbols][:2]
    churn = build_decider(settings, "churn", symbols, None, {}, session_key="a:churn")
    assert isinstance(churn, ChurnDecider) and churn.period_ms == settings.execution.churn_seconds * 1000
    champion = build_decider(settings, "champion", symbols, None, {}, session_key="a:champion")
    assert isinstance(champion, Decider) and champion.scorer is None
    assert champion.generator.family_status["ml"].state == "off"
    with pytest.raises(ValueError, match="strategy"):
        build_decider(settings, "martingale", symbols, None, {})


# -- the exercise mode -------------------------------------------------------------------------


def churn_events(decider: ChurnDecider, seconds: int) -> list[tuple[int, str, list[OrderIntent]]]:
    """Drive a churn decider for ``seconds``: every 250 ms a book event per symbol; fills at once."""
    books = {symbol: synced_book(symbol, 100.0 * (i + 1)) for i, symbol in enumerate(SYMBOLS)}
    positions = dict.fromkeys(SYMBOLS, 0.0)
    risk = PreTradeRisk(RiskLimits(max_orders_per_minute=1_000))
    start = 1_790_000_000_000
    seen = []
    for step in range(seconds * 4):
        now = start + step * 250
        for symbol in SYMBOLS:
            view = PortfolioView(100_000.0, 100_000.0, dict(positions), dict.fromkeys(SYMBOLS, 100.0))
            intents = decider.on_book(symbol, books[symbol], now, view, {})
            for intent in intents:
                assert risk.check(intent, decider.market_view(symbol, now), view).accepted
                risk.record_sent(now)
                positions[symbol] += intent.side * intent.quantity  # the venue fills it at once
            seen.append((now, symbol, intents))
    return seen


def test_churn_mode_alternates_small_positions_deterministically() -> None:
    first = churn_events(ChurnDecider(RULES, seconds=2.0, notional=200.0), 12)
    second = churn_events(ChurnDecider(RULES, seconds=2.0, notional=200.0), 12)
    assert first == second
    orders = [(now, symbol, intent) for now, symbol, intents in first for intent in intents]
    assert orders, "churn must trade"
    for symbol in SYMBOLS:
        mine = [(now, intent) for now, s, intent in orders if s == symbol]
        sides = [intent.side for _, intent in mine]
        assert sides == [1, -1] * (len(sides) // 2) + [1] * (len(sides) % 2), "on, off, on, ..."
        assert len(mine) >= 5
        for _, intent in mine:
            assert intent.reduce_only == (intent.side < 0)
            assert 10.0 <= intent.quantity * intent.price <= 200.0 * 1.01
            assert round(intent.quantity / 0.001, 6).is_integer()
        periods = [now // 2_000 for now, _ in mine]
        assert len(set(periods)) == len(periods), "one order per period"
    # The symbols take turns: in any period some are long and some flat.
    assert {intent.side for _, s, intent in orders if s == SYMBOLS[0]} == {1, -1}
    first_buy = {s: min(now for now, sym, i in orders if sym == s and i.side == 1) for s in SYMBOLS}
    assert len({now // 2_000 % 2 for now in first_buy.values()}) == 2


def test_an_exit_of_a_position_summed_in_floats_never_exceeds_it() -> None:
    """0.5 - 0.2 - 1e-13 is 0.3 to the venue; the reduce-only sell must still be at most the position."""
    decider = ChurnDecider(RULES, seconds=1.0, notional=30.0)
    position = 0.5 - 0.2 - 1e-13
    view = PortfolioView(1e5, 1e5, {"BTC/USDT": position}, {"BTC/USDT": 100.0})
    intents = decider.on_book("BTC/USDT", synced_book("BTC/USDT", 100.0), 1_000, view, {})  # a flat period
    assert [(i.side, i.reduce_only) for i in intents] == [(-1, True)]
    assert intents[0].quantity <= position
    assert PreTradeRisk(RiskLimits()).check(intents[0], decider.market_view("BTC/USDT", 1_000), view).accepted


def test_a_restarted_churn_decider_proposes_the_same_order_within_a_period() -> None:
    """The kill/restart test relies on it: the same period's order maps to the same client id."""
    view = PortfolioView(1e5, 1e5, dict.fromkeys(SYMBOLS, 0.0), dict.fromkeys(SYMBOLS, 100.0))
    now = 1_790_000_000_000  # a long period for BTC/USDT (index 0, period even)
    before = ChurnDecider(RULES, seconds=2.0, notional=200.0).on_book(
        "BTC/USDT", synced_book("BTC/USDT", 100.0), now, view, {}
    )
    after = ChurnDecider(RULES, seconds=2.0, notional=200.0).on_book(
        "BTC/USDT", synced_book("BTC/USDT", 100.3), now + 1_500, view, {}
    )
    assert len(before) == 1 and before[0].side == 1
    assert [(i.quantity, i.client_order_id) for i in after] == [
        (i.quantity, i.client_order_id) for i in before
    ]
