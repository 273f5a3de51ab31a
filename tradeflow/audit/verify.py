"""Verify the audit chain: every hash, every link, every checkpoint, every referenced object.

What is checked, in order:

1. Every segment, in key order: its name is the seq its first line should have; every line
   parses as ``<seq> <prev_hash> <hash> <body>``; seqs run 1, 2, 3 ... without gaps or repeats;
   each hash re-computes from the stored bytes; each ``prev_hash`` is the previous entry's hash.
2. Every checkpoint: its signature verifies under a trusted key, its seq is not past the head
   (a cut-off tail), and the entry at its seq still has the hash it signed (a rewritten history).
3. Every object a verified entry references (``payload.refs``: manifests, reports, snapshots)
   re-hashes to the SHA-256 recorded; a snapshot's manifest also lists its data objects, and
   each of those is re-hashed too.

The first problem found is named with its seq, the object key and the kind of damage; up to
:data:`MAX_PROBLEMS` are collected. Verification can start from a trusted checkpoint (one a
previous run verified the chain up to) instead of the first entry: everything before it is then
covered by that checkpoint's signature.
"""

from __future__ import annotations

import gc
import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tradeflow.audit.chain import (
    CHECKPOINT_PREFIX,
    ENTRY_TAG,
    GENESIS_HASH,
    Entry,
    segment_first_seq,
    segment_keys,
)
from tradeflow.audit.signing import Checkpoint
from tradeflow.storage.objectstore import ObjectStore

MAX_PROBLEMS = 20
_BASE = hashlib.sha256(ENTRY_TAG)
_TAG_LENGTH = len(ENTRY_TAG)
_GENESIS = GENESIS_HASH.encode()
#: A fork is recognised when an entry links to one of this many entries before it.
FORK_WINDOW = 10_000

#: The kinds of damage verification names.
DAMAGE = {
    "malformed": "a stored line is not 'tfaudit1 <seq> <prev_hash> <body> <hash>' (bytes changed or cut)",
    "content_edited": "the entry's bytes no longer hash to its recorded hash (payload or field edited)",
    "hash_edited": "the entry's recorded hash was changed (its content hashes to what the next links to)",
    "missing": "entries are missing from the middle of the chain (deleted)",
    "inserted": "an entry repeats a seq that is already taken (inserted)",
    "out_of_order": "an entry is not where its seq says it belongs (swapped or moved)",
    "fork": "an entry links to an earlier entry than its predecessor (a second writer forked the chain)",
    "broken_link": "an entry's prev_hash matches no earlier entry",
    "segment_name": "a segment's name does not match the seq of its first entry",
    "truncated": "a signed checkpoint is past the end of the chain (the tail was cut off)",
    "rewritten": "the entry at a checkpoint's seq no longer has the hash the checkpoint signed",
    "bad_signature": "a checkpoint's signature does not verify under a trusted key",
    "bad_checkpoint": "a checkpoint object cannot be read",
    "checkpoint_deleted": "a checkpoint was deleted (on S3 its locked version is still read and checked)",
    "object_altered": "an object an entry references no longer has the SHA-256 recorded",
    "object_missing": "an object an entry references is gone",
}


@dataclass(frozen=True)
class Problem:
    """One piece of damage: where it is and what kind it is."""

    kind: str
    seq: int | None
    key: str
    detail: str

    def describe(self) -> str:
        """Return a one-line description for people."""
        where = f"entry {self.seq}" if self.seq is not None else "chain"
        return f"{where} ({self.key}): {self.kind}: {self.detail}"


@dataclass
class VerifyReport:
    """What a verification checked and found."""

    store: str
    mode: str  # "full" or "from checkpoint N"
    start_seq: int = 1
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    entries: int = 0
    segments: int = 0
    bytes: int = 0
    checkpoints: int = 0
    newest_checkpoint: int | None = None
    objects: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)
    checkpoint_hashes: dict[int, str] = field(default_factory=dict)  # seq -> hash, confirmed

    @property
    def ok(self) -> bool:
        """Return whether nothing was found."""
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        """Return the first problem found, or None."""
        return self.problems[0] if self.problems else None

    def to_dict(self) -> dict[str, Any]:
        """Return plain data (``--json``)."""
        data = asdict(self)
        data["ok"] = self.ok
        return data

    def damage_message(self) -> str | None:
        """Return one line naming the first bad entry and the kind of damage; None when intact."""
        first = self.first_problem
        if first is None:
            return None
        more = len(self.problems) - 1
        return (
            f"audit chain damaged in {self.store}: first bad {first.describe()} "
            f"({DAMAGE.get(first.kind, first.kind)})" + (f"; {more} more problem(s)" if more else "")
        )


