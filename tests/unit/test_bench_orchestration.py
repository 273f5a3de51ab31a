"""The orchestration benchmark's machinery: Prefect taken out, the same-work check, the numbers.

No pipeline runs here and nothing is timed: a small module with Prefect tasks stands in for the
pipeline's ``flows.*`` and ``tasks.*`` modules.
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Iterator
from concurrent.futures import Future
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote
from rich.console import Console

from bench import orchestration as orch
from bench.workload import BenchError

FAKE = "tests_fake_pipeline_module"


@pytest.fixture
def fake_module() -> Iterator[types.ModuleType]:
    """A module shaped like a flows/tasks module: tasks, quote, artifacts, a run logger, flow_run."""
    module = types.ModuleType(FAKE)

    @task(name="double")
    def double(value: Any) -> Any:
        return value * 2

    @task(name="where")
    def where() -> str:
        return threading.current_thread().name

    def venue_grant(settings: Any, venue: Any) -> str:
        return "a Prefect global limit"

    def compose(values: list[int]) -> dict[str, Any]:
        # Through the module, as a flow's body reaches its module's globals.
        inline = module.double(module.quote(values))  # a quoted list, doubled inline
        futures = [module.double.submit(v) for v in values]
        threads = module.where.submit()
        module.create_markdown_artifact(key="k", markdown="m")
        module.get_run_logger().info("logged")
        return {
            "inline": inline,
            "submitted": [f.result() for f in futures],
            "futures": futures,
            "thread": threads.result(),
            "run_id": module.flow_run.id,
            "grant": module.venue_grant(None, None),
        }

    module.double, module.where, module.compose = double, where, compose
    module.quote, module.flow_run, module.venue_grant = quote, flow_run, venue_grant
    module.create_markdown_artifact, module.get_run_logger = create_markdown_artifact, get_run_logger
    sys.modules[FAKE] = module
    try:
        yield module
    finally:
        del sys.modules[FAKE]


def test_prefect_taken_out_calls_the_functions_plainly(fake_module: types.ModuleType) -> None:
    originals = dict(vars(fake_module))
    with orch.prefect_taken_out(3, modules=(FAKE,)) as calls:
        result = fake_module.compose([1, 2, 3])
    assert result["inline"] == [1, 2, 3, 1, 2, 3]  # quote() unwrapped: the list itself, doubled
    assert result["submitted"] == [2, 4, 6]
    assert all(isinstance(f, Future) for f in result["futures"])  # plain concurrent futures
    assert result["thread"].startswith("bare-task")  # .submit() ran on the bare pool
    assert result["run_id"] is None
    assert result["grant"] is None  # no venue rate limit, as on the temporary API
    assert dict(calls.counts) == {"double": 4, "where": 1}  # every call counted, like task runs
    for name in ("double", "where", "quote", "flow_run", "create_markdown_artifact", "get_run_logger"):
        assert vars(fake_module)[name] is originals[name], f"{name} was not restored"
    assert fake_module.venue_grant(None, None) == "a Prefect global limit"


def test_prefect_taken_out_refuses_the_prefect_api(fake_module: types.ModuleType) -> None:
    from prefect.server.api.server import SubprocessASGIServer

    start = SubprocessASGIServer.start
    with (
        orch.prefect_taken_out(1, modules=(FAKE,)),
        pytest.raises(BenchError, match="reached for Prefect's API"),
    ):
        SubprocessASGIServer().start()
    assert SubprocessASGIServer.start is start


def test_task_names_by_key_maps_what_task_runs_record(fake_module: types.ModuleType) -> None:
    names = orch.task_names_by_key((FAKE,))
    assert names == {fake_module.double.task_key: "double", fake_module.where.task_key: "where"}


def test_run_environment_pins_the_window_and_fresh_folders(tmp_path: Path) -> None:
    env = orch.run_environment(tmp_path / "1-prefect", 1_795_334_400_000)
    assert env["TRADEFLOW_HISTORY__END"] == "2026-11-22T08:00:00Z"
    assert env["TRADEFLOW_DATA_DIR"] == str(tmp_path / "1-prefect" / "data")
    assert env["TRADEFLOW_STORAGE__URL"] == str(tmp_path / "1-prefect" / "data" / "lake")
    assert env["PREFECT_HOME"] == str(tmp_path / "1-prefect" / "prefect")


def test_a_run_refuses_a_used_folder(tmp_path: Path) -> None:
    (tmp_path / "leftover").write_text("x")
    with pytest.raises(BenchError, match="not empty"):
        orch.run_arm(orch.BARE, tmp_path, 1_795_334_400_000, Console(file=None))


def _run(arm: str, seconds: float, **changes: Any) -> dict[str, Any]:
    counts = {"fetch-candle-series": 18, "evaluate-model": 3, "checkpoint-audit": 1}
    run: dict[str, Any] = {
        "arm": arm,
        "seconds": seconds,
        "returned_seconds": seconds - (0.5 if arm == orch.PREFECT else 0.0),
        "drain_seconds": 0.5 if arm == orch.PREFECT else 0.0,
        "stage_seconds": {stage: seconds / len(orch.STAGES) for stage in orch.STAGES},
        "import_seconds": 5.0,
        "api_start_seconds": 8.0 if arm == orch.PREFECT else None,
        "api_idle_cpu_per_second": 0.05 if arm == orch.PREFECT else None,
        "task_seconds": {"fetch-candle-series": seconds / 10, "evaluate-model": seconds / 2},
        "task_calls": None if arm == orch.PREFECT else dict(counts),
        "runs": {
            "flow_runs": [{"name": "x", "state": "Completed"}],
            "task_runs": sum(counts.values()),
            "task_runs_by_name": dict(counts),
            "task_runs_retried": 0,
        }
        if arm == orch.PREFECT
        else None,
        "cpu_seconds": {"client": seconds * 0.9, "simulator": 1.0}
        | ({"prefect server": 2.0} if arm == orch.PREFECT else {}),
        "fingerprint": {
            "candle_objects": [["raw", "k", "sha", 10, False]],
            "audit_entries": 9,
            orch.LIVE: {"final_equity": 99_936.0 + seconds / 100},
        },
        "load_before": [1.0, 1.0, 1.0],
        "load_after": [2.0, 1.0, 1.0],
    }
    run.update(changes)
    return run


def _result(runs: list[dict[str, Any]]) -> orch.OrchestrationResult:
    return orch.OrchestrationResult(window_end="2026-11-22 05:00", end_ms=0, pairs=len(runs) // 2, runs=runs)


def test_same_work_passes_and_the_numbers_follow() -> None:
    runs = [
        _run(orch.PREFECT, 100.0),
        _run(orch.BARE, 95.0),
        _run(orch.PREFECT, 104.0),
        _run(orch.BARE, 97.0),
    ]
    orch.check_same_work(runs)
    result = _result(runs)
    summary = result.summary()
    assert summary["prefect_median_seconds"] == 102.0
    assert summary["bare_median_seconds"] == 96.0
    assert summary["overhead_fraction"] == pytest.approx(6 / 102)
    assert summary["pair_overheads"] == pytest.approx([0.05, 7 / 104])
    assert summary["task_runs"] == 22 and summary["flow_runs"] == 1
    assert summary["per_task_ms"] == pytest.approx(6 / 22 * 1000)
    assert summary["passed"] is True
    console = Console(width=200, record=True, file=None)
    for table in orch.tables(result):
        console.print(table)
    text = console.export_text()
    assert "0.94×" in text  # bare / prefect, side by side
    assert "PASS" in text
    row = next(line for line in text.splitlines() if "fetch-candle-series" in line)
    assert row.replace("│", " ").split() == [
        "fetch-candle-series",
        "ingest",
        "18",
        "18",
        "10.20",
        "9.60",
        "+0.60",
    ]
    assert "PASS" in orch.verdicts(result)[0]
    assert orch.stage_task_runs(result) == {"ingest": 18, "train": 3, "other": 1}


def test_overhead_over_the_goal_fails() -> None:
    result = _result([_run(orch.PREFECT, 100.0), _run(orch.BARE, 85.0)])
    assert result.summary()["passed"] is False
    assert "FAIL" in orch.verdicts(result)[0]


def test_different_outputs_fail_loudly() -> None:
    bare = _run(orch.BARE, 95.0)
    bare["fingerprint"] = deepcopy(bare["fingerprint"]) | {"audit_entries": 8}
    with pytest.raises(BenchError, match=r"audit_entries: 9 != 8"):
        orch.check_same_work([_run(orch.PREFECT, 100.0), bare])


def test_bare_calls_must_match_the_task_runs() -> None:
    bare = _run(orch.BARE, 95.0)
    bare["task_calls"] = bare["task_calls"] | {"evaluate-model": 2}
    with pytest.raises(BenchError, match="evaluate-model: 2 bare calls vs 3 task runs"):
        orch.check_same_work([_run(orch.PREFECT, 100.0), bare])


def test_a_second_flow_run_fails() -> None:
    prefect = _run(orch.PREFECT, 100.0)
    prefect["runs"]["flow_runs"] = prefect["runs"]["flow_runs"] * 2
    with pytest.raises(BenchError, match="2 flow runs"):
        orch.check_same_work([prefect, _run(orch.BARE, 95.0)])


def test_floats_are_compared_to_ten_significant_digits() -> None:
    # Two trainings on the same data differ in the probabilities' last bits, not before.
    a = orch._rounded({"p": [0.47035553033974636, {"q": 1.0}], "n": 3, "s": "x"})
    b = orch._rounded({"p": [0.4703555303397466, {"q": 1.0}], "n": 3, "s": "x"})
    assert a == b == {"p": [0.4703555303, {"q": 1.0}], "n": 3, "s": "x"}
    assert orch._rounded(0.47035553) != orch._rounded(0.47035554)
