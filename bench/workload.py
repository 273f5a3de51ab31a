"""What every benchmark run fetches: one config file, one pinned window, one list of pages.

The config is the shipped ``tradeflow.toml`` with only the look-back, the storage URL and the
data folder changed, written as TOML so the flow and the CLI read it exactly as they read the
real one. The pages come from the project's own :func:`~tradeflow.ingest.series_window` and
:func:`~tradeflow.ingest.plan_pages`, so the bare loops and the pipeline fetch the same pages.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tradeflow.bootstrap import venue_urls
from tradeflow.config import Settings, VenueConfig, load_settings
from tradeflow.ingest import Page, plan_pages, series_window
from tradeflow.timeframes import HOUR_MS, floor_ms, timeframe_ms


class BenchError(RuntimeError):
    """A measurement that cannot be used: a failed run, or methods that fetched different data."""


#: The repository root: the shipped config and the interpreter the CLI runs under live here.
REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "tradeflow.toml"


def last_whole_hour_ms(now_ms: int | None = None) -> int:
    """Return the most recent whole UTC hour in milliseconds (the default pinned window end).

    Args:
        now_ms: The current time; defaults to the wall clock.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return floor_ms(now, HOUR_MS)


def cli_end(end_ms: int) -> str:
    """Return ``end_ms`` in the format the CLI's ``--end`` option parses (naive UTC)."""
    return datetime.fromtimestamp(end_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def base_settings() -> Settings:
    """Return the shipped defaults from ``tradeflow.toml`` (plus any TRADEFLOW_* overrides)."""
    return load_settings(DEFAULT_CONFIG)


# --- the config file --------------------------------------------------------------------------


def _toml_key(key: str) -> str:
    # Quoted keys are always valid TOML; bare ones only for a restricted alphabet.
    return json.dumps(key)


def _toml_value(value: Any) -> str:
    """Return ``value`` as an inline TOML value (no nulls: they are dropped before)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, Mapping):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def to_toml(document: Mapping[str, Any]) -> str:
    """Return a TOML document for a config dict: scalars first, then one table per section.

    Lists of tables (venues, simulator symbols) are written as arrays of inline tables, which
    keeps the writer tiny; ``tomllib`` reads them exactly like ``[[venues]]`` blocks.
    """
    lines = ["# Written by `python -m bench`: tradeflow.toml with the benchmark's window and lake."]
    sections = {k: v for k, v in document.items() if isinstance(v, Mapping)}
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in document.items() if k not in sections]
    for name, table in sections.items():
        lines += ["", f"[{_toml_key(name)}]"]
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def bench_document(
    base: Settings, *, days: Mapping[str, int], storage_url: str, data_dir: Path
) -> dict[str, Any]:
    """Return the benchmark config as plain data: ``base`` with a new look-back, lake and data dir.

    Args:
        base: The shipped defaults.
        days: Look-back in days per timeframe, e.g. ``{"1m": 30, "1h": 180}``.
        storage_url: The lake to write to.
        data_dir: The local working folder (the CLI keeps reports there).
    """
    document = base.model_dump(mode="json", exclude_none=True)
    history = document["history"]
    history["days_by_timeframe"] = {**history.get("days_by_timeframe", {}), **days}
    document["storage"]["url"] = storage_url
    document["data_dir"] = str(data_dir)
    # Relative paths in tradeflow.toml mean "from the repository root" (where `make` runs).
    real_data = Path(document["real_data_dir"])
    document["real_data_dir"] = str(real_data if real_data.is_absolute() else (REPO / real_data).resolve())
    return document


def write_config(path: Path, document: Mapping[str, Any]) -> Settings:
    """Write ``document`` as TOML to ``path`` and return it loaded back by :func:`load_settings`.

    Raises:
        RuntimeError: if the file does not load back to the same config (a writer bug would
            otherwise silently benchmark a different pipeline).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_toml(document))
    settings = load_settings(path)
    if settings.model_dump(mode="json", exclude_none=True) != document:
        raise RuntimeError(f"{path} does not load back to the config it was written from")
    return settings


class Workspace:
    """A temporary folder holding one config and one fresh lake per benchmark run."""

    def __init__(self, base: Settings, days: Mapping[str, int], root: Path | None = None) -> None:
        """Create the folder (under ``root`` if given, else in the system temp dir).

        Args:
            base: The shipped defaults every config starts from.
            days: Look-back in days per timeframe.
            root: Parent folder; the workspace is a new subfolder of it.
        """
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix="tradeflow-bench-", dir=root))
        self.base = base
        self.days = dict(days)
        self._runs = 0

    def new_run(self, name: str) -> tuple[Path, Settings]:
        """Return the config path and settings of a new run whose lake is empty.

        Args:
            name: A label for the run's folder, e.g. "pipeline-2".
        """
        self._runs += 1
        run_dir = self.path / f"{self._runs:02d}-{name}"
        document = bench_document(
            self.base, days=self.days, storage_url=str(run_dir / "lake"), data_dir=run_dir / "data"
        )
        config_path = run_dir / "tradeflow.toml"
        return config_path, write_config(config_path, document)

    def discard(self, config_path: Path) -> None:
        """Delete a finished run's folder (its lake can be tens of MB)."""
        shutil.rmtree(config_path.parent, ignore_errors=True)

    def cleanup(self) -> None:
        """Delete the whole workspace."""
        shutil.rmtree(self.path, ignore_errors=True)


# --- the pages --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One (venue, symbol, timeframe) series and the pages the pipeline would request for it."""

    venue: VenueConfig
    base_url: str | None
    symbol: str
    timeframe: str
    pages: tuple[Page, ...]

    @property
    def expected_candles(self) -> int:
        """Return the closed candles the pages cover (every one exists on a clean venue)."""
        tf_ms = timeframe_ms(self.timeframe)
        return sum((page.until - page.since) // tf_ms + 1 for page in self.pages)


def plan_series(settings: Settings, running: Mapping[str, str], end_ms: int) -> list[Series]:
    """Return every series of a first run (empty lake) ending at ``end_ms``, as the flow plans it.

    Args:
        settings: The benchmark config.
        running: Venue id to base URL of the running simulator.
        end_ms: The pinned window end.
    """
    urls = venue_urls(settings, running)
    plan = []
    for venue in settings.venues:
        for symbol in settings.venue_symbols(venue):
            for timeframe in settings.ingest.timeframes:
                tf_ms = timeframe_ms(timeframe)
                start, stop = series_window(None, end_ms, tf_ms, settings.history.days_for(timeframe))
                pages = plan_pages(start, stop, tf_ms, settings.ingest.page_limit)
                plan.append(Series(venue, urls[venue.id], symbol, timeframe, tuple(pages)))
    return plan


def describe_plan(plan: Sequence[Series]) -> dict[str, Any]:
    """Return the size of a plan: series, pages and candles, in total and per timeframe."""
    per_timeframe: dict[str, dict[str, int]] = {}
    for series in plan:
        entry = per_timeframe.setdefault(series.timeframe, {"series": 0, "pages": 0, "candles": 0})
        entry["series"] += 1
        entry["pages"] += len(series.pages)
        entry["candles"] += series.expected_candles
    return {
        "series": len(plan),
        "pages": sum(len(s.pages) for s in plan),
        "candles": sum(s.expected_candles for s in plan),
        "per_timeframe": per_timeframe,
    }
