"""Finding the chain's head without listing it, and when checkpoints are signed."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tradeflow.audit.chain import AuditLog, segment_key
from tradeflow.audit.signing import StoreCheckpointer
from tradeflow.audit.verify import verify_chain
from tradeflow.storage.objectstore import LocalObjectStore


class CountingStore(LocalObjectStore):
    """A real local store that counts how often the whole chain is listed."""

    listings = 0

    def list(self, prefix: str = ""):
        type(self).listings += 1
        return super().list(prefix)


def test_a_new_writer_finds_the_head_from_the_local_hint_without_listing(tmp_path):
    store = CountingStore(tmp_path / "store")
    hints = tmp_path / "data" / "heads.json"
    first = AuditLog(store, "writer-1", hints=hints)
    for i in range(20):
        first.append("ingest_batch", {"id": f"batch-{i}"})
    assert json.loads(hints.read_text()) == {store.describe(): segment_key(20)}
    CountingStore.listings = 0
    second = AuditLog(store, "writer-2", hints=hints)
    entry = second.append("validation", {"id": "validation-1"})
    assert entry.seq == 21 and entry.prev_hash == first.head().hash
    assert CountingStore.listings == 0


def test_a_stale_hint_is_followed_forward_and_a_missing_one_falls_back_to_listing(tmp_path):
    store = CountingStore(tmp_path / "store")
    hints = tmp_path / "heads.json"
    AuditLog(store, "writer-1", hints=hints).append("ingest_batch", {"id": "a"})
    stale = hints.read_text()
    other = AuditLog(store, "elsewhere")  # another machine: no hint file of its own here
    other.append_many([("ingest_batch", {"id": f"b{i}"}) for i in range(3)])
    other.append("ingest_batch", {"id": "c"})
    hints.write_text(stale)  # this machine last saw segment 1
    CountingStore.listings = 0
    assert AuditLog(store, "writer-2", hints=hints).append("snapshot", {"id": "s"}).seq == 6
    assert CountingStore.listings == 0
    hints.write_text(json.dumps({store.describe(): segment_key(99)}))  # a hint to nowhere
    assert AuditLog(store, "writer-3", hints=hints).append("snapshot", {"id": "t"}).seq == 7
    assert CountingStore.listings == 1
    assert verify_chain(store, {}).ok


def test_checkpoints_are_signed_when_the_chain_passes_a_multiple_of_n_whoever_writes(tmp_path):
    store = LocalObjectStore(tmp_path / "store")
    key = Ed25519PrivateKey.generate()

    def writer(name: str) -> AuditLog:
        return AuditLog(store, name, checkpointer=StoreCheckpointer(store, key), checkpoint_every=5)

    assert writer("a").append_many([("fill", {"id": str(i)}) for i in range(4)]) and not list(
        store.list("audit/checkpoints/")
    )
    fresh = writer("b")
    fresh.append("fill", {"id": "5"})  # the chain reaches 5: one checkpoint, though "b" wrote one entry
    fresh.append("fill", {"id": "6"})
    writer("c").append_many([("fill", {"id": str(i)}) for i in range(7, 13)])  # passes 10
    assert [k.rsplit("/", 1)[-1] for k in store.list("audit/checkpoints/")] == [
        "000000000005.json",
        "000000000012.json",
    ]
