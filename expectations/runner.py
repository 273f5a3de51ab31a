"""The Great Expectations adapter: run the suites on batches and build Data Docs.

One :class:`GxValidator` serves one validation run: it owns an ephemeral GX context (GX is
imported once per process; a context costs milliseconds), registers one data asset per batch so
Data Docs list every batch by name, and turns each GX result into :class:`CheckResult` objects
grouped by the ``check`` named in each expectation's meta.

GX work is CPU-bound Python and GX contexts are not documented as thread-safe, so validations
are serialised by a lock; callers can still overlap reading and writing around them.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import great_expectations as gx
import pandas as pd
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig

from expectations.suites import build_suite, suite_name
from tradeflow.config import ValidationConfig
from tradeflow.quality.checks import SUITE_CHECKS, CheckResult, SuiteOutcome

_LOCK = threading.RLock()


def _quiet_gx_logging() -> None:
    # GX logs every metric it cannot compute at ERROR with a traceback, and chats at INFO; the
    # failure is reported in the check's result instead.
    for name in ["great_expectations", *logging.root.manager.loggerDict]:
        if name.startswith("great_expectations"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def _gx_summary(results: list[Any]) -> dict[str, Any]:
    """Return GX's own observations for a check without tradeflow details: counts, samples."""
    summary: dict[str, Any] = {}
    unexpected = 0
    samples: list[Any] = []
    for result in results:
        body = result.result or {}
        if "observed_value" in body:
            column = result.expectation_config.kwargs.get("column")
            summary[f"observed_{column}" if column else "observed"] = _json_safe(body["observed_value"])
        if "unexpected_count" in body:
            unexpected += int(body["unexpected_count"] or 0)
            samples.extend(_json_safe(body.get("partial_unexpected_list") or [])[:5])
            summary["element_count"] = int(body.get("element_count") or 0)
    if any("unexpected_count" in (r.result or {}) for r in results):
        summary["unexpected"] = unexpected
        if samples:
            summary["unexpected_sample"] = samples[:10]
    return summary


class GxValidator:
    """Run tradeflow's GX suites for one validation run (the :class:`Validator` port)."""

    def __init__(self, config: ValidationConfig, run_name: str, run_time: datetime | None = None) -> None:
        """Create the run's ephemeral context; nothing is written until Data Docs are built."""
        self.config = config
        self.run_id = RunIdentifier(run_name=run_name, run_time=run_time or datetime.now(UTC))
        _quiet_gx_logging()
        with _LOCK:
            self._context = gx.get_context(mode="ephemeral")
            self._context.variables.progress_bars = ProgressBarsConfig(globally=False)
            self._source = self._context.data_sources.add_pandas("tradeflow")
        self._suites: dict[str, Any] = {}
        self._batches: set[str] = set()
        self.results: list[dict[str, Any]] = []

    def _suite(self, suite: str, timeframe: str | None, skip: frozenset[str]) -> Any:
        name = suite_name(suite, timeframe, skip)
        if name not in self._suites:
            self._suites[name] = self._context.suites.add(build_suite(suite, self.config, timeframe, skip))
        return self._suites[name]

    def validate(
        self,
        suite: str,
        frame: pd.DataFrame,
        *,
        batch: str,
        observed: Mapping[str, dict[str, Any]],
        skip: Mapping[str, str] | None = None,
        timeframe: str | None = None,
    ) -> SuiteOutcome:
        """Run one suite on one batch and return a result per check (see the Validator port)."""
        skip = dict(skip or {})
        with _LOCK:
            gx_suite = self._suite(suite, timeframe, frozenset(skip))
            asset_name = f"{batch} [{suite}]"
            attempt = 1
            while asset_name in self._batches:  # a task retried: keep both attempts apart
                attempt += 1
                asset_name = f"{batch} [{suite}] (attempt {attempt})"
            self._batches.add(asset_name)
            asset = self._source.add_dataframe_asset(asset_name)
            definition = self._context.validation_definitions.add(
                gx.ValidationDefinition(
                    name=asset_name,
                    data=asset.add_batch_definition_whole_dataframe("batch"),
                    suite=gx_suite,
                )
            )
            result = definition.run(
                batch_parameters={"dataframe": frame}, result_format="SUMMARY", run_id=self.run_id
            )
        by_check: dict[str, list[Any]] = defaultdict(list)
        for item in result.results:
            config = item.expectation_config
            by_check[config.meta["check"] if config is not None and config.meta else ""].append(item)
        checks: list[CheckResult] = []
        for check in SUITE_CHECKS[suite]:
            policy = self.config.policy(check)
            items = by_check.get(check, [])
            if check in skip:
                checks.append(CheckResult(check, suite, None, policy, note=skip[check]))
                continue
            if not items:
                checks.append(CheckResult(check, suite, None, policy, note="ignored by policy"))
                continue
            errors = [
                str(i.exception_info.get("exception_message"))
                for i in items
                if (i.exception_info or {}).get("raised_exception")
            ]
            details = _gx_summary(items) | dict(observed.get(check, {}))
            checks.append(
                CheckResult(
                    check,
                    suite,
                    all(bool(i.success) for i in items) and not errors,
                    policy,
                    details,
                    note="; ".join(errors),
                )
            )
        gx_json = _json_safe(result.to_json_dict())  # type: ignore[no-untyped-call]
        self.results.append(gx_json)
        return SuiteOutcome(suite, batch, tuple(checks), gx_json)

    def build_data_docs(self, directory: Path) -> Path:
        """Render Data Docs of every validation of this run into ``directory``; return index.html."""
        with _LOCK:
            self._context.add_data_docs_site(
                "tradeflow",
                {
                    "class_name": "SiteBuilder",
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": str(directory),
                    },
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )
            self._context.build_data_docs(site_names=["tradeflow"])
        return directory / "index.html"
