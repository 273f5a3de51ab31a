"""Validate one ingest batch: suites per venue batch, cross-venue checks, quarantine, consensus.

This is the core of the ``validate-market-data`` flow, free of Prefect: the flow's tasks each
call one function here with a store and a :class:`Validator` (the GX adapter).

Store layout it adds::

    quarantine/candles/venue=V/symbol=S/timeframe=T/ingest=00000007/<sha256>.parquet, report.json
    quarantine/order_books/venue=V/symbol=S/ingest=00000007/...
    curated/candles/symbol=S/timeframe=T/day=2026-11-20/<sha256>.parquet
    reports/validation/00000007/data_docs/index.html     (GX Data Docs of the run)
    reports/validation/00000007/results.json             (GX results + tradeflow check results)
    reports/validation/00000007/integrity/BTC-USDT.json  (the integrity report per symbol)
    manifests/validation/00000001.json, ...

Nothing is deleted or rewritten: a quarantined batch stays in ``raw/`` too (its manifest entry
is history), but only batches that passed reach ``curated/``, which is all that later stages read.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tradeflow.config import ValidationConfig
from tradeflow.quality.books import derive_order_book, derive_trades, observe_order_book
from tradeflow.quality.candles import CANDLE_COLUMNS, CandleRules, derive_candles, observe_candles
from tradeflow.quality.checks import CheckResult, SuiteOutcome, Validator, verdict
from tradeflow.quality.consensus import (
    CURATED_SCHEMA,
    aligned,
    build_consensus,
    derive_cross_venue,
    deviations,
    observe_cross_venue,
    peer_moves,
    unfilled_holes,
)
from tradeflow.quality.files import CandleFileError, read_candle_file
from tradeflow.storage.lake import (
    MANIFEST_PREFIX,
    decode_parquet,
    latest_manifest,
    publish_numbered,
    read_manifest,
    read_state,
    series_key,
    write_partitioned,
)
from tradeflow.storage.objectstore import ObjectStore
from tradeflow.timeframes import DAY_MS

VALIDATION_PREFIX = "manifests/validation/"
REPORT_PREFIX = "reports/validation/"


class SymbolUnusableError(RuntimeError):
    """No venue's batch of a symbol passed validation: nothing can be curated for it."""