class ChainDamagedError(RuntimeError):
    """Verification found damage in the audit chain (the message names the first bad entry)."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Scan:
    """The chain walk: state carried from line to line, and the problems found."""

    def __init__(self, report: VerifyReport, watch: set[int]) -> None:
        self.report = report
        self.watch = watch  # seqs whose hashes the checkpoints need
        self.seen: dict[int, str] = {}  # seq -> hash, for watched seqs
        self.recent: list[bytes] = []  # hashes of the newest verified entries (fork detection)

    def add(self, kind: str, seq: int | None, key: str, detail: str) -> None:
        if len(self.report.problems) < MAX_PROBLEMS:
            self.report.problems.append(Problem(kind, seq, key, detail))


def _find(recent: list[bytes], digest: bytes, expected: int) -> int | None:
    """Return the seq of an earlier entry with hash ``digest`` (``recent`` ends at ``expected - 1``)."""
    for back, known in enumerate(reversed(recent)):
        if known == digest:
            return expected - 1 - back
    return None


def _prev_of(line: bytes | None) -> bytes | None:
    """Return the prev_hash field of a stored line, or None if it has none."""
    if not line:
        return None
    space = line.find(b" ")
    return line[space + 1 : space + 65] if space > 0 else None


def _intact(lines: list[bytes], expected: int, prev: bytes | None) -> bool:
    """Return whether a segment's lines are all intact and linked, checked a list at a time.

    Each step is one C-level pass over the lines (prefixes, hashes, links), which is what lets
    verification run close to the speed of SHA-256 itself. Any doubt returns False, and the
    line-by-line walk then finds and names the damage.
    """
    prefixes = [b"tfaudit1 %d " % seq for seq in range(expected, expected + len(lines))]
    if not all(map(bytes.startswith, lines, prefixes)):
        return False
    sha256 = hashlib.sha256
    digests = [line[-64:] for line in lines]
    if [sha256(line[:-64]).hexdigest().encode() for line in lines] != digests:
        return False
    start = len(prefixes[0])
    if start == len(prefixes[-1]):  # one width of seq in the whole segment: one slice for all
        links = [line[start : start + 64] for line in lines]
    else:
        links = [line[len(prefix) : len(prefix) + 64] for line, prefix in zip(lines, prefixes, strict=True)]
    if links[1:] != digests[:-1]:
        return False
    if expected == 1:
        return links[0] == _GENESIS
    return prev is None or links[0] == prev


def _accept(
    scan: _Scan, key: str, lines: list[bytes], first: int, refs: list[tuple[int, str, dict[str, Any]]] | None
) -> tuple[int, bytes | None]:
    """Record an intact segment's entries (hashes for forks and checkpoints, refs); return the next seq."""
    count = len(lines)
    recent = scan.recent
    recent.extend(line[-64:] for line in lines[-FORK_WINDOW:])
    if len(recent) > 2 * FORK_WINDOW:
        del recent[:-FORK_WINDOW]
    for seq in scan.watch:
        if first <= seq < first + count:
            scan.seen[seq] = lines[seq - first][-64:].decode("latin-1")
    for offset, line in enumerate(lines if refs is not None else []):
        if refs is not None and b'"refs"' in line:
            space = line.find(b" ", _TAG_LENGTH)
            try:
                payload = json.loads(line[space + 66 : -65])["payload"]
            except (ValueError, KeyError, TypeError):
                payload = {}
            refs.append((first + offset, key, payload))
    scan.report.entries += count
    return first + count, lines[-1][-64:]


