"""The tradeflow command line, driven as a user would (through typer's runner)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from tradeflow.cli import app

runner = CliRunner()


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "ingest", "venues", "config", "lake"):
        assert command in result.output


def test_a_bad_config_exits_2_naming_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[retry]\nmax_attempts = 0\n")
    result = runner.invoke(app, ["config", "check", "--config", str(bad)])
    assert result.exit_code == 2
    assert "retry.max_attempts" in result.output and "greater than or equal to 1" in result.output


def test_ingest_then_inspect_and_compare_lakes(write_config, tmp_path):
    config = write_config(venues=[("sim-alpha", 11, ["BTC/USDT", "ETH/USDT"], "")])
    out = tmp_path / "result.json"
    result = runner.invoke(app, ["ingest", "--config", config, "--no-progress", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "Stored 3,024 new candles" in result.output  # 2 symbols x (1440 1m + 72 1h)
    assert json.loads(out.read_text())["manifest"]["sequence"] == 1

    listing = runner.invoke(app, ["lake", "ls", "--config", config])
    assert listing.exit_code == 0 and "sim-alpha|BTC/USDT|1m" in listing.output and "1,440" in listing.output

    lake = str(tmp_path / "lake")
    same = runner.invoke(app, ["lake", "compare", lake, lake])
    assert same.exit_code == 0 and "Identical: 4 series" in same.output
    other = runner.invoke(app, ["lake", "compare", lake, str(tmp_path / "empty")])
    assert other.exit_code == 1 and "Lakes differ in 4 series" in other.output

    # The re-run goes through a real process, as a user runs it. (In-process, Prefect's console
    # log handler would still hold the first runner's closed stdout.)
    again = subprocess.run(
        [sys.executable, "-m", "tradeflow.cli", "ingest", "--config", config, "--no-progress"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")},
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Candles up to date: nothing new to fetch" in again.stdout
