"""Pagination covers any window exactly once, with closed candles only."""

from hypothesis import given
from hypothesis import strategies as st

from tradeflow.ingest import closed_window, plan_pages
from tradeflow.timeframes import timeframe_ms

TIMEFRAMES = ["1m", "5m", "1h", "1d"]


@given(
    timeframe=st.sampled_from(TIMEFRAMES),
    start=st.integers(min_value=1_500_000_000_000, max_value=1_800_000_000_000),
    length=st.integers(min_value=0, max_value=5_000),
    limit=st.integers(min_value=1, max_value=1000),
    offset=st.integers(min_value=0, max_value=86_400_000),
)
def test_pages_cover_every_closed_candle_exactly_once(timeframe, start, length, limit, offset):
    tf = timeframe_ms(timeframe)
    end = start + length * tf + offset % tf
    pages = plan_pages(start, end, tf, limit)
    covered = [t for page in pages for t in range(page.since, page.until + 1, tf)]
    expected = [t for t in range(start - start % tf, end, tf) if t >= start and t + tf <= end]
    assert covered == expected  # in order, nothing missing, nothing twice
    assert all(page.until - page.since < limit * tf for page in pages)
    assert all(page.since % tf == 0 and page.until % tf == 0 for page in pages)


def test_the_forming_candle_is_never_requested():
    tf = timeframe_ms("1m")
    now = 1_700_000_030_000  # 30 s into a minute
    window = closed_window(now - 5 * tf, now, tf)
    assert window is not None
    assert window[1] + tf <= now
    assert window[1] == now - now % tf - tf


def test_an_empty_window_has_no_pages():
    tf = timeframe_ms("1h")
    assert plan_pages(1_700_000_000_000, 1_700_000_000_000 + tf // 2, tf, 1000) == []
