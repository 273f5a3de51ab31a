"""The audit chain on S3 (moto's server, over real HTTP): tamper evidence and Object Lock.

The chain lives in an ordinary bucket; its checkpoints live in a bucket created with Object
Lock, written in compliance mode, so a checkpoint version can be neither deleted nor replaced.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

pytest.importorskip("moto")
boto3 = pytest.importorskip("boto3")

from botocore.exceptions import ClientError  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from tradeflow.audit import chain, signing  # noqa: E402
from tradeflow.audit.chain import AuditLog, Entry  # noqa: E402
from tradeflow.audit.signing import StoreCheckpointer, checkpoint_key  # noqa: E402
from tradeflow.audit.verify import verify_chain  # noqa: E402
from tradeflow.storage.objectstore import open_store  # noqa: E402

T0 = 1_700_000_000_000


class RecordingStore:
    """A real store that remembers what each create-only put returned."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.puts: list[tuple[str, bool]] = []

    def put_if_absent(self, key: str, data: bytes) -> bool:
        written = self.inner.put_if_absent(key, data)
        self.puts.append((key, written))
        return written

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


@pytest.fixture
def s3(moto_server: str):
    return boto3.client("s3", endpoint_url=moto_server)


@pytest.fixture
def lock_bucket(s3) -> str:
    name = f"tf-lock-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def keypair() -> tuple[Ed25519PrivateKey, dict]:
    key = Ed25519PrivateKey.generate()
    return key, signing.trusted_keys([(signing.public_key_text(key.public_key()), "test")])


def write_chain(store, key, *, checkpoint_store=None, prefix: str = chain.CHECKPOINT_PREFIX) -> AuditLog:
    """Entries 1..6 one per segment, 7..10 in one segment, 11..12 one per segment; checkpoints 5, 10, 12."""
    ticks = iter(range(T0, T0 + 10**9, 1000))
    log = AuditLog(
        store,
        "flow-run:s3",
        checkpointer=StoreCheckpointer(checkpoint_store or store, key, prefix=prefix),
        checkpoint_every=5,
        clock=lambda: next(ticks),
    )
    for i in range(1, 7):
        log.append("ingest_batch", {"id": f"batch-{i:03d}", "rows": 100 + i})
    log.append_many([("validation", {"id": f"batch-{i:03d}", "rows": 100 + i}) for i in range(7, 11)])
    for i in range(11, 13):
        log.append("ingest_batch", {"id": f"batch-{i:03d}", "rows": 100 + i})
    log.checkpoint()
    return log


def test_a_chain_on_s3_verifies_and_an_edited_payload_is_caught(moto_server, s3_bucket, s3) -> None:
    store = open_store(f"s3://{s3_bucket}/lake", s3_endpoint_url=moto_server)
    key, trusted = keypair()
    log = write_chain(store, key)
    assert log.checkpoints == [checkpoint_key(s) for s in (5, 10, 12)]

    report = verify_chain(store, trusted)
    assert report.ok, [p.describe() for p in report.problems]
    assert (report.entries, report.segments, report.checkpoints) == (12, 9, 3)
    assert (report.head_seq, report.head_hash) == (12, log.head(refresh=True).hash)
    assert report.store == f"s3://{s3_bucket}/lake"

    segment = f"lake/{chain.segment_key(4)}"
    original = s3.get_object(Bucket=s3_bucket, Key=segment)["Body"].read()
    edited = original.replace(b'"rows":104', b'"rows":999')
    assert edited != original
    s3.put_object(Bucket=s3_bucket, Key=segment, Body=edited)  # an unconditional overwrite
    report = verify_chain(store, trusted)
    assert not report.ok
    assert (report.first_problem.kind, report.first_problem.seq) == ("content_edited", 4)
    assert report.first_problem.key == chain.segment_key(4)


