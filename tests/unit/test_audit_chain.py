"""Tamper evidence of the audit chain, on a real local object store.

A chain of 30 entries (one-entry segments and one ten-entry segment, signed checkpoints at 10,
22 and 30) is damaged the ways an attacker or a broken disk would damage it, and verification
must name the kind of damage and the first entry it touches. Hypothesis then changes single
bytes anywhere in the stored files: every change must be seen.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import random
import shutil
import string
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, note, settings
from hypothesis import strategies as st

from tradeflow.audit import chain, signing
from tradeflow.audit.chain import AuditLog, Entry
from tradeflow.audit.signing import Checkpoint, StoreCheckpointer, checkpoint_key
from tradeflow.audit.verify import VerifyReport, verify_chain
from tradeflow.storage.objectstore import LocalObjectStore

T0 = 1_700_000_000_000
MULTI_FIRST, MULTI_LAST = 13, 22  # the one multi-entry segment of the standard chain
CHECKPOINTS = [10, 22, 30]


@dataclass
class Chain:
    """A chain written to a local store, with what it takes to verify it."""

    root: Path
    store: LocalObjectStore
    log: AuditLog
    key: Ed25519PrivateKey
    trusted: dict

    def verify(self, **options) -> VerifyReport:
        return verify_chain(self.store, self.trusted, **options)

    def segment(self, first_seq: int) -> Path:
        return self.root / chain.segment_key(first_seq)

    def checkpoint(self, seq: int) -> Path:
        return self.root / checkpoint_key(seq)

    def locate(self, seq: int) -> tuple[Path, int]:
        """Return the segment file holding entry ``seq`` and the line's index in it."""
        for key in chain.segment_keys(self.store):
            path = self.root / key
            for index, line in enumerate(path.read_bytes().splitlines()):
                if line.startswith(b"tfaudit1 %d " % seq):
                    return path, index
        raise AssertionError(f"entry {seq} is not stored")

    def lines(self, path: Path) -> list[bytes]:
        return path.read_bytes().splitlines(keepends=True)

    def entry(self, seq: int) -> Entry:
        path, index = self.locate(seq)
        return Entry.parse(self.lines(path)[index])

    def replace_line(self, seq: int, new: bytes) -> None:
        path, index = self.locate(seq)
        lines = self.lines(path)
        lines[index] = new
        path.write_bytes(b"".join(lines))


def payload(i: int) -> dict:
    return {"id": f"batch-{i:03d}", "n": i, "rows": 100 + i}


def make_chain(root: Path, *, singles: int = 12, multi: int = 10, tail: int = 8, every: int = 10) -> Chain:
    """Write ``singles`` one-entry segments, one ``multi``-entry segment, then ``tail`` more singles."""
    store = LocalObjectStore(root)
    key = Ed25519PrivateKey.generate()
    ticks = itertools.count(T0, 1000)
    log = AuditLog(
        store,
        "flow-run:test",
        checkpointer=StoreCheckpointer(store, key),
        checkpoint_every=every,
        clock=lambda: next(ticks),
    )
    for i in range(1, singles + 1):
        log.append("ingest_batch", payload(i))
    log.append_many([("validation", payload(i)) for i in range(singles + 1, singles + multi + 1)])
    for i in range(singles + multi + 1, singles + multi + tail + 1):
        log.append("ingest_batch", payload(i))
    log.checkpoint()
    trusted = signing.trusted_keys([(signing.public_key_text(key.public_key()), "test")])
    return Chain(root, store, log, key, trusted)


@pytest.fixture
def built(tmp_path: Path) -> Chain:
    return make_chain(tmp_path / "store")


def forged(seq: int, prev_hash: str, **fields) -> Entry:
    """A properly hashed entry, as a forger holding the code (but no signing key) would write."""
    return Entry.build(seq, prev_hash, T0 + 999_999, "process:intruder", "ingest_batch", fields or {"x": 1})


def assert_damage(report: VerifyReport, kind: str, seq: int | None, key: str | None = None) -> None:
    problems = [p.describe() for p in report.problems]
    assert not report.ok, "the damage went unnoticed"
    first = report.first_problem
    assert (first.kind, first.seq) == (kind, seq), problems
    if key is not None:
        assert first.key == key, problems


