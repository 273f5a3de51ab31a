"""The execution section of ``make bench``: three child processes, each its own benchmark.

- ``bench.book``: order-book maintenance, parse + apply, against a plain-Python baseline.
- ``bench.decision``: the decision hot path, book event -> order decision, with a LightGBM champion.
- ``bench.stream``: the whole flow over loopback (venue tick -> order acknowledged) and memory.

Each child prints its own tables; this module collects their JSON and their verdict lines.
"""

from __future__ import annotations

import importlib
from typing import Any

from rich.console import Console

from bench.child import run_section

SECTIONS = {"book": 300.0, "decision": 600.0, "stream": 1_200.0}
"""Child module -> its time limit in seconds."""


def run_execution(quick: bool, console: Console) -> dict[str, Any]:
    """Run the three sections; return their raw results by name."""
    results: dict[str, Any] = {}
    for name, limit in SECTIONS.items():
        console.rule(f"execution: bench.{name}")
        results[name] = run_section(name, ["--quick"] if quick else [], limit)
    return results


def execution_verdicts(results: dict[str, Any]) -> list[str]:
    """Return each section's PASS/FAIL lines (from the section module's ``verdicts``)."""
    lines: list[str] = []
    for name, result in results.items():
        module = importlib.import_module(f"bench.{name}")
        verdicts = getattr(module, "verdicts", None)
        if verdicts is None:
            continue
        if name == "decision":  # these verdicts read the typed results
            result = module.DecisionBenchResult.from_dict(result)
        elif name == "book":
            result = module.BookBenchResult.from_dict(result)
        lines += list(verdicts(result))
    return lines
