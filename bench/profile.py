"""``--profile``: where the GIL goes during one pipeline run and one bare concurrent run.

The client side of both is GIL-bound (ccxt parses every candle in Python), so the GIL time a
stage holds is roughly the wall time it adds. ``py-spy record --gil`` samples only the thread
holding the GIL; each sample is charged to the innermost frame that matches a category below,
so a ccxt call made from a pipeline task counts as ccxt, not as the task.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SAMPLE_RATE_HZ = 100
_ATTACH_SECONDS = 1.0

#: (category, regex on a frame "function (file:line)"); the innermost matching frame wins.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("parquet encode (pyarrow)", r"encode_parquet|pyarrow/parquet"),
    ("lake: put_if_absent (mkdir, temp file, fsync, link)", r"put_if_absent"),
    ("lake: day split, sha256, object records", r"write_partitioned|candles_table|publish_manifest"),
    ("candle checks (_candle_array: np.array, isfinite)", r"_candle_array"),
    ("ingest core (page filter, concat, dedupe)", r"_unique_by_time|ingest_candle_series \("),
    (
        "ccxt parsing (json.loads, parse_ohlcv, safe_*)",
        r"parse_json|parse_ohlcv|safe_\w+ \(|parse_number|json/",
    ),
    ("HTTP client (requests, urllib3, http.client)", r"requests/|urllib3/|http/client|socket\.py|email/"),
    ("ccxt other (new exchange, markets, sign)", r"ccxt/"),
    ("Prefect (task engine, parameter walking, states, events)", r"prefect/"),
    ("pydantic", r"pydantic"),
)


@dataclass
class Profile:
    """GIL time of one profiled run, by category and by innermost frame."""

    label: str
    wall_seconds: float
    gil_seconds: float
    categories: dict[str, float]
    top_frames: list[tuple[str, float]] = field(default_factory=list)
    raw: str = ""


def find_py_spy(explicit: str | None = None) -> str | None:
    """Return the py-spy executable: ``explicit`` if given, else the one on PATH; None if missing."""
    return shutil.which(explicit or "py-spy")


@contextmanager
def recording(py_spy: str, output: Path) -> Iterator[None]:
    """Record this process with py-spy (GIL holder only) while the block runs."""
    command = [
        py_spy,
        "record",
        "--pid",
        str(os.getpid()),
        "--rate",
        str(SAMPLE_RATE_HZ),
        "--gil",
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        str(output),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(_ATTACH_SECONDS)  # py-spy needs a moment to attach before the work starts
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        _, stderr = proc.communicate(timeout=60)
        if not output.is_file():
            raise RuntimeError(f"py-spy wrote no profile: {stderr.decode(errors='replace')[-500:]}")


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in CATEGORIES:
            if re.search(pattern, frame):
                return name
    return "other"


def summarise(label: str, raw: Path, wall_seconds: float, top: int = 12) -> Profile:
    """Return the GIL seconds of a raw py-spy profile by category and by innermost frame."""
    categories: Counter[str] = Counter()
    frames: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        parts = stack.split(";")
        categories[_category(parts)] += int(count)
        frames[re.sub(r":\d+\)$", ")", parts[-1])] += int(count)
    total = sum(categories.values())
    return Profile(
        label=label,
        wall_seconds=wall_seconds,
        gil_seconds=total / SAMPLE_RATE_HZ,
        categories={name: n / SAMPLE_RATE_HZ for name, n in categories.most_common()},
        top_frames=[(name, n / SAMPLE_RATE_HZ) for name, n in frames.most_common(top)],
        raw=str(raw),
    )


def profile_run(py_spy: str, label: str, output: Path, run: Callable[[], T]) -> tuple[T, Profile]:
    """Run ``run()`` under py-spy; return its result and the summarised profile."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with recording(py_spy, output):
        started = time.perf_counter()
        result = run()
        wall = time.perf_counter() - started
    return result, summarise(label, output, wall)


def to_json(profile: Profile) -> dict[str, Any]:
    """Return plain data for the results file."""
    return {
        "label": profile.label,
        "wall_seconds": profile.wall_seconds,
        "gil_seconds": profile.gil_seconds,
        "categories": profile.categories,
        "top_frames": profile.top_frames,
        "raw": profile.raw,
    }