def _check_lines(
    scan: _Scan,
    key: str,
    data: bytes,
    expected: int,
    prev: bytes | None,
    refs: list[tuple[int, str, dict[str, Any]]],
    upcoming: bytes | None,
) -> tuple[int, bytes | None]:
    """Verify one segment's lines; return the next expected seq and the last hash.

    The loop is the verifier's hot path (one pass per entry), so it works on bytes and keeps
    the common case to a split, one SHA-256 and a few comparisons.
    """
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    else:
        scan.add("malformed", expected, key, "the segment does not end with a newline (cut short or edited)")
    if lines and _intact(lines, expected, prev):  # the common case, checked a list at a time
        return _accept(scan, key, lines, expected, refs if b'"refs"' in data else None)
    # Line by line, to name the damage. The tag is taken off each line here (the hash still
    # covers it: the hasher starts from it); a line without it cannot be read at all.
    lines = [line[_TAG_LENGTH:] if line.startswith(ENTRY_TAG) else b"" for line in lines]
    if upcoming is not None:
        upcoming = upcoming[_TAG_LENGTH:] if upcoming.startswith(ENTRY_TAG) else b""
    copy = _BASE.copy
    recent = scan.recent
    report = scan.report
    count = len(lines)
    has_refs = b'"refs"' in data
    first_seq = expected
    # The seq prefixes the lines should start with, made in one go; after a discontinuity (damage)
    # they no longer line up and each line's prefix is formatted on its own.
    prefixes = [b"%d " % seq for seq in range(expected, expected + count)]
    aligned = True
    for index, line in enumerate(lines):
        prefix = prefixes[index] if aligned else b"%d " % expected
        if line.startswith(prefix):
            space = len(prefix) - 1
        else:
            aligned = False
            space = line.find(b" ")
            seq_text = line[:space]
            if space < 1 or not seq_text.isdigit() or seq_text != b"%d" % int(seq_text):
                scan.add("malformed", expected, key, f"line {index + 1}: no seq where the line should start")
                expected, prev = expected + 1, None
                continue
            seq = int(seq_text)
            following = lines[index + 1] if index + 1 < count else upcoming
            if seq < expected:
                scan.add("inserted", seq, key, f"seq {seq} appears again where {expected} was expected")
            elif seq == expected + 1 and following is not None and following.startswith(b"%d " % expected):
                scan.add("out_of_order", expected, key, f"entries {expected} and {seq} are swapped")
            else:
                scan.add("missing", expected, key, f"entries {expected}..{seq - 1} are missing")
            expected, prev, first_seq = seq, None, seq - index
        digest = line[-64:]
        hasher = copy()
        hasher.update(line[:-64])
        computed = hasher.hexdigest().encode()
        prev_hash = line[space + 1 : space + 65]
        if computed != digest:
            following = lines[index + 1] if index + 1 < count else upcoming
            if len(line) < space + 132 or line[space + 65 : space + 66] != b" " or line[-65:-64] != b" ":
                scan.add(
                    "malformed",
                    expected,
                    key,
                    f"line {index + 1} is not 'tfaudit1 <seq> <prev_hash> <body> <hash>'",
                )
            elif _prev_of(following) == computed:
                scan.add("hash_edited", expected, key, "the recorded hash was changed; the content is intact")
            else:
                scan.add("content_edited", expected, key, "the stored entry no longer matches its hash")
        elif prev is not None and prev_hash != prev:
            earlier = _find(recent, prev_hash, expected)
            if earlier is not None:
                scan.add("fork", expected, key, f"links to entry {earlier}, not to entry {expected - 1}")
            else:
                scan.add("broken_link", expected, key, "prev_hash matches no earlier entry")
        elif expected == 1 and prev_hash != _GENESIS:
            scan.add("broken_link", expected, key, "the first entry does not start from the genesis hash")
        recent.append(digest)
        if has_refs and computed == digest and b'"refs"' in line:  # only refs of intact entries
            try:
                payload = json.loads(line[space + 66 : -65])["payload"]
            except (ValueError, KeyError, TypeError):
                payload = {}
            refs.append((expected, key, payload))
        prev = digest
        expected += 1
    if len(recent) > 2 * FORK_WINDOW:  # keep the newest FORK_WINDOW hashes (bounded memory)
        del recent[:-FORK_WINDOW]
    for seq in scan.watch:  # the hashes checkpoints signed, where this segment holds them
        if first_seq <= seq < expected and 0 <= seq - first_seq < count:
            line = lines[seq - first_seq]
            if line.startswith(b"%d " % seq):
                scan.seen[seq] = line[-64:].decode("latin-1")
    report.entries += count
    return expected, prev


def _check_refs(scan: _Scan, objects: ObjectStore, refs: Iterable[tuple[int, str, dict[str, Any]]]) -> None:
    checked: set[tuple[str, str]] = set()

    def check(seq: int, key: str, ref: Mapping[str, Any]) -> bytes | None:
        pair = (str(ref.get("key")), str(ref.get("sha256")))
        if pair in checked:
            return None
        checked.add(pair)
        scan.report.objects += 1
        try:
            data = objects.get(pair[0])
        except KeyError:
            scan.add("object_missing", seq, key, f"{objects.describe(pair[0])} is gone")
            return None
        if _sha256(data) != pair[1]:
            scan.add(
                "object_altered",
                seq,
                key,
                f"{objects.describe(pair[0])} no longer has SHA-256 {pair[1][:16]}…",
            )
            return None
        return data

    for seq, key, payload in refs:
        listed_refs = payload.get("refs") if isinstance(payload, Mapping) else None
        for ref in listed_refs if isinstance(listed_refs, list) else []:
            if not isinstance(ref, Mapping):
                continue
            data = check(seq, key, ref)
            if data is None or not ref.get("lists_objects"):
                continue
            try:
                listed = json.loads(data).get("objects", [])
            except (ValueError, AttributeError):
                scan.add(
                    "object_altered", seq, key, f"{objects.describe(str(ref.get('key')))} is not a manifest"
                )
                continue
            for item in listed if isinstance(listed, list) else []:
                if isinstance(item, Mapping):
                    check(seq, key, item)