def rewrite_from(built: Chain, first: int, change: dict) -> None:
    """Rewrite history: change entry ``first``'s payload, re-hash it and every later entry.

    Segment boundaries are kept and every link is consistent, so only a checkpoint can tell.
    """
    prev = chain.GENESIS_HASH
    for key in chain.segment_keys(built.store):
        path = built.root / key
        out = []
        for line in path.read_bytes().splitlines():
            old = Entry.parse(line)
            body = dict(old.payload, **change) if old.seq == first else old.payload
            new = Entry.build(old.seq, prev, old.ts, old.actor, old.kind, body)
            if old.seq < first:
                assert new.line == line + b"\n"  # rebuilding leaves untouched entries byte-identical
            out.append(new.line)
            prev = new.hash
        path.write_bytes(b"".join(out))


# --- a clean chain --------------------------------------------------------------------------


def test_a_clean_chain_verifies_with_its_head_and_checkpoints(built: Chain) -> None:
    report = built.verify()
    head = built.log.head(refresh=True)
    assert report.ok, [p.describe() for p in report.problems]
    assert report.entries == 30 and report.start_seq == 1 and report.mode == "full"
    assert (report.head_seq, report.head_hash) == (head.seq, head.hash) == (30, built.log.written[-1].hash)
    assert report.segments == 12 + 1 + 8
    assert report.checkpoints == 3 and report.newest_checkpoint == 30
    assert [built.log.checkpoints[i] for i in range(3)] == [checkpoint_key(s) for s in CHECKPOINTS]
    assert [e.seq for e in chain.iter_entries(built.store)] == list(range(1, 31))


def test_every_checkpoint_signs_the_head_it_names(built: Chain) -> None:
    hashes = {e.seq: e.hash for e in built.log.written}
    for seq in CHECKPOINTS:
        checkpoint = Checkpoint.from_bytes(built.checkpoint(seq).read_bytes())
        assert (checkpoint.seq, checkpoint.head_hash) == (seq, hashes[seq])
        assert checkpoint.problem(built.trusted) is None


# --- damage to entries ----------------------------------------------------------------------


@pytest.mark.parametrize("seq", [5, 17, 30], ids=["one-entry-segment", "multi-entry-segment", "head"])
def test_an_edited_payload_is_content_edited(built: Chain, seq: int) -> None:
    path, index = built.locate(seq)
    line = built.lines(path)[index]
    edited = line.replace(b'"rows":%d' % (100 + seq), b'"rows":%d' % (900 + seq))
    assert edited != line
    built.replace_line(seq, edited)
    assert_damage(built.verify(), "content_edited", seq, str(path.relative_to(built.root)))


@pytest.mark.parametrize("seq", [7, 15], ids=["one-entry-segment", "multi-entry-segment"])
def test_an_edited_hash_is_hash_edited(built: Chain, seq: int) -> None:
    path, index = built.locate(seq)
    line = built.lines(path)[index]
    fake = hashlib.sha256(b"not the real hash").hexdigest().encode()
    built.replace_line(seq, line[:-65] + fake + b"\n")
    report = built.verify()
    assert_damage(report, "hash_edited", seq, str(path.relative_to(built.root)))
    assert report.problems[1].seq == seq + 1  # and the next entry no longer links


def test_a_deleted_one_entry_segment_is_missing(built: Chain) -> None:
    built.segment(6).unlink()
    assert_damage(built.verify(), "missing", 6, chain.segment_key(7))


def test_a_line_deleted_from_a_multi_entry_segment_is_missing(built: Chain) -> None:
    path = built.segment(MULTI_FIRST)
    lines = built.lines(path)
    del lines[16 - MULTI_FIRST]
    path.write_bytes(b"".join(lines))
    assert_damage(built.verify(), "missing", 16, chain.segment_key(MULTI_FIRST))


def test_the_last_line_of_a_multi_entry_segment_deleted_is_missing(built: Chain) -> None:
    path = built.segment(MULTI_FIRST)
    path.write_bytes(b"".join(built.lines(path)[:-1]))
    report = built.verify()
    assert_damage(report, "missing", MULTI_LAST, chain.segment_key(MULTI_LAST + 1))
    assert any(p.kind == "rewritten" and p.seq == MULTI_LAST for p in report.problems)  # checkpoint 22


