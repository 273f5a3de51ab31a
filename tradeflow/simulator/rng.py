"""Counter-based randomness: every random number is a pure function of its key.

Nothing in the simulator keeps a stateful RNG across calls, so any candle, fault or trade can be
recomputed in isolation, in any order, in any process, and comes out identical.
"""

from __future__ import annotations

import hashlib
import math
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

_STD_NORMAL = NormalDist()
_MASK64 = (1 << 64) - 1


def key128(*parts: object) -> int:
    """Derive a 128-bit key from the parts' text form.

    Args:
        *parts: Anything with a stable ``str``: seeds, symbols, stream tags, indices.

    Returns:
        An integer in [0, 2**128).
    """
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=16).digest(), "little")


def generator(*parts: object) -> np.random.Generator:
    """Return a Philox generator keyed by the parts, starting at counter 0."""
    return np.random.Generator(np.random.Philox(key=key128(*parts)))


def unit(*parts: object) -> float:
    """Return a uniform number in the open interval (0, 1) keyed by the parts."""
    return ((key128(*parts) >> 64) + 0.5) / 2.0**64


def normal(*parts: object) -> float:
    """Return a standard normal number keyed by the parts."""
    return _STD_NORMAL.inv_cdf(unit(*parts))


def _splitmix64(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    # Wrapping uint64 arithmetic is the point here; numpy wraps arrays silently.
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hashed_units(base_key: int, counters: NDArray[np.int64]) -> NDArray[np.float64]:
    """Return one uniform in (0, 1) per counter, vectorised, keyed by ``base_key``.

    Args:
        base_key: A key from :func:`key128`; only its low 64 bits are used.
        counters: Integer counters, e.g. second indices.

    Returns:
        Uniforms with the same shape as ``counters``.
    """
    mixed = _splitmix64(counters.astype(np.uint64) ^ np.uint64(base_key & _MASK64))
    mixed = _splitmix64(mixed)
    return ((mixed >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def hashed_normals(base_key: int, counters: NDArray[np.int64]) -> NDArray[np.float64]:
    """Return one standard normal per counter (Box-Muller on two hashed uniforms)."""
    u1 = hashed_units(base_key, counters)
    u2 = hashed_units(base_key ^ 0x5DEECE66D, counters)
    result: NDArray[np.float64] = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)
    return result
