"""Prefect's Dask task runner (flows/runners.py): the ingest fan-out in worker processes.

The same offline window is ingested with the thread runner and with a local multi-process Dask
cluster into two lakes, which must come out identical; the scheduler itself records which
process ran each task. A cluster given by address (``dask_address``), and Prefect's temporary
API (no ``PREFECT_API_URL``), are exercised too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cloudpickle
import dask
import pytest
from distributed import LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.context import FlowRunContext, TaskRunContext
from prefect.utilities.annotations import quote
from prefect_dask import DaskTaskRunner
from typer.testing import CliRunner

from flows.ingest import ingest_market_data
from flows.runners import task_runner
from tasks.ingest import connect_venue, fetch_candle_series, snapshot_market_task
from tradeflow.cli import app
from tradeflow.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
SYMBOLS = ["BTC/USDT", "ETH/USDT"]
VENUES = [("sim-alpha", 11, SYMBOLS, ""), ("sim-beta", 22, SYMBOLS, "")]


def with_orchestration(config_path: str, section: str) -> Settings:
    """Append an ``[orchestration]`` section to a config file; return its settings."""
    path = Path(config_path)
    path.write_text(path.read_text() + f"\n[orchestration]\n{section}\n")
    return load_settings(config_path)


# --- which worker process ran each task, as the Dask scheduler saw it -------------------------
# The scheduler of a local cluster lives in this process; distributed runs ``dask_setup`` of
# the modules named in ``distributed.scheduler.preload`` when a scheduler starts.

PLACEMENTS: list[TaskPlacement] = []


class TaskPlacement(SchedulerPlugin):
    """Record the worker process (PID) that computed each task, and the cluster's worker PIDs."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.ran_in: dict[str, int] = {}
        self.worker_pids: set[int] = set()

    def add_worker(self, scheduler: Any, worker: str) -> None:
        self.worker_pids.add(scheduler.workers[worker].pid)

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if start == "processing" and finish == "memory":
            self.ran_in[str(key)] = self.scheduler.workers[kwargs["worker"]].pid

    def ran(self, function: str) -> list[int]:
        """PIDs of the processes that ran each call of ``function`` (Dask keys are name-token)."""
        return [pid for key, pid in self.ran_in.items() if key.rsplit("-", 1)[0] == function]


def dask_setup(scheduler: Any) -> None:
    """Scheduler preload hook (see above)."""
    placement = TaskPlacement(scheduler)
    PLACEMENTS.append(placement)
    scheduler.add_plugin(placement, name="tradeflow-test-placement")


