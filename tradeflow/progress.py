"""Progress events from long work, for whoever is listening (the CLI's progress bars).

Core code emits events; nothing listens by default, so emitting costs nothing in a Prefect
worker. The CLI subscribes a renderer for the duration of a command. Listeners are called from
task threads and must be thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """``done`` of ``total`` units of the work named ``key`` are finished."""

    key: str
    done: int
    total: int
    finished: bool = False


Listener = Callable[[ProgressEvent], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


def emit(event: ProgressEvent) -> None:
    """Send ``event`` to every listener."""
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(event)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Deliver progress events to ``listener`` inside the ``with`` block."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)