def test_a_cut_off_tail_is_caught_by_the_checkpoint(built: Chain) -> None:
    for seq in (28, 29, 30):
        built.segment(seq).unlink()
    report = built.verify()
    assert_damage(report, "truncated", 30, checkpoint_key(30))
    assert [p.kind for p in report.problems] == ["truncated"]  # the remaining chain is consistent
    assert report.head_seq == 27


def test_a_forged_line_repeating_a_seq_is_inserted(built: Chain) -> None:
    path = built.segment(8)
    path.write_bytes(path.read_bytes() + forged(8, built.entry(7).hash, id="batch-999").line)
    assert_damage(built.verify(), "inserted", 8, chain.segment_key(8))


def test_a_forged_line_inside_a_multi_entry_segment_is_inserted(built: Chain) -> None:
    path = built.segment(MULTI_FIRST)
    lines = built.lines(path)
    lines.insert(18 - MULTI_FIRST + 1, forged(18, built.entry(17).hash).line)  # after entry 18
    path.write_bytes(b"".join(lines))
    assert_damage(built.verify(), "inserted", 18, chain.segment_key(MULTI_FIRST))


def test_two_swapped_one_entry_segments_are_out_of_order(built: Chain) -> None:
    four, five = built.segment(4).read_bytes(), built.segment(5).read_bytes()
    built.segment(4).write_bytes(five)
    built.segment(5).write_bytes(four)
    assert_damage(built.verify(), "out_of_order", 4, chain.segment_key(4))


def test_two_swapped_lines_in_a_multi_entry_segment_are_out_of_order(built: Chain) -> None:
    path = built.segment(MULTI_FIRST)
    lines = built.lines(path)
    a, b = 19 - MULTI_FIRST, 20 - MULTI_FIRST
    lines[a], lines[b] = lines[b], lines[a]
    path.write_bytes(b"".join(lines))
    assert_damage(built.verify(), "out_of_order", 19, chain.segment_key(MULTI_FIRST))


def test_a_second_writer_linking_to_an_older_entry_is_a_fork(built: Chain) -> None:
    entry = forged(31, built.entry(25).hash)
    assert built.store.put_if_absent(chain.segment_key(31), entry.line)
    report = built.verify()
    assert_damage(report, "fork", 31, chain.segment_key(31))
    assert "entry 25" in report.first_problem.detail


# --- damage to checkpoints and history ------------------------------------------------------


def test_a_checkpoint_with_an_edited_head_hash_has_a_bad_signature(built: Chain) -> None:
    path = built.checkpoint(22)
    fields = json.loads(path.read_bytes())
    fields["head_hash"] = built.entry(21).hash
    path.write_text(json.dumps(fields, sort_keys=True))
    assert_damage(built.verify(), "bad_signature", 22, checkpoint_key(22))


def test_a_checkpoint_with_an_edited_signature_has_a_bad_signature(built: Chain) -> None:
    path = built.checkpoint(22)
    fields = json.loads(path.read_bytes())
    raw = bytearray(base64.b64decode(fields["signature"]))
    raw[0] ^= 0x01
    fields["signature"] = base64.b64encode(bytes(raw)).decode()
    path.write_text(json.dumps(fields, sort_keys=True))
    report = built.verify()
    assert_damage(report, "bad_signature", 22, checkpoint_key(22))
    assert "does not verify" in report.first_problem.detail


def test_a_checkpoint_signed_by_an_unknown_key_is_not_trusted(built: Chain) -> None:
    intruder = StoreCheckpointer(built.store, Ed25519PrivateKey.generate())
    intruder.write(25, built.entry(25).hash)  # a true statement, by the wrong signer
    report = built.verify()
    assert_damage(report, "bad_signature", 25, checkpoint_key(25))
    assert "not a trusted key" in report.first_problem.detail


def test_trusting_no_key_rejects_every_checkpoint(built: Chain) -> None:
    report = verify_chain(built.store, {})
    assert [(p.kind, p.seq) for p in report.problems] == [("bad_signature", s) for s in CHECKPOINTS]


