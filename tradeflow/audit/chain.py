r"""The audit chain: an append-only, hash-chained log of every step, in the object store.

Each entry has ``seq`` (1, 2, ...), ``ts`` (UTC ms), ``actor`` (a flow run id or a process),
``kind``, ``payload`` (ids, hashes, small facts; anything that looks like a secret is redacted),
``prev_hash`` (the previous entry's hash; 64 zeros for the first) and ``hash``:

    hash = SHA-256( b"tfaudit1 <seq> <prev_hash> " + body + b" " )

where ``body`` is the canonical JSON (:mod:`tradeflow.canonical`) of actor, kind, payload and ts,
``seq`` is decimal and ``prev_hash`` is 64 hex digits, so the encoding is unambiguous. The domain
tag ``tfaudit1`` (format version 1) keeps an entry hash from ever equalling any other tradeflow
hash.

An entry is stored as one line, ``tfaudit1 <seq> <prev_hash> <body> <hash>\n``: the hash covers
exactly the bytes before it (the space before it included), so verification re-hashes the stored
bytes as they are, without parsing or re-encoding JSON. Lines are grouped into
segments, objects named by the first ``seq`` they hold (``audit/chain/000000000001.log``), and
every segment is written create-only: two writers that read the same head both try to create
the same segment name, one of them loses, re-reads the head and renumbers its entries. A segment
is written (and, locally, fsynced) before :meth:`AuditLog.append` returns, so a step can report
itself done only after its entry is durable. Appending one entry writes a one-line segment;
:meth:`AuditLog.append_many` writes many entries in one segment, for throughput.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tradeflow.canonical import canonical_json
from tradeflow.storage.objectstore import ObjectStore

CHAIN_PREFIX = "audit/chain/"
CHECKPOINT_PREFIX = "audit/checkpoints/"
#: Every stored line starts with this tag, the domain of the entry hash and the format version.
ENTRY_TAG = b"tfaudit1 "
GENESIS_HASH = "0" * 64
SEGMENT_DIGITS = 12

#: Entry kinds written today, and the ones later stages add (training run, order, fill ...).
KINDS = (
    "config_change",
    "ingest_batch",
    "validation",
    "quarantine",
    "snapshot",
    "feature_matrix",
    "training_run",
    "model_version",
    "model_promotion",
    "model_flag",
    "signal",
    "allocation",
    "order",
    "fill",
    "risk_rejection",
    "kill_switch",
    "trading_state",
    "reconciliation",
    "backtest",
)

REDACTED = "[redacted]"
_SECRET_NAME = re.compile(
    r"(secret|passw|api[_-]?key|apikey|token|private[_-]?key|passphrase|credential|authorization|signing[_-]?key)",
    re.IGNORECASE,
)
_SECRET_VALUE = (
    re.compile(r"-----BEGIN [A-Z ]*(PRIVATE KEY|CERTIFICATE)-----"),
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"(?i)\bbearer\s+\S{8,}"),
    re.compile(r"(?i)\b(sk|pk|rk)[-_][A-Za-z0-9]{16,}"),
)
# A long token mixing upper case, lower case and digits (exchange API keys, base64 secrets),
# between separators such as "/" or "." (so an object key, a path, is not one token). Lower-case
# hex (every tradeflow id and hash) never matches.
_TOKEN = re.compile(r"[A-Za-z0-9+=_-]{32,}")


class AuditError(RuntimeError):
    """The chain could not be appended to (e.g. too many concurrent writers)."""


def _looks_like_key(text: str) -> bool:
    if any(pattern.search(text) for pattern in _SECRET_VALUE):
        return True
    for token in _TOKEN.findall(text):
        if (
            any(c.isupper() for c in token)
            and any(c.islower() for c in token)
            and any(c.isdigit() for c in token)
        ):
            return True
    return False


def redact(value: Any, _name: str = "") -> Any:
    """Return ``value`` with secrets replaced by ``[redacted]``.

    A value is redacted when its key's name says it is a secret (``api_key``, ``password``,
    ``token`` ...) or when the value itself looks like one (a PEM block, an AWS key id, a bearer
    token, a long mixed-case alphanumeric token). Hex hashes and ids are kept.
    """
    secret_name = bool(_name and _SECRET_NAME.search(_name))
    if secret_name and value is not None and not isinstance(value, bool | int | float):
        return REDACTED  # whatever a secret-named key holds: text, a mapping, a list
    if isinstance(value, Mapping):
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, _name) for v in value]
    if isinstance(value, str) and _looks_like_key(value):
        return REDACTED
    return value


def encode_body(ts: int, actor: str, kind: str, payload: Mapping[str, Any]) -> bytes:
    """Return the canonical JSON body of an entry (everything but seq, prev_hash and hash)."""
    return canonical_json({"actor": actor, "kind": kind, "payload": dict(payload), "ts": int(ts)})


def entry_hash(seq: int, prev_hash: str, body: bytes) -> str:
    """Return an entry's hash: SHA-256 over the domain, ``seq``, ``prev_hash`` and the body."""
    return hashlib.sha256(ENTRY_TAG + f"{seq} {prev_hash} ".encode() + body + b" ").hexdigest()


