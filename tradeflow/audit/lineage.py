"""Lineage: walk any id in the audit chain back to the raw ingest batches it came from.

Every entry that is about something names it in ``payload.id`` and what it was made from in
``payload.parents`` (ids of earlier entries). A snapshot's parents are its validation run and
ingest batches; a validation's parent is its ingest batch; an ingest batch's parent is the
config it ran with. Later stages add theirs (a model names its snapshot, a signal its model,
an order its signal), so one walk explains an order down to the exchange data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tradeflow.audit.chain import Entry

#: The facts shown beside each node of an explanation, per kind (other payload keys are in --json).
SHOWN = {
    "config_change": ("previous",),
    "ingest_batch": ("sequence", "new_objects", "candles", "venues"),
    "validation": ("sequence", "passed", "warned", "quarantined", "curated_rows"),
    "quarantine": ("batch", "reasons"),
    "snapshot": ("objects", "curated_rows", "raw_rows", "parent_snapshot"),
}


@dataclass
class Node:
    """One entry of an explanation and the entries it was made from."""

    entry: Entry
    children: list[Node] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # parent ids with no entry in the chain
    seen_before: bool = False  # already explained higher up in the tree

    def to_dict(self) -> dict[str, Any]:
        """Return the tree as plain data (``audit explain --json``)."""
        return {
            "seq": self.entry.seq,
            "kind": self.entry.kind,
            "id": self.entry.subject,
            "ts": self.entry.ts,
            "actor": self.entry.actor,
            "hash": self.entry.hash,
            "payload": self.entry.payload,
            "parents": [child.to_dict() for child in self.children],
            "missing_parents": self.missing,
            "seen_before": self.seen_before,
        }

    def label(self) -> str:
        """Return a one-line description: kind, short id, seq and the key facts."""
        payload = self.entry.payload
        facts = []
        for name in SHOWN.get(self.entry.kind, ()):
            value = payload.get(name)
            if value in (None, [], {}):
                continue
            if isinstance(value, list):
                value = ", ".join(str(v) for v in value[:4]) + (" …" if len(value) > 4 else "")
            elif isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in list(value.items())[:4])
            elif isinstance(value, str) and len(value) == 64:
                value = value[:12]
            facts.append(f"{name.replace('_', ' ')} {value}")
        subject = self.entry.subject or ""
        short = subject[:16] if len(subject) == 64 else subject
        tail = " (see above)" if self.seen_before else ""
        return (
            f"{self.entry.kind} {short}  #{self.entry.seq}"
            + (f"  [{'; '.join(facts)}]" if facts else "")
            + tail
        )


def index_entries(entries: Iterable[Entry]) -> dict[str, Entry]:
    """Return the newest entry about each id."""
    index: dict[str, Entry] = {}
    for entry in entries:
        subject = entry.subject
        if subject is not None:
            index[subject] = entry
    return index


def find_entry(index: Mapping[str, Entry], wanted: str) -> Entry:
    """Return the entry about ``wanted``: a full id, or a unique prefix of at least 6 characters.

    Raises:
        LookupError: if no entry, or several, match; the message says which.
    """
    if wanted in index:
        return index[wanted]
    if len(wanted) < 6:
        raise LookupError(f"{wanted!r} is not an id in the audit chain (give at least 6 characters of one)")
    matches = sorted(k for k in index if k.startswith(wanted))
    if not matches:
        raise LookupError(f"no entry in the audit chain is about an id starting {wanted!r}")
    if len(matches) > 1:
        shown = ", ".join(f"{index[m].kind} {m[:16]}" for m in matches[:5])
        raise LookupError(f"{wanted!r} matches {len(matches)} ids ({shown}); give more characters")
    return index[matches[0]]


def explain(index: Mapping[str, Entry], wanted: str) -> Node:
    """Return the lineage tree of ``wanted`` (see :func:`find_entry` for what it may be).

    Raises:
        LookupError: if ``wanted`` names no entry, or several.
    """
    seen: set[str] = set()

    def walk(entry: Entry) -> Node:
        node = Node(entry)
        subject = entry.subject or f"#{entry.seq}"
        if subject in seen:
            node.seen_before = True
            return node
        seen.add(subject)
        for parent in entry.payload.get("parents") or []:
            found = index.get(str(parent))
            if found is None:
                node.missing.append(str(parent))
            else:
                node.children.append(walk(found))
        return node

    return walk(find_entry(index, wanted))