def _checkpoints(
    scan: _Scan, store: ObjectStore, prefix: str, keys: Mapping[str, Ed25519PublicKey]
) -> tuple[list[tuple[str, Checkpoint]], list[str]]:
    """Return the readable, well-signed checkpoints, and the keys of those a delete marker hid."""
    found = []
    # On S3 a plain DELETE leaves the locked checkpoint in place behind a delete marker: read it
    # anyway, and report the deletion as damage of its own.
    hidden_reader = getattr(store, "hidden", None)
    hidden: dict[str, bytes] = hidden_reader(prefix) if callable(hidden_reader) else {}
    for key in sorted({*store.list(prefix), *hidden}):
        if not key.endswith(".json"):
            continue
        try:
            data = hidden[key] if key in hidden else store.get(key)
            checkpoint = Checkpoint.from_bytes(data)
        except (ValueError, KeyError, TypeError, OverflowError) as error:
            scan.add("bad_checkpoint", None, key, f"cannot read it: {error}")
            continue
        named = segment_first_seq(key.rsplit("/", 1)[-1].replace(".json", ".log"))
        if named != checkpoint.seq:
            scan.add("bad_checkpoint", checkpoint.seq, key, f"stored under the name of entry {named}")
            continue
        problem = checkpoint.problem(keys)
        if problem:
            scan.add("bad_signature", checkpoint.seq, key, problem)
            continue
        found.append((key, checkpoint))
    return found, sorted(hidden)


def _hash_at(store: ObjectStore, keys: list[str], seq: int) -> str | None:
    """Return the stored hash of entry ``seq`` (reading the one segment that holds it)."""
    holder = None
    for key in keys:
        first = segment_first_seq(key)
        if first is not None and first <= seq:
            holder = key
    if holder is None:
        return None
    for line in store.get(holder).splitlines():
        if line.startswith(ENTRY_TAG + b"%d " % seq) and len(line) > 64:
            return line[-64:].decode("latin-1")
    return None


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while segments are scanned.

    The scan allocates a few objects per entry and creates no reference cycles; with the
    collector on, its generation-0 passes (every 700 allocations) cost about a fifth of the time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _scan_segments(
    scan: _Scan,
    store: ObjectStore,
    keys: list[str],
    start_index: int,
    expected: int,
    prev: bytes | None,
    refs: list[tuple[int, str, dict[str, Any]]],
    trusted: tuple[int, str] | None,
) -> tuple[int, bytes | None]:
    """Verify the segments from ``start_index`` on; return the next expected seq and the last hash."""
    report = scan.report
    datas: dict[int, bytes] = {}
    for index in range(start_index, len(keys)):
        key = keys[index]
        first = segment_first_seq(key)
        if first is not None and first > expected and not (report.entries == 0 and trusted is not None):
            scan.add(
                "missing", expected, key, f"entries {expected}..{first - 1} are missing (segment deleted?)"
            )
            expected, prev = first, None
        elif first != expected:
            scan.add(
                "segment_name", expected, key, f"named for entry {first} where entry {expected} comes next"
            )
        data = datas.pop(index, None) or store.get(key)
        report.bytes += len(data)
        upcoming = None
        if index + 1 < len(keys):
            datas[index + 1] = store.get(keys[index + 1])
            upcoming = datas[index + 1].split(b"\n", 1)[0]
        expected, prev = _check_lines(scan, key, data, expected, prev, refs, upcoming)
    return expected, prev