@dataclass(frozen=True)
class Entry:
    """One committed entry of the chain."""

    seq: int
    ts: int
    actor: str
    kind: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str
    body: bytes  # the canonical JSON the hash covers, as stored

    @property
    def line(self) -> bytes:
        """Return the stored line: ``tfaudit1 <seq> <prev_hash> <body> <hash>`` and a newline."""
        return ENTRY_TAG + f"{self.seq} {self.prev_hash} ".encode() + self.body + f" {self.hash}\n".encode()

    @property
    def subject(self) -> str | None:
        """Return the id this entry is about (``payload["id"]``), if any."""
        value = self.payload.get("id")
        return None if value is None else str(value)

    def to_dict(self) -> dict[str, Any]:
        """Return the entry as plain data (for ``--json`` and artifacts)."""
        return {
            "seq": self.seq,
            "ts": self.ts,
            "actor": self.actor,
            "kind": self.kind,
            "payload": self.payload,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    @classmethod
    def build(
        cls, seq: int, prev_hash: str, ts: int, actor: str, kind: str, payload: Mapping[str, Any]
    ) -> Entry:
        """Return a new entry after ``prev_hash``, with its payload redacted and its hash computed."""
        clean = redact(dict(payload))
        body = encode_body(ts, actor, kind, clean)
        return cls(seq, int(ts), actor, kind, clean, prev_hash, entry_hash(seq, prev_hash, body), body)

    @classmethod
    def parse(cls, line: bytes) -> Entry:
        """Return the entry stored in ``line`` (without checking its hash; see verification).

        Raises:
            ValueError: if the line is not ``tfaudit1 <seq> <prev_hash> <body> <hash>``.
        """
        if not line.startswith(ENTRY_TAG):
            raise ValueError(f"does not start with {ENTRY_TAG.decode().strip()!r}")
        head, _, digest = line[len(ENTRY_TAG) :].rstrip(b"\n").rpartition(b" ")
        parts = head.split(b" ", 2)
        if len(parts) != 3 or len(digest) != 64:
            raise ValueError("not '<seq> <prev_hash> <body> <hash>'")
        seq_text, prev_hash, body = parts
        fields = json.loads(body)
        return cls(
            seq=int(seq_text),
            ts=int(fields["ts"]),
            actor=str(fields["actor"]),
            kind=str(fields["kind"]),
            payload=dict(fields["payload"]),
            prev_hash=prev_hash.decode(),
            hash=digest.decode(),
            body=body,
        )


def segment_key(first_seq: int) -> str:
    """Return the object key of the segment whose first entry is ``first_seq``."""
    return f"{CHAIN_PREFIX}{first_seq:0{SEGMENT_DIGITS}d}.log"


def segment_first_seq(key: str) -> int | None:
    """Return the first seq a segment key names, or None for a key that is not a segment."""
    name = key.rsplit("/", 1)[-1]
    stem, _, extension = name.partition(".")
    if extension != "log" or len(stem) != SEGMENT_DIGITS or not stem.isdigit():
        return None
    return int(stem)


def segment_keys(store: ObjectStore) -> list[str]:
    """Return every segment key in chain order (keys that are not segments are left out)."""
    return [k for k in store.list(CHAIN_PREFIX) if segment_first_seq(k) is not None]


def iter_entries(store: ObjectStore) -> Iterator[Entry]:
    """Yield every stored entry in order, parsed but not verified (use ``verify_chain`` for that)."""
    for key in segment_keys(store):
        for line in store.get(key).splitlines():
            if line:
                yield Entry.parse(line)


def default_actor() -> str:
    """Return this process's actor name: ``process:<host>:<pid>``."""
    return f"process:{socket.gethostname()}:{os.getpid()}"


class Checkpointer(Protocol):
    """Something that signs and stores a checkpoint of ``(seq, head hash)``."""

    def write(self, seq: int, head_hash: str) -> str:
        """Write a checkpoint; return its key."""
        ...


@dataclass(frozen=True)
class Head:
    """The newest entry's seq and hash, and the segment that holds it."""

    seq: int = 0
    hash: str = GENESIS_HASH
    key: str | None = None


def _segment_head(store: ObjectStore, key: str, data: bytes) -> Head:
    lines = [line for line in data.splitlines() if line]
    if not lines:
        raise AuditError(f"the audit segment {store.describe(key)} is empty")
    last = lines[-1]
    try:
        if not last.startswith(ENTRY_TAG):
            raise ValueError("no tag")
        return Head(
            int(last[len(ENTRY_TAG) : last.index(b" ", len(ENTRY_TAG))]), last[-64:].decode("ascii"), key
        )
    except (IndexError, ValueError) as error:
        raise AuditError(
            f"the audit segment {store.describe(key)} ends in a damaged line; "
            "run `tradeflow audit verify` to see where"
        ) from error


def _walk_from(store: ObjectStore, key: str) -> Head | None:
    """Return the head found by following segments from ``key`` (None if ``key`` is gone)."""
    try:
        head = _segment_head(store, key, store.get(key))
    except KeyError:
        return None
    while True:  # the next segment, if any, starts right after this one's last entry
        following = segment_key(head.seq + 1)
        try:
            data = store.get(following)
        except KeyError:
            return head
        head = _segment_head(store, following, data)


def read_head(store: ObjectStore, hint: str | None = None) -> Head:
    """Return the chain's head (seq 0 and the genesis hash when empty).

    With ``hint``, a segment key known to be in the chain (the last one this machine wrote or
    read), the head is found by following segments from it: a request or two, however long the
    chain. Without one, or when it is gone, every segment key is listed.
    """
    if hint is not None:
        head = _walk_from(store, hint)
        if head is not None:
            return head
    keys = segment_keys(store)
    if not keys:
        return Head()
    return _walk_from(store, keys[-1]) or Head()


class AuditLog:
    """Append entries to the chain in ``store``, and checkpoint it.

    One instance per writer (a flow run, a process). It caches the head it last wrote; a
    concurrent writer that got there first makes the create-only write fail, and the entries
    are renumbered on top of the new head and written again.
    """

    MAX_ATTEMPTS = 50

    def __init__(
        self,
        store: ObjectStore,
        actor: str | None = None,
        *,
        checkpointer: Checkpointer | None = None,
        checkpoint_every: int = 1000,
        clock: Any = None,
        hints: Path | None = None,
    ) -> None:
        """Write to ``store`` as ``actor`` (default: this process).

        A checkpoint is signed whenever the chain passes a multiple of ``checkpoint_every``
        entries. ``hints`` is a local file remembering the newest segment seen per chain, so a
        new writer finds the head without listing every segment.
        """
        self.store = store
        self.actor = actor or default_actor()
        self.checkpointer = checkpointer
        self.checkpoint_every = checkpoint_every
        self.hints = hints
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._head: Head | None = None
        #: The newest entries this writer committed, in order (bounded: a long-lived writer keeps
        #: appending).
        self.written: deque[Entry] = deque(maxlen=10_000)
        self.checkpoints: list[str] = []  # keys of the checkpoints this writer wrote

    def _hint(self) -> str | None:
        if self.hints is None or not self.hints.is_file():
            return None
        try:
            value = json.loads(self.hints.read_text()).get(self.store.describe())
        except ValueError:
            return None
        return value if isinstance(value, str) and segment_first_seq(value) is not None else None

    def _remember(self, key: str) -> None:
        if self.hints is None:
            return
        try:
            known = json.loads(self.hints.read_text()) if self.hints.is_file() else {}
        except ValueError:
            known = {}
        known[self.store.describe()] = key
        self.hints.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.hints.with_name(f".{self.hints.name}.{os.getpid()}.{threading.get_ident()}")
        temporary.write_text(json.dumps(known, sort_keys=True))
        os.replace(temporary, self.hints)  # atomic: a reader sees the old or the new file

    def head(self, refresh: bool = False) -> Head:
        """Return the head (read from the store the first time, or when ``refresh``)."""
        if self._head is None or refresh:
            start = self._head.key if self._head is not None and self._head.key else self._hint()
            self._head = read_head(self.store, start)
        return self._head

    def append(self, kind: str, payload: Mapping[str, Any]) -> Entry:
        """Commit one entry (a one-line segment) and return it once it is durable."""
        return self.append_many([(kind, payload)])[0]

    def append_many(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Entry]:
        """Commit several entries as one segment (one write) and return them once durable.

        Raises:
            AuditError: if concurrent writers kept winning the race for the next seq.
        """
        if not items:
            return []
        ts = self._clock()
        for attempt in range(self.MAX_ATTEMPTS):
            head = self.head(refresh=attempt > 0)
            entries: list[Entry] = []
            prev = head.hash
            for offset, (kind, payload) in enumerate(items):
                entry = Entry.build(head.seq + 1 + offset, prev, ts, self.actor, kind, payload)
                entries.append(entry)
                prev = entry.hash
            key = segment_key(head.seq + 1)
            if self.store.put_if_absent(key, b"".join(e.line for e in entries)):
                self._head = Head(entries[-1].seq, entries[-1].hash, key)
                self.written.extend(entries)
                self._remember(key)
                every = self.checkpoint_every
                if self.checkpointer and entries[-1].seq // every > (entries[0].seq - 1) // every:
                    self.checkpoint()  # the chain passed a multiple of checkpoint_every
                return entries
            time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # another writer won: re-read, retry
        raise AuditError(
            f"could not append to the audit chain in {self.store.describe(CHAIN_PREFIX)} after "
            f"{self.MAX_ATTEMPTS} attempts: other writers kept claiming the next seq"
        )

    def checkpoint(self) -> str | None:
        """Sign and store a checkpoint of the current head; return its key (None if nothing to sign)."""
        if self.checkpointer is None:
            return None
        head = self.head(refresh=True)
        if head.seq == 0:
            return None
        key = self.checkpointer.write(head.seq, head.hash)
        self.checkpoints.append(key)
        return key
