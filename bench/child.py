"""Run one benchmark section in a child process of its own and read back what it measured.

Heavy sections (validation, the audit chain, features) run as ``python -m bench.<section>``, so
their imports, peak RSS and heap are their own, not the parent's. The child writes its raw
result as JSON to a path it is given; its progress lines go straight to this process's stdout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.workload import REPO, BenchError


def run_section(section: str, arguments: Sequence[str], timeout_seconds: float) -> dict[str, Any]:
    """Run ``python -m bench.<section> ARGUMENTS --json PATH`` and return the JSON it wrote.

    Raises:
        BenchError: if the child fails, writes nothing, or runs longer than ``timeout_seconds``.
    """
    with tempfile.TemporaryDirectory(prefix=f"tradeflow-bench-{section}-") as folder:
        path = Path(folder) / f"{section}.json"
        command = [sys.executable, "-m", f"bench.{section}", *arguments, "--json", str(path)]
        try:
            done = subprocess.run(
                command,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                timeout=timeout_seconds,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise BenchError(f"the {section} section did not finish in {timeout_seconds:.0f} s") from error
        if done.returncode != 0 or not path.is_file():
            raise BenchError(
                f"the {section} section (`{' '.join(command)}`) exited {done.returncode}\n"
                + done.stderr[-3000:]
            )
        result: dict[str, Any] = json.loads(path.read_text())
        return result
