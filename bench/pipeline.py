"""One timed run of the ``ingest-market-data`` flow, in this process, into a fresh lake.

Prefect is imported here, lazily: :mod:`bench.cli` points Prefect's home at the project's data
folder first, as the CLI does, and ``--only second-run`` never pays for the import.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tradeflow.config import Settings
from tradeflow.ingest import shared_budget


@dataclass(frozen=True)
class PipelineRun:
    """What one flow run did and how long it took."""

    seconds: float  # wall time around the flow call: what a caller waits
    flow_seconds: float  # the flow's own "seconds" (from settings load to manifest published)
    candles: int
    pages: int
    series: int
    retries: int
    failed: list[str] = field(default_factory=list)
    budget_wait_seconds: float = 0.0  # time the client-side weight budget made requests wait

    @property
    def candles_per_second(self) -> float:
        """Return the throughput of the run, on its wall time."""
        return self.candles / self.seconds if self.seconds > 0 else 0.0


def _budget_waits(settings: Settings) -> float:
    # The budgets are process-wide and outlive a run: report the difference over one run.
    return sum(shared_budget(v.id, v.weight_per_minute).waited_seconds for v in settings.venues)


def _summarise(result: Mapping[str, Any], seconds: float, budget_wait: float) -> PipelineRun:
    series = result["series"]
    retries = sum(s["retries"] for s in series) + sum(s["retries"] for s in result["snapshots"])
    failed = [
        f"{s['venue']} {s['symbol']} {s['timeframe']}: {s['error']}"
        for s in series
        if s["status"] == "failed"
    ]
    failed += [f"venue {v['venue']}: {v['error']}" for v in result["venues"] if not v["ok"]]
    return PipelineRun(
        seconds=seconds,
        flow_seconds=float(result["seconds"]),
        candles=sum(s["candles"] for s in series),
        pages=sum(s["pages"] for s in series),
        series=len(series),
        retries=retries,
        failed=failed,
        budget_wait_seconds=budget_wait,
    )


def run_flow(config_path: Path, settings: Settings, running: Mapping[str, str], end_ms: int) -> PipelineRun:
    """Run the flow once against already running venues and return its timing.

    It goes through ``flows.ingest.run_ingest``, the CLI's own entry, so the task runner gets
    ``ingest.max_concurrency`` workers exactly as in ``tradeflow ingest``.

    Args:
        config_path: The run's config file (its lake must be empty for a full fetch).
        settings: The same config, loaded (for the concurrency and the venues' budgets).
        running: Venue id to base URL of the running simulator.
        end_ms: The pinned window end.
    """
    from flows.ingest import run_ingest

    waited_before = _budget_waits(settings)
    started = time.perf_counter()
    result = run_ingest(
        config_path=str(config_path),
        running_venues=dict(running),
        end_ms=end_ms,
        max_concurrency=settings.ingest.max_concurrency,
    )
    seconds = time.perf_counter() - started
    return _summarise(result, seconds, _budget_waits(settings) - waited_before)
