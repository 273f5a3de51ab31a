"""Starting Prefect's temporary API early: a failed start is reported and its server stopped."""

from __future__ import annotations

import os
import subprocess
import sys

# After a start that timed out, the half-started server must already be stopped inside the same
# process; otherwise the flow run's own start would race it for the SQLite database.
SCRIPT = """
from flows.ingest import start_prefect_api_early
from prefect.server.api.server import SubprocessASGIServer
wait = start_prefect_api_early()
try:
    wait()
except RuntimeError as error:
    print("raised:", error)
live = [server for server in SubprocessASGIServer._instances.values()
        if server.server_process is not None and server.server_process.poll() is None]
print("server still running" if live else "server stopped")
"""


def test_a_start_that_times_out_raises_and_stops_its_server(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path), PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1")
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120,
                            env=env, check=False)  # fmt: skip
    assert "raised: Timed out while attempting to connect to ephemeral Prefect API server" in result.stdout
    assert "server stopped" in result.stdout, result.stdout + result.stderr[-2000:]
