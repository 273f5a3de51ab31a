"""Render simulator data as Binance spot API v3 JSON bodies.

Hot bodies (klines, depth, trades) are built with %-templates instead of ``json.dumps`` over
dicts: it is several times faster, and the simulator must never be a benchmark's bottleneck.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from tradeflow.simulator.candles import Candles
from tradeflow.simulator.market import OrderBook, Ticker24h, Trades, VenueMarket
from tradeflow.simulator.quantize import Quantizer

ORDER_TYPES = [
    "LIMIT",
    "LIMIT_MAKER",
    "MARKET",
    "STOP_LOSS",
    "STOP_LOSS_LIMIT",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
]
STP_MODES = ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT"]


def dumps(obj: object) -> str:
    """Serialise compactly, like Binance."""
    return json.dumps(obj, separators=(",", ":"))


def _fmt8(value: float) -> str:
    return f"{value:.8f}"


def _max_price(tick: Quantizer, base_price: float) -> float:
    exponent = math.ceil(math.log10(base_price)) + 2
    return tick.round_one(10.0**exponent)


def symbol_info(market: VenueMarket) -> dict[str, Any]:
    """Return the exchangeInfo entry of one symbol, with Binance's filters."""
    spec = market.spec
    tick, step = market.tick, market.step
    max_notional = spec.min_notional * 1_800_000
    max_qty = max(
        step.size,
        float(step.floor(np.asarray([2 * max_notional / spec.base_price]))[0]),
    )
    market_max_qty = max(step.size, float(step.floor(np.asarray([max_qty / 10]))[0]))
    return {
        "symbol": spec.exchange_id,
        "status": "TRADING",
        "baseAsset": spec.base,
        "baseAssetPrecision": 8,
        "quoteAsset": spec.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ORDER_TYPES,
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "pegInstructionsAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": tick.format(tick.size),
                "maxPrice": tick.format(_max_price(tick, spec.base_price)),
                "tickSize": tick.format(tick.size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": step.format(step.size),
                "maxQty": step.format(max_qty),
                "stepSize": step.format(step.size),
            },
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": step.format(step.size),
                "maxQty": step.format(market_max_qty),
                "stepSize": step.format(step.size),
            },
            {
                "filterType": "TRAILING_DELTA",
                "minTrailingAboveDelta": 10,
                "maxTrailingAboveDelta": 2000,
                "minTrailingBelowDelta": 10,
                "maxTrailingBelowDelta": 2000,
            },
            {
                "filterType": "PERCENT_PRICE_BY_SIDE",
                "bidMultiplierUp": "5",
                "bidMultiplierDown": "0.2",
                "askMultiplierUp": "5",
                "askMultiplierDown": "0.2",
                "avgPriceMins": 5,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": _fmt8(spec.min_notional),
                "applyMinToMarket": True,
                "maxNotional": _fmt8(max_notional),
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": STP_MODES,
    }


def exchange_info(markets: list[VenueMarket], weight_limit: int, now_ms: int) -> str:
    """Return the /exchangeInfo body for the given markets."""
    return dumps(
        {
            "timezone": "UTC",
            "serverTime": now_ms,
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": weight_limit,
                },
                {
                    "rateLimitType": "ORDERS",
                    "interval": "SECOND",
                    "intervalNum": 10,
                    "limit": 100,
                },
                {
                    "rateLimitType": "ORDERS",
                    "interval": "DAY",
                    "intervalNum": 1,
                    "limit": 200000,
                },
                {
                    "rateLimitType": "RAW_REQUESTS",
                    "interval": "MINUTE",
                    "intervalNum": 5,
                    "limit": 61000,
                },
            ],
            "exchangeFilters": [],
            "symbols": [symbol_info(m) for m in markets],
        }
    )


def klines(candles: Candles, market: VenueMarket, width_ms: int) -> str:
    """Return the /klines body: rows of 12 fields, numbers as decimal strings."""
    p, v = market.tick.fmt, market.step.fmt
    row = f'[%d,"{p}","{p}","{p}","{p}","{v}",%d,"%.8f",%d,"{v}","%.8f","0"]'
    open_time = candles.open_time.tolist()
    close_time = (candles.open_time + (width_ms - 1)).tolist()
    columns = zip(
        open_time,
        candles.open.tolist(),
        candles.high.tolist(),
        candles.low.tolist(),
        candles.close.tolist(),
        candles.volume.tolist(),
        close_time,
        candles.quote_volume.tolist(),
        candles.trades.tolist(),
        candles.taker_base.tolist(),
        candles.taker_quote.tolist(),
        strict=True,
    )
    return "[" + ",".join(map(row.__mod__, columns)) + "]"


def depth(book: OrderBook, market: VenueMarket) -> str:
    """Return the /depth body."""
    level = f'["{market.tick.fmt}","{market.step.fmt}"]'
    bids = zip(book.bid_price.tolist(), book.bid_qty.tolist(), strict=True)
    asks = zip(book.ask_price.tolist(), book.ask_qty.tolist(), strict=True)
    bid_text = ",".join(map(level.__mod__, bids))
    ask_text = ",".join(map(level.__mod__, asks))
    return f'{{"lastUpdateId":{book.last_update_id},"bids":[{bid_text}],"asks":[{ask_text}]}}'


def trades(batch: Trades, market: VenueMarket) -> str:
    """Return the /trades body, oldest first."""
    row = (
        f'{{"id":%d,"price":"{market.tick.fmt}","qty":"{market.step.fmt}","quoteQty":"%.8f",'
        '"time":%d,"isBuyerMaker":%s,"isBestMatch":true}'
    )
    prices = batch.price.tolist()
    qtys = batch.qty.tolist()
    items = [
        row % (i, price, qty, price * qty, t, "true" if maker else "false")
        for i, price, qty, t, maker in zip(
            batch.id.tolist(),
            prices,
            qtys,
            batch.time.tolist(),
            batch.is_buyer_maker.tolist(),
            strict=True,
        )
    ]
    return "[" + ",".join(items) + "]"


def ticker_24h(t: Ticker24h, market: VenueMarket) -> dict[str, Any]:
    """Return the full 24hr ticker object of one symbol."""
    tick, step = market.tick, market.step
    change = tick.round_one(t.last_price - t.open_price)
    percent = 100.0 * (t.last_price - t.open_price) / t.open_price if t.open_price else 0.0
    vwap = t.quote_volume / t.volume if t.volume else t.last_price
    return {
        "symbol": t.symbol,
        "priceChange": tick.format(change),
        "priceChangePercent": f"{percent:.3f}",
        "weightedAvgPrice": _fmt8(vwap),
        "prevClosePrice": tick.format(t.prev_close_price),
        "lastPrice": tick.format(t.last_price),
        "lastQty": step.format(t.last_qty),
        "bidPrice": tick.format(t.bid_price),
        "bidQty": step.format(t.bid_qty),
        "askPrice": tick.format(t.ask_price),
        "askQty": step.format(t.ask_qty),
        "openPrice": tick.format(t.open_price),
        "highPrice": tick.format(t.high_price),
        "lowPrice": tick.format(t.low_price),
        "volume": step.format(t.volume),
        "quoteVolume": _fmt8(t.quote_volume),
        "openTime": t.open_time,
        "closeTime": t.close_time,
        "firstId": t.first_id,
        "lastId": t.last_id,
        "count": t.count,
    }


def ticker_price(market: VenueMarket, price: float) -> dict[str, Any]:
    """Return the /ticker/price object of one symbol."""
    return {"symbol": market.spec.exchange_id, "price": market.tick.format(price)}
