"""prefect.yaml as tradeflow reads it, schedule overrides, and flows run on demand by name."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from flows.deployments import effective_yaml, load_specs, read_prefect_yaml, select
from tradeflow.cli import app
from tradeflow.config import ConfigError, load_settings

runner = CliRunner()

EVERY_FLOW = {
    "ingest-market-data", "validate-market-data", "snapshot-market-data", "build-features", "train-models",
    "generate-signals", "allocate-portfolio", "backtest", "daily-pipeline", "stream-execution", "kill-switch",
    "verify-audit-chain",
}  # fmt: skip


def test_prefect_yaml_has_a_described_deployment_for_every_flow_with_the_schedules_asked_for():
    specs = {s.full_name: s for s in load_specs(load_settings(None))}
    assert {s.flow_name for s in specs.values()} == EVERY_FLOW
    assert all(len(s.description) > 60 for s in specs.values())
    crons = {name: [x["cron"] for x in s.schedules] for name, s in specs.items()}
    assert crons["ingest-market-data/every-minute"] == ["* * * * *"]
    assert crons["validate-market-data/hourly"][0].split()[1:] == ["*", "*", "*", "*"]  # hourly
    assert crons["train-models/daily"][0].split()[2:] == ["*", "*", "*"]  # daily
    assert crons["kill-switch/on-demand"] == []
    # The streaming flow: always on, one run at a time.
    stream = specs["stream-execution/always-on"]
    assert stream.concurrency_limit == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert read_prefect_yaml()["deployments"][0]["enforce_parameter_schema"] is True


def test_a_schedule_override_in_the_config_replaces_or_pauses_a_deployments_schedule(tmp_path):
    config = tmp_path / "tradeflow.toml"
    config.write_text(
        '[orchestration]\nschedules = { "ingest-market-data/every-minute" = "*/5 * * * *", '
        '"backtest/nightly" = "off" }\n'
    )
    specs = {s.full_name: s for s in load_specs(load_settings(config))}
    assert specs["ingest-market-data/every-minute"].schedules == [
        {"cron": "*/5 * * * *", "timezone": "UTC", "active": True}
    ]
    assert specs["backtest/nightly"].schedules[0]["active"] is False
    # What `tradeflow deploy` hands to `prefect deploy`: the overrides, and the config for the worker.
    text = effective_yaml(select(list(specs.values()), ["ingest-market-data"]), config)
    assert "*/5 * * * *" in text and str(config) in text and "backtest" not in text


@pytest.mark.parametrize(
    ("schedules", "message"),
    [
        ('{ "ingest/every-minute" = "* * * * *" }', "orchestration.schedules.ingest/every-minute: no such"),
        (
            '{ "backtest/nightly" = "61 * * * *" }',
            "orchestration.schedules.backtest/nightly: '61 * * * *' is not",
        ),
    ],
)
def test_a_bad_schedule_override_names_the_key(tmp_path, schedules, message):
    config = tmp_path / "tradeflow.toml"
    config.write_text(f"[orchestration]\nschedules = {schedules}\n")
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        load_specs(load_settings(config))
    result = runner.invoke(app, ["deployments", "--config", str(config)])
    assert result.exit_code == 2 and "orchestration.schedules" in result.output


def test_tradeflow_deployments_lists_them_with_their_schedules():
    result = runner.invoke(app, ["deployments"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "ingest-market-data/every-minute" in result.output and "* * * * * UTC" in result.output
    assert "0 1 * * * UTC (paused)" in result.output and "on demand" in result.output


def test_tradeflow_run_flow_runs_one_flow_on_demand_with_parameters(tmp_path):
    config = tmp_path / "tradeflow.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    result = runner.invoke(
        app, ["run", "kill-switch", "--config", str(config), "-p", "engage=true", "-p", "reason=on demand"],
        terminal_width=200,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Running kill-switch on demand with engage=True, reason=on demand" in result.output
    assert (tmp_path / "data" / "KILL_SWITCH").exists()
    result = runner.invoke(app, ["run", "kill-switch", "--config", str(config), "-p", "engage=false"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "data" / "KILL_SWITCH").exists()


def test_tradeflow_run_names_what_is_wrong_with_a_flow_or_a_parameter():
    result = runner.invoke(app, ["run", "no-such-flow"])
    assert result.exit_code == 2 and "no deployment no-such-flow" in result.output
    result = runner.invoke(app, ["run", "kill-switch", "-p", "engaged=true"])
    assert result.exit_code == 2 and "kill-switch has no parameter engaged" in result.output
    result = runner.invoke(app, ["run", "kill-switch", "-p", "engage"])
    assert result.exit_code == 2 and "expected KEY=VALUE" in result.output
