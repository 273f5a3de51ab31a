"""The suites on real exchange data: every hole and every big move, exactly; clean files stay clean.

The files in ../shared/data/real are Binance candles as published (see its README): TRX-BTC has
6 holes and ADA-BTC 5, the 1-minute files hundreds; XLM-BTC and TRX-BTC each have one
close-to-close move above 10 %. Positions are cross-checked against a direct computation on the
raw timestamps and closes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from expectations.runner import GxValidator
from tradeflow.config import ValidationConfig
from tradeflow.quality.validation import validate_candle_file
from tradeflow.timeframes import timeframe_ms

CANDLE_FILES = [
    "ADA-BTC_5m", "DASH-BTC_5m", "ETC-BTC_5m", "ETH-BTC_5m", "LTC-BTC_5m", "NXT-BTC_5m", "TRX-BTC_5m",
    "UNKNOWN-BTC_1m", "XLM-BTC_5m", "XMR-BTC_5m", "XRP-ETH_1m", "XRP-ETH_5m", "ZEC-BTC_5m",
]  # fmt: skip
README_HOLES = {"TRX-BTC_5m": 6, "ADA-BTC_5m": 5}
README_SPIKES = {"XLM-BTC_5m": 1, "TRX-BTC_5m": 1}
CLEAN = {"ETC-BTC_5m", "ETH-BTC_5m", "LTC-BTC_5m", "NXT-BTC_5m"}


@pytest.fixture(scope="module")
def reports(real_data: Path) -> dict[str, object]:
    validator = GxValidator(ValidationConfig(), "real-data")
    return {
        name: validate_candle_file(
            str(real_data / "binance" / f"{name}.parquet"), validator, ValidationConfig()
        )
        for name in CANDLE_FILES
    }


def _expected_holes(frame: pd.DataFrame, step: int) -> list[tuple[int, int]]:
    ts = frame["timestamp"].to_numpy()
    gaps = np.diff(ts)
    at = np.flatnonzero(gaps > step)
    return [(int(ts[i] + step), int(gaps[i] // step - 1)) for i in at]


@pytest.mark.parametrize("name", CANDLE_FILES)
def test_every_hole_and_every_big_move_is_found_exactly(reports, real_data: Path, name: str) -> None:
    report = reports[name]
    frame = pd.read_parquet(real_data / "binance" / f"{name}.parquet")
    step = timeframe_ms(name.split("_")[1])
    holes = report.check("completeness")
    found = [(h["start"], h["length"]) for h in holes["listed"]]
    assert found == _expected_holes(frame, step)
    assert holes["holes"] == len(found) and holes["truncated"] == 0
    moves = frame["close"].pct_change().abs()
    spikes = report.check("price_spikes")
    expected_spikes = frame["timestamp"][moves > 0.10].tolist()
    assert [s["timestamp"] for s in spikes["listed"]] == expected_spikes
    assert all(not s["confirmed"] for s in spikes["listed"])  # one venue: nothing to confirm with


def test_the_counts_in_the_data_readme(reports) -> None:
    for name, count in README_HOLES.items():
        assert reports[name].check("completeness")["holes"] == count
    for name in CANDLE_FILES:
        assert reports[name].check("price_spikes")["spikes"] == README_SPIKES.get(name, 0)
    assert reports["UNKNOWN-BTC_1m"].check("completeness")["holes"] > 100
    assert reports["XRP-ETH_1m"].check("completeness")["holes"] > 100


def test_no_real_file_is_broken_and_the_clean_ones_pass_outright(reports, real_data: Path) -> None:
    assert {name: r.verdict for name, r in reports.items() if r.verdict == "quarantined"} == {}
    assert {name: reports[name].verdict for name in CLEAN} == dict.fromkeys(CLEAN, "passed")
    for name in CANDLE_FILES:
        frame = pd.read_parquet(real_data / "binance" / f"{name}.parquet")
        expected = set()
        if _expected_holes(frame, timeframe_ms(name.split("_")[1])):
            expected.add("candles/completeness")
        if name in README_SPIKES:
            expected.add("candles/price_spikes")
        assert set(reports[name].warnings()) == expected, name
