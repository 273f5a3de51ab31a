"""Market data ingestion: the logic behind the ``ingest-market-data`` flow, free of Prefect.

- :func:`plan_pages` splits a window into request pages that cover it exactly once.
- :class:`RetryPolicy` and :func:`call_with_retry` retry a request with exponential backoff and
  jitter, honouring Retry-After, and give the venue up after the configured attempts.
- :class:`WeightBudget` is one request-weight budget per venue, shared by every concurrent task
  in the process, so many tasks on one venue never add up to a 429 storm.
- :func:`ingest_candle_series` and :func:`snapshot_market` fetch, check and store one series.
- :func:`plan_failover` covers a failed venue's symbols from the other venues that list them.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from tradeflow.config import RetryConfig
from tradeflow.progress import ProgressEvent, emit
from tradeflow.sources.base import (
    MarketDataSource,
    PermanentSourceError,
    RetryableSourceError,
    SourceError,
    UnknownSymbolError,
)
from tradeflow.storage.lake import (
    ORDER_BOOK_SCHEMA,
    TRADE_SCHEMA,
    StoredObject,
    candles_table,
    series_key,
    write_partitioned,
)
from tradeflow.storage.objectstore import ObjectStore
from tradeflow.timeframes import DAY_MS, floor_ms, iso, timeframe_ms

T = TypeVar("T")


# --- pagination -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One request: candles with ``since <= open time <= until``."""

    since: int
    until: int


