"""Shared fixtures: the real data folder, a moto S3 server, and environment hygiene."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Before anything imports Prefect or MLflow: no telemetry, and Prefect's home in a temp folder.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="tradeflow-prefect-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "1"


def real_data_dir() -> Path:
    """Return the real market data folder (``TRADEFLOW_REAL_DATA_DIR``, default ../shared/data/real)."""
    configured = os.environ.get("TRADEFLOW_REAL_DATA_DIR")
    return Path(configured) if configured else (REPO / ".." / "shared" / "data" / "real").resolve()


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The recorded real market data; tests that need it skip where it is absent."""
    path = real_data_dir()
    if not (path / "MANIFEST.json").is_file():
        pytest.skip(
            f"real market data not found at {path} (set TRADEFLOW_REAL_DATA_DIR); "
            "it ships beside the repository in CI"
        )
    return path


@pytest.fixture(autouse=True)
def _isolated_environment() -> Iterator[None]:
    """Keep a developer's TRADEFLOW_* variables out of the tests, and undo any a test sets."""
    saved = {
        k: v for k, v in os.environ.items() if k.startswith("TRADEFLOW_") and k != "TRADEFLOW_REAL_DATA_DIR"
    }
    for name in saved:
        del os.environ[name]
    yield
    for name in [k for k in os.environ if k.startswith("TRADEFLOW_") and k != "TRADEFLOW_REAL_DATA_DIR"]:
        del os.environ[name]
    os.environ.update(saved)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A real S3 API (moto in server mode) on 127.0.0.1; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    saved = {
        k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def s3_bucket(moto_server: str, request: pytest.FixtureRequest) -> str:
    """A fresh bucket on the moto server; yields its name."""
    import boto3

    name = f"tf-{abs(hash(request.node.nodeid)) % 10**10}"
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket=name)
    return name
