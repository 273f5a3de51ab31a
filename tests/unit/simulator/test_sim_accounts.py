"""The venue's account and matching engine: fills, fees, balances, filters, duplicate ids."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradeflow.simulator import SimulatedVenue, VenueSpec
from tradeflow.simulator.accounts import AccountError, NewOrder, Order, SymbolRules, VenueAccount
from tradeflow.simulator.live import LiveTrade, LiveVenue
from tradeflow.simulator.payloads import symbol_info
from tradeflow.simulator.runtime import VenueRuntime

from ._support import NOW_MS, make_cluster

RULES = SymbolRules(
    symbol="BTCUSDT",
    base="BTC",
    quote="USDT",
    tick_size=0.01,
    min_price=0.01,
    max_price=1_000_000.0,
    step_size=0.001,
    min_qty=0.001,
    max_qty=1_000.0,
    market_max_qty=100.0,
    min_notional=5.0,
)
FEE = 0.001


@dataclass
class Book:
    """A hand-set book: the engine's BookView, with every call it receives recorded."""

    bids: dict[float, float] = field(default_factory=dict)
    asks: dict[float, float] = field(default_factory=dict)
    taken: list[tuple[str, float, float]] = field(default_factory=list)
    trades: list[tuple[float, float, bool]] = field(default_factory=list)

    def levels(self, symbol: str) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        assert symbol == "BTCUSDT"
        return sorted(self.bids.items(), reverse=True), sorted(self.asks.items())

    def take(self, symbol: str, side: str, price: float, quantity: float) -> None:
        levels = self.bids if side == "bid" else self.asks
        assert levels[price] >= quantity - 1e-12
        left = round(levels[price] - quantity, 9)
        if left > 0:
            levels[price] = left
        else:
            del levels[price]
        self.taken.append((side, price, quantity))

    def publish_trade(
        self, symbol: str, price: float, quantity: float, buyer_is_maker: bool, time_ms: int
    ) -> None:
        self.trades.append((price, quantity, buyer_is_maker))


def account(book: Book, **balances: float) -> VenueAccount:
    return VenueAccount(
        [RULES],
        book,
        balances=balances or {"USDT": 10_000.0},
        maker_fee=FEE,
        taker_fee=FEE,
        clock=lambda: NOW_MS,
    )


def limit(side: str, quantity: float, price: float, tif: str = "GTC", cid: str | None = None) -> NewOrder:
    return NewOrder(
        "BTCUSDT", side, "LIMIT", quantity=quantity, price=price, time_in_force=tif, client_order_id=cid
    )


def market(
    side: str, quantity: float | None = None, quote: float | None = None, cid: str | None = None
) -> NewOrder:
    return NewOrder("BTCUSDT", side, "MARKET", quantity=quantity, quote_order_qty=quote, client_order_id=cid)


def test_market_buy_walks_the_asks_and_pays_the_taker_fee() -> None:
    book = Book(bids={99.0: 1.0}, asks={100.0: 1.0, 101.0: 2.0})
    acct = account(book)
    order = acct.place(market("BUY", 2.5))
    assert order.status == "FILLED"
    assert [(t.price, t.quantity, t.is_maker) for t in order.trades] == [
        (100.0, 1.0, False),
        (101.0, 1.5, False),
    ]
    assert [t.commission for t in order.trades] == [pytest.approx(0.1), pytest.approx(0.1515)]
    assert order.executed_qty == 2.5 and order.cumulative_quote_qty == pytest.approx(251.5)
    assert book.asks == {101.0: 0.5}  # the liquidity it took is gone from the book
    assert book.trades == [(100.0, 1.0, False), (101.0, 1.5, False)]  # the buyer took: not maker
    balances = acct.balances()
    assert balances["BTC"] == (2.5, 0.0)
    assert balances["USDT"][0] == pytest.approx(10_000.0 - 251.5 * (1 + FEE))