def test_damage_inside_a_multi_entry_segment_and_a_cut_tail_are_caught_on_s3(
    moto_server, s3_bucket, s3
) -> None:
    store = open_store(f"s3://{s3_bucket}/lake", s3_endpoint_url=moto_server)
    key, trusted = keypair()
    write_chain(store, key)

    segment = f"lake/{chain.segment_key(7)}"
    original = s3.get_object(Bucket=s3_bucket, Key=segment)["Body"].read()
    lines = original.splitlines(keepends=True)
    lines[1], lines[2] = lines[2], lines[1]  # entries 8 and 9 swapped
    s3.put_object(Bucket=s3_bucket, Key=segment, Body=b"".join(lines))
    report = verify_chain(store, trusted)
    assert (report.first_problem.kind, report.first_problem.seq) == ("out_of_order", 8)

    s3.put_object(Bucket=s3_bucket, Key=segment, Body=original)
    assert verify_chain(store, trusted).ok
    for seq in (11, 12):
        s3.delete_object(Bucket=s3_bucket, Key=f"lake/{chain.segment_key(seq)}")
    report = verify_chain(store, trusted)
    assert (report.first_problem.kind, report.first_problem.seq) == ("truncated", 12)
    assert report.head_seq == 10


def test_checkpoints_in_an_object_lock_bucket_cannot_be_deleted_or_replaced(
    moto_server, s3_bucket, lock_bucket, s3
) -> None:
    chain_store = open_store(f"s3://{s3_bucket}/lake", s3_endpoint_url=moto_server)
    lock_store = open_store(
        f"s3://{lock_bucket}/checkpoints", s3_endpoint_url=moto_server, object_lock_days=1
    )
    key, trusted = keypair()
    log = write_chain(chain_store, key, checkpoint_store=lock_store, prefix="")
    assert log.checkpoints == ["000000000005.json", "000000000010.json", "000000000012.json"]
    assert list(lock_store.list()) == log.checkpoints
    assert not list(chain_store.list(chain.CHECKPOINT_PREFIX))  # none landed beside the chain

    report = verify_chain(chain_store, trusted, checkpoint_store=lock_store, checkpoint_prefix="")
    assert report.ok and report.checkpoints == 3 and report.newest_checkpoint == 12
    assert verify_chain(chain_store, trusted).checkpoints == 0  # they really are elsewhere

    locked = "checkpoints/000000000010.json"
    head = s3.head_object(Bucket=lock_bucket, Key=locked)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(hours=23)
    version, original = head["VersionId"], lock_store.get("000000000010.json")

    with pytest.raises(ClientError) as denied:
        s3.delete_object(Bucket=lock_bucket, Key=locked, VersionId=version)
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert lock_store.get("000000000010.json") == original

    assert lock_store.put_if_absent("000000000010.json", b"{}") is False  # If-None-Match: *
    assert lock_store.get("000000000010.json") == original
    assert StoreCheckpointer(lock_store, key, prefix="").write(10, "0" * 64) == "000000000010.json"
    assert lock_store.get("000000000010.json") == original  # a checkpoint is never replaced

    # An intruder overwrites without the condition: S3 keeps a new version on top ...
    forged = signing.sign_checkpoint(Ed25519PrivateKey.generate(), 10, "f" * 64)
    put = s3.put_object(Bucket=lock_bucket, Key=locked, Body=json.dumps(forged.to_dict()).encode())
    assert put["VersionId"] != version
    # ... the locked original still reads back unchanged ...
    kept = s3.get_object(Bucket=lock_bucket, Key=locked, VersionId=version)["Body"].read()
    assert kept == original
    # ... and verification, reading the newest version, refuses the forgery.
    report = verify_chain(chain_store, trusted, checkpoint_store=lock_store, checkpoint_prefix="")
    assert (report.first_problem.kind, report.first_problem.seq) == ("bad_signature", 10)
    assert "not a trusted key" in report.first_problem.detail


def chain_with_cut_tail(moto_server, s3_bucket, lock_bucket, s3):
    """A chain on S3 with checkpoints in the Object Lock bucket, its last two entries deleted."""
    chain_store = open_store(f"s3://{s3_bucket}/lake", s3_endpoint_url=moto_server)
    lock_store = open_store(
        f"s3://{lock_bucket}/checkpoints", s3_endpoint_url=moto_server, object_lock_days=1
    )
    key, trusted = keypair()
    write_chain(chain_store, key, checkpoint_store=lock_store, prefix="")
    for seq in (11, 12):
        s3.delete_object(Bucket=s3_bucket, Key=f"lake/{chain.segment_key(seq)}")
    return chain_store, lock_store, trusted