def verify_chain(
    store: ObjectStore,
    public_keys: Mapping[str, Ed25519PublicKey],
    *,
    checkpoint_store: ObjectStore | None = None,
    checkpoint_prefix: str = CHECKPOINT_PREFIX,
    objects: ObjectStore | None = None,
    trusted: tuple[int, str] | None = None,
    check_objects: bool = True,
) -> VerifyReport:
    """Verify the chain in ``store``; return what was checked and every problem found.

    Args:
        store: Where the chain's segments are.
        public_keys: Trusted checkpoint keys by key id.
        checkpoint_store: Where the checkpoints are (default ``store``).
        checkpoint_prefix: The checkpoints' prefix in ``checkpoint_store``.
        objects: Where referenced objects are (default ``store``).
        trusted: ``(seq, hash)`` of a checkpoint a previous verification confirmed: entries
            from the segment holding it on are verified, the ones before are taken as covered by it.
        check_objects: Re-hash the objects entries reference.
    """
    started = time.perf_counter()
    checkpoint_store = checkpoint_store or store
    objects = objects or store
    report = VerifyReport(store=store.describe(), mode="full")
    scan = _Scan(report, set())
    checkpoints, hidden = _checkpoints(scan, checkpoint_store, checkpoint_prefix, public_keys)
    report.checkpoints = len(checkpoints)
    report.newest_checkpoint = max((c.seq for _, c in checkpoints), default=None)
    scan.watch = {c.seq for _, c in checkpoints}
    keys = segment_keys(store)
    report.segments = len(keys)

    start_index, expected = 0, 1
    prev: bytes | None = _GENESIS
    if trusted is not None:
        seq = trusted[0]
        for index, key in enumerate(keys):
            first = segment_first_seq(key)
            if first is not None and first <= seq:
                start_index = index
        first = segment_first_seq(keys[start_index]) if keys else 1
        expected, prev = (first or 1), None  # the first verified line's link is not checked
        report.mode = f"from checkpoint {seq}"
        scan.watch.add(seq)
    report.start_seq = expected

    refs: list[tuple[int, str, dict[str, Any]]] = []
    with _collector_paused():
        expected, prev = _scan_segments(scan, store, keys, start_index, expected, prev, refs, trusted)
    report.head_seq = expected - 1
    report.head_hash = prev.decode("latin-1") if prev else ""

    if trusted is not None and trusted[0] > report.head_seq:
        scan.add("truncated", trusted[0], "", f"a verified checkpoint was at entry {trusted[0]}; "
                 f"the chain now ends at entry {report.head_seq}")  # fmt: skip
    elif trusted is not None and scan.seen.get(trusted[0]) not in (None, trusted[1]):
        scan.add("rewritten", trusted[0], "", "the trusted checkpoint's entry has a different hash now")
    for key, checkpoint in sorted(checkpoints, key=lambda item: item[1].seq):
        if checkpoint.seq > report.head_seq:
            scan.add(
                "truncated",
                checkpoint.seq,
                key,
                f"checkpoint {checkpoint.seq} was signed but the chain ends at entry {report.head_seq}",
            )
            continue
        signed = scan.seen.get(checkpoint.seq)
        if signed is None:  # before the verified range: read that one entry
            signed = _hash_at(store, keys, checkpoint.seq)
        if signed != checkpoint.head_hash:
            scan.add(
                "rewritten",
                checkpoint.seq,
                key,
                f"entry {checkpoint.seq} no longer has the hash checkpoint {checkpoint.seq} signed",
            )
        else:
            report.checkpoint_hashes[checkpoint.seq] = signed
    for key in hidden:
        hidden_seq = segment_first_seq(key.rsplit("/", 1)[-1].replace(".json", ".log"))
        scan.add(
            "checkpoint_deleted",
            hidden_seq,
            key,
            "a delete marker hides this checkpoint; its locked version is still there",
        )
    if check_objects:
        _check_refs(scan, objects, refs)
    report.problems.sort(key=lambda p: (p.seq is None, p.seq or 0))  # the first bad entry first
    report.seconds = time.perf_counter() - started
    return report


def parse_entries(data: bytes) -> list[Entry]:
    """Return the entries of one segment's bytes (for tools; raises ValueError on a bad line)."""
    return [Entry.parse(line) for line in data.splitlines() if line]


def load_trusted(path: Path, chain: str) -> tuple[int, str] | None:
    """Return the checkpoint ``(seq, hash)`` a previous verification of ``chain`` confirmed, if any."""
    if not path.is_file():
        return None
    try:
        entry = json.loads(path.read_text()).get(chain)
    except ValueError:
        return None
    return None if not entry else (int(entry["seq"]), str(entry["hash"]))


def save_trusted(path: Path, report: VerifyReport) -> tuple[int, str] | None:
    """Remember the newest checkpoint a clean verification confirmed; return it (None if none)."""
    if not report.ok or report.newest_checkpoint is None or report.newest_checkpoint > report.head_seq:
        return None
    digest = report.checkpoint_hashes.get(report.newest_checkpoint)
    if digest is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        known = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        known = {}
    known[report.store] = {"seq": report.newest_checkpoint, "hash": digest}
    path.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n")
    return report.newest_checkpoint, digest