def test_a_rewritten_history_is_caught_by_the_first_checkpoint_after_it(built: Chain) -> None:
    rewrite_from(built, 5, {"rows": 1_000_000})
    report = built.verify()
    assert_damage(report, "rewritten", 10, checkpoint_key(10))
    assert [(p.kind, p.seq) for p in report.problems] == [("rewritten", s) for s in CHECKPOINTS]
    # Without its checkpoints the rewritten chain is self-consistent: they are what catches it.
    assert built.verify(checkpoint_prefix="nowhere/").ok


def test_a_rewritten_multi_entry_segment_is_caught(built: Chain) -> None:
    rewrite_from(built, 20, {"rows": 0})
    assert_damage(built.verify(), "rewritten", 22, checkpoint_key(22))


# --- referenced objects ---------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_replaced_or_deleted_referenced_object_is_caught(built: Chain) -> None:
    original = b"candles, day 1\n" * 100
    assert built.store.put_if_absent("data/x.bin", original)
    entry = built.log.append(
        "ingest_batch", {"id": "batch-x", "refs": [{"key": "data/x.bin", "sha256": sha256(original)}]}
    )
    assert entry.seq == 31
    report = built.verify()
    assert report.ok and report.objects == 1

    (built.root / "data/x.bin").write_bytes(original.replace(b"1", b"2"))
    report = built.verify()
    assert_damage(report, "object_altered", 31, chain.segment_key(31))
    assert "data/x.bin" in report.first_problem.detail

    (built.root / "data/x.bin").unlink()
    assert_damage(built.verify(), "object_missing", 31, chain.segment_key(31))
    assert built.verify(check_objects=False).ok  # the chain itself is intact


def test_a_replaced_object_listed_by_a_snapshot_manifest_is_caught(built: Chain) -> None:
    objects = {"data/a.bin": b"partition a" * 50, "data/b.bin": b"partition b" * 50}
    for key, data in objects.items():
        assert built.store.put_if_absent(key, data)
    manifest = json.dumps({"objects": [{"key": k, "sha256": sha256(v)} for k, v in objects.items()]})
    assert built.store.put_if_absent("snapshots/s1.json", manifest.encode())
    ref = {"key": "snapshots/s1.json", "sha256": sha256(manifest.encode()), "lists_objects": True}
    built.log.append("snapshot", {"id": "snapshot-1", "refs": [ref]})
    report = built.verify()
    assert report.ok and report.objects == 3  # the manifest and the two objects it lists

    (built.root / "data/b.bin").write_bytes(b"partition B" * 50)
    report = built.verify()
    assert_damage(report, "object_altered", 31, chain.segment_key(31))
    assert "data/b.bin" in report.first_problem.detail


# --- any single byte ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Chain, dict[Path, bytes]]:
    """An 8-entry chain (3 singles, a 3-entry segment, 2 singles; checkpoints 3, 6, 8), and its files."""
    built = make_chain(tmp_path_factory.mktemp("small"), singles=3, multi=3, tail=2, every=3)
    assert built.verify().ok and built.verify().checkpoints == 3
    files = {p: p.read_bytes() for p in sorted(built.root.rglob("*")) if p.is_file()}
    return built, files


def change_one_byte(data: st.DataObject, files: dict[Path, bytes], suffix: str) -> tuple[Path, bytes, bytes]:
    """Overwrite one drawn byte of one drawn file with ``suffix``; return it, the old and new bytes."""
    path = data.draw(st.sampled_from([p for p in files if p.suffix == suffix]), label="file")
    original = files[path]
    position = data.draw(st.integers(0, len(original) - 1), label="position")
    value = data.draw(st.integers(0, 255).filter(lambda b: b != original[position]), label="byte")
    changed = bytearray(original)
    changed[position] = value
    path.write_bytes(bytes(changed))
    return path, original, bytes(changed)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_single_byte_change_to_a_segment_is_detected(small, data) -> None:
    built, files = small
    path, original, _ = change_one_byte(data, files, ".log")
    try:
        report = built.verify()
        note(str([p.describe() for p in report.problems]))
        assert not report.ok
        assert report.first_problem.key == str(path.relative_to(built.root))
    finally:
        path.write_bytes(original)