def test_a_cut_tail_is_caught_by_a_locked_checkpoint(moto_server, s3_bucket, lock_bucket, s3) -> None:
    chain_store, lock_store, trusted = chain_with_cut_tail(moto_server, s3_bucket, lock_bucket, s3)
    version = s3.head_object(Bucket=lock_bucket, Key="checkpoints/000000000012.json")["VersionId"]
    with pytest.raises(ClientError):
        s3.delete_object(Bucket=lock_bucket, Key="checkpoints/000000000012.json", VersionId=version)
    report = verify_chain(chain_store, trusted, checkpoint_store=lock_store, checkpoint_prefix="")
    assert (report.first_problem.kind, report.first_problem.seq) == ("truncated", 12)
    assert report.first_problem.key == "000000000012.json"


def test_a_delete_marker_does_not_hide_a_locked_checkpoint(moto_server, s3_bucket, lock_bucket, s3) -> None:
    chain_store, lock_store, trusted = chain_with_cut_tail(moto_server, s3_bucket, lock_bucket, s3)
    marker = s3.delete_object(Bucket=lock_bucket, Key="checkpoints/000000000012.json")  # no VersionId
    assert marker["DeleteMarker"] is True
    versions = s3.list_object_versions(Bucket=lock_bucket, Prefix="checkpoints/000000000012.json")
    assert len(versions["Versions"]) == 1  # the locked checkpoint is still there ...
    report = verify_chain(chain_store, trusted, checkpoint_store=lock_store, checkpoint_prefix="")
    assert not report.ok  # ... and verification still reads it, so the cut tail is caught
    assert (report.first_problem.kind, report.first_problem.seq) == ("truncated", 12)
    assert ("checkpoint_deleted", 12) in [(p.kind, p.seq) for p in report.problems]


def test_put_if_absent_of_an_existing_segment_returns_false_on_s3(moto_server, s3_bucket) -> None:
    store = open_store(f"s3://{s3_bucket}/lake", s3_endpoint_url=moto_server)
    first = AuditLog(store, "writer-a").append("ingest_batch", {"id": "a"})
    forged = Entry.build(1, chain.GENESIS_HASH, T0, "writer-b", "ingest_batch", {"id": "b"})
    assert store.put_if_absent(chain.segment_key(1), forged.line) is False
    assert store.get(chain.segment_key(1)) == first.line
    assert verify_chain(store, {}).ok


def test_a_racing_second_writer_loses_cleanly_and_renumbers(moto_server, s3_bucket) -> None:
    url = f"s3://{s3_bucket}/lake"
    base = AuditLog(open_store(url, s3_endpoint_url=moto_server), "setup")
    for i in range(3):
        base.append("ingest_batch", {"id": f"base-{i}"})
    store_b = RecordingStore(open_store(url, s3_endpoint_url=moto_server))
    writer_a = AuditLog(open_store(url, s3_endpoint_url=moto_server), "writer-a")
    writer_b = AuditLog(store_b, "writer-b")
    assert writer_a.head().seq == writer_b.head().seq == 3  # both read the same head

    won = writer_a.append("order", {"id": "order-a"})
    late = writer_b.append_many([("fill", {"id": f"fill-b{i}"}) for i in range(3)])

    assert won.seq == 4
    assert store_b.puts == [(chain.segment_key(4), False), (chain.segment_key(5), True)]
    assert [e.seq for e in late] == [5, 6, 7]
    assert late[0].prev_hash == won.hash  # renumbered on top of the winner's entry
    entries = list(chain.iter_entries(store_b))
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6, 7]
    assert [e.payload["id"] for e in entries[3:]] == ["order-a", "fill-b0", "fill-b1", "fill-b2"]
    assert [e.actor for e in entries[3:]] == ["writer-a"] + ["writer-b"] * 3
    report = verify_chain(store_b, {})
    assert report.ok and report.entries == 7 and report.head_hash == late[-1].hash
