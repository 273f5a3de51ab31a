"""One symbol as seen by one venue: candles, intra-minute prices, trades and order book.

A venue's price is the shared true path plus the venue's bias, drift and per-minute noise.
Everything is generated one UTC day at a time from counter-based randomness keyed by the
venue seed, so a block can be rebuilt anywhere and is identical; blocks are cached, not stored.
Data faults are decided by hashing (venue seed, symbol, open minute or hour), so they do not
depend on which range a client asks for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tradeflow.simulator import rng
from tradeflow.simulator.cache import LruCache
from tradeflow.simulator.candles import (
    EMPTY,
    BoolArray,
    Candles,
    FloatArray,
    IntArray,
    aggregate,
)
from tradeflow.simulator.prices import TruePath
from tradeflow.simulator.prices import clear_caches as clear_path_caches
from tradeflow.simulator.quantize import Quantizer
from tradeflow.simulator.replay import load_recording
from tradeflow.simulator.spec import SymbolSpec, VenueSpec
from tradeflow.simulator.timeframes import DAY_MINUTES, DAY_MS, MINUTE_MS

TRADES_PER_DAY = 57_600
"""Trades per venue, symbol and UTC day; a constant keeps trade ids contiguous and computable."""

_MAX_TRADE_LOOKBACK_MINUTES = 3 * DAY_MINUTES
_BOOK_LEVELS = 5000

_BLOCKS: LruCache[tuple[object, ...], DayBlock] = LruCache(maxsize=384)
_INTERVAL_DAYS: LruCache[tuple[object, ...], tuple[Candles, BoolArray]] = LruCache(maxsize=4096)
_BOOKS: LruCache[tuple[object, ...], OrderBook] = LruCache(maxsize=64)


@dataclass(frozen=True)
class DayBlock:
    """One UTC day of a venue's 1m candles for one symbol.

    Attributes:
        day: Days since the epoch.
        candles: 1440 one-minute candles, after spikes and stale hours.
        present: False where the venue's klines miss the minute (holes, before listing).
        stale: True inside a frozen hour.
        sigma: Typical one-minute log return std-dev of the day.
        first_trade_id: Id of each minute's first trade.
    """

    day: int
    candles: Candles
    present: BoolArray
    stale: BoolArray
    sigma: float
    first_trade_id: IntArray


@dataclass(frozen=True)
class Trades:
    """Public trades, oldest first."""

    id: IntArray
    time: IntArray
    price: FloatArray
    qty: FloatArray
    is_buyer_maker: BoolArray

    def __len__(self) -> int:
        """Return the number of trades."""
        return len(self.id)


@dataclass(frozen=True)
class OrderBook:
    """A depth snapshot; bids best (highest) first, asks best (lowest) first."""

    last_update_id: int
    bid_price: FloatArray
    bid_qty: FloatArray
    ask_price: FloatArray
    ask_qty: FloatArray


@dataclass(frozen=True)
class Ticker24h:
    """Rolling 24-hour statistics of one symbol."""

    symbol: str
    open_time: int
    close_time: int
    open_price: float
    high_price: float
    low_price: float
    last_price: float
    prev_close_price: float
    volume: float
    quote_volume: float
    last_qty: float
    bid_price: float
    bid_qty: float
    ask_price: float
    ask_qty: float
    first_id: int
    last_id: int
    count: int


class VenueMarket:
    """Generate one venue's market data for one symbol."""

    def __init__(
        self,
        symbol: SymbolSpec,
        path: TruePath,
        venue: VenueSpec,
        drift_anchor_ms: int,
        cache_key: tuple[object, ...],
    ) -> None:
        """Bind a symbol's true path to a venue's noise and data faults.

        Args:
            symbol: The market.
            path: Its shared true path.
            venue: The venue; seed, noise_bps, bias_bps and data faults are used.
            drift_anchor_ms: Time from which the venue's drift grows.
            cache_key: Hashable identity of everything that shapes this market's data; markets
                with equal keys share cached blocks.
        """
        self.spec = symbol
        self.path = path
        self.tick = Quantizer(symbol.tick_size)
        self.step = Quantizer(symbol.step_size)
        self._venue_seed = venue.seed
        self._noise_bps = venue.noise_bps
        self._bias_bps = venue.bias_bps
        self._faults = venue.data
        self._drift_anchor_ms = drift_anchor_ms
        self._key = cache_key
        name = symbol.symbol
        self._noise_key = rng.key128(venue.seed, name, "noise")
        self._intra_key = rng.key128(venue.seed, name, "intra")
        self._hole_key = rng.key128(venue.seed, name, "hole")
        self._spike_key = rng.key128(venue.seed, name, "spike")
        self._spike_dir_key = rng.key128(venue.seed, name, "spike-dir")
        self._stale_key = rng.key128(venue.seed, name, "stale")
        self.listed_since_ms = symbol.listed_since_ms
        self._listing_day = symbol.listed_since_ms // DAY_MS
        self._listing_minute = -(-symbol.listed_since_ms // MINUTE_MS)
        # Typical 1m volume: notional of ~20000 minimum orders, at least a few lots.
        vbase = 20_000.0 * symbol.min_notional / symbol.base_price
        self._vbase = max(vbase, 10.0 * symbol.step_size)

    # ----------------------------------------------------------------- venue price path

    def venue_log_prices(self, minutes: IntArray, true_log: FloatArray) -> FloatArray:
        """Return the venue's clean log prices at minute boundaries.

        Args:
            minutes: Absolute minute indices.
            true_log: The true path's log prices at those minutes.
        """
        bias = np.full(len(minutes), self._bias_bps)
        if self._faults.drift_bps_per_day:
            days_since = (minutes * MINUTE_MS - self._drift_anchor_ms) / DAY_MS
            bias = bias + self._faults.drift_bps_per_day * np.maximum(days_since, 0.0)
        noise = rng.hashed_normals(self._noise_key, minutes)
        result: FloatArray = true_log + 1e-4 * (bias + self._noise_bps * noise)
        return result

    def true_log_prices(self, minutes: IntArray) -> FloatArray:
        """Return the shared true path's log prices at absolute minute boundaries."""
        out = np.empty(len(minutes))
        days = minutes // DAY_MINUTES
        for day in np.unique(days):
            sel = days == day
            out[sel] = self.path.day_log_prices(int(day))[minutes[sel] - int(day) * DAY_MINUTES]
        return out

    def _clean_price_at_minute(self, minute: int) -> float:
        m = np.asarray([minute], dtype=np.int64)
        log_p = self.venue_log_prices(m, self.true_log_prices(m))
        return max(self.tick.round_one(math.exp(float(log_p[0]))), self.tick.size)

    def _stale_hours(self, hours: IntArray) -> BoolArray:
        if not self._faults.stale:
            return np.zeros(len(hours), dtype=bool)
        result: BoolArray = rng.hashed_units(self._stale_key, hours) < self._faults.stale
        return result

    def _frozen_price(self, hour: int) -> float:
        # A run of stale hours stays at the last price before the run began.
        start = hour
        listing_hour = self._listing_minute // 60
        while start > listing_hour:
            if not self._stale_hours(np.asarray([start - 1], dtype=np.int64))[0]:
                break
            start -= 1
        return self._clean_price_at_minute(start * 60)

    # ----------------------------------------------------------------- day blocks

    def block(self, day: int) -> DayBlock:
        """Return the (cached) block of 1m candles of a UTC day."""
        return _BLOCKS.get_or_create((self._key, day), lambda: self._build_block(day))

    def _build_block(self, day: int) -> DayBlock:
        n = DAY_MINUTES
        tick, step = self.tick, self.step
        minutes = day * DAY_MINUTES + np.arange(n + 1, dtype=np.int64)
        sigma = self.path.minute_sigma(day)
        log_p = self.venue_log_prices(minutes, self.path.day_log_prices(day))
        price = np.maximum(tick.round(np.exp(log_p)), tick.size)
        o, c = price[:-1].copy(), price[1:].copy()
        z = rng.generator(self._venue_seed, self.spec.symbol, "shape", day).standard_normal((4, n))
        high = tick.ceil(np.maximum(o, c) * np.exp(np.abs(z[0]) * sigma * 0.8))
        low = np.maximum(
            tick.floor(np.minimum(o, c) * np.exp(-np.abs(z[1]) * sigma * 0.8)),
            tick.size,
        )
        ret = np.diff(log_p)
        scaled = np.clip(ret / sigma, -8.0, 8.0)
        activity = 0.4 + 0.6 * np.abs(scaled)
        volume = np.maximum(step.floor(self._vbase * np.exp(0.5 * z[2] - 0.125) * activity), step.size)
        taker_frac = np.clip(0.5 + 0.08 * np.clip(scaled, -3, 3) + 0.08 * z[3], 0.05, 0.95)

        open_time = minutes[:-1] * MINUTE_MS
        listed = minutes[:-1] >= self._listing_minute
        hours = day * 24 + np.arange(24, dtype=np.int64)
        stale_hours = self._stale_hours(hours)
        stale = np.repeat(stale_hours, 60)
        for h in np.flatnonzero(stale_hours):
            frozen = self._frozen_price(int(hours[h]))
            sl = slice(int(h) * 60, int(h) * 60 + 60)
            o[sl] = c[sl] = high[sl] = low[sl] = frozen
            volume[sl] = 0.0
        if self._faults.spikes:
            spiked = (rng.hashed_units(self._spike_key, minutes[:-1]) < self._faults.spikes) & ~stale
            if spiked.any():
                up = rng.hashed_units(self._spike_dir_key, minutes[:-1]) < 0.5
                s = self._faults.spike_size
                up_idx, down_idx = spiked & up, spiked & ~up
                c[up_idx] = tick.round(c[up_idx] * (1.0 + s))
                high[up_idx] = np.maximum(tick.ceil(high[up_idx] * (1.0 + s)), c[up_idx])
                c[down_idx] = np.maximum(tick.round(c[down_idx] * (1.0 - s)), tick.size)
                low[down_idx] = np.maximum(
                    np.minimum(tick.floor(low[down_idx] * (1.0 - s)), c[down_idx]),
                    tick.size,
                )
        volume[~listed] = 0.0
        taker_base = step.floor(volume * taker_frac)
        typical = (o + high + low + c) / 4.0

        total = volume.sum()
        if total > 0:
            counts = rng.generator(self._venue_seed, self.spec.symbol, "ntrades", day).multinomial(
                TRADES_PER_DAY, volume / total
            )
        else:
            counts = np.zeros(n, dtype=np.int64)
        first_of_day = max(day - self._listing_day, 0) * TRADES_PER_DAY
        first_ids = first_of_day + np.concatenate(([0], np.cumsum(counts)[:-1]))

        present = listed.copy()
        if self._faults.holes:
            present &= rng.hashed_units(self._hole_key, minutes[:-1]) >= self._faults.holes
        candles = Candles(
            open_time=open_time,
            open=o,
            high=high,
            low=low,
            close=c,
            volume=volume,
            quote_volume=volume * typical,
            taker_base=taker_base,
            taker_quote=taker_base * typical,
            trades=counts.astype(np.int64),
        ).freeze()
        for arr in (present, stale, first_ids):
            arr.setflags(write=False)
        return DayBlock(
            day=day,
            candles=candles,
            present=present,
            stale=stale,
            sigma=sigma,
            first_trade_id=first_ids.astype(np.int64),
        )

    def minute_rows(self, minutes: IntArray) -> tuple[Candles, FloatArray, IntArray]:
        """Return the full 1m candles (ignoring holes), sigmas and first trade ids at minutes."""
        days = minutes // DAY_MINUTES
        unique_days = np.unique(days)
        if len(unique_days) == 1:
            blk = self.block(int(unique_days[0]))
            idx = minutes - blk.day * DAY_MINUTES
            return (
                blk.candles.take(idx),
                np.full(len(minutes), blk.sigma),
                blk.first_trade_id[idx],
            )
        parts: list[Candles] = []
        sigmas = np.empty(len(minutes))
        ids = np.empty(len(minutes), dtype=np.int64)
        order = np.argsort(minutes, kind="stable")
        sorted_minutes = minutes[order]
        sorted_days = days[order]
        for day in unique_days:
            blk = self.block(int(day))
            sel = sorted_days == day
            idx = sorted_minutes[sel] - blk.day * DAY_MINUTES
            parts.append(blk.candles.take(idx))
            sigmas[order[sel]] = blk.sigma
            ids[order[sel]] = blk.first_trade_id[idx]
        merged = Candles.concat(parts)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return merged.take(inverse), sigmas, ids

    # ----------------------------------------------------------------- prices inside a minute

    def price_at(self, t_ms: IntArray) -> FloatArray:
        """Return the venue's last price at given times (ms), tick-aligned.

        Inside a minute the price follows a Brownian bridge from the candle's open to its
        close, stepping once per second, clipped to the candle's final range.
        """
        t = np.asarray(t_ms, dtype=np.int64)
        minutes = t // MINUTE_MS
        second = (t - minutes * MINUTE_MS) // 1000
        rows, sigma, _ = self.minute_rows(minutes)
        unique_minutes, which = np.unique(minutes, return_inverse=True)
        # A 60-step walk per minute, pinned to zero at both ends, keyed by (minute, second).
        counters = unique_minutes[:, None] * 60 + np.arange(60, dtype=np.int64)[None, :]
        steps = rng.hashed_normals(self._intra_key, counters) / math.sqrt(60.0)
        walk = np.zeros((len(unique_minutes), 61))
        np.cumsum(steps, axis=1, out=walk[:, 1:])
        bridge = walk - (np.arange(61) / 60.0)[None, :] * walk[:, -1:]
        frac = second / 60.0
        log_o = np.log(rows.open)
        log_p = log_o + frac * (np.log(rows.close) - log_o) + sigma * bridge[which, second]
        result: FloatArray = np.clip(self.tick.round(np.exp(log_p)), rows.low, rows.high)
        return result

    def _partial_minute(self, minute: int, now_ms: int) -> Candles:
        rows, _, _ = self.minute_rows(np.asarray([minute], dtype=np.int64))
        frac = (now_ms - minute * MINUTE_MS) / MINUTE_MS
        o, h, lo = rows.open, rows.high, rows.low
        cp = self.price_at(np.asarray([now_ms], dtype=np.int64))
        top, bottom = np.maximum(o, cp), np.minimum(o, cp)
        # The range grows with elapsed time but never beyond the finished candle's range.
        hp = np.maximum(self.tick.floor(top + (h - top) * frac), top)
        lp = np.minimum(self.tick.ceil(bottom - (bottom - lo) * frac), bottom)
        vp = self.step.floor(rows.volume * frac)
        tbp = np.minimum(self.step.floor(rows.taker_base * frac), vp)
        typical = (o + hp + lp + cp) / 4.0
        return Candles(
            open_time=rows.open_time,
            open=o,
            high=hp,
            low=lp,
            close=cp,
            volume=vp,
            quote_volume=vp * typical,
            taker_base=tbp,
            taker_quote=tbp * typical,
            trades=np.floor(rows.trades * frac).astype(np.int64),
        )

    # ----------------------------------------------------------------- klines

    def _snap_volumes(self, candles: Candles) -> Candles:
        """Return aggregated candles with their base volumes back on the lot-size grid.

        Sums of lot-aligned volumes drift off the grid in binary floating point.
        """
        return Candles(
            open_time=candles.open_time,
            open=candles.open,
            high=candles.high,
            low=candles.low,
            close=candles.close,
            volume=self.step.round(candles.volume),
            quote_volume=candles.quote_volume,
            taker_base=self.step.round(candles.taker_base),
            taker_quote=candles.taker_quote,
            trades=candles.trades,
        )

    def _interval_day(self, group: int, day: int) -> tuple[Candles, BoolArray]:
        if group == 1:
            blk = self.block(day)
            return blk.candles, blk.present

        def build() -> tuple[Candles, BoolArray]:
            blk = self.block(day)
            agg, exists = aggregate(blk.candles, blk.present, group)
            agg = self._snap_volumes(agg).freeze()
            exists.setflags(write=False)
            return agg, exists

        return _INTERVAL_DAYS.get_or_create((self._key, day, group), build)

    def _interval_day_at(self, group: int, day: int, now_ms: int) -> tuple[Candles, BoolArray]:
        day_start = day * DAY_MS
        if day_start > now_ms:
            return EMPTY, np.zeros(0, dtype=bool)
        full, exists = self._interval_day(group, day)
        if day_start + DAY_MS <= now_ms:
            return full, exists
        width = group * MINUTE_MS
        current_open = now_ms - now_ms % width
        keep = int((current_open - day_start) // width)
        first_minute = current_open // MINUTE_MS
        now_minute = now_ms // MINUTE_MS
        blk = self.block(day)
        lo_idx = first_minute - day * DAY_MINUTES
        hi_idx = now_minute - day * DAY_MINUTES
        closed = blk.candles.take(slice(lo_idx, hi_idx))
        minutes = Candles.concat([closed, self._partial_minute(now_minute, now_ms)])
        present = blk.present[lo_idx : hi_idx + 1]
        partial, partial_exists = aggregate(minutes, present, len(minutes))
        if group > 1:
            partial = self._snap_volumes(partial)
        candles = Candles.concat([full.take(slice(0, keep)), partial])
        return candles, np.concatenate([exists[:keep], partial_exists])

    def klines(
        self,
        group: int,
        lo_ms: int,
        hi_ms: int,
        limit: int | None,
        now_ms: int,
        *,
        from_end: bool,
    ) -> Candles:
        """Return existing candles with open time in ``[lo_ms, hi_ms]``.

        Args:
            group: Interval length in minutes (divides a day).
            lo_ms: Earliest open time, aligned to the interval.
            hi_ms: Latest open time, aligned to the interval and not after ``now_ms``.
            limit: Maximum number of candles; None for all.
            now_ms: Server time; the candle containing it is partial.
            from_end: Keep the last ``limit`` candles instead of the first.

        Returns:
            Candles, oldest first.
        """
        lo_ms = max(lo_ms, self.listed_since_ms - self.listed_since_ms % (group * MINUTE_MS))
        if lo_ms > hi_ms or (limit is not None and limit <= 0):
            return EMPTY
        first_day, last_day = lo_ms // DAY_MS, hi_ms // DAY_MS
        days = range(last_day, first_day - 1, -1) if from_end else range(first_day, last_day + 1)
        parts: list[Candles] = []
        count = 0
        for day in days:
            candles, exists = self._interval_day_at(group, day, now_ms)
            if not len(candles):
                continue
            times = candles.open_time
            sel = exists & (times >= lo_ms) & (times <= hi_ms)
            part = candles if sel.all() else candles.take(sel)
            if len(part):
                parts.append(part)
                count += len(part)
            if limit is not None and count >= limit:
                break
        if from_end:
            parts.reverse()
        out = Candles.concat(parts)
        if limit is not None and len(out) > limit:
            out = out.take(slice(len(out) - limit, None) if from_end else slice(0, limit))
        return out

    # ----------------------------------------------------------------- trades

    def recent_trades(self, limit: int, now_ms: int) -> Trades:
        """Return the last ``limit`` trades up to ``now_ms``, oldest first."""
        now_minute = now_ms // MINUTE_MS
        floor_minute = max(self._listing_minute, now_minute - _MAX_TRADE_LOOKBACK_MINUTES)
        times: list[IntArray] = []
        qtys: list[FloatArray] = []
        makers: list[BoolArray] = []
        ids: list[IntArray] = []
        total = 0
        minute = now_minute
        while minute >= floor_minute and total < limit:
            blk = self.block(minute // DAY_MINUTES)
            i = minute - blk.day * DAY_MINUTES
            count = int(blk.candles.trades[i])
            if count:
                gen = rng.generator(self._venue_seed, self.spec.symbol, "trades", minute)
                offsets = np.sort(gen.integers(0, MINUTE_MS, count))
                weights = gen.exponential(1.0, count)
                qty = np.maximum(
                    self.step.floor(blk.candles.volume[i] * weights / weights.sum()),
                    self.step.size,
                )
                vol = blk.candles.volume[i]
                buy_frac = blk.candles.taker_base[i] / vol if vol > 0 else 0.5
                maker = gen.random(count) >= buy_frac
                t = minute * MINUTE_MS + offsets
                trade_ids = blk.first_trade_id[i] + np.arange(count, dtype=np.int64)
                if minute == now_minute:
                    keep = t <= now_ms
                    t, qty, maker, trade_ids = (
                        t[keep],
                        qty[keep],
                        maker[keep],
                        trade_ids[keep],
                    )
                times.append(t)
                qtys.append(qty)
                makers.append(maker)
                ids.append(trade_ids)
                total += len(t)
            minute -= 1
        if not times:
            empty_i = np.empty(0, dtype=np.int64)
            return Trades(empty_i, empty_i, np.empty(0), np.empty(0), np.empty(0, dtype=bool))
        all_t = np.concatenate(times[::-1])[-limit:]
        return Trades(
            id=np.concatenate(ids[::-1])[-limit:],
            time=all_t,
            price=self.price_at(all_t),
            qty=np.concatenate(qtys[::-1])[-limit:],
            is_buyer_maker=np.concatenate(makers[::-1])[-limit:],
        )

    # ----------------------------------------------------------------- order book

    def order_book(self, now_ms: int) -> OrderBook:
        """Return the full-depth book for the current second (5000 levels a side at most)."""
        second = now_ms // 1000
        return _BOOKS.get_or_create((self._key, second), lambda: self._build_book(second))

    def _build_book(self, second: int) -> OrderBook:
        tick, step = self.tick, self.step
        mid = float(self.price_at(np.asarray([second * 1000], dtype=np.int64))[0])
        gen = rng.generator(self._venue_seed, self.spec.symbol, "book", second)
        half_spread = mid * 0.5e-4 * (0.5 + gen.random())
        best_bid = math.floor((mid - half_spread) / tick.size + 1e-9)
        best_ask = max(math.ceil((mid + half_spread) / tick.size - 1e-9), best_bid + 1)
        gaps = gen.geometric(0.55, (2, _BOOK_LEVELS)) - 1
        gaps[:, 0] = 0
        bid_counts = best_bid - np.cumsum(gaps[0] + 1) + 1
        ask_counts = best_ask + np.cumsum(gaps[1] + 1) - 1
        bid_counts = bid_counts[bid_counts > 0]
        depth = np.arange(_BOOK_LEVELS)
        qbase = self._vbase / 20.0
        sizes = qbase * np.exp(0.8 * gen.standard_normal((2, _BOOK_LEVELS))) * (1.0 + depth / 50.0)
        sizes = np.maximum(step.floor(sizes), step.size)
        return OrderBook(
            last_update_id=int(second * 10 + gen.integers(0, 10)),
            bid_price=tick.from_counts(bid_counts.astype(np.float64)),
            bid_qty=sizes[0][: len(bid_counts)],
            ask_price=tick.from_counts(ask_counts.astype(np.float64)),
            ask_qty=sizes[1],
        )

    # ----------------------------------------------------------------- ticker

    def ticker_24h(self, now_ms: int) -> Ticker24h:
        """Return rolling 24-hour statistics ending at ``now_ms``."""
        open_ms = now_ms - DAY_MS
        start_minute = open_ms // MINUTE_MS + 1
        now_minute = now_ms // MINUTE_MS
        minutes = np.arange(start_minute, now_minute, dtype=np.int64)
        rows, _, first_ids = self.minute_rows(minutes)
        rows = Candles.concat([rows, self._partial_minute(now_minute, now_ms)])
        edge = self.price_at(np.asarray([open_ms - 1, open_ms, now_ms], dtype=np.int64))
        prev_close, open_price, last_price = (float(x) for x in edge)
        last = self.recent_trades(1, now_ms)
        book = self.order_book(now_ms)
        first_id = int(first_ids[0]) if len(first_ids) else 0
        last_id = int(last.id[-1]) if len(last) else first_id - 1
        return Ticker24h(
            symbol=self.spec.exchange_id,
            open_time=open_ms,
            close_time=now_ms,
            open_price=open_price,
            high_price=float(max(rows.high.max(), open_price, last_price)),
            low_price=float(min(rows.low.min(), open_price, last_price)),
            last_price=last_price,
            prev_close_price=prev_close,
            volume=float(self.step.round_one(float(rows.volume.sum()))),
            quote_volume=float(rows.quote_volume.sum()),
            last_qty=float(last.qty[-1]) if len(last) else 0.0,
            bid_price=float(book.bid_price[0]),
            bid_qty=float(book.bid_qty[0]),
            ask_price=float(book.ask_price[0]),
            ask_qty=float(book.ask_qty[0]),
            first_id=first_id,
            last_id=last_id,
            count=max(last_id - first_id + 1, 0),
        )


def clear_caches() -> None:
    """Drop every cached block, book and path, e.g. to prove results do not depend on caching."""
    _BLOCKS.clear()
    _INTERVAL_DAYS.clear()
    _BOOKS.clear()
    clear_path_caches()
    load_recording.cache_clear()