def test_limit_order_takes_what_crosses_rests_the_rest_and_fills_as_maker_when_crossed() -> None:
    book = Book(bids={99.0: 1.0}, asks={100.0: 1.0, 101.0: 2.0})
    acct = account(book)
    order = acct.place(limit("BUY", 3.0, 100.5))
    assert order.status == "PARTIALLY_FILLED" and order.executed_qty == 1.0
    free, locked = acct.balances()["USDT"]
    assert locked == pytest.approx(100.5 * 2.0 * (1 + FEE))
    assert free == pytest.approx(10_000.0 - 100.0 * (1 + FEE) - locked)
    # The book moves through the resting bid: it fills at its own price, paying the maker fee.
    book.asks[100.2] = 0.5
    fills = acct.on_tick("BTCUSDT", NOW_MS + 100)
    assert [(t.price, t.quantity, t.is_maker, t.commission) for t in fills] == [
        (100.5, 0.5, True, pytest.approx(100.5 * 0.5 * FEE))
    ]
    assert book.trades[-1] == (100.5, 0.5, True)  # the resting buyer was the maker
    assert 100.2 not in book.asks
    assert acct.balances()["USDT"][1] == pytest.approx(100.5 * 1.5 * (1 + FEE))
    cancelled = acct.cancel("BTC/USDT", client_order_id=order.client_order_id)
    assert cancelled.status == "CANCELED" and cancelled.executed_qty == 1.5
    assert acct.balances()["USDT"][1] == 0.0
    assert acct.open_orders() == []


def test_a_resting_order_fills_completely_once_enough_crosses() -> None:
    book = Book(bids={99.0: 1.0}, asks={101.0: 2.0})
    acct = account(book, USDT=0.0, BTC=2.0)
    order = acct.place(limit("SELL", 1.5, 100.0))
    assert order.status == "NEW" and acct.balances()["BTC"] == (0.5, 1.5)
    assert acct.on_tick("BTCUSDT", NOW_MS) == []  # best bid 99 does not reach 100
    book.bids.update({100.5: 1.0, 100.0: 2.0})
    fills = acct.on_tick("BTCUSDT", NOW_MS + 100)
    assert [(t.price, t.quantity) for t in fills] == [(100.0, 1.0), (100.0, 0.5)]
    assert order.status == "FILLED"
    assert acct.balances() == {"BTC": (0.5, 0.0), "USDT": (pytest.approx(150.0 * (1 - FEE)), 0.0)}


def test_ioc_expires_its_remainder_and_fok_fills_all_or_nothing() -> None:
    book = Book(asks={100.0: 1.0, 102.0: 5.0})
    acct = account(book)
    fok = acct.place(limit("BUY", 2.0, 100.5, tif="FOK"))
    assert (fok.status, fok.executed_qty, fok.trades) == ("EXPIRED", 0.0, [])
    assert book.asks == {100.0: 1.0, 102.0: 5.0} and acct.balances()["USDT"] == (10_000.0, 0.0)
    ioc = acct.place(limit("BUY", 2.0, 100.5, tif="IOC"))
    assert (ioc.status, ioc.executed_qty) == ("EXPIRED", 1.0)
    assert acct.balances()["USDT"][1] == 0.0  # nothing stays locked
    fok_ok = acct.place(limit("BUY", 2.0, 102.0, tif="FOK"))
    assert (fok_ok.status, fok_ok.executed_qty) == ("FILLED", 2.0)


def test_market_order_beyond_the_book_expires_with_what_it_got() -> None:
    acct = account(Book(asks={100.0: 1.0}))
    order = acct.place(market("BUY", 3.0))
    assert (order.status, order.executed_qty) == ("EXPIRED", 1.0)


def test_market_buy_by_quote_amount_spends_at_most_that() -> None:
    acct = account(Book(asks={100.0: 1.0, 101.0: 2.0}))
    order = acct.place(market("BUY", quote=150.0))
    assert order.status == "FILLED"
    assert order.executed_qty == 1.495  # 1 at 100, then floor(50 / 101) in 0.001 steps
    assert order.cumulative_quote_qty == pytest.approx(100.0 + 0.495 * 101.0)
    assert order.cumulative_quote_qty <= 150.0 and order.orig_quote_order_qty == 150.0


