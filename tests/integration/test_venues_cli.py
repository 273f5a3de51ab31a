"""`tradeflow venues up`: local venues for other tools, until interrupted."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request


def test_venues_up_serves_binance_klines_until_interrupted(tmp_path):
    config = tmp_path / "tradeflow.toml"
    config.write_text('[[venues]]\nid = "solo"\nsimulated = true\nsimulator = { seed = 5 }\n')
    process = subprocess.Popen(
        [sys.executable, "-m", "tradeflow.cli", "venues", "up", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        url = None
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line or process.poll() is None, process.stderr.read()
            match = re.search(r"solo\s*│\s*(http://127\.0\.0\.1:\d+)", line)
            url = match.group(1) if match else None
        assert url, "venues up printed no URL"
        with urllib.request.urlopen(
            f"{url}/api/v3/klines?symbol=BTCUSDT&interval=1h&limit=3", timeout=10
        ) as reply:
            rows = json.loads(reply.read())
        assert len(rows) == 3 and rows[1][0] - rows[0][0] == 3_600_000
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert process.returncode in (0, -signal.SIGINT, 130)
