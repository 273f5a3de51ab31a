"""``--profile``: when each task of the flow ran, in one extra (untimed) pipeline run.

The flow's tasks are Prefect ``Task`` objects whose ``fn`` is the plain function; for the
duration of one run each ``fn`` is wrapped to record its start and end, and then restored. The
timed runs never see the wrapper. The phases show what the bare loop has no counterpart for:
the tail after the last candle series (snapshots, manifest, artifacts, Prefect bookkeeping).
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

#: The flow's tasks in the order the flow runs them (attribute names in ``tasks.ingest``).
TASKS = (
    "read_lake_state",
    "connect_venue",
    "fetch_candle_series",
    "snapshot_market_task",
    "publish_batch",
    "report_ingest",
)


@dataclass(frozen=True)
class Span:
    """One task call: its name, timeframe (for candle series) and start/end in seconds."""

    task: str
    timeframe: str | None
    start: float
    end: float


@dataclass
class Timeline:
    """Task spans of one flow run, relative to the moment the flow was called."""

    spans: list[Span] = field(default_factory=list)
    returned: float = 0.0  # when the flow call returned

    def phases(self) -> list[dict[str, Any]]:
        """Return one row per task name (and per timeframe for candle series), in flow order."""
        rows = []
        keys = dict.fromkeys((s.task, s.timeframe) for s in sorted(self.spans, key=lambda s: s.start))
        for task, timeframe in keys:
            spans = [s for s in self.spans if s.task == task and s.timeframe == timeframe]
            durations = [s.end - s.start for s in spans]
            rows.append({
                "task": task if timeframe is None else f"{task} {timeframe}",
                "calls": len(spans),
                "first_start": min(s.start for s in spans),
                "last_end": max(s.end for s in spans),
                "mean_seconds": sum(durations) / len(durations),
                "max_seconds": max(durations),
            })  # fmt: skip
        return rows

    def tail_seconds(self) -> float:
        """Return the time from the end of the last candle series to the flow call's return."""
        series_end = max((s.end for s in self.spans if s.task == "fetch_candle_series"), default=0.0)
        return self.returned - series_end


@contextmanager
def recording(origin: Callable[[], float] = time.perf_counter) -> Iterator[Timeline]:
    """Wrap the flow's task functions while the block runs; yield the timeline being filled.

    Spans are relative to the moment the block is entered; ``returned`` is set when it exits.
    """
    import tasks.ingest as flow_tasks

    timeline, lock, started = Timeline(), threading.Lock(), origin()
    originals = {name: getattr(flow_tasks, name).fn for name in TASKS}

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)  # Prefect binds parameters through the wrapped signature
        def timed(*args: Any, **kwargs: Any) -> Any:
            begin = origin()
            try:
                return fn(*args, **kwargs)
            finally:
                timeframe = signature.bind_partial(*args, **kwargs).arguments.get("timeframe")
                with lock:
                    timeline.spans.append(Span(name, timeframe, begin - started, origin() - started))

        return timed

    for name, fn in originals.items():
        getattr(flow_tasks, name).fn = wrap(name, fn)
    try:
        yield timeline
        timeline.returned = origin() - started
    finally:
        for name, fn in originals.items():
            getattr(flow_tasks, name).fn = fn