def test_post_only_order_that_would_take_is_refused() -> None:
    acct = account(Book(asks={100.0: 1.0}))
    with pytest.raises(AccountError, match="would immediately match and take") as err:
        acct.place(NewOrder("BTCUSDT", "BUY", "LIMIT_MAKER", quantity=1.0, price=100.0))
    assert err.value.code == -2010
    rests = acct.place(NewOrder("BTCUSDT", "BUY", "LIMIT_MAKER", quantity=1.0, price=99.0))
    assert rests.status == "NEW"


def test_insufficient_balance_counts_what_open_orders_lock() -> None:
    acct = account(Book(asks={200.0: 100.0}))
    acct.place(limit("BUY", 50.0, 100.0))  # locks 5005 of 10000
    with pytest.raises(
        AccountError, match=r"^-2010 Account has insufficient balance for requested action\.$"
    ):
        acct.place(limit("BUY", 50.0, 100.0, cid="second"))
    with pytest.raises(AccountError, match="insufficient balance"):
        acct.place(market("SELL", 1.0))  # no BTC at all
    with pytest.raises(AccountError, match="insufficient balance"):
        acct.place(market("BUY", 30.0))  # 6000 of asks plus fee, 4995 free
    assert len(acct.orders) == 1
    assert [(r.client_order_id, r.code) for r in acct.rejections] == [
        ("second", -2010),
        (None, -2010),
        (None, -2010),
    ]


def test_a_client_order_id_is_never_accepted_twice_but_a_refused_one_may_be_retried() -> None:
    acct = account(Book(asks={100.0: 5.0}))
    acct.place(market("BUY", 1.0, cid="abc"))  # FILLED: no longer open
    with pytest.raises(AccountError, match="Duplicate order sent") as err:
        acct.place(market("BUY", 1.0, cid="abc"))
    assert err.value.code == -2010
    with pytest.raises(AccountError, match="insufficient"):
        acct.place(limit("BUY", 99.0, 100.0, cid="retry"))  # would need 9909.9 USDT
    assert acct.place(limit("BUY", 1.0, 100.0, cid="retry")).status == "FILLED"
    assert [o.client_order_id for o in acct.orders] == ["abc", "retry"]


@pytest.mark.parametrize(
    ("new", "failure"),
    [
        (limit("BUY", 1.0, 100.001), "PRICE_FILTER"),
        (limit("BUY", 1.0, 2_000_000.0), "PRICE_FILTER"),
        (limit("BUY", 1.0005, 100.0), "LOT_SIZE"),
        (limit("BUY", 0.0, 100.0), "LOT_SIZE"),
        (limit("BUY", 1_001.0, 100.0), "LOT_SIZE"),
        (limit("BUY", 0.04, 100.0), "NOTIONAL"),
        (market("BUY", 0.04), "NOTIONAL"),
        (market("BUY", quote=4.0), "NOTIONAL"),
        (market("BUY", 101.0), "MARKET_LOT_SIZE"),
    ],
)
def test_filters_answer_1013(new: NewOrder, failure: str) -> None:
    acct = account(Book(asks={100.0: 1_000.0}), USDT=1e9)
    with pytest.raises(AccountError, match=f"^-1013 Filter failure: {failure}$"):
        acct.place(new)
    assert acct.orders == []