def closed_window(start: int, end: int, tf_ms: int) -> tuple[int, int] | None:
    """Return the first and last open time of the closed candles in ``[start, end)``.

    A candle opening at ``t`` is closed once ``t + tf <= end``. Returns None if there is none.
    """
    first = -(-start // tf_ms) * tf_ms
    last = floor_ms(end, tf_ms) - tf_ms
    return (first, last) if first <= last else None


def plan_pages(start: int, end: int, tf_ms: int, limit: int) -> list[Page]:
    """Return the pages that cover every closed candle in ``[start, end)`` exactly once.

    Each page spans at most ``limit`` candles; pages are disjoint and in time order, so they
    can be fetched in any order (or concurrently) and retried independently.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    window = closed_window(start, end, tf_ms)
    if window is None:
        return []
    first, last = window
    span = limit * tf_ms
    return [Page(since, min(since + span - tf_ms, last)) for since in range(first, last + 1, span)]


# --- retries ----------------------------------------------------------------------------------


class VenueFailedError(SourceError):
    """A venue could not serve a request within the retry policy; it is failed for this run."""

    def __init__(self, venue: str, message: str, attempts: int) -> None:
        """Record how many attempts were made."""
        super().__init__(venue, message)
        self.attempts = attempts


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, honouring the venue's Retry-After."""

    max_attempts: int = 6
    base_delay_seconds: float = 0.25
    max_delay_seconds: float = 10.0
    jitter: float = 0.5
    max_retry_after_seconds: float = 60.0

    @classmethod
    def from_config(cls, config: RetryConfig) -> RetryPolicy:
        """Return the policy described by a ``[retry]`` config section."""
        return cls(**config.model_dump())

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Return the wait before retry number ``retry`` (1-based).

        A venue's Retry-After is a floor: waiting less only earns another 429.
        """
        backoff = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (retry - 1))
        backoff *= 1 + self.jitter * (2 * rng.random() - 1)
        return float(max(backoff, retry_after or 0.0))


@dataclass
class RetryStats:
    """Counts of retried failures by kind."""

    retries: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str) -> None:
        """Count one retried failure of ``kind``."""
        self.retries += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1


def call_with_retry(
    request: Callable[[], T],
    policy: RetryPolicy,
    *,
    venue: str,
    stats: RetryStats | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """Return ``request()``, retrying retryable failures per ``policy``.

    Raises:
        VenueFailedError: after ``max_attempts`` tries, or when the venue asks for a longer
            wait than ``max_retry_after_seconds``.
        PermanentSourceError: at once; retrying cannot fix it.
    """
    rng = rng or random.Random()
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return request()
        except PermanentSourceError:
            raise
        except RetryableSourceError as error:
            if attempt == policy.max_attempts:
                raise VenueFailedError(
                    venue, f"gave up after {attempt} attempts; last error: {error}", attempt
                ) from error
            if (error.retry_after_seconds or 0) > policy.max_retry_after_seconds:
                raise VenueFailedError(
                    venue,
                    f"asked to wait {error.retry_after_seconds:.0f}s (limit "
                    f"{policy.max_retry_after_seconds:.0f}s); last error: {error}",
                    attempt,
                ) from error
            if stats is not None:
                stats.add(error.kind)
            sleep(policy.delay(attempt, error.retry_after_seconds, rng))
    raise AssertionError("unreachable")  # pragma: no cover


# --- the shared per-venue budget --------------------------------------------------------------


class WeightBudget:
    """A thread-safe token bucket of request weight, refilled at ``weight_per_minute``.

    Every task on a venue draws from the same bucket. When the venue answers 429 anyway (another
    client shares its limit), :meth:`pause` holds every task on that venue until Retry-After
    passes, instead of letting each one find out with its own 429.

    The bucket is per process. Flow runs in other processes (a worker's, a Dask worker's) share
    the venue's limit through a ``grant``: a blocking call that takes weight from a budget all
    processes draw on (the Prefect layer passes a global rate limit). Weight is taken from it in
    blocks of ``grant_block``, so one grant call covers many requests.
    """

    def __init__(
        self,
        weight_per_minute: int,
        *,
        burst_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        grant: Callable[[int], None] | None = None,
        grant_block: int | None = None,
    ) -> None:
        """Allow ``weight_per_minute``, with bursts of up to ``burst_seconds`` worth."""
        self.rate = weight_per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_seconds)
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self.waited_seconds = 0.0
        self.grant = grant
        self.grant_block = max(1, grant_block or weight_per_minute // 20)
        self.granted = 0
        self._prepaid = 0
        self._grant_lock = threading.Lock()

    def acquire(self, weight: int) -> None:
        """Block until ``weight`` can be spent (here and, with a grant, globally), then spend it."""
        self._acquire_local(weight)
        if self.grant is not None:
            with self._grant_lock:  # one grant call at a time per process; the others wait anyway
                while self._prepaid < weight:
                    block = max(self.grant_block, weight)
                    self.grant(block)
                    self._prepaid += block
                    self.granted += block
                self._prepaid -= weight

    def _acquire_local(self, weight: int) -> None:
        weight_needed = min(float(weight), self.capacity)
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                wait = self._paused_until - now
                if wait <= 0:
                    # The tolerance keeps float rounding from spinning on a wait too small to move
                    # the clock; the floor keeps waits long enough to matter.
                    if self._tokens >= weight_needed - 1e-9:
                        self._tokens = max(0.0, self._tokens - weight_needed)
                        return
                    wait = max((weight_needed - self._tokens) / self.rate, 0.001)
                self.waited_seconds += wait
            self._sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hold every request on this venue for ``seconds`` (a venue's Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)
            self._tokens = 0.0


_budgets: dict[tuple[str, int], WeightBudget] = {}
_budgets_lock = threading.Lock()


def shared_budget(
    venue: str, weight_per_minute: int, grant: Callable[[int], None] | None = None
) -> WeightBudget:
    """Return the process-wide budget of a venue (created on first use; a grant is attached once)."""
    with _budgets_lock:
        key = (venue, weight_per_minute)
        if key not in _budgets:
            _budgets[key] = WeightBudget(weight_per_minute)
        budget = _budgets[key]
        if grant is not None and budget.grant is None:
            budget.grant = grant
        return budget


# --- one series -------------------------------------------------------------------------------


@dataclass
class SeriesResult:
    """What happened to one (venue, symbol, timeframe) series in one run."""

    venue: str
    symbol: str
    timeframe: str
    status: str  # "stored", "up to date", "failed", "not listed"
    window_start: int | None = None
    window_end: int | None = None
    candles: int = 0
    pages: int = 0
    retries: int = 0
    retries_by_kind: dict[str, int] = field(default_factory=dict)
    holes: int = 0
    duplicates: int = 0
    objects: list[dict[str, Any]] = field(default_factory=list)
    objects_written: int = 0
    error: str | None = None
    failover_for: str | None = None  # the failed venue this series stands in for

    @property
    def key(self) -> str:
        """Return the series key used in manifests."""
        return series_key(self.venue, self.symbol, self.timeframe)

    def to_dict(self) -> dict[str, Any]:
        """Return a plain-data copy (task results cross thread and process boundaries)."""
        return asdict(self)


def series_window(last_stored: int | None, end: int, tf_ms: int, history_days: int) -> tuple[int, int]:
    """Return the ``[start, end)`` to fetch: after the last stored candle, else the look-back."""
    start = last_stored + tf_ms if last_stored is not None else end - history_days * DAY_MS
    return start, end


def ingest_candle_series(
    source: MarketDataSource,
    store: ObjectStore,
    *,
    symbol: str,
    timeframe: str,
    start: int,
    end: int,
    page_limit: int,
    policy: RetryPolicy,
    failover_for: str | None = None,
    timeout_seconds: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> SeriesResult:
    """Fetch the closed candles of one series in ``[start, end)`` and store them by day.

    Never raises for a venue's failure: the result says ``failed`` with the reason, so the run
    can carry on with the other venues and fail over. ``timeout_seconds`` bounds the whole
    series; it is checked between requests (each bounded by the client's own timeout), which
    is the only place a timeout can act on a thread blocked in network I/O.
    """
    tf_ms = timeframe_ms(timeframe)
    result = SeriesResult(source.venue, symbol, timeframe, "up to date", start, end,
                          failover_for=failover_for)  # fmt: skip
    pages = plan_pages(start, end, tf_ms, page_limit)
    if not pages:
        return result
    stats = RetryStats()
    chunks: list[np.ndarray] = []
    progress_key = f"{source.venue} {symbol} {timeframe}"
    deadline = None if timeout_seconds is None else clock() + timeout_seconds
    try:
        for number, page in enumerate(pages, 1):
            if deadline is not None and clock() > deadline:
                raise VenueFailedError(
                    source.venue,
                    f"{symbol} {timeframe}: timed out after {timeout_seconds:.0f} s with "
                    f"{number - 1} of {len(pages)} pages (ingest.series_timeout_seconds)",
                    0,
                )
            rows = call_with_retry(
                lambda page=page: source.fetch_candles(symbol, timeframe, page.since, page.until, page_limit),  # type: ignore[misc]
                policy, venue=source.venue, stats=stats, sleep=sleep,
            )  # fmt: skip
            if len(rows):
                inside = (rows[:, 0] >= page.since) & (rows[:, 0] <= page.until)
                chunks.append(rows[inside])
            result.pages = number
            emit(ProgressEvent(progress_key, number, len(pages)))
    except (VenueFailedError, PermanentSourceError) as error:
        result.status, result.error = "failed", str(error)
        result.retries, result.retries_by_kind = stats.retries, stats.by_kind
        emit(ProgressEvent(progress_key, result.pages, len(pages), finished=True))
        return result
    rows = np.concatenate(chunks) if chunks else np.empty((0, 6))
    rows, duplicates = _unique_by_time(rows)
    expected = (pages[-1].until - pages[0].since) // tf_ms + 1
    result.candles, result.duplicates = len(rows), duplicates
    result.holes = int(expected - len(rows))
    result.retries, result.retries_by_kind = stats.retries, stats.by_kind
    objects = write_partitioned(store, "candles", candles_table(rows), venue=source.venue,
                                symbol=symbol, timeframe=timeframe)  # fmt: skip
    result.objects = [_object_dict(o) for o in objects]
    result.objects_written = sum(o.written for o in objects)
    result.status = "stored" if len(rows) else "up to date"
    emit(ProgressEvent(progress_key, len(pages), len(pages), finished=True))
    return result


def _unique_by_time(rows: np.ndarray) -> tuple[np.ndarray, int]:
    order = np.argsort(rows[:, 0], kind="stable")
    rows = rows[order]
    keep = np.ones(len(rows), dtype=bool)
    keep[1:] = rows[1:, 0] != rows[:-1, 0]
    return rows[keep], int((~keep).sum())


def _object_dict(obj: StoredObject) -> dict[str, Any]:
    return {**obj.to_json(), "written": obj.written}


def stored_object(entry: Mapping[str, Any]) -> StoredObject:
    """Return the :class:`StoredObject` of a result's object entry."""
    return StoredObject(**entry)


# --- order book and trade snapshots ---------------------------------------------------------


@dataclass
class SnapshotResult:
    """Order book and trades captured from one (venue, symbol)."""

    venue: str
    symbol: str
    status: str  # "stored" or "failed"
    book_levels: int = 0
    trades: int = 0
    retries: int = 0
    objects: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a plain-data copy."""
        return asdict(self)


def snapshot_market(
    source: MarketDataSource,
    store: ObjectStore,
    *,
    symbol: str,
    depth: int,
    trades_limit: int,
    last_trade_timestamp: int | None,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> SnapshotResult:
    """Store one order book snapshot and the recent trades newer than the last stored one."""
    result = SnapshotResult(source.venue, symbol, "stored")
    stats = RetryStats()
    objects: list[StoredObject] = []
    try:
        if depth:
            book = call_with_retry(lambda: source.fetch_order_book(symbol, depth), policy,
                                   venue=source.venue, stats=stats, sleep=sleep)  # fmt: skip
            levels = [("bid", i, p, a) for i, (p, a) in enumerate(book.bids)]
            levels += [("ask", i, p, a) for i, (p, a) in enumerate(book.asks)]
            table = pa.Table.from_pydict(
                {
                    "snapshot_ts": [book.timestamp] * len(levels),
                    "side": [level[0] for level in levels],
                    "level": [level[1] for level in levels],
                    "price": [level[2] for level in levels],
                    "amount": [level[3] for level in levels],
                },
                schema=ORDER_BOOK_SCHEMA,
            )
            result.book_levels = len(levels)
            objects += write_partitioned(store, "order_books", table, venue=source.venue,
                                         symbol=symbol, time_column="snapshot_ts")  # fmt: skip
        if trades_limit:
            trades = call_with_retry(lambda: source.fetch_trades(symbol, trades_limit), policy,
                                     venue=source.venue, stats=stats, sleep=sleep)  # fmt: skip
            if last_trade_timestamp is not None:
                trades = [t for t in trades if t.timestamp > last_trade_timestamp]
            table = pa.Table.from_pydict(
                {
                    "id": [t.id for t in trades],
                    "timestamp": [t.timestamp for t in trades],
                    "side": [t.side for t in trades],
                    "price": [t.price for t in trades],
                    "amount": [t.amount for t in trades],
                },
                schema=TRADE_SCHEMA,
            )
            result.trades = len(trades)
            objects += write_partitioned(store, "trades", table, venue=source.venue, symbol=symbol)
    except (VenueFailedError, PermanentSourceError) as error:
        result.status, result.error = "failed", str(error)
    result.retries = stats.retries
    result.objects = [_object_dict(o) for o in objects]
    return result


# --- failover ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assignment:
    """Fetch ``symbol`` from ``venue``; ``failover_for`` names the failed venue it replaces."""

    venue: str
    symbol: str
    failover_for: str | None = None


def plan_failover(
    requested: Mapping[str, Sequence[str]],
    lost: Mapping[str, Sequence[str]],
    listings: Mapping[str, Iterable[str]],
) -> tuple[list[Assignment], dict[str, list[str]], list[str]]:
    """Decide how the symbols a failed venue could not serve stay covered.

    Args:
        requested: Venue id to the symbols configured for it.
        lost: Failed venue id to the symbols it failed to serve in this run.
        listings: Healthy venue id (no failure in this run) to every symbol it lists.

    Returns:
        ``(assignments, covered, uncovered)``: extra fetches on healthy venues that list a lost
        symbol but were not configured for it; for each lost symbol, the healthy venues that
        cover it (already configured or newly assigned); and the lost symbols no healthy venue
        lists.
    """
    healthy = [venue for venue in listings if venue not in lost]
    origins: dict[str, str] = {}
    for venue in sorted(lost):
        for symbol in lost[venue]:
            origins.setdefault(symbol, venue)
    assignments: list[Assignment] = []
    covered: dict[str, list[str]] = {}
    uncovered: list[str] = []
    for symbol in sorted(origins):
        already = [venue for venue in healthy if symbol in requested.get(venue, ())]
        if already:
            covered[symbol] = already
            continue
        backup = next((venue for venue in healthy if symbol in set(listings[venue])), None)
        if backup is None:
            uncovered.append(symbol)
            continue
        assignments.append(Assignment(backup, symbol, failover_for=origins[symbol]))
        covered[symbol] = [backup]
    return assignments, covered, uncovered


def unlisted_symbols(venue: str, symbols: Sequence[str], listed: Sequence[str]) -> dict[str, str]:
    """Return each configured symbol the venue does not list, with an error naming what it does."""
    listed_set = set(listed)
    return {s: str(UnknownSymbolError(venue, s, sorted(listed))) for s in symbols if s not in listed_set}


def unlisted_results(status: VenueStatus, timeframes: Sequence[str]) -> list[SeriesResult]:
    """Return a ``not listed`` result for every timeframe of every symbol the venue lacks.

    A symbol a venue does not list is that symbol's failure, not the venue's: the venue stays
    healthy for its other symbols, and the symbol is failed over like any lost one.
    """
    return [
        SeriesResult(status.venue, symbol, timeframe, "not listed", error=message)
        for symbol, message in status.unlisted.items()
        for timeframe in timeframes
    ]


def lost_symbols(
    requested: Mapping[str, Sequence[str]],
    statuses: Mapping[str, VenueStatus],
    series: Iterable[SeriesResult],
) -> dict[str, list[str]]:
    """Return venue id → the symbols it failed to serve.

    That is all of a venue's symbols if it failed to connect, else those with a failed series.
    """
    lost = {venue: list(requested[venue]) for venue, status in statuses.items() if not status.ok}
    for result in series:
        if result.status in ("failed", "not listed"):
            symbols = lost.setdefault(result.venue, [])
            if result.symbol not in symbols:
                symbols.append(result.symbol)
    return {venue: symbols for venue, symbols in lost.items() if symbols}


def final_statuses(statuses: Mapping[str, VenueStatus], series: Iterable[SeriesResult]) -> list[VenueStatus]:
    """Return the venues' end-of-run state: a venue with a failed series is failed for the run."""
    errors: dict[str, list[str]] = {}
    for result in series:
        if result.status == "failed":
            errors.setdefault(result.venue, []).append(f"{result.symbol} {result.timeframe}: {result.error}")
    final = []
    for venue, status in statuses.items():
        if status.ok and venue in errors:
            status = VenueStatus(venue, ok=False, base_url=status.base_url,
                                 error="failed during the run: " + "; ".join(errors[venue]),
                                 symbols_listed=status.symbols_listed)  # fmt: skip
        final.append(status)
    return final


# --- the run summary --------------------------------------------------------------------------


@dataclass
class VenueStatus:
    """One venue's state in a run."""

    venue: str
    ok: bool
    base_url: str | None
    error: str | None = None
    symbols_listed: list[str] = field(default_factory=list)
    unlisted: dict[str, str] = field(default_factory=dict)  # configured symbol → why not served


def summary_rows(series: Sequence[SeriesResult]) -> list[dict[str, Any]]:
    """Return one table row per series, for the Prefect artifact and the CLI table."""
    rows = []
    for result in sorted(series, key=lambda r: (r.venue, r.symbol, r.timeframe)):
        window = (
            f"{iso(result.window_start)} → {iso(result.window_end)[5:]}"
            if result.window_start is not None and result.window_end is not None
            else ""
        )
        note = result.error or ""
        if result.failover_for:
            note = f"failover for {result.failover_for}" + (f"; {note}" if note else "")
        rows.append(
            {
                "venue": result.venue,
                "symbol": result.symbol,
                "timeframe": result.timeframe,
                "status": result.status,
                "new candles": result.candles,
                "pages": result.pages,
                "retries": result.retries,
                "holes": result.holes,
                "window": window,
                "note": note,
            }
        )
    return rows


def summary_markdown(
    *,
    venues: Sequence[VenueStatus],
    series: Sequence[SeriesResult],
    snapshots: Sequence[SnapshotResult],
    covered: Mapping[str, list[str]],
    uncovered: Sequence[str],
    manifest: Mapping[str, Any] | None,
    store_location: str,
    config_hash: str,
    seconds: float,
) -> str:
    """Return the run's markdown summary (the Prefect artifact; the CLI prints the same facts)."""
    candles = sum(r.candles for r in series)
    retries = sum(r.retries for r in series) + sum(s.retries for s in snapshots)
    lines = ["# Ingest summary", ""]
    if manifest is None:
        lines.append(f"**Up to date**: nothing new to store ({seconds:.1f} s).")
    else:
        lines.append(
            f"Stored **{candles:,} new candles** in {len(manifest['new_objects'])} new objects; "
            f"published manifest #{manifest['sequence']} (`{manifest['batch_id'][:16]}`) "
            f"in {seconds:.1f} s."
        )
    lines += ["", f"- Store: `{store_location}`", f"- Config hash: `{config_hash[:16]}`",
              f"- Retries: {retries}", ""]  # fmt: skip
    lines.append("## Venues")
    for venue in venues:
        state = "ok" if venue.ok else f"**FAILED**: {venue.error}"
        lines.append(f"- `{venue.venue}` ({venue.base_url or 'default URL'}): {state}")
    failed_series = [r for r in series if r.status in ("failed", "not listed")]
    if failed_series:
        lines += ["", "## Failed series"]
        lines += [f"- {r.key}: {r.error}" for r in failed_series]
    if covered or uncovered:
        lines += ["", "## Failover"]
        lines += [f"- {symbol}: covered by {', '.join(venues_)}" for symbol, venues_ in covered.items()]
        lines += [f"- {symbol}: **not covered** — no healthy venue lists it" for symbol in uncovered]
    holes = [r for r in series if r.holes]
    if holes:
        lines += ["", "## Holes (missing candles reported by venues)"]
        lines += [f"- {r.key}: {r.holes}" for r in holes]
    if snapshots:
        books = sum(s.book_levels > 0 for s in snapshots)
        trades = sum(s.trades for s in snapshots)
        lines += ["", f"Order book snapshots: {books}; new trades: {trades:,}."]
    return "\n".join(lines) + "\n"
