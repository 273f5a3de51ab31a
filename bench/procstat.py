"""Linux ``/proc`` readings: process trees, CPU seconds and peak RSS (VmHWM).

Used to tell which process a benchmark's time and memory went to: the client (this process or
the CLI), the simulator child, or Prefect's API server child.
"""

from __future__ import annotations

import os
import resource
import signal
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name sits in parentheses and may hold spaces: split after it.
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def parent_pids() -> dict[int, int]:
    """Return pid to parent pid for every visible process."""
    parents = {}
    for entry in os.listdir("/proc"):
        fields = _stat_fields(int(entry)) if entry.isdigit() else None
        if fields is not None:
            parents[int(entry)] = int(fields[1])
    return parents


def descendants(root: int) -> list[int]:
    """Return every process below ``root`` (children, grandchildren, ...)."""
    parents = parent_pids()
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        found += children
        frontier += children
    return found


def command(pid: int, limit: int = 100) -> str:
    """Return a process's command line, shortened (the executable without its folder)."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return f"pid {pid}"
    text = " ".join(Path(w).name if i == 0 else w for i, w in enumerate(words) if w)
    return text[:limit]


def role(pid: int) -> str:
    """Return what a process is in a tradeflow run: simulator, Prefect server, CLI, or its command."""
    text = command(pid, limit=400)
    if text.split(" ", 1)[0] == "time":
        return "time wrapper"
    if "tradeflow.simulator" in text:
        return "simulator"
    if "uvicorn" in text or "prefect server" in text:
        return "prefect server"
    if "tradeflow.cli" in text:
        return "pipeline (CLI)"
    return text[:48]


def cpu_seconds(pid: int) -> float | None:
    """Return user + system CPU seconds of a process (all its threads), or None if it is gone."""
    fields = _stat_fields(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / _TICKS


def peak_rss_kib(pid: int) -> int | None:
    """Return the kernel's peak-RSS mark (VmHWM) of a process in KiB, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_by_role() -> dict[str, float]:
    """Return CPU seconds so far of this process ("client") and of each child, by role."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    totals = {"client": usage.ru_utime + usage.ru_stime}
    for pid in descendants(os.getpid()):
        seconds = cpu_seconds(pid)
        if seconds is not None:
            name = role(pid)
            totals[name] = totals.get(name, 0.0) + seconds
    return totals


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Return the CPU seconds each role spent between two :func:`cpu_by_role` readings.

    A role absent before (a child started in between) counts from zero.
    """
    return {name: round(after[name] - before.get(name, 0.0), 3) for name in after}


def kill_tree(root: int) -> None:
    """SIGKILL a process this benchmark started and every process below it, children first."""
    for pid in [*reversed(descendants(root)), root]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