@pytest.mark.parametrize(
    ("new", "code"),
    [
        (NewOrder("ETHUSDT", "BUY", "MARKET", quantity=1.0), -1121),
        (NewOrder("BTCUSDT", "HOLD", "MARKET", quantity=1.0), -1117),
        (NewOrder("BTCUSDT", "BUY", "STOP", quantity=1.0), -1116),
        (NewOrder("BTCUSDT", "BUY", "LIMIT", quantity=1.0, price=100.0), -1102),
        (NewOrder("BTCUSDT", "BUY", "LIMIT", quantity=1.0, price=100.0, time_in_force="DAY"), -1115),
        (NewOrder("BTCUSDT", "BUY", "MARKET"), -1102),
        (NewOrder("BTCUSDT", "BUY", "MARKET", quantity=1.0, price=100.0), -1106),
        (NewOrder("BTCUSDT", "BUY", "MARKET", quantity=1.0, client_order_id="no spaces"), -1100),
    ],
)
def test_malformed_placements_answer_binance_codes(new: NewOrder, code: int) -> None:
    with pytest.raises(AccountError) as err:
        account(Book(asks={100.0: 5.0})).place(new)
    assert err.value.code == code


def test_cancel_and_query_of_unknown_orders() -> None:
    acct = account(Book(asks={100.0: 5.0}))
    filled = acct.place(market("BUY", 1.0, cid="done"))
    with pytest.raises(AccountError, match=r"^-2011 Unknown order sent\.$"):
        acct.cancel("BTCUSDT", client_order_id="done")  # finished orders cannot be cancelled
    with pytest.raises(AccountError, match=r"^-2011 "):
        acct.cancel("BTCUSDT", order_id=999)
    with pytest.raises(AccountError, match=r"^-2013 Order does not exist\.$"):
        acct.order("BTCUSDT", client_order_id="never")
    assert acct.order("BTCUSDT", order_id=filled.order_id) is filled
    with pytest.raises(AccountError, match=r"^-2013 "):  # the id exists, with another client id
        acct.order("BTCUSDT", order_id=filled.order_id, client_order_id="other")


def test_symbol_rules_come_from_the_exchange_info_the_venue_serves() -> None:
    venue = SimulatedVenue(make_cluster(), VenueSpec(id="a", seed=1))
    rules = SymbolRules.from_symbol_info(symbol_info(venue.market("BTC/USDT")))
    assert (rules.symbol, rules.base, rules.quote) == ("BTCUSDT", "BTC", "USDT")
    assert (rules.tick_size, rules.step_size, rules.min_notional) == (0.01, 0.00001, 5.0)
    assert rules.min_qty == 0.00001 and rules.market_max_qty < rules.max_qty


def test_orders_match_against_the_live_book_and_rest_until_it_moves_through_them() -> None:
    clock = [NOW_MS]
    spec = VenueSpec(id="a", seed=1)
    runtime = VenueRuntime(SimulatedVenue(make_cluster(spec), spec), spec, clock=lambda: clock[0])
    live = LiveVenue(runtime)  # no event loop: stepped by hand
    published: list[LiveTrade] = []

    class Listener:
        def on_depth(self, diff: object) -> None: ...

        def on_trade(self, trade: LiveTrade) -> None:
            published.append(trade)

        def on_step(self, now_ms: int) -> None: ...

    live.add_listener(Listener())
    rules = [
        SymbolRules.from_symbol_info(symbol_info(runtime.venue.market(s.symbol)))
        for s in runtime.venue.symbols
    ]
    acct = VenueAccount(
        rules, live, balances={"USDT": 1e6}, maker_fee=FEE, taker_fee=FEE, clock=lambda: clock[0]
    )

    def match(symbol: str, now_ms: int) -> None:
        acct.on_tick(symbol, now_ms)

    live.on_tick(match)
    (best_ask, ask_qty) = live.levels("BTCUSDT")[1][0]
    taken = acct.place(market("BUY", ask_qty))
    assert [(t.price, t.quantity) for t in taken.trades] == [(best_ask, ask_qty)]
    assert live.levels("BTCUSDT")[1][0][0] > best_ask  # the level it emptied is gone
    assert (published[-1].price, published[-1].quantity, published[-1].buyer_is_maker) == (
        best_ask,
        ask_qty,
        False,
    )
    best_bid = live.levels("BTCUSDT")[0][0][0]
    resting = acct.place(limit("BUY", 0.01, best_bid))
    steps = 0
    while resting.is_open and steps < 36_000:  # at most an hour of venue time; seeded, so fixed
        clock[0] += 100
        live.step(clock[0])
        steps += 1
    assert resting.status == "FILLED"
    assert all(t.is_maker and t.price == best_bid for t in resting.trades)