def task_run_states(flow_run_id: Any, name_prefix: str) -> list[str]:
    """State names of the flow run's task runs whose name starts with ``name_prefix``, from the API."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return [run.state.name if run.state else "" for run in runs if run.name.startswith(name_prefix)]


def series_outcomes(result: dict[str, Any]) -> dict[tuple[str, str, str], tuple[Any, ...]]:
    return {
        (s["venue"], s["symbol"], s["timeframe"]): (
            s["status"], s["candles"], s["window_start"], s["window_end"], s["holes"], s["objects_written"]
        )
        for s in result["series"]
    }  # fmt: skip


# --- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("submitted", [connect_venue, fetch_candle_series, snapshot_market_task])
def test_every_task_the_ingest_flow_fans_out_can_be_shipped_to_a_worker(submitted):
    # A Dask worker receives the task by value (cloudpickle), with the module globals its
    # function names: a lock or other unpicklable global fails the whole flow run.
    assert cloudpickle.loads(cloudpickle.dumps(submitted)).name == submitted.name


def test_ingest_on_a_local_dask_cluster_stores_what_the_thread_runner_stores(write_config, tmp_path):
    threads_config = write_config("threads.toml", lake=str(tmp_path / "threads"), venues=VENUES)
    dask_config = write_config("dask.toml", lake=str(tmp_path / "dask"), venues=VENUES)
    threads_runner = task_runner(with_orchestration(threads_config, 'task_runner = "threads"'), max_workers=8)
    dask_runner = task_runner(
        with_orchestration(
            dask_config, 'task_runner = "dask"\ndask_workers = 2\ndask_threads_per_worker = 2'
        ),
        max_workers=8,
    )
    assert not isinstance(threads_runner, DaskTaskRunner)
    assert isinstance(dask_runner, DaskTaskRunner) and dask_runner.address is None

    by_threads = ingest_market_data.with_options(task_runner=threads_runner)(config_path=threads_config)
    PLACEMENTS.clear()
    with dask.config.set({"distributed.scheduler.preload": [__name__]}):
        state = ingest_market_data.with_options(task_runner=dask_runner)(
            config_path=dask_config, return_state=True
        )
    assert state.is_completed(), state.message
    by_dask = state.result()

    # Same series, same windows and row counts, and byte-identical candle objects.
    assert len(by_dask["series"]) == 2 * 2 * 2
    assert series_outcomes(by_dask) == series_outcomes(by_threads)
    assert {s["status"] for s in by_dask["series"]} == {"stored"}
    compared = CliRunner().invoke(app, ["lake", "compare", str(tmp_path / "threads"), str(tmp_path / "dask")])
    assert compared.exit_code == 0, compared.output
    assert "Identical: 8 series" in compared.output

    # The fan-out ran in the cluster's two worker processes, not in this one.
    (placement,) = PLACEMENTS
    assert len(placement.worker_pids) == 2 and os.getpid() not in placement.worker_pids
    fetched_in = placement.ran("fetch_candle_series")
    assert len(fetched_in) == 8 and set(fetched_in) <= placement.worker_pids
    for function, calls in (("connect_venue", 2), ("snapshot_market_task", 4)):
        ran_in = placement.ran(function)
        assert len(ran_in) == calls and set(ran_in) <= placement.worker_pids

    # The workers reported those task runs to this session's Prefect API.
    flow_run_id = state.state_details.flow_run_id
    assert task_run_states(flow_run_id, "fetch ") == ["Completed"] * 8
    assert task_run_states(flow_run_id, "connect-venue") == ["Completed"] * 2


@task
def where_am_i(n: int) -> dict[str, Any]:
    from distributed import get_worker

    return {"n": n, "pid": os.getpid(), "worker": get_worker().address}


@flow
def two_tasks() -> list[dict[str, Any]]:
    # quote(): the flows pass their settings this way, and it must reach the worker intact.
    futures = [where_am_i.submit(quote(n)) for n in range(2)]
    return [future.result() for future in futures]


def test_a_dask_address_sends_the_tasks_to_that_cluster(write_config):
    # A cluster started apart from the flow run stands in for a remote one: the flow code is the
    # same, the config names the scheduler.
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        settings = with_orchestration(
            write_config(venues=VENUES), f'task_runner = "dask"\ndask_address = "{cluster.scheduler_address}"'
        )
        runner = task_runner(settings, max_workers=8)
        assert isinstance(runner, DaskTaskRunner) and runner.address == cluster.scheduler_address
        workers = {address: state.pid for address, state in cluster.scheduler.workers.items()}

        results = two_tasks.with_options(task_runner=runner)()

    assert [r["n"] for r in results] == [0, 1]
    for result in results:
        assert result["worker"] in workers and result["pid"] == workers[result["worker"]]
        assert result["pid"] != os.getpid()


@task
def api_seen_by_task_run() -> dict[str, Any]:
    context = TaskRunContext.get()
    assert context is not None and context.client is not None
    return {"api": str(context.client.api_url), "pid": os.getpid()}


@flow
def api_urls() -> dict[str, Any]:
    context = FlowRunContext.get()
    assert context is not None and context.client is not None
    futures = [api_seen_by_task_run.submit() for _ in range(2)]
    return {
        "flow_api": str(context.client.api_url),
        "tasks": [f.result() for f in futures],
        "pid": os.getpid(),
    }


def run_api_urls(config_path: str) -> None:
    """Entry point of the subprocess below: run ``api_urls`` on the configured runner; print JSON."""
    flow_with_runner = api_urls.with_options(
        task_runner=task_runner(load_settings(config_path), max_workers=2)
    )
    print("RESULT " + json.dumps(flow_with_runner()))


def test_without_an_api_url_the_workers_report_to_the_flow_runs_temporary_api(write_config, tmp_path):
    # The embedded default (`tradeflow ingest`, no Prefect server): the flow run starts a
    # temporary API; task runs in worker processes must report to that one, not start their own.
    config = write_config(venues=VENUES)
    with_orchestration(config, 'task_runner = "dask"\ndask_workers = 1\ndask_threads_per_worker = 2')
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    done = subprocess.run(
        [sys.executable, "-c", f"from {__name__} import run_api_urls; run_api_urls({config!r})"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["flow_api"].startswith("http://127.0.0.1:")
    assert [t["api"] for t in result["tasks"]] == [result["flow_api"]] * 2
    assert all(t["pid"] != result["pid"] for t in result["tasks"])
