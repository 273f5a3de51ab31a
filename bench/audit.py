"""Section 5: what the audit chain costs: appending, verifying, and its share of an ingestion run.

Three questions:

1. **Append throughput** (entries/s) with :class:`~tradeflow.audit.chain.AuditLog`: one entry per
   segment (``append``) and 1,000 entries per segment (``append_many``), into a local folder and
   into S3 (moto's server over HTTP on 127.0.0.1). No checkpointer: a checkpoint's own cost
   (sign + write) is timed apart.
2. **Verify throughput** (entries/s): ``verify_chain(check_objects=False)`` on the local batched
   chain, against the bare SHA-256 work it cannot avoid: ``hashlib.sha256(x).hexdigest()`` over
   distinct 256-byte strings. Goal: verifying costs at most 3x that bare work.
3. **The chain's share of an ingestion run**: what ``publish_batch`` and ``checkpoint_audit``
   add to a run (``ingest_items`` + ``append_many`` + one signed checkpoint), on a lake holding a
   first run's manifest (900 objects with the shipped config), over the flow's own seconds.
   Goal: under 5 %.

Fairness rules, each for a reason:

- Entries are what a high-volume writer would record: kind ``fill``, a ``flow-run:<uuid>``
  actor, a payload of a 64-hex id and two numbers. A stored line is about 338 bytes (the three
  64-hex fields alone take 192), and verification hashes the domain prefix plus the line before
  its hash, about 298 bytes: five SHA-256 blocks, the same number as a 256-byte string.
- Payloads are built before the clock starts; building an entry (redaction, canonical JSON, its
  hash) is timed, since ``append`` does it.
- Every append run starts on an empty chain (a fresh folder or bucket) with a fresh writer.
- The S3 server runs in a child process of its own, so its request handling does not compete
  with the measuring process for the GIL; on 2 cores, each gets one.
- Local writes go to a real file system with the fsync ``LocalObjectStore`` does; dirty pages
  are flushed (``os.sync``) before each timed local measurement.
- ``verify_chain``, a reference loop (read, re-hash, compare, link; shown only) and the baseline
  alternate, 3 times each after a ``gc.collect()``, and the medians are compared; the
  baseline's strings are distinct objects built beforehand.
- The ingestion audit work mirrors the tasks: two writers (``record_steps`` in
  ``publish-manifest``, then ``checkpoint-audit``), each loading the signing key. Prefect's task
  overhead and the ``audit-trail`` artifact (an API call) are not included.
- The whole section runs in a child process (``python -m bench.audit``), away from the Prefect
  objects, threads and heap of the process that timed the pipeline.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import procstat
from bench.child import run_section
from bench.workload import REPO, BenchError, base_settings
from tradeflow.config import Settings
from tradeflow.timeframes import HOUR_MS, iso, timeframe_ms

#: Entries per segment of the batched runs (``append_many``).
BATCH = 1000

#: The full run and --quick: entries per append run, repetitions, and the aged chain's size.
FULL = {
    "unbatched_local": 2_000,
    "unbatched_s3": 500,
    "batched_local": 200_000,  # also the chain whose verification the goal is about
    "batched_s3": 50_000,
    "verify": 3,
    "verify_s3": 1,  # one GET per segment against moto: the one-entry chain takes seconds per pass
    "checkpoints": 20,
    "ingest": 5,
    "aged_segments": 10_000,
}
QUICK = {
    "unbatched_local": 300,
    "unbatched_s3": 100,
    "batched_local": 20_000,
    "batched_s3": 10_000,
    "verify": 3,
    "verify_s3": 1,
    "checkpoints": 5,
    "ingest": 3,
    "aged_segments": 2_000,
}

#: The denominator when the second-run section did not run in this benchmark: the first CLI run
#: of the shipped config recorded in bench/README.md, measured before the flow wrote the chain.
README_FIRST_RUN = {
    "source": "bench/README.md: the first CLI run of the shipped config (2026-11-21, commit a75f8fb, "
    "before the flow wrote an audit chain)",
    "measured": False,
    "flow_seconds": 20.1,
    "wall_seconds": 30.6,
    "objects": 900,
    "candles": 1_205_280,
}

#: Stages of the audit work in one ingestion run, in the order the tasks do them.
INGEST_STAGES = ("ingest_items", "append_many", "checkpoint")
INGEST_LABELS = {
    "ingest_items": "ingest_items (read parent manifest, hash this one)",
    "append_many": "record_steps: key, writer, head, append_many",
    "checkpoint": "checkpoint-audit: key, writer, head, sign + write",
}

_SEED = 20261122


# --- results ----------------------------------------------------------------------------------


@dataclass
class AppendRun:
    """One timed append run into an empty chain."""

    backend: str  # "local" or "s3"
    mode: str  # "unbatched" (append) or "batched" (append_many)
    entries: int
    segments: int
    bytes: int
    seconds: float

    @property
    def rate(self) -> float:
        """Return entries per second."""
        return self.entries / self.seconds


@dataclass
class VerifyRun:
    """Repeated verifications of one chain."""

    label: str
    backend: str
    entries: int
    segments: int
    bytes: int
    runs: list[float]
    ok: bool

    @property
    def seconds(self) -> float:
        """Return the median seconds of one verification."""
        return statistics.median(self.runs)

    @property
    def rate(self) -> float:
        """Return entries per second at the median."""
        return self.entries / self.seconds


@dataclass
class IngestAudit:
    """The audit work of one ingestion run, repeated (one fresh or successive lake per run)."""

    label: str
    backend: str
    objects: int  # new objects in the run's manifest
    manifest_bytes: int
    segments_before: int  # chain segments before the run
    entries: int  # entries the run appends
    checkpoints: int  # checkpoints the run signs (both writers)
    runs: list[dict[str, float]] = field(default_factory=list)  # seconds per stage
    listing_seconds: list[float] = field(default_factory=list)  # one listing of the chain, untimed

    @property
    def totals(self) -> list[float]:
        """Return each run's total seconds."""
        return [sum(run.values()) for run in self.runs]

    @property
    def seconds(self) -> float:
        """Return the median total seconds."""
        return statistics.median(self.totals)

    def stage(self, name: str) -> float:
        """Return the median seconds of one stage."""
        return statistics.median(run[name] for run in self.runs)