def same_checkpoint(new: bytes, old: bytes) -> bool:
    """Whether ``new`` says exactly what ``old`` says (JSON whitespace, base64 padding bits)."""
    try:
        a, b = Checkpoint.from_bytes(new), Checkpoint.from_bytes(old)
        signature = base64.b64decode(a.signature, validate=True)
    except (ValueError, KeyError, TypeError):
        return False
    return (a.seq, a.head_hash, a.ts, a.key_id, signature) == (
        b.seq,
        b.head_hash,
        b.ts,
        b.key_id,
        base64.b64decode(b.signature),
    )


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_meaningful_single_byte_change_to_a_checkpoint_is_detected(small, data) -> None:
    built, files = small
    path, original, changed = change_one_byte(data, files, ".json")
    try:
        report = built.verify()
        note(str([p.describe() for p in report.problems]))
        assert not report.ok or same_checkpoint(changed, original)
        if not report.ok:
            assert report.first_problem.kind in {"bad_signature", "bad_checkpoint"}
            assert report.first_problem.key == str(path.relative_to(built.root))
    finally:
        path.write_bytes(original)


def test_checkpoint_bytes_that_change_no_field_are_accepted(small) -> None:
    """Pins down the one kind of change the property above tolerates: no field's value changes."""
    built, files = small
    path = next(p for p in files if p.suffix == ".json")
    original = files[path]
    changed = original.replace(b'"seq": ', b'"seq":\t', 1)
    path.write_bytes(changed)
    try:
        assert same_checkpoint(changed, original) and built.verify().ok
    finally:
        path.write_bytes(original)


# --- regressions: damage that once passed verification or crashed it -----------------------


def test_a_changed_separator_before_the_hash_is_malformed(built: Chain) -> None:
    path, index = built.locate(5)
    line = built.lines(path)[index]
    built.replace_line(5, line[:-66] + b"X" + line[-65:])  # the separator before the hash
    with pytest.raises(ValueError):
        list(chain.iter_entries(built.store))  # the stored line no longer parses
    assert_damage(built.verify(), "malformed", 5, chain.segment_key(5))


@pytest.mark.parametrize(
    ("seq", "kind"),
    [(10, "hash_edited"), (31, "content_edited")],
    ids=["checkpointed", "uncheckpointed-head"],
)
def test_a_non_ascii_byte_in_a_recorded_hash_is_reported(built: Chain, seq: int, kind: str) -> None:
    built.log.append("ingest_batch", payload(31))
    path, index = built.locate(seq)
    line = built.lines(path)[index]
    built.replace_line(seq, line[:-3] + b"\x80" + line[-2:])
    assert_damage(built.verify(), kind, seq, str(path.relative_to(built.root)))


def test_a_checkpoint_ts_turned_into_a_huge_exponent_is_unreadable(built: Chain) -> None:
    path = built.checkpoint(10)
    data = path.read_bytes()
    position = data.index(b'"ts": ') + len(b'"ts": ') + 1
    path.write_bytes(data[:position] + b"e" + data[position + 1 :])  # "ts": 1e7953...: infinity
    assert_damage(built.verify(), "bad_checkpoint", None, checkpoint_key(10))


def test_a_payload_with_a_non_list_refs_field_does_not_break_verification(built: Chain) -> None:
    built.log.append("ingest_batch", {"id": "batch-x", "refs": 3})
    report = built.verify()
    assert report.ok and report.objects == 0


def test_an_edited_ref_to_a_swapped_manifest_is_content_edited(built: Chain) -> None:
    manifest = json.dumps({"objects": []}).encode()
    assert built.store.put_if_absent("snapshots/s1.json", manifest)
    ref = {"key": "snapshots/s1.json", "sha256": sha256(manifest), "lists_objects": True}
    built.log.append("snapshot", {"id": "snapshot-1", "refs": [ref]})
    swapped = b"not a manifest"
    (built.root / "snapshots/s1.json").write_bytes(swapped)
    path = built.segment(31)
    path.write_bytes(path.read_bytes().replace(sha256(manifest).encode(), sha256(swapped).encode()))
    assert_damage(built.verify(), "content_edited", 31, chain.segment_key(31))


