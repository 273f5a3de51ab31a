"""A small thread-safe LRU cache for generated blocks of data."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """Keep the most recently used values, computing missing ones on demand."""

    def __init__(self, maxsize: int) -> None:
        """Create an empty cache holding at most ``maxsize`` values."""
        self.maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_create(self, key: K, factory: Callable[[], V]) -> V:
        """Return the cached value for ``key``, computing and storing it if absent.

        The factory runs outside the lock: values are deterministic, so a rare duplicate
        computation by two threads is harmless and cheaper than serialising all generation.
        """
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
                return value
        value = factory()
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
        return value

    def __len__(self) -> int:
        """Return how many values are cached."""
        return len(self._data)

    def clear(self) -> None:
        """Drop every cached value."""
        with self._lock:
            self._data.clear()
