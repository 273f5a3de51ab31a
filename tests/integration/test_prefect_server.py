"""A real ``prefect server`` and process worker: deploy, trigger through the API, and let a cron fire.

The server runs on SQLite and on the machine's PostgreSQL; each is started as an operator would
(``prefect server start``), the deployments are registered with ``tradeflow deploy`` (which runs
``prefect deploy`` on prefect.yaml) and a ``prefect worker start`` process runs them. Every process
is stopped by its process id at the end (tests/prefect_server.py).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.flows.conftest import BASE_CONFIG, VENUE
from tests.flows.test_training_flow import TRAINING
from tests.postgres import fresh_database
from tests.prefect_server import REPO, PrefectServer, prefect_server, wait_for_flow_run
from tradeflow.audit.chain import iter_entries
from tradeflow.config import load_settings
from tradeflow.storage.objectstore import open_store

POOL = "tradeflow-test"

SMALL = TRAINING + """
[backtest]
monte_carlo_scenarios = 200
ablation = false
"""


def write_config(root: Path) -> Path:
    """Four days of 1m candles from two clean local venues; a small training and backtest."""
    text = BASE_CONFIG.format(data=root / "data", lake=root / "lake", profile="clean", storage_extra="")
    text = text.replace('timeframes = ["1m", "1h"]', 'timeframes = ["1m"]').replace("days = 1", "days = 4")
    text = text.replace("[ingest]", SMALL + "[ingest]")
    for venue_id, seed in (("sim-alpha", 11), ("sim-beta", 22)):
        text += VENUE.format(id=venue_id, seed=seed, extra="", symbols="")
    path = root / "tradeflow.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A real Prefect server (SQLite or PostgreSQL) with a process worker on the pool ``tradeflow-test``."""
    root = tmp_path_factory.mktemp(f"server-{request.param}")
    config = write_config(root)
    with fresh_database("tradeflow_prefect") if request.param == "postgresql" else _NoDatabase() as database:
        url = database.replace("+psycopg", "+asyncpg") if database else None
        with prefect_server(url, {"PREFECT_WORKER_QUERY_SECONDS": "2"}) as server:
            worker = server.start(
                [str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", POOL,
                 "--type", "process"], "worker",
            )  # fmt: skip
            api = httpx.Client(base_url=server.api_url, timeout=30)
            try:
                yield {"server": server, "config": config, "api": api, "worker": worker, "db": request.param}
            finally:
                api.close()


class _NoDatabase:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def deploy(server: PrefectServer, config: Path, *names: str) -> str:
    """``tradeflow deploy --config CONFIG --pool tradeflow-test NAMES`` against the server."""
    done = subprocess.run(
        [sys.executable, "-m", "tradeflow.cli", "deploy", "--config", str(config), "--pool", POOL, *names],
        cwd=REPO, env=server.env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def deployment(api: httpx.Client, full_name: str) -> dict[str, Any]:
    response = api.get(f"/deployments/name/{full_name}")
    response.raise_for_status()
    found: dict[str, Any] = response.json()
    return found


def artifacts_of(api: httpx.Client, run_id: str) -> dict[str, dict[str, Any]]:
    response = api.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    response.raise_for_status()
    return {a["key"]: a for a in response.json() if a.get("key")}


def test_a_deployed_daily_pipeline_triggered_through_the_api_completes_with_artifacts_and_audit(stack):
    server, api, config = stack["server"], stack["api"], stack["config"]
    output = deploy(server, config, "daily-pipeline/daily")
    assert "daily-pipeline/daily" in output
    found = deployment(api, "daily-pipeline/daily")
    assert found["work_pool_name"] == POOL
    assert found["job_variables"]["env"]["TRADEFLOW_CONFIG"] == str(config)
    # The parameter schema comes from the flow's signature, descriptions from its docstring.
    properties = found["parameter_openapi_schema"]["properties"]
    assert {"config_path", "end_ms", "running_venues", "backtest"} <= set(properties)
    assert "Pin the ingest window" in properties["end_ms"]["description"]
    assert found["enforce_parameter_schema"] is True
    assert found["description"].startswith("Every research stage in one flow run")
    # prefect.yaml keeps the pipeline's daily schedule paused (the per-stage schedules are the default).
    [schedule] = found["schedules"]
    assert schedule["schedule"]["cron"] == "0 1 * * *" and schedule["active"] is False

    created = api.post(f"/deployments/{found['id']}/create_flow_run", json={"parameters": {}})
    created.raise_for_status()
    run_id = created.json()["id"]
    run = wait_for_flow_run(api, run_id, 420, lambda: server.logs("worker"))
    assert run["state_type"] == "COMPLETED", f"{run['state']}\n{server.logs('worker')}"

    artifacts = artifacts_of(api, run_id)
    assert {"daily-pipeline-summary", "training-summary", "backtest-summary", "audit-trail"} <= set(artifacts)
    summary = artifacts["daily-pipeline-summary"]["data"]
    for stage in ("ingest", "validate", "snapshot", "features", "train", "signals", "allocate", "backtest"):
        assert f"| {stage} |" in summary

    settings = load_settings(config)
    entries = [e for e in iter_entries(open_store(settings.storage.url)) if e.actor == f"flow-run:{run_id}"]
    kinds = {e.kind for e in entries}
    assert {"ingest_batch", "validation", "snapshot", "feature_matrix", "backtest"} <= kinds, kinds


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)  # the schedule is exercised once
def test_a_short_cron_schedule_fires_by_itself_and_the_worker_runs_it(stack):
    server, api, config = stack["server"], stack["api"], stack["config"]
    # A one-minute cron (prefect.yaml's ingest schedule); nothing triggers it but the scheduler.
    deploy(server, config, "ingest-market-data/every-minute")
    found = deployment(api, "ingest-market-data/every-minute")
    assert found["schedules"][0]["schedule"]["cron"] == "* * * * *"
    deadline = time.monotonic() + 200
    while time.monotonic() < deadline:
        runs = api.post(
            "/flow_runs/filter",
            json={"flow_runs": {"deployment_id": {"any_": [found["id"]]},
                                "state": {"type": {"any_": ["COMPLETED"]}}}},
        ).json()  # fmt: skip
        if runs:
            break
        time.sleep(2)
    else:
        pytest.fail(f"no scheduled run completed in 200 s; worker log:\n{server.logs('worker')}")
    run = runs[0]
    assert run["auto_scheduled"] is True  # created by the server's scheduler, not by a client
    assert {"ingest-summary", "ingest-series", "audit-trail"} <= set(artifacts_of(api, run["id"]))


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_prefect_deployment_run_with_params_runs_on_the_worker(stack):
    server, api, config = stack["server"], stack["api"], stack["config"]
    deploy(server, config, "kill-switch/on-demand")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "prefect"), "deployment", "run", "kill-switch/on-demand",
         "--param", "engage=true", "--param", "reason=on demand", "--watch", "--watch-timeout", "240"],
        env=server.env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and "Completed" in done.stdout, (
        done.stdout + done.stderr + server.logs("worker")
    )
    runs = api.post(
        "/flow_runs/filter",
        json={"flow_runs": {"deployment_id": {"any_": [deployment(api, "kill-switch/on-demand")["id"]]}}},
    ).json()
    [run] = runs
    assert run["parameters"] == {"engage": True, "reason": "on demand"} and run["state_type"] == "COMPLETED"
    # It ran in the worker's process, with the config the deployment passes on.
    assert (load_settings(config).data_dir / "KILL_SWITCH").exists()