@dataclass
class AuditResult:
    """Everything section 5 measured."""

    quick: bool
    counts: dict[str, int]
    filesystem: str
    line_bytes: float  # mean stored line, batched local chain
    hashed_bytes: float  # mean bytes verification hashes per entry (domain + line before the hash)
    baseline_bytes: int
    baseline_count: int
    baseline_runs: list[float]
    appends: list[AppendRun]
    checkpoint_seconds: dict[str, list[float]]  # backend -> sign + write of one checkpoint
    verifies: list[VerifyRun]  # the first is the goal's
    ingest: list[IngestAudit]  # the first is the goal's
    days: dict[str, int]  # look-back of the first run whose manifest is recorded
    peak_rss_kib: int | None
    reference: dict[str, Any] | None = None  # the ingestion run the share is taken of
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditResult:
        """Return the result that ``asdict`` turned into ``data`` (as the child process sends it)."""
        fields = dict(data)
        fields["appends"] = [AppendRun(**a) for a in fields["appends"]]
        fields["verifies"] = [VerifyRun(**v) for v in fields["verifies"]]
        fields["ingest"] = [IngestAudit(**i) for i in fields["ingest"]]
        return cls(**fields)

    @staticmethod
    def sha_blocks(size: float) -> int:
        """Return the SHA-256 compressions a message of ``size`` bytes takes (64-byte blocks, padded)."""
        return int(-(-(size + 9) // 64))

    @property
    def baseline_seconds(self) -> float:
        """Return the median seconds of the bare SHA-256 loop."""
        return statistics.median(self.baseline_runs)

    @property
    def baseline_rate(self) -> float:
        """Return bare SHA-256 hexdigests per second at the median."""
        return self.baseline_count / self.baseline_seconds

    @property
    def verify_ratio(self) -> float:
        """Return baseline rate / verify rate of the goal's chain (the goal: at most 3)."""
        return self.baseline_rate / self.verifies[0].rate

    def append(self, backend: str, mode: str) -> AppendRun:
        """Return the append run of ``backend`` and ``mode``."""
        return next(a for a in self.appends if a.backend == backend and a.mode == mode)

    def shares(self) -> dict[str, float] | None:
        """Return the goal's audit seconds over the reference run's flow and wall seconds."""
        if self.reference is None:
            return None
        audit = self.ingest[0].seconds
        return {
            "of_flow": audit / self.reference["flow_seconds"],
            "of_wall": audit / self.reference["wall_seconds"],
        }

    def to_json(self) -> dict[str, Any]:
        """Return plain data for the results file."""
        data = asdict(self)
        data["appends"] = [{**asdict(a), "entries_per_second": a.rate} for a in self.appends]
        data["verifies"] = [
            {**asdict(v), "median_seconds": v.seconds, "entries_per_second": v.rate} for v in self.verifies
        ]
        data["ingest"] = [
            {
                **asdict(i),
                "median_seconds": i.seconds,
                "median_stage_seconds": {s: i.stage(s) for s in INGEST_STAGES},
            }
            for i in self.ingest
        ]
        data["baseline"] = {
            "what": f"hashlib.sha256(x).hexdigest() over {self.baseline_count:,} distinct "
            f"{self.baseline_bytes}-byte strings",
            "median_seconds": self.baseline_seconds,
            "per_second": self.baseline_rate,
        }
        data["ratios"] = {"sha256_baseline_rate/verify_rate": self.verify_ratio}
        shares = self.shares()
        if shares is not None:
            data["ratios"].update({f"ingest_audit_share_{k}": v for k, v in shares.items()})
        return data


# --- entries ----------------------------------------------------------------------------------


def fill_payloads(count: int, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """Return ``count`` entries as ``append_many`` takes them: kind ``fill``, a 64-hex id, two numbers."""
    return [
        (
            "fill",
            {
                "id": rng.randbytes(32).hex(),
                "px": round(rng.uniform(20_000, 90_000), 2),
                "qty": round(rng.uniform(0.001, 2.0), 4),
            },
        )
        for _ in range(count)
    ]


def flow_run_actor(rng: random.Random) -> str:
    """Return an actor as a flow run writes it: ``flow-run:<uuid4>``."""
    return f"flow-run:{uuid.UUID(int=rng.getrandbits(128), version=4)}"


def _filesystem(path: Path) -> str:
    """Return the file system type and device of the mount holding ``path`` (Linux)."""
    best, found = "", "unknown file system"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return found
    resolved = str(path.resolve())
    for line in mounts:
        parts = line.split()
        inside = len(parts) >= 3 and (resolved == parts[1] or resolved.startswith(parts[1].rstrip("/") + "/"))
        if inside and len(parts[1]) >= len(best):
            best, found = parts[1], f"{parts[2]} ({parts[0]} on {parts[1]})"
    return found


# --- the S3 server ----------------------------------------------------------------------------

_MOTO = (
    "import sys\n"
    "from moto.server import ThreadedMotoServer\n"
    "server = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)\n"
    "server.start()\n"
    "print(server.get_host_and_port()[1], flush=True)\n"
    "sys.stdin.read()\n"
    "server.stop()\n"
)


@contextmanager
def moto_server() -> Iterator[str]:
    """Run moto's S3 server in a child process on 127.0.0.1; yield its endpoint URL.

    This process gets test credentials and bypasses any proxy for the local endpoint.
    """
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-c", _MOTO],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            raise BenchError(f"moto's S3 server did not start (exit code {proc.poll()})")
        yield f"http://127.0.0.1:{line}"
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _bucket(endpoint: str, name: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)


# --- appending --------------------------------------------------------------------------------


def _quiet() -> None:
    """Flush dirty pages and collect garbage, so neither lands inside the next timed block."""
    os.sync()
    gc.collect()


def measure_append(
    store: Any, backend: str, mode: str, items: Sequence[tuple[str, Mapping[str, Any]]], actor: str
) -> AppendRun:
    """Append ``items`` to an empty chain with a fresh writer (no checkpointer); time it."""
    from tradeflow.audit.chain import AuditLog

    log = AuditLog(store, actor)
    log.head()  # the empty chain's head: one listing, not what is measured
    _quiet()
    started = time.perf_counter()
    written = []
    if mode == "unbatched":
        for kind, payload in items:
            written.append(log.append(kind, payload))
    else:
        for offset in range(0, len(items), BATCH):
            written += log.append_many(items[offset : offset + BATCH])
    seconds = time.perf_counter() - started
    size = sum(len(e.line) for e in written)
    segments = len(items) if mode == "unbatched" else -(-len(items) // BATCH)
    return AppendRun(backend, mode, len(items), segments, size, seconds)


def measure_checkpoints(store: Any, key: Any, times: int) -> list[float]:
    """Return the seconds of ``times`` checkpoint writes (sign + create-only put), at new seqs."""
    from tradeflow.audit.signing import StoreCheckpointer

    checkpointer = StoreCheckpointer(store, key, prefix="bench/checkpoints/")
    rng = random.Random(_SEED + 1)
    seconds = []
    for seq in range(1, times + 1):
        digest = rng.randbytes(32).hex()
        started = time.perf_counter()
        checkpointer.write(seq, digest)
        seconds.append(time.perf_counter() - started)
    return seconds


# --- verifying --------------------------------------------------------------------------------


def _verify_once(store: Any, keys: Mapping[str, Any]) -> tuple[float, Any]:
    from tradeflow.audit.verify import verify_chain

    _quiet()
    started = time.perf_counter()
    report = verify_chain(store, keys, check_objects=False)
    return time.perf_counter() - started, report


def _sha_baseline(strings: Sequence[bytes]) -> float:
    sha256 = hashlib.sha256
    gc.collect()
    started = time.perf_counter()
    for data in strings:
        sha256(data).hexdigest()
    return time.perf_counter() - started


def measure_verify(
    label: str, backend: str, store: Any, keys: Mapping[str, Any], times: int, expected: int
) -> VerifyRun:
    """Verify the chain in ``store`` ``times`` times; refuse a chain that does not verify."""
    runs, report = [], None
    for _ in range(times):
        seconds, report = _verify_once(store, keys)
        runs.append(seconds)
    assert report is not None
    if not report.ok or report.entries != expected:
        raise BenchError(
            f"{label}: verify_chain found {report.entries:,} entries (expected {expected:,}) and "
            f"problems {[str(p) for p in report.problems[:3]]}: the chain was not written right"
        )
    return VerifyRun(label, backend, report.entries, report.segments, report.bytes, runs, report.ok)


def reference_loop(store: Any) -> int:
    """Check the chain the shortest way Python can: return the entries checked.

    Read every segment, split its lines, re-hash each line's bytes before its hash, compare, and
    check the link to the previous entry. No seq checks, no damage diagnosis, no checkpoints:
    a floor for a verifier written in Python, shown beside ``verify_chain``.
    """
    from tradeflow.audit.chain import ENTRY_TAG, GENESIS_HASH, segment_keys

    sha256, start = hashlib.sha256, len(ENTRY_TAG)
    prev, count = GENESIS_HASH.encode(), 0
    for key in segment_keys(store):
        for line in store.get(key).split(b"\n")[:-1]:
            digest = line[-64:]
            space = line.find(b" ", start)
            if sha256(line[:-64]).hexdigest().encode() != digest or line[space + 1 : space + 65] != prev:
                raise BenchError(f"the reference loop found a bad entry in {key}")
            prev = digest
            count += 1
    return count


def verify_against_baseline(
    store: Any, keys: Mapping[str, Any], times: int, expected: int, baseline_count: int
) -> tuple[VerifyRun, VerifyRun, list[float], int]:
    """Alternate ``verify_chain``, the reference loop and the bare SHA-256 loop on the goal's chain.

    Returns the verification, the reference loop, the baseline's seconds and its string count.
    """
    rng = random.Random(_SEED + 2)
    strings = [rng.randbytes(256) for _ in range(baseline_count)]  # distinct objects, distinct bytes
    verifies, floor, baseline = [], [], []
    report = None
    for _ in range(times):
        seconds, report = _verify_once(store, keys)
        verifies.append(seconds)
        gc.collect()
        started = time.perf_counter()
        checked = reference_loop(store)
        floor.append(time.perf_counter() - started)
        baseline.append(_sha_baseline(strings))
        if checked != expected:
            raise BenchError(f"the reference loop checked {checked:,} entries, expected {expected:,}")
    assert report is not None
    if not report.ok or report.entries != expected:
        raise BenchError(
            f"the batched local chain did not verify ({report.entries:,} entries, expected {expected:,}): "
            f"{[str(p) for p in report.problems[:3]]}"
        )
    per = f"local, {BATCH:,} entries per segment"
    run = VerifyRun(
        f"verify_chain, {per}", "local", report.entries, report.segments, report.bytes, verifies, report.ok
    )
    loop = VerifyRun(
        f"reference loop: re-hash + link only, {per}",
        "local",
        report.entries,
        report.segments,
        report.bytes,
        floor,
        True,
    )
    return run, loop, baseline, len(strings)


# --- the ingestion run's audit work -----------------------------------------------------------


class _Discard:
    """A store that accepts every object and keeps none (to get the pipeline's object records)."""

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return True


def run_objects(settings: Settings, windows: Mapping[str, tuple[int, int]], snapshot_ms: int) -> list[Any]:
    """Return the objects one ingestion run stores, as ``write_partitioned`` records them.

    Per venue and symbol: every timeframe's candles over its ``[start, end)`` window, split by
    day (1m) or month (1h and longer) as the pipeline splits them, then one order book snapshot
    and one batch of trades, at the configured depth and limit. Prices are made up; the layout,
    keys, rows and time ranges are the pipeline's.
    """
    import numpy as np
    import pyarrow as pa

    from tradeflow.storage.lake import (
        ORDER_BOOK_SCHEMA,
        TRADE_SCHEMA,
        candles_table,
        write_partitioned,
    )

    rng = np.random.default_rng(_SEED)
    sink: Any = _Discard()
    depth, trades = settings.ingest.order_book_depth, settings.ingest.trades_limit
    objects = []
    for venue in settings.venues:
        for symbol in settings.venue_symbols(venue):
            for timeframe, (start, end) in windows.items():
                times = np.arange(start, end, timeframe_ms(timeframe), dtype=np.int64)
                rows = np.column_stack([times, rng.uniform(1, 2, (len(times), 5))])
                objects += write_partitioned(
                    sink, "candles", candles_table(rows), venue=venue.id, symbol=symbol, timeframe=timeframe
                )
            if depth:
                book = pa.Table.from_pydict(
                    {
                        "snapshot_ts": [snapshot_ms] * (2 * depth),
                        "side": ["bid"] * depth + ["ask"] * depth,
                        "level": list(range(depth)) * 2,
                        "price": rng.uniform(1, 2, 2 * depth).tolist(),
                        "amount": rng.uniform(0, 1, 2 * depth).tolist(),
                    },
                    schema=ORDER_BOOK_SCHEMA,
                )
                objects += write_partitioned(
                    sink, "order_books", book, venue=venue.id, symbol=symbol, time_column="snapshot_ts"
                )
            if trades:
                table = pa.Table.from_pydict(
                    {
                        "id": [f"{i}" for i in range(trades)],
                        "timestamp": [snapshot_ms - 1000 * (trades - i) for i in range(trades)],
                        "side": ["buy", "sell"] * (trades // 2) + ["buy"] * (trades % 2),
                        "price": rng.uniform(1, 2, trades).tolist(),
                        "amount": rng.uniform(0, 1, trades).tolist(),
                    },
                    schema=TRADE_SCHEMA,
                )
                objects += write_partitioned(sink, "trades", table, venue=venue.id, symbol=symbol)
    return objects


def first_run_windows(settings: Settings, end_ms: int, days: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """Return each timeframe's window in a first run (empty lake) ending at ``end_ms``."""
    from tradeflow.ingest import series_window

    return {tf: series_window(None, end_ms, timeframe_ms(tf), days[tf]) for tf in settings.ingest.timeframes}


def _publish(store: Any, settings: Settings, objects: Sequence[Any], end_ms: int, rng: random.Random) -> Any:
    """Publish a manifest of ``objects`` on top of the store's newest one, as ``publish_batch`` does."""
    from tradeflow.storage.lake import publish_manifest, read_state

    run = {
        "flow_run_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "end": end_ms,
        "venues": {v.id: True for v in settings.venues},
    }
    manifest = publish_manifest(
        store,
        read_state(store),
        list(objects),
        created_at=int(time.time() * 1000),
        config_hash=settings.config_hash,
        run=run,
    )
    if manifest is None:
        raise BenchError("the benchmark's manifest listed nothing new")
    return manifest


def audit_ingest_run(
    store: Any,
    manifest: Mapping[str, Any],
    key_text: str,
    actor: str,
    checkpoint_every: int,
    hints: Path | None = None,
) -> tuple[dict[str, float], int, int]:
    """Do what one ingestion run does for the chain; return seconds per stage, entries, checkpoints.

    ``publish_batch`` calls ``ingest_items`` and ``record_steps`` (a new writer with the signing
    key, appending the items as one segment); the flow then runs ``checkpoint_audit`` (another
    new writer, its head, a signed checkpoint). Prefect's task wrapper and the artifact are not
    included. ``hints`` is the local head-hint file the pipeline's writers share (see
    ``bootstrap.build_audit_log``).
    """
    from tradeflow.audit.chain import AuditLog
    from tradeflow.audit.records import ingest_items, record
    from tradeflow.audit.signing import StoreCheckpointer, load_private_key

    def writer() -> AuditLog:
        key = load_private_key(key_text, "bench signing key")
        return AuditLog(
            store,
            actor,
            checkpointer=StoreCheckpointer(store, key),
            checkpoint_every=checkpoint_every,
            hints=hints,
        )

    stages: dict[str, float] = {}
    clock = [time.perf_counter()]

    def charge(stage: str) -> None:
        clock.append(time.perf_counter())
        stages[stage] = clock[-1] - clock[-2]

    items = ingest_items(store, manifest)
    charge("ingest_items")
    first = writer()
    entries = record(first, items)
    charge("append_many")
    second = writer()
    if second.head().seq:
        second.checkpoint()
    charge("checkpoint")
    return stages, len(entries), len(first.checkpoints) + len(second.checkpoints)


def _age_chain(root: Path, segments: int, rng: random.Random) -> None:
    """Write ``segments`` one-entry segments straight to files (untimed set-up; no fsync each)."""
    from tradeflow.audit.chain import GENESIS_HASH, Entry, segment_key

    kinds = ("ingest_batch", "validation", "snapshot")
    (root / segment_key(1)).parent.mkdir(parents=True, exist_ok=True)
    prev, actor, ts = GENESIS_HASH, flow_run_actor(rng), 1_700_000_000_000
    for seq in range(1, segments + 1):
        if seq % 3 == 1:
            actor = flow_run_actor(rng)
        payload = {"id": rng.randbytes(32).hex(), "parents": [rng.randbytes(32).hex()], "sequence": seq}
        entry = Entry.build(seq, prev, ts + seq * 1200_000, actor, kinds[seq % 3], payload)
        (root / segment_key(seq)).write_bytes(entry.line)
        prev = entry.hash


def measure_ingest_audit(
    settings: Settings,
    end_ms: int,
    days: Mapping[str, int],
    counts: Mapping[str, int],
    folder: Path,
    endpoint: str,
    console: Console,
) -> list[IngestAudit]:
    """Time the audit work of an ingestion run: first run (local, the goal; S3), and an aged chain."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tradeflow.audit.chain import segment_keys
    from tradeflow.audit.signing import private_key_text
    from tradeflow.storage.objectstore import open_store

    rng = random.Random(_SEED + 3)
    key_text = private_key_text(Ed25519PrivateKey.generate())
    every = settings.audit.checkpoint_every
    started = time.perf_counter()
    first_objects = run_objects(settings, first_run_windows(settings, end_ms, days), end_ms)
    hour_windows = dict.fromkeys(settings.ingest.timeframes, (end_ms, end_ms + HOUR_MS))
    console.print(
        f"  {len(first_objects):,} objects of a first run (window end {iso(end_ms)}, "
        + ", ".join(f"{d} d of {tf}" for tf, d in days.items())
        + f") laid out in {time.perf_counter() - started:.1f} s (untimed)"
    )
    results = []

    def first_run(label: str, backend: str, make_store: Callable[[int], Any]) -> IngestAudit:
        result = None
        for rep in range(counts["ingest"]):
            store = make_store(rep)
            manifest = _publish(store, settings, first_objects, end_ms, rng)
            _quiet()
            stages, entries, checkpoints = audit_ingest_run(
                store, manifest, key_text, flow_run_actor(rng), every, folder / f"heads-{backend}-{rep}.json"
            )
            if result is None:
                size = len(store.get(f"manifests/ingest/{int(manifest['sequence']):08d}.json"))
                result = IngestAudit(
                    label, backend, len(manifest["new_objects"]), size, 0, entries, checkpoints
                )
            result.runs.append(stages)
        assert result is not None
        return result

    local_root = folder / "ingest"
    results.append(
        first_run("first run, empty chain", "local", lambda rep: open_store(str(local_root / f"rep-{rep}")))
    )
    _bucket(endpoint, "bench-audit-ingest")
    results.append(
        first_run(
            "first run, empty chain",
            "s3",
            lambda rep: open_store(f"s3://bench-audit-ingest/rep-{rep}", s3_endpoint_url=endpoint),
        )
    )

    # An aged chain: segments written before (one entry each, as most runs write), a lake after
    # its first run; each repetition is the next hourly run on top of the previous one.
    aged_root = folder / "aged"
    store = open_store(str(aged_root))
    _publish(store, settings, first_objects, end_ms, rng)
    segments = counts["aged_segments"]
    started = time.perf_counter()
    _age_chain(aged_root, segments, rng)
    seconds = time.perf_counter() - started
    console.print(f"  aged chain: {segments:,} one-entry segments written in {seconds:.1f} s (untimed)")
    # The machine that runs every hour remembers the newest segment it saw (the pipeline's head
    # hint, data/audit/heads.json): as if its previous run had written the last aged segment.
    from tradeflow.audit.chain import segment_key

    hints = folder / "aged-heads.json"
    hints.write_text(json.dumps({store.describe(): segment_key(segments)}))
    aged = None
    for rep in range(counts["ingest"]):
        shift = rep * HOUR_MS
        windows = {tf: (a + shift, b + shift) for tf, (a, b) in hour_windows.items()}
        objects = run_objects(settings, windows, end_ms + HOUR_MS + shift)
        manifest = _publish(store, settings, objects, end_ms + HOUR_MS + shift, rng)
        listed = time.perf_counter()
        before = len(segment_keys(store))
        listing = time.perf_counter() - listed
        _quiet()
        stages, entries, checkpoints = audit_ingest_run(
            store, manifest, key_text, flow_run_actor(rng), every, hints
        )
        if aged is None:
            size = len(store.get(f"manifests/ingest/{int(manifest['sequence']):08d}.json"))
            aged = IngestAudit(
                f"next hourly run, {segments:,}-segment chain",
                "local",
                len(manifest["new_objects"]),
                size,
                before,
                entries,
                checkpoints,
            )
        aged.runs.append(stages)
        aged.listing_seconds.append(listing)
    assert aged is not None
    results.append(aged)
    for result in results:
        console.print(
            f"  {result.backend:<5} {result.label}: {result.objects:,} new objects, manifest "
            f"{result.manifest_bytes / 1024:,.0f} KiB, {result.entries} entries, {result.checkpoints} "
            f"checkpoint(s); median of {len(result.runs)} {result.seconds * 1000:.1f} ms "
            f"({' '.join(f'{s * 1000:.1f}' for s in result.totals)})"
        )
    return results


# --- the section ------------------------------------------------------------------------------


def measure_audit(
    settings: Settings,
    end_ms: int,
    days: Mapping[str, int],
    quick: bool,
    workdir: Path | None,
    console: Console,
) -> AuditResult:
    """Run section 5 and return its measurements.

    Args:
        settings: The shipped config (venues, symbols, snapshot sizes, checkpoint interval).
        end_ms: The end of the first run whose manifest the ingestion share is measured on.
        days: That run's look-back per timeframe.
        quick: Smaller chains and fewer repetitions.
        workdir: Parent of the temporary folders (default: the system temp dir).
        console: Where progress lines go.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tradeflow.audit.signing import StoreCheckpointer, public_key_text, trusted_keys
    from tradeflow.storage.objectstore import open_store

    counts = dict(QUICK if quick else FULL)
    rng = random.Random(_SEED)
    key = Ed25519PrivateKey.generate()
    keys = trusted_keys([(public_key_text(key.public_key()), "bench")])
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="tradeflow-bench-audit-", dir=workdir))
    try:
        filesystem = _filesystem(folder)
        console.print(f"Audit chain: local folder on {filesystem}; S3 = moto server (child process) …")
        with moto_server() as endpoint:
            appends: list[AppendRun] = []
            stores: dict[tuple[str, str], Any] = {}
            for backend, mode in (
                ("local", "unbatched"),
                ("local", "batched"),
                ("s3", "unbatched"),
                ("s3", "batched"),
            ):
                count = counts[f"{mode}_{backend}"]
                items = fill_payloads(count, rng)
                if backend == "local":
                    store = open_store(str(folder / f"{mode}"))
                else:
                    _bucket(endpoint, f"bench-audit-{mode}")
                    store = open_store(f"s3://bench-audit-{mode}/lake", s3_endpoint_url=endpoint)
                run = measure_append(store, backend, mode, items, flow_run_actor(rng))
                del items
                appends.append(run)
                stores[backend, mode] = store
                console.print(
                    f"  append {backend:<5} {mode:<9} {run.entries:>9,} entries in {run.segments:>6,} "
                    f"segments: {run.seconds:6.2f} s, {run.rate:>9,.0f} entries/s"
                )
            for store in stores.values():  # one signed checkpoint at the head, as runs leave it
                StoreCheckpointer(store, key).write(*_head(store))
            checkpoint_seconds = {
                "local": measure_checkpoints(
                    open_store(str(folder / "checkpoints")), key, counts["checkpoints"]
                ),
                "s3": measure_checkpoints(stores["s3", "batched"], key, counts["checkpoints"]),
            }
            console.print(
                "  checkpoint (sign + write): "
                + ", ".join(
                    f"{b} {statistics.median(s) * 1000:.2f} ms" for b, s in checkpoint_seconds.items()
                )
            )

            batched = stores["local", "batched"]
            goal, loop, baseline, baseline_count = verify_against_baseline(
                batched, keys, counts["verify"], counts["batched_local"], counts["batched_local"]
            )
            verifies = [goal, loop]
            for backend, mode in (("local", "unbatched"), ("s3", "batched"), ("s3", "unbatched")):
                per = "1 entry" if mode == "unbatched" else f"{BATCH:,} entries"
                where = "local" if backend == "local" else "S3 (moto)"
                verifies.append(
                    measure_verify(
                        f"verify_chain, {where}, {per} per segment",
                        backend,
                        stores[backend, mode],
                        keys,
                        counts["verify" if backend == "local" else "verify_s3"],
                        counts[f"{mode}_{backend}"],
                    )
                )
            for checked in verifies:
                console.print(
                    f"  {checked.label}: {checked.entries:,} entries, median of {len(checked.runs)} "
                    f"{checked.seconds:.3f} s, {checked.rate:,.0f} entries/s"
                )
            sha_rate = baseline_count / statistics.median(baseline)
            console.print(
                f"  bare SHA-256 over {baseline_count:,} distinct 256-byte strings: median "
                f"{statistics.median(baseline):.3f} s, {sha_rate:,.0f}/s → {sha_rate / goal.rate:.2f}× "
                "the verify rate"
            )
            line_bytes = goal.bytes / goal.entries
            del stores, batched
            gc.collect()

            console.print("The chain's work in an ingestion run (ingest_items + append_many + checkpoint) …")
            ingest = measure_ingest_audit(settings, end_ms, days, counts, folder, endpoint, console)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    return AuditResult(
        quick=quick,
        counts=counts,
        filesystem=filesystem,
        line_bytes=line_bytes,
        hashed_bytes=line_bytes - 65,
        baseline_bytes=256,
        baseline_count=baseline_count,
        baseline_runs=baseline,
        appends=appends,
        checkpoint_seconds=checkpoint_seconds,
        verifies=verifies,
        ingest=ingest,
        days=dict(days),
        peak_rss_kib=procstat.peak_rss_kib(os.getpid()),
    )


def _head(store: Any) -> tuple[int, str]:
    from tradeflow.audit.chain import read_head

    head = read_head(store)
    return head.seq, head.hash


# --- the child process ------------------------------------------------------------------------

#: A hung child is killed after this long (the full section takes under a minute on 2 cores).
CHILD_TIMEOUT_SECONDS = 600.0


def run_in_child(
    end_ms: int,
    days: Mapping[str, int],
    quick: bool,
    reference: Mapping[str, Any],
    workdir: Path | None = None,
) -> AuditResult:
    """Run the section in a fresh ``python -m bench.audit`` and return what it measured.

    ``reference`` is the ingestion run the chain's share is taken of (flow and wall seconds,
    objects, where the numbers come from). Progress lines go straight to this process's stdout.

    Raises:
        BenchError: if the child fails or times out.
    """
    arguments = [
        "--end-ms",
        str(end_ms),
        "--days",
        json.dumps(dict(days)),
        *(["--quick"] if quick else []),
        *(["--workdir", str(workdir)] if workdir is not None else []),
    ]
    result = AuditResult.from_dict(run_section("audit", arguments, CHILD_TIMEOUT_SECONDS))
    result.reference = dict(reference)
    objects = reference.get("objects")
    if objects and abs(result.ingest[0].objects - objects) > 0.05 * objects:
        result.warnings.append(
            f"the measured manifest lists {result.ingest[0].objects:,} new objects, the reference run "
            f"{reference['objects']:,}: the share compares runs of different sizes"
        )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the child: measure, write the raw result as JSON, return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench.audit", description=__doc__.split("\n")[0])
    parser.add_argument("--end-ms", type=int, required=True, help="the first run's window end, UTC ms")
    parser.add_argument(
        "--days", type=json.loads, required=True, help='look-back per timeframe, JSON {"1m": 90}'
    )
    parser.add_argument("--json", type=Path, required=True, help="where the raw result goes")
    parser.add_argument("--quick", action="store_true", help="smaller chains, fewer repetitions")
    parser.add_argument("--workdir", type=Path, help="parent of the temporary folders")
    args = parser.parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=120)
    try:
        result = measure_audit(base_settings(), args.end_ms, args.days, args.quick, args.workdir, console)
    except BenchError as error:
        print(f"benchmark invalid: {error}", file=sys.stderr)
        return 2
    args.json.write_text(json.dumps(asdict(result)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
