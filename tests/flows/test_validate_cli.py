"""`tradeflow validate PATH`: the suites on candle files from any tool, as a user runs them."""

from __future__ import annotations

import shutil

import pandas as pd
from typer.testing import CliRunner

from tradeflow.cli import app

runner = CliRunner()


def test_validate_a_folder_reports_holes_and_spikes_and_goes_on_past_a_bad_file(real_data, tmp_path):
    folder = tmp_path / "downloads"
    folder.mkdir()
    for name in ("TRX-BTC_5m.parquet", "ETH-BTC_5m.parquet"):
        shutil.copy(real_data / "binance" / name, folder / name)
    (folder / "broken_5m.parquet").write_bytes(
        (real_data / "binance" / "ETH-BTC_5m.parquet").read_bytes()[:500]
    )
    docs = tmp_path / "docs"
    out = tmp_path / "out.json"
    result = runner.invoke(app, ["validate", str(folder), "--docs", str(docs), "--json", str(out)])
    assert result.exit_code == 1  # the truncated file cannot be read
    assert "broken_5m.parquet" in result.output and "not a readable Parquet file" in result.output
    assert "6 holes, 6 of 5760 candles missing" in result.output
    assert "1 unconfirmed, 0 confirmed moves > 10%" in result.output
    assert "2 of 3 files passed" in result.output
    assert (docs / "index.html").exists()
    reports = {r["symbol"].rsplit("/", 1)[-1]: r for r in pd.read_json(out).to_dict("records")}
    assert reports["ETH-BTC_5m.parquet"]["verdict"] == "passed"
    assert reports["TRX-BTC_5m.parquet"]["verdict"] == "warned"


def test_timestamps_in_seconds_are_an_error_naming_the_file(tmp_path):
    path = tmp_path / "seconds_1m.csv"
    path.write_text(
        "timestamp,open,high,low,close,volume\n1515542400,1,2,0.5,1.5,10\n1515542460,1,2,0.5,1.5,10\n"
    )
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert "seconds_1m.csv" in result.output and "seconds since the Unix epoch" in result.output
