"""Canonical JSON: the one encoding every tradeflow hash is taken over.

Sorted keys, no whitespace, ASCII only, so the same content always gives the same bytes, and so
the same SHA-256, on any machine.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def canonical_json(payload: Mapping[str, Any]) -> bytes:
    """Return the canonical JSON encoding of ``payload``."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def content_hash(payload: Mapping[str, Any]) -> str:
    """Return the SHA-256 (hex) of the canonical JSON of ``payload``."""
    return hashlib.sha256(canonical_json(payload)).hexdigest()