# -- balance conservation -------------------------------------------------------------------------

SIDES = st.sampled_from(["BUY", "SELL"])
OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("limit"),
            SIDES,
            st.integers(-30, 30),
            st.integers(1, 3000),
            st.sampled_from(["GTC", "IOC", "FOK"]),
        ),
        st.tuples(st.just("market"), SIDES, st.integers(1, 3000)),
        st.tuples(st.just("quote"), SIDES, st.integers(6, 400)),
        st.tuples(st.just("cancel"), st.integers(0, 50)),
        st.tuples(st.just("move"), st.integers(-40, 40)),
    ),
    max_size=40,
)


def _fresh_levels(book: Book, mid_ticks: int) -> None:
    book.bids = {round((mid_ticks - 5 - 3 * i) * 0.01, 2): 1.0 + i * 0.5 for i in range(8)}
    book.asks = {round((mid_ticks + 5 + 3 * i) * 0.01, 2): 1.0 + i * 0.5 for i in range(8)}


def _check_invariants(acct: VenueAccount, initial: dict[str, float]) -> None:
    expected = dict(initial)
    for trade in acct.trades:
        sign = 1.0 if trade.side == "BUY" else -1.0
        expected["BTC"] += sign * trade.quantity
        expected["USDT"] -= sign * trade.quote_quantity + trade.commission
    balances = acct.balances()
    open_orders = acct.open_orders()
    for asset in ("BTC", "USDT"):
        free, locked = balances[asset]
        assert free >= 0.0 and locked >= 0.0
        assert free + locked == pytest.approx(expected[asset], abs=1e-6)
        assert locked == pytest.approx(
            sum(o.locked for o in open_orders if o.locked_asset == asset), abs=1e-9
        )
    for order in acct.orders:
        assert order.executed_qty == pytest.approx(sum(t.quantity for t in order.trades), abs=1e-9)
        assert order.executed_qty <= order.orig_qty + 1e-9
        assert order.is_open == (order in open_orders)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_balances_are_conserved_and_locks_match_the_open_orders(ops: list[tuple[object, ...]]) -> None:
    initial = {"BTC": 20.0, "USDT": 5_000.0}
    book = Book()
    mid = 10_000  # 100.00 in ticks
    _fresh_levels(book, mid)
    acct = account(book, **initial)
    placed: list[Order] = []
    codes: list[int] = []
    for op in ops:
        kind = op[0]
        try:
            if kind == "limit":
                _, side, offset, lots, tif = op
                placed.append(
                    acct.place(
                        limit(str(side), int(lots) / 1000, round((mid + int(offset)) * 0.01, 2), str(tif))
                    )
                )
            elif kind == "market":
                _, side, lots = op
                placed.append(acct.place(market(str(side), int(lots) / 1000)))
            elif kind == "quote":
                _, side, amount = op
                placed.append(acct.place(market(str(side), quote=float(amount))))
            elif kind == "cancel" and placed:
                target = placed[int(op[1]) % len(placed)]
                acct.cancel("BTCUSDT", order_id=target.order_id)
            elif kind == "move":
                mid += int(op[1])
                _fresh_levels(book, mid)
                acct.on_tick("BTCUSDT", NOW_MS)
        except AccountError as err:
            codes.append(err.code)
        _check_invariants(acct, initial)
    assert set(codes) <= {-2010, -2011, -1013}  # refusals are balance, cancel or filter ones only
    for order in acct.open_orders():
        acct.cancel("BTCUSDT", order_id=order.order_id)
    assert all(locked == 0.0 for _, locked in acct.balances().values())
