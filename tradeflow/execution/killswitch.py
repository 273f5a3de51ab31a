"""The kill switch: a file whose presence halts trading.

A file is the one mechanism every operator tool can reach: ``tradeflow kill-switch on`` writes
it, ``touch`` works in an emergency, the Prefect flow's ``kill_switch`` parameter and its
watched Prefect variable write it, and the running session polls it. While it exists the
session is HALTED: no new entries, open orders cancelled. Removing it does not resume trading
by itself; the session goes back to ACTIVE only when the file is gone *and* the protections
allow it (a drawdown halt stays).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class KillSwitchState:
    """Whether the switch is engaged, and by whom and why."""

    engaged: bool
    reason: str = ""
    source: str = ""
    time_ms: int = 0


class KillSwitch:
    """A kill switch backed by one file."""

    def __init__(self, path: Path) -> None:
        """Use ``path`` as the switch (its folder is created when engaged)."""
        self.path = path

    def state(self) -> KillSwitchState:
        """Read the switch; an unreadable or free-form file still counts as engaged."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return KillSwitchState(False)
        except OSError as error:
            return KillSwitchState(True, f"unreadable kill switch file ({error})", "file")
        try:
            data: dict[str, Any] = json.loads(text)
            return KillSwitchState(
                True,
                str(data.get("reason", "")),
                str(data.get("source", "file")),
                int(data.get("time_ms", 0)),
            )
        except (ValueError, TypeError, AttributeError):
            return KillSwitchState(True, text.strip()[:200] or "kill switch file present", "file")

    @property
    def engaged(self) -> bool:
        """True while the file exists."""
        return self.path.exists()

    def engage(self, reason: str, source: str) -> KillSwitchState:
        """Engage the switch (atomically: write a temporary file, then rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = KillSwitchState(True, reason, source, time.time_ns() // 1_000_000)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(state.__dict__))
        temporary.replace(self.path)
        return state

    def release(self) -> bool:
        """Release the switch; False if it was not engaged."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True