def test_a_manifest_that_is_not_json_is_object_altered(built: Chain) -> None:
    """A lists_objects ref whose bytes still match but do not parse: reported, not a crash."""
    manifest = b"objects: a, b"
    assert built.store.put_if_absent("snapshots/s1.json", manifest)
    ref = {"key": "snapshots/s1.json", "sha256": sha256(manifest), "lists_objects": True}
    built.log.append("snapshot", {"id": "snapshot-1", "refs": [ref]})
    report = built.verify()
    assert_damage(report, "object_altered", 31, chain.segment_key(31))
    assert "not a manifest" in report.first_problem.detail


def test_verification_from_a_trusted_checkpoint_catches_a_truncation_without_its_file(
    built: Chain,
) -> None:
    trusted = (30, built.verify().head_hash)
    for seq in (28, 29, 30):
        built.segment(seq).unlink()
    built.checkpoint(30).unlink()  # possible on a local store
    report = built.verify(trusted=trusted)
    assert_damage(report, "truncated", 30)
    assert report.head_seq == 27


def test_whatever_a_secret_named_key_holds_is_redacted() -> None:
    assert chain.redact({"password": ["hunter2"]}) == {"password": chain.REDACTED}
    assert chain.redact({"password": {"value": "hunter2"}}) == {"password": chain.REDACTED}
    assert chain.redact({"max_tokens": 100, "token": None}) == {"max_tokens": 100, "token": None}


# --- incremental verification ---------------------------------------------------------------


def test_verification_from_a_trusted_checkpoint_covers_only_the_new_entries(built: Chain) -> None:
    full = built.verify()
    assert full.ok and full.newest_checkpoint == 30
    trusted = (full.newest_checkpoint, full.head_hash)
    for i in range(31, 36):
        built.log.append("ingest_batch", payload(i))

    report = built.verify(trusted=trusted)
    assert report.ok, [p.describe() for p in report.problems]
    assert report.start_seq == 30 and report.start_seq > 1 and report.mode == "from checkpoint 30"
    assert report.entries == 6 < built.verify().entries == 35
    assert report.head_seq == 35

    path, index = built.locate(33)
    line = built.lines(path)[index]
    built.replace_line(33, line.replace(b'"rows":133', b'"rows":134'))
    assert_damage(built.verify(trusted=trusted), "content_edited", 33, chain.segment_key(33))
    built.replace_line(33, line)
    assert built.verify(trusted=trusted).ok

    for seq in range(29, 36):
        built.segment(seq).unlink()
    report = built.verify(trusted=trusted)
    assert_damage(report, "truncated", 30)
    assert ("truncated", 30, checkpoint_key(30)) in [(p.kind, p.seq, p.key) for p in report.problems]
    assert report.head_seq == 28


def test_verification_from_a_trusted_checkpoint_catches_a_rewrite_of_that_entry(built: Chain) -> None:
    full = built.verify()
    trusted = (22, built.entry(22).hash)
    rewrite_from(built, 23, {"rows": 0})  # leaves 22 alone: only checkpoint 30 sees it
    assert_damage(built.verify(trusted=trusted), "rewritten", 30, checkpoint_key(30))
    rewrite_from(built, 21, {"rows": 0})
    report = built.verify(trusted=trusted)
    assert report.start_seq == MULTI_FIRST and not report.ok
    assert ("rewritten", 22) in [(p.kind, p.seq) for p in report.problems]
    assert full.ok


# --- redaction ------------------------------------------------------------------------------

# Built at run time so no key-shaped literal sits in the repository for secret scanners.
PEM = "-----BEGIN " + "PRIVATE KEY-----\n" + "A" * 64 + "\n-----END " + "PRIVATE KEY-----"
AWS_KEY_ID = "AKIA" + "IOSFODNN7EXAMPLE"  # AWS's documented example id
EXCHANGE_KEY = "".join(random.Random(7).choices(string.ascii_letters + string.digits, k=64))
HEX_ID = hashlib.sha256(b"an ingest batch").hexdigest()