@dataclass
class BatchReport:
    """One venue's batch of one series (or snapshot dataset) and what validation made of it."""

    dataset: str
    venue: str
    symbol: str
    timeframe: str | None
    objects: list[str]
    rows: int = 0
    verdict: str = "passed"
    suites: list[SuiteOutcome] = field(default_factory=list)
    error: str | None = None
    quarantine: str | None = None

    @property
    def name(self) -> str:
        """Return the batch's display name, e.g. ``candles sim-alpha BTC/USDT 1m``."""
        return " ".join(p for p in (self.dataset, self.venue, self.symbol, self.timeframe) if p)

    def reasons(self) -> list[str]:
        """Return ``suite/check`` for every check that quarantined the batch, or the read error."""
        if self.error:
            return [f"unreadable: {self.error}"]
        return [f"{o.suite}/{c.check}" for o in self.suites for c in o.failed()]

    def warnings(self) -> list[str]:
        """Return ``suite/check`` for every check that warned."""
        return [f"{o.suite}/{c.check}" for o in self.suites for c in o.warned()]

    def check(self, name: str) -> dict[str, Any]:
        """Return the observed value of one check (empty if it was not run)."""
        for outcome in self.suites:
            for result in outcome.checks:
                if result.check == name:
                    return result.observed
        return {}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchReport:
        """Return a report from :meth:`to_dict`'s plain data (checks regrouped by suite)."""
        checks = [
            CheckResult(c["check"], c["suite"], c["success"], c["policy"], c["observed"], c["note"])
            for c in data["checks"]
        ]
        suites = [
            SuiteOutcome(name, data["dataset"], tuple(c for c in checks if c.suite == name))
            for name in dict.fromkeys(c.suite for c in checks)
        ]
        return cls(data["dataset"], data["venue"], data["symbol"], data["timeframe"], list(data["objects"]),
                   data["rows"], data["verdict"], suites, data["error"], data["quarantine"])  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Return plain data for reports (checks included, GX's raw results left out)."""
        return {
            "dataset": self.dataset,
            "venue": self.venue,
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "objects": self.objects,
            "rows": self.rows,
            "verdict": self.verdict,
            "reasons": self.reasons(),
            "warnings": self.warnings(),
            "error": self.error,
            "quarantine": self.quarantine,
            "checks": [c.to_dict() for o in self.suites for c in o.checks],
        }


@dataclass
class GroupResult:
    """Validation of one symbol and timeframe across venues, and the curated candles it produced."""

    symbol: str
    timeframe: str
    batches: list[BatchReport]
    curated: list[dict[str, Any]] = field(default_factory=list)
    curated_rows: int = 0
    imputed_rows: int = 0
    unfilled_holes: list[dict[str, Any]] = field(default_factory=list)
    late_rows: int = 0
    excluded: dict[str, int] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        """Return whether at least one venue's batch passed (or there was nothing to validate)."""
        return not self.batches or any(b.verdict != "quarantined" for b in self.batches)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupResult:
        """Return a group from :meth:`to_dict`'s plain data (curated object entries left out)."""
        return cls(data["symbol"], data["timeframe"], [BatchReport.from_dict(b) for b in data["batches"]],
                   [], data["curated_rows"], data["imputed_rows"], data["unfilled_holes"],
                   data["late_rows"], data["excluded_candles"])  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Return plain data for reports."""
        return {
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "usable": self.usable,
            "batches": [b.to_dict() for b in self.batches],
            "curated_objects": [o["key"] for o in self.curated],
            "curated_rows": self.curated_rows,
            "imputed_rows": self.imputed_rows,
            "unfilled_holes": self.unfilled_holes,
            "late_rows": self.late_rows,
            "excluded_candles": self.excluded,
        }


@dataclass(frozen=True)
class PendingBatch:
    """An ingest manifest that no validation manifest covers yet, reduced to what validation needs."""

    ingest_sequence: int
    ingest_batch_id: str
    as_of: int | None
    candle_series: dict[tuple[str, str], dict[str, list[dict[str, Any]]]]  # (symbol, tf) → venue → objects
    previous_last: dict[str, int]  # series key → newest candle before this batch
    snapshots: dict[tuple[str, str, str], list[dict[str, Any]]]  # (dataset, venue, symbol) → objects

    @property
    def tag(self) -> str:
        """Return the tag that names this batch's quarantine and report folders."""
        return f"{self.ingest_sequence:08d}"


def validated_through(store: ObjectStore) -> tuple[int, dict[str, Any] | None]:
    """Return the newest ingest sequence already validated, and the newest validation manifest."""
    latest = latest_manifest(store, VALIDATION_PREFIX)
    return (0, None) if latest is None else (int(latest["ingest"]["sequence"]), latest)


def plan_pending(store: ObjectStore, ingest_sequence: int | None = None) -> dict[str, Any]:
    """Return the ingest sequences no validation covers yet (up to ``ingest_sequence``, default all).

    Returns ``pending``, ``validated_through``, ``newest`` (ingest) and ``previous`` (the newest
    validation manifest).

    Raises:
        ValueError: if ``ingest_sequence`` names an ingest batch that does not exist.
    """
    done, previous = validated_through(store)
    newest = read_state(store).sequence
    last = newest if ingest_sequence is None else ingest_sequence
    if ingest_sequence is not None and ingest_sequence > newest:
        raise ValueError(f"ingest batch {ingest_sequence} does not exist; the newest is {newest}")
    pending = list(range(done + 1, last + 1))
    return {"pending": pending, "validated_through": done, "newest": newest, "previous": previous}


def pending_batch(store: ObjectStore, ingest_sequence: int) -> PendingBatch:
    """Return what ingest manifest ``ingest_sequence`` added, grouped for validation.

    Raises:
        LookupError: if there is no such manifest.
    """
    manifest = read_manifest(store, MANIFEST_PREFIX, ingest_sequence)
    if manifest is None:
        raise LookupError(f"no ingest manifest {ingest_sequence:08d} in {store.describe(MANIFEST_PREFIX)}")
    parent = read_manifest(store, MANIFEST_PREFIX, ingest_sequence - 1)
    previous = {key: int(entry["last"]) for key, entry in (parent or {}).get("series", {}).items()}
    candles: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    snapshots: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for obj in manifest["new_objects"]:
        if obj["dataset"] == "candles":
            candles[(obj["symbol"], obj["timeframe"])][obj["venue"]].append(obj)
        else:
            snapshots[(obj["dataset"], obj["venue"], obj["symbol"])].append(obj)
    end = manifest.get("run", {}).get("end")
    return PendingBatch(
        ingest_sequence=ingest_sequence,
        ingest_batch_id=manifest["batch_id"],
        as_of=int(end) if end is not None else None,
        candle_series={
            key: {v: sorted(objs, key=lambda o: o["start"]) for v, objs in venues.items()}
            for key, venues in candles.items()
        },
        previous_last=previous,
        snapshots=dict(snapshots),
    )


def _read(store: ObjectStore, objects: Sequence[Mapping[str, Any]]) -> pa.Table:
    tables = []
    for obj in objects:
        try:
            tables.append(decode_parquet(store.get(obj["key"])))
        except Exception as error:  # a corrupt object: name it, the caller quarantines the batch
            raise ValueError(f"object {obj['key']} is not readable Parquet ({error})") from error
    return pa.concat_tables(tables) if tables else pa.table({})


def quarantine_batch(
    store: ObjectStore, report: BatchReport, tag: str, extra: Mapping[str, Any] | None = None
) -> str:
    """Copy a failed batch's objects and its report into ``quarantine/``; return the folder key."""
    parts = [
        f"quarantine/{report.dataset}",
        f"venue={report.venue}",
        f"symbol={report.symbol.replace('/', '-')}",
    ]
    if report.timeframe:
        parts.append(f"timeframe={report.timeframe}")
    folder = "/".join([*parts, f"ingest={tag}"])
    for key in report.objects:
        try:
            data = store.get(key)
        except Exception as error:  # keep going: the report says which object could not be copied
            report.error = (report.error or "") + f"; could not copy {key}: {error}"
            continue
        store.put_if_absent(f"{folder}/{key.rsplit('/', 1)[-1]}", data)
    report.quarantine = folder
    body = report.to_dict() | {"ingest": tag} | dict(extra or {})
    store.put_if_absent(
        f"{folder}/report.json", json.dumps(body, indent=1, sort_keys=True, default=str).encode()
    )
    return folder


def validate_candle_group(
    store: ObjectStore,
    validator: Validator,
    config: ValidationConfig,
    batch: PendingBatch,
    symbol: str,
    timeframe: str,
    *,
    curated_last: int | None,
) -> GroupResult:
    """Validate every venue's batch of one symbol and timeframe; quarantine, then curate.

    Args:
        store: The lake.
        validator: The GX adapter.
        config: Thresholds and policies.
        batch: The ingest batch being validated.
        symbol: Unified symbol.
        timeframe: Candle timeframe.
        curated_last: Newest curated candle of this series before this batch; curated rows are
            only added after it (a venue catching up on older candles is counted as late).
    """
    rules = CandleRules.from_config(config, timeframe)
    tf = rules.timeframe_ms
    venues = batch.candle_series.get((symbol, timeframe), {})
    reports: dict[str, BatchReport] = {}
    frames: dict[str, pd.DataFrame] = {}
    for venue, objects in sorted(venues.items()):
        report = BatchReport("candles", venue, symbol, timeframe, [o["key"] for o in objects])
        reports[venue] = report
        try:
            table = _read(store, objects)
            frames[venue] = table.select(list(CANDLE_COLUMNS)).to_pandas()
            report.rows = len(frames[venue])
        except (ValueError, KeyError, pa.ArrowInvalid) as error:
            report.error = str(error)
            report.verdict = "quarantined"

    moves = peer_moves(frames) if len(frames) > 1 else {}
    skip = {} if batch.as_of is not None else {"staleness": "no as-of time for this batch"}
    derived: dict[str, pd.DataFrame] = {}
    suspicious: dict[str, set[int]] = {}
    for venue, candles in frames.items():
        previous = batch.previous_last.get(series_key(venue, symbol, timeframe))
        frame = derive_candles(candles, rules, previous_timestamp=previous, as_of=batch.as_of,
                               peer_moves=moves.get(venue))  # fmt: skip
        derived[venue] = frame
        # A venue's own unconfirmed spikes and frozen prices: these candles must not move the
        # reference the other venues are compared with, nor the consensus.
        odd = (frame["unconfirmed_move"].to_numpy() > rules.spike_threshold) | (
            frame["frozen_run"].to_numpy() >= rules.frozen_run_candles
        )
        suspicious[venue] = set(frame["timestamp"].to_numpy()[odd].tolist()) if len(frames) > 1 else set()
    closes = aligned(frames, "close") if frames else pd.DataFrame()
    reference = closes.copy()
    for venue, times in suspicious.items():
        reference.loc[reference.index.isin(list(times)), venue] = np.nan
    median, deviation = deviations(reference, config.min_venues_for_discrepancy)
    flagged: dict[str, set[int]] = {}
    for venue, frame in derived.items():
        report = reports[venue]
        observed = observe_candles(frame, rules, as_of=batch.as_of)
        report.suites.append(
            validator.validate(
                "candles", frame, batch=report.name, observed=observed, skip=skip, timeframe=timeframe
            )
        )
        # Candles already flagged by the venue's own checks (spikes, frozen prices) are left out
        # of the comparison (counted as undecided), so one fault is not charged twice.
        cross = derive_cross_venue(venue, closes, median, deviation)
        cross_observed = observe_cross_venue(
            cross, config.discrepancy_threshold, config.discrepancy_max_fraction
        )
        report.suites.append(
            validator.validate(
                "cross_venue", cross, batch=report.name, observed={"cross_venue_discrepancy": cross_observed}
            )
        )
        report.verdict = verdict(report.suites)
        dev = cross["deviation"].to_numpy()
        off = np.nan_to_num(dev, nan=0.0) > config.discrepancy_threshold
        flagged[venue] = set(cross["timestamp"].to_numpy()[off].tolist()) | suspicious[venue]

    for report in reports.values():
        if report.verdict == "quarantined":
            quarantine_batch(store, report, batch.tag)

    passing = {v: f for v, f in frames.items() if reports[v].verdict != "quarantined"}
    result = GroupResult(symbol, timeframe, list(reports.values()))
    if not passing:
        return result
    result.excluded = {v: len(flagged.get(v, ())) for v in passing}
    curated = build_consensus(
        passing, {v: sorted(flagged.get(v, ())) for v in passing}, method=config.consensus, after=curated_last
    )
    all_ts = np.unique(np.concatenate([f["timestamp"].to_numpy(dtype=np.int64) for f in passing.values()]))
    if curated_last is not None:
        result.late_rows = int(np.count_nonzero(all_ts <= curated_last))
        all_ts = all_ts[all_ts > curated_last]
    if all_ts.size:
        start = int(all_ts.min())
        if curated_last is not None:
            start = min(start, curated_last + tf)
        result.unfilled_holes = unfilled_holes(curated["timestamp"].to_numpy(), start, int(all_ts.max()), tf)
    table = pa.Table.from_pandas(curated, schema=CURATED_SCHEMA, preserve_index=False)
    stored = write_partitioned(
        store,
        "candles",
        table,
        venue="",
        symbol=symbol,
        timeframe=timeframe,
        layer="curated",
        schema=CURATED_SCHEMA,
    )
    result.curated = [o.to_json() for o in stored]
    result.curated_rows = len(curated)
    result.imputed_rows = int(curated["imputed"].sum())
    return result


def validate_snapshot_batch(
    store: ObjectStore,
    validator: Validator,
    config: ValidationConfig,
    batch: PendingBatch,
    dataset: str,
    venue: str,
    symbol: str,
) -> BatchReport:
    """Validate one venue's order book or trades objects of one symbol; quarantine on failure."""
    objects = batch.snapshots[(dataset, venue, symbol)]
    report = BatchReport(dataset, venue, symbol, None, [o["key"] for o in objects])
    try:
        frame = _read(store, objects).to_pandas()
        report.rows = len(frame)
    except (ValueError, KeyError, pa.ArrowInvalid) as error:
        report.error = str(error)
        report.verdict = "quarantined"
    else:
        if dataset == "order_books":
            derived = derive_order_book(frame)
            observed = observe_order_book(derived, config.max_spread)
        else:
            derived, observed = derive_trades(frame), {}
        report.suites.append(validator.validate(dataset, derived, batch=report.name, observed=observed))
        report.verdict = verdict(report.suites)
    if report.verdict == "quarantined":
        quarantine_batch(store, report, batch.tag)
    return report


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts // DAY_MS * DAY_MS / 1000, tz=UTC).strftime("%Y-%m-%d")


def integrity_report(
    symbol: str, batch: PendingBatch, groups: Iterable[GroupResult], snapshots: Iterable[BatchReport]
) -> dict[str, Any]:
    """Return the integrity report of one symbol: findings per venue and timeframe, and per UTC day."""
    days: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    venues: dict[str, dict[str, Any]] = defaultdict(dict)
    quarantined: list[dict[str, Any]] = []
    curated: dict[str, Any] = {}
    for group in groups:
        curated[group.timeframe] = {
            "rows": group.curated_rows,
            "imputed": group.imputed_rows,
            "unfilled_holes": group.unfilled_holes,
            "late_rows": group.late_rows,
            "excluded_candles": group.excluded,
        }
        for report in group.batches:
            holes = report.check("completeness").get("listed", [])
            spikes = report.check("price_spikes").get("listed", [])
            anomalies = report.check("volume_anomalies").get("listed", [])
            frozen = report.check("frozen_prices").get("listed", [])
            discrepancies = report.check("cross_venue_discrepancy").get("listed", [])
            venues[report.venue][group.timeframe] = {
                "verdict": report.verdict,
                "rows": report.rows,
                "reasons": report.reasons(),
                "warnings": report.warnings(),
                "holes": holes,
                "spikes": spikes,
                "volume_anomalies": len(anomalies),
                "frozen_runs": frozen,
                "discrepancies": len(discrepancies),
                "staleness": report.check("staleness"),
            }
            for kind, items, key in (
                ("holes", holes, "start"),
                ("spikes", spikes, "timestamp"),
                ("volume_anomalies", anomalies, "timestamp"),
                ("frozen_runs", frozen, "start"),
                ("discrepancies", discrepancies, "timestamp"),
            ):
                for item in items:
                    days[_day(int(item[key]))][f"{group.timeframe} {kind}"] += 1
            if report.verdict == "quarantined":
                quarantined.append(
                    {"batch": report.name, "folder": report.quarantine, "reasons": report.reasons()}
                )
    for report in snapshots:
        venues[report.venue][report.dataset] = {
            "verdict": report.verdict,
            "rows": report.rows,
            "reasons": report.reasons(),
            "warnings": report.warnings(),
        }
        if report.verdict == "quarantined":
            quarantined.append(
                {"batch": report.name, "folder": report.quarantine, "reasons": report.reasons()}
            )
    return {
        "symbol": symbol,
        "ingest_sequence": batch.ingest_sequence,
        "ingest_batch_id": batch.ingest_batch_id,
        "as_of": batch.as_of,
        "venues": dict(venues),
        "curated": curated,
        "quarantined": quarantined,
        "days": {day: dict(counts) for day, counts in sorted(days.items())},
    }


def curated_state(previous: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Return the curated series (``symbol|timeframe`` → last and objects) of a validation manifest."""
    if previous is None:
        return {}
    return {k: {"last": v["last"], "objects": list(v["objects"])} for k, v in previous["curated"].items()}


def next_curated_state(
    previous: Mapping[str, Any] | None, groups: Iterable[GroupResult]
) -> dict[str, dict[str, Any]]:
    """Return the curated series after adding the groups' new curated objects."""
    state = curated_state(previous)
    for group in groups:
        for obj in group.curated:
            entry = state.setdefault(f"{group.symbol}|{group.timeframe}", {"last": obj["end"], "objects": []})
            entry["last"] = max(int(entry["last"]), int(obj["end"]))
            if obj["key"] not in {o["key"] for o in entry["objects"]}:
                entry["objects"].append(obj)
    return state


def curated_last(previous: Mapping[str, Any] | None, symbol: str, timeframe: str) -> int | None:
    """Return the newest curated candle of a series in a validation manifest, if any."""
    entry = curated_state(previous).get(f"{symbol}|{timeframe}")
    return None if entry is None else int(entry["last"])


def unusable_message(groups: Iterable[GroupResult]) -> str | None:
    """Return why symbols are unusable (no venue passed), naming suites and checks; None if all are usable."""
    lines = []
    for group in groups:
        if group.usable:
            continue
        why = "; ".join(f"{b.venue}: {', '.join(b.reasons())}" for b in group.batches)
        lines.append(f"{group.symbol} {group.timeframe}: no venue passed validation ({why})")
    return "\n".join(lines) or None


def write_reports(
    store: ObjectStore,
    batch: PendingBatch,
    groups: Sequence[GroupResult],
    snapshots: Sequence[BatchReport],
    gx_results: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """Write the run's JSON results and one integrity report per symbol; return their keys."""
    folder = f"{REPORT_PREFIX}{batch.tag}"
    results = {
        "ingest_sequence": batch.ingest_sequence,
        "ingest_batch_id": batch.ingest_batch_id,
        "as_of": batch.as_of,
        "groups": [g.to_dict() for g in groups],
        "snapshots": [s.to_dict() for s in snapshots],
        "great_expectations": list(gx_results),
    }
    results_key = f"{folder}/results.json"
    store.put_if_absent(results_key, json.dumps(results, indent=1, sort_keys=True, default=str).encode())
    integrity: dict[str, str] = {}
    symbols = sorted({g.symbol for g in groups} | {s.symbol for s in snapshots})
    for symbol in symbols:
        body = integrity_report(
            symbol,
            batch,
            [g for g in groups if g.symbol == symbol],
            [s for s in snapshots if s.symbol == symbol],
        )
        key = f"{folder}/integrity/{symbol.replace('/', '-')}.json"
        store.put_if_absent(key, json.dumps(body, indent=1, sort_keys=True, default=str).encode())
        integrity[symbol] = key
    return {"results": results_key, "integrity": integrity}


def publish_validation(
    store: ObjectStore,
    batch: PendingBatch,
    previous: Mapping[str, Any] | None,
    groups: Sequence[GroupResult],
    snapshots: Sequence[BatchReport],
    reports: Mapping[str, Any],
    *,
    created_at: int,
    config_hash: str,
    suite_version: str,
    run: Mapping[str, Any],
) -> dict[str, Any]:
    """Publish the validation manifest: verdicts, quarantine, curated series and report keys.

    Raises:
        ConcurrentPublishError: if another validation run published the same number first.
    """
    batches = [b for g in groups for b in g.batches] + list(snapshots)
    body: dict[str, Any] = {
        "kind": "validation",
        "sequence": (0 if previous is None else int(previous["sequence"])) + 1,
        "parent": None if previous is None else previous["validation_id"],
        "ingest": {
            "sequence": batch.ingest_sequence,
            "batch_id": batch.ingest_batch_id,
            "as_of": batch.as_of,
        },
        "created_at": created_at,
        "config_hash": config_hash,
        "suite_version": suite_version,
        "run": dict(run),
        "batches": [
            {
                "batch": b.name,
                "verdict": b.verdict,
                "reasons": b.reasons(),
                "warnings": b.warnings(),
                "objects": b.objects,
                "quarantine": b.quarantine,
            }
            for b in batches
        ],
        "unusable": [f"{g.symbol}|{g.timeframe}" for g in groups if not g.usable],
        "new_curated_objects": [o for g in groups for o in g.curated],
        "curated": next_curated_state(previous, groups),
        "reports": dict(reports),
    }
    return publish_numbered(store, VALIDATION_PREFIX, body, "validation_id")


def validate_candle_file(
    path: str,
    validator: Validator,
    config: ValidationConfig,
    *,
    timeframe: str | None = None,
    as_of: int | None = None,
) -> BatchReport:
    """Run the candle suite on one candle file (Parquet or CSV) from any tool.

    A file that cannot be read comes back with ``error`` set (naming the file and the problem)
    and verdict ``quarantined``; nothing is raised, so a folder's other files still proceed.
    Staleness is only evaluated with ``as_of``; the cross-venue suite needs venues, not files.
    """
    report = BatchReport("candles", "file", path, timeframe, [path])
    try:
        candle_file = read_candle_file(path, timeframe=timeframe)
    except CandleFileError as error:
        report.error = str(error)
        report.verdict = "quarantined"
        return report
    return validate_candle_frame(
        report, candle_file.candles, candle_file.timeframe, validator, config, as_of=as_of
    )


def validate_candle_frame(
    report: BatchReport,
    candles: pd.DataFrame,
    timeframe: str,
    validator: Validator,
    config: ValidationConfig,
    *,
    as_of: int | None = None,
) -> BatchReport:
    """Run the candle suite on candles already read (timestamp int64 ms, float64 OHLCV); fill ``report``."""
    report.timeframe = timeframe
    report.rows = len(candles)
    rules = CandleRules.from_config(config, timeframe)
    derived = derive_candles(candles, rules, as_of=as_of)
    observed = observe_candles(derived, rules, as_of=as_of)
    skip = {} if as_of is not None else {"staleness": "no as-of time (pass --as-of to check freshness)"}
    report.suites.append(
        validator.validate(
            "candles",
            derived,
            batch=f"{report.venue} {report.symbol}",
            observed=observed,
            skip=skip,
            timeframe=timeframe,
        )
    )
    report.verdict = verdict(report.suites)
    return report
