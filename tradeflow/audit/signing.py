"""Signed checkpoints: Ed25519 signatures over ``(seq, head hash)``, stored create-only.

A checkpoint says "the chain had this hash at this seq", signed by a key the chain's writers
hold and its readers trust. Rewriting history (editing and re-hashing every later entry) or
cutting the tail off then shows: the chain no longer reaches a signed checkpoint. Checkpoints
live under their own prefix, on S3 in a bucket with Object Lock, so they cannot be deleted or
replaced within their retention.

Keys: a private key is 32 raw bytes, written as base64 (or as a PKCS#8 PEM block); a public key
likewise. A key's id is the first 16 hex digits of the SHA-256 of its raw public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tradeflow.audit.chain import CHECKPOINT_PREFIX, SEGMENT_DIGITS
from tradeflow.canonical import canonical_json
from tradeflow.storage.objectstore import ObjectStore

CHECKPOINT_DOMAIN = b"tradeflow.audit.checkpoint.v1\x00"


class SigningKeyError(ValueError):
    """A signing or public key is missing or cannot be read."""


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    """Return the id of a public key: 16 hex digits of the SHA-256 of its raw bytes."""
    return hashlib.sha256(_raw_public(public)).hexdigest()[:16]


def public_key_text(public: Ed25519PublicKey) -> str:
    """Return a public key as base64 of its 32 raw bytes (what ``audit.public_keys`` takes)."""
    return base64.b64encode(_raw_public(public)).decode()


def private_key_text(key: Ed25519PrivateKey) -> str:
    """Return a private key as base64 of its 32 raw bytes (what the signing-key variable takes)."""
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode()


def load_private_key(text: str, source: str) -> Ed25519PrivateKey:
    """Return the Ed25519 private key in ``text`` (base64 of 32 raw bytes, or PKCS#8 PEM).

    Raises:
        SigningKeyError: naming ``source`` (where the text came from) and what was wrong.
    """
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise SigningKeyError(f"{source}: the PEM key is not an Ed25519 key")
            return key
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError, binascii.Error) as error:
        raise SigningKeyError(
            f"{source}: not an Ed25519 private key (expected base64 of 32 bytes or a PEM block): {error}"
        ) from None
    if len(raw) != 32:
        raise SigningKeyError(f"{source}: an Ed25519 private key is 32 bytes, this decodes to {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def load_public_key(text: str, source: str) -> Ed25519PublicKey:
    """Return the Ed25519 public key in ``text`` (base64 of 32 raw bytes).

    Raises:
        SigningKeyError: naming ``source`` and what was wrong.
    """
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (ValueError, binascii.Error) as error:
        raise SigningKeyError(f"{source}: not base64: {error}") from None
    if len(raw) != 32:
        raise SigningKeyError(f"{source}: an Ed25519 public key is 32 bytes, this decodes to {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def local_key(path: Path) -> Ed25519PrivateKey:
    """Return the embedded default's signing key at ``path``, generating it (mode 0600) if missing.

    The public key is written beside it as ``<path>.pub`` so ``audit verify`` trusts it.
    """
    if path.is_file():
        return load_private_key(path.read_text(), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(private_key_text(key) + "\n")
    Path(f"{path}.pub").write_text(public_key_text(key.public_key()) + "\n")
    return key


def trusted_keys(texts: Iterable[tuple[str, str]]) -> dict[str, Ed25519PublicKey]:
    """Return public keys by id from ``(text, source)`` pairs."""
    keys = {}
    for text, source in texts:
        public = load_public_key(text, source)
        keys[key_id(public)] = public
    return keys


def checkpoint_message(seq: int, head_hash: str, ts: int, signer: str) -> bytes:
    """Return the bytes a checkpoint's signature covers (domain-separated canonical JSON)."""
    return CHECKPOINT_DOMAIN + canonical_json(
        {"head_hash": head_hash, "key_id": signer, "seq": seq, "ts": ts}
    )


def checkpoint_key(seq: int, prefix: str = CHECKPOINT_PREFIX) -> str:
    """Return the object key of the checkpoint at ``seq``."""
    return f"{prefix}{seq:0{SEGMENT_DIGITS}d}.json"


@dataclass(frozen=True)
class Checkpoint:
    """A signed ``(seq, head hash)``."""

    seq: int
    head_hash: str
    ts: int
    key_id: str
    signature: str  # base64

    def to_dict(self) -> dict[str, Any]:
        """Return the stored form."""
        return {
            "seq": self.seq,
            "head_hash": self.head_hash,
            "ts": self.ts,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        """Return the checkpoint stored in ``data``.

        Raises:
            ValueError: if it is not a checkpoint.
        """
        fields = json.loads(data)
        return cls(
            seq=int(fields["seq"]),
            head_hash=str(fields["head_hash"]),
            ts=int(fields["ts"]),
            key_id=str(fields["key_id"]),
            signature=str(fields["signature"]),
        )

    def problem(self, keys: Mapping[str, Ed25519PublicKey]) -> str | None:
        """Return why this checkpoint's signature is not good under ``keys``, or None if it is."""
        public = keys.get(self.key_id)
        if public is None:
            return f"signed by key {self.key_id}, which is not a trusted key"
        try:
            signature = base64.b64decode(self.signature, validate=True)
            public.verify(signature, checkpoint_message(self.seq, self.head_hash, self.ts, self.key_id))
        except (InvalidSignature, ValueError, binascii.Error):
            return f"the signature does not verify under key {self.key_id}"
        return None


def sign_checkpoint(key: Ed25519PrivateKey, seq: int, head_hash: str, ts: int | None = None) -> Checkpoint:
    """Return a checkpoint of ``(seq, head_hash)`` signed with ``key``."""
    ts = int(time.time() * 1000) if ts is None else ts
    signer = key_id(key.public_key())
    signature = key.sign(checkpoint_message(seq, head_hash, ts, signer))
    return Checkpoint(seq, head_hash, ts, signer, base64.b64encode(signature).decode())


class StoreCheckpointer:
    """Sign checkpoints with one key and write them create-only under a prefix of a store."""

    def __init__(self, store: ObjectStore, key: Ed25519PrivateKey, prefix: str = CHECKPOINT_PREFIX) -> None:
        """Write to ``store`` under ``prefix`` (on S3, a bucket with Object Lock)."""
        self.store, self.key, self.prefix = store, key, prefix

    def write(self, seq: int, head_hash: str) -> str:
        """Write the checkpoint of ``(seq, head_hash)``; return its key.

        A checkpoint at the same seq may already exist (another writer's run ended at the same
        head); it is kept, since checkpoints are never replaced.
        """
        checkpoint = sign_checkpoint(self.key, seq, head_hash)
        key = checkpoint_key(seq, self.prefix)
        self.store.put_if_absent(key, json.dumps(checkpoint.to_dict(), sort_keys=True).encode())
        return key