def test_secrets_are_redacted_in_the_committed_entry_and_ids_are_kept(tmp_path: Path) -> None:
    assert len(EXCHANGE_KEY) == 64 and len(HEX_ID) == 64
    assert all(any(test(c) for c in EXCHANGE_KEY) for test in (str.isupper, str.islower, str.isdigit))
    store = LocalObjectStore(tmp_path)
    AuditLog(store, "t").append(
        "config_change",
        {
            "id": HEX_ID,
            "api_key": "short",
            "secret": "s3cr3t",
            "password": "hunter2",
            "token": "abc",
            "note": f"loaded {PEM}",
            "aws": AWS_KEY_ID,
            "exchange": EXCHANGE_KEY,
            "venue": {"name": "binance", "apiKey": "x", "passphrase": ["a", "b"]},
            "hashes": [HEX_ID, HEX_ID.upper()],
            "rows": 100,
        },
    )
    (stored,) = chain.iter_entries(store)
    redacted = chain.REDACTED
    assert stored.payload == {
        "id": HEX_ID,
        "api_key": redacted,
        "secret": redacted,
        "password": redacted,
        "token": redacted,
        "note": redacted,
        "aws": redacted,
        "exchange": redacted,
        "venue": {"name": "binance", "apiKey": redacted, "passphrase": redacted},
        "hashes": [HEX_ID, HEX_ID.upper()],
        "rows": 100,
    }
    raw = b"".join((tmp_path / k).read_bytes() for k in chain.segment_keys(store))
    for secret in ("hunter2", "s3cr3t", AWS_KEY_ID, EXCHANGE_KEY, "BEGIN PRIVATE KEY"):
        assert secret.encode() not in raw
    assert verify_chain(store, {}).ok  # the hash covers the redacted payload


# --- concurrent writers ---------------------------------------------------------------------


def test_two_writers_appending_concurrently_lose_nothing(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    logs = [AuditLog(store, f"writer-{w}") for w in range(2)]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            start.wait()
            for i in range(100):
                logs[w].append("ingest_batch", {"id": f"w{w}-{i:03d}", "writer": w, "i": i})
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)

    entries = list(chain.iter_entries(store))
    assert [e.seq for e in entries] == list(range(1, 201))
    assert sorted((e.payload["writer"], e.payload["i"]) for e in entries) == [
        (w, i) for w in range(2) for i in range(100)
    ]
    claimed = [e.seq for log in logs for e in log.written]
    assert sorted(claimed) == list(range(1, 201))  # each seq claimed by exactly one writer
    assert [e.seq for e in logs[0].written] == sorted(e.seq for e in logs[0].written)
    assert {e.hash for log in logs for e in log.written} == {e.hash for e in entries}
    report = verify_chain(store, {})
    assert report.ok and report.entries == 200 and report.segments == 200


# --- the stored line ------------------------------------------------------------------------


def test_entry_parse_round_trips_a_built_line() -> None:
    entry = Entry.build(7, "ab" * 32, T0, "flow-run:x y", "order", {"note": "a b  c é", "qty": 1.5})
    parsed = Entry.parse(entry.line)
    assert parsed == entry and parsed.line == entry.line
    assert parsed.hash == chain.entry_hash(7, "ab" * 32, parsed.body)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    seq=st.integers(1, 10**12),
    ts=st.integers(0, 2**45),
    actor=st.text(min_size=1, max_size=20),
    kind=st.sampled_from(chain.KINDS),
    body=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
)
def test_entry_parse_round_trips_any_built_line(seq, ts, actor, kind, body) -> None:
    entry = Entry.build(seq, hashlib.sha256(b"%d" % seq).hexdigest(), ts, actor, kind, body)
    assert Entry.parse(entry.line) == entry
    assert entry.line.count(b"\n") == 1 and entry.line.endswith(b"\n")


def test_a_copied_chain_verifies_the_same(built: Chain, tmp_path: Path) -> None:
    """Verification reads only the store: a byte-for-byte copy verifies to the same head."""
    copy = tmp_path / "copy"
    shutil.copytree(built.root, copy)
    report = verify_chain(LocalObjectStore(copy), built.trusted)
    assert report.ok and (report.head_seq, report.head_hash) == (30, built.verify().head_hash)
