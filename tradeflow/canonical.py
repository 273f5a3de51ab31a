"""Canonical JSON: the one encoding every tradeflow hash is taken over.

Sorted keys, no whitespace, ASCII only, so the same content always gives the same bytes, and so
the same SHA-256, on any machine.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any


def canonical_json(payload: Mapping[str, Any]) -> bytes:
    """Return the canonical JSON encoding of ``payload``."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def json_safe(value: Any) -> Any:
    """Return ``value`` as strict JSON can hold it: NaN and infinities as None, numpy scalars as Python."""
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()  # a numpy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def content_hash(payload: Mapping[str, Any]) -> str:
    """Return the SHA-256 (hex) of the canonical JSON of ``payload``."""
    return hashlib.sha256(canonical_json(payload)).hexdigest()
