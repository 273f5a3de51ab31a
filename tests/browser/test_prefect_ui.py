"""The Prefect UI in a real browser, over what ``tradeflow serve`` runs.

A real ``prefect server`` (SQLite, as ``make ui`` starts it) and ``tradeflow serve`` for three
deployments of prefect.yaml, as the README says to run them: the every-minute ingest cron fires by
itself, and one validation is triggered on demand through the API. Headless Chromium then opens the
UI's pages and checks what a user would look for: the deployments with their schedules, the runs
(scheduled and triggered), a run's artifacts, and the ingest summary rendered from its markdown. Each
page is screenshotted (``TRADEFLOW_SCREENSHOTS=docs/images`` refreshes the README's pictures), and
nothing the pages load comes from anywhere but the Prefect server itself.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.flows.conftest import BASE_CONFIG, VENUE
from tests.prefect_server import PrefectServer, prefect_server, wait_for_flow_run

SERVED = ["ingest-market-data/every-minute", "validate-market-data/hourly", "snapshot-market-data/hourly"]
# prefect.yaml's crons, and how the UI words them (cronstrue, "every day" for no day restriction).
SCHEDULES = {
    "ingest-market-data/every-minute": ("* * * * *", "Every minute every day"),
    "validate-market-data/hourly": ("5 * * * *", "At 5 minutes past the hour every day"),
    "snapshot-market-data/hourly": ("10 * * * *", "At 10 minutes past the hour every day"),
}
# Generous: the server takes 10-30 s to start, and the cron fires at the next whole minute.
DEADLINE_SECONDS = 300


def write_config(root: Path) -> Path:
    """One day of 1m candles from two clean local venues; no pinned end, so each minute brings new ones."""
    text = BASE_CONFIG.format(data=root / "data", lake=root / "lake", profile="clean", storage_extra="")
    text = text.replace('timeframes = ["1m", "1h"]', 'timeframes = ["1m"]')
    text = text.replace('end = "2026-11-20T12:00:00Z"\n', "")
    for venue_id, seed in (("sim-alpha", 11), ("sim-beta", 22)):
        text += VENUE.format(id=venue_id, seed=seed, extra="", symbols="")
    path = root / "tradeflow.toml"
    path.write_text(text)
    return path


@dataclass
class Served:
    """The server, ``tradeflow serve``'s deployments, and the runs the pages are checked against."""

    server: PrefectServer
    deployments: dict[str, dict[str, Any]]
    ingest_run: dict[str, Any]
    validate_run: dict[str, Any]


def _alive(server: PrefectServer, serve: subprocess.Popen[bytes]) -> None:
    if serve.poll() is not None:
        pytest.fail(f"tradeflow serve exited ({serve.returncode}):\n{server.logs('serve')}")


def _flow_runs(api: httpx.Client, deployment_id: str, states: list[str]) -> list[dict[str, Any]]:
    response = api.post(
        "/flow_runs/filter",
        json={
            "flow_runs": {"deployment_id": {"any_": [deployment_id]}, "state": {"type": {"any_": states}}},
            "sort": "START_TIME_ASC",
        },
    )
    response.raise_for_status()
    runs: list[dict[str, Any]] = response.json()
    return runs


def _artifacts(api: httpx.Client, run_id: str) -> dict[str, dict[str, Any]]:
    response = api.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    response.raise_for_status()
    return {a["key"]: a for a in response.json() if a.get("key")}


def _wait_for_deployments(
    api: httpx.Client, server: PrefectServer, serve: subprocess.Popen[bytes]
) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + DEADLINE_SECONDS
    found: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        _alive(server, serve)
        for name in SERVED:
            if name not in found:
                response = api.get(f"/deployments/name/{name}")
                if response.status_code == 200:
                    found[name] = response.json()
        if len(found) == len(SERVED):
            return found
        time.sleep(1)
    pytest.fail(f"tradeflow serve registered only {sorted(found)}; its log:\n{server.logs('serve')}")


def _wait_for_scheduled_ingest(
    api: httpx.Client, server: PrefectServer, serve: subprocess.Popen[bytes], deployment_id: str
) -> dict[str, Any]:
    """The first ingest run the cron created, once it completed; fails at once if one failed."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        _alive(server, serve)
        failed = _flow_runs(api, deployment_id, ["FAILED", "CRASHED"])
        if failed:
            run = failed[0]
            pytest.fail(
                f"scheduled ingest run {run['name']} {run['state_type']}: {run['state']}\n"
                + server.logs("serve")
            )
        completed = _flow_runs(api, deployment_id, ["COMPLETED"])
        if completed:
            return completed[0]
        time.sleep(2)
    pytest.fail(
        f"no scheduled ingest run completed in {DEADLINE_SECONDS} s; serve's log:\n{server.logs('serve')}"
    )


@pytest.fixture(scope="module")
def served(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``tradeflow serve`` on a real server, with one scheduled ingest and one triggered validation done.

    Asks for the browser first, so that without Chromium nothing is started.
    """
    config = write_config(tmp_path_factory.mktemp("served"))
    with prefect_server() as server:
        serve = server.start(
            [sys.executable, "-m", "tradeflow.cli", "serve", "--config", str(config), *SERVED], "serve"
        )
        with httpx.Client(base_url=server.api_url, timeout=30) as api:
            deployments = _wait_for_deployments(api, server, serve)
            ingest = deployments["ingest-market-data/every-minute"]
            ingest_run = _wait_for_scheduled_ingest(api, server, serve, ingest["id"])
            assert ingest_run["auto_scheduled"] is True  # the server's scheduler made it, nobody asked
            artifacts = _artifacts(api, ingest_run["id"])
            assert {"ingest-summary", "ingest-series", "audit-trail"} <= set(artifacts), sorted(artifacts)
            assert artifacts["ingest-summary"]["data"].startswith("# Ingest summary")

            # Now the validation, on demand (as the UI's "Run" button or `prefect deployment run` would).
            validate = deployments["validate-market-data/hourly"]
            created = api.post(f"/deployments/{validate['id']}/create_flow_run", json={})
            created.raise_for_status()
            validate_run = wait_for_flow_run(
                api,
                created.json()["id"],
                DEADLINE_SECONDS,
                lambda: server.logs("serve"),
                lambda: _alive(server, serve),
            )
            assert validate_run["state_type"] == "COMPLETED", (
                f"{validate_run['state']}\n{server.logs('serve')}"
            )
            assert validate_run["auto_scheduled"] is False
            yield Served(server, deployments, ingest_run, validate_run)


def only_from_the_server(urls: list[str], served: Served) -> None:
    """The UI's scripts, styles, fonts and data all come from the Prefect server: no CDN, no outside call."""
    outside = [url for url in urls if not url.startswith((served.server.url + "/", "data:", "blob:"))]
    assert urls and not outside, f"requests outside {served.server.url}: {outside[:10]}"


def test_the_deployments_page_shows_each_served_deployment_with_its_schedule(
    served: Served, page: Page, requested: list[str], screenshot: Callable[..., Path]
) -> None:
    for name, (cron, _) in SCHEDULES.items():
        [schedule] = served.deployments[name]["schedules"]
        assert schedule["schedule"]["cron"] == cron and schedule["active"] is True

    page.goto(f"{served.server.url}/deployments")
    expect(page.get_by_text(f"{len(SERVED)} Deployments")).to_be_visible()
    for name, (_, words) in SCHEDULES.items():
        flow_name, deployment_name = name.split("/")
        row = page.locator("tr", has_text=flow_name)
        expect(row).to_have_count(1)
        expect(row.get_by_text(deployment_name, exact=True)).to_be_visible()
        expect(row.get_by_text(words, exact=True)).to_be_visible()
    page.wait_for_load_state("networkidle")  # the activity column is fetched after the table
    screenshot(page, "prefect-ui-deployments", height=440)  # the table, not the empty page below it
    only_from_the_server(requested, served)


def test_the_runs_page_lists_the_scheduled_run_and_the_triggered_one(
    served: Served, page: Page, requested: list[str], screenshot: Callable[..., Path]
) -> None:
    page.goto(f"{served.server.url}/runs")
    scheduled = page.locator(".flow-run-list-item", has_text=served.ingest_run["name"])
    expect(scheduled.get_by_text("ingest-market-data", exact=True)).to_be_visible()
    expect(scheduled.get_by_text("Completed", exact=True)).to_be_visible()
    expect(scheduled.get_by_text("auto-scheduled", exact=True)).to_be_visible()
    expect(scheduled.get_by_text("every-minute", exact=True)).to_be_visible()

    triggered = page.locator(".flow-run-list-item", has_text=served.validate_run["name"])
    expect(triggered.get_by_text("validate-market-data", exact=True)).to_be_visible()
    expect(triggered.get_by_text("Completed", exact=True)).to_be_visible()
    expect(triggered.get_by_text("hourly", exact=True)).to_be_visible()
    expect(triggered.get_by_text("auto-scheduled", exact=True)).to_have_count(0)
    page.wait_for_load_state("networkidle")
    screenshot(page, "prefect-ui-runs")
    only_from_the_server(requested, served)


def test_a_flow_run_page_lists_its_artifacts_and_the_summary_renders_from_markdown(
    served: Served, page: Page, requested: list[str], screenshot: Callable[..., Path]
) -> None:
    run = served.ingest_run
    page.goto(f"{served.server.url}/runs/flow-run/{run['id']}")
    expect(page.get_by_text(run["name"], exact=True).first).to_be_visible()
    page.get_by_role("tablist").get_by_text("Artifacts", exact=True).click()
    for key in ("ingest-summary", "ingest-series", "audit-trail"):
        expect(page.get_by_text(key, exact=True)).to_be_visible()
    page.wait_for_load_state("networkidle")  # the task graph is drawn from further requests
    screenshot(page, "prefect-ui-flow-run")

    # The summary's own page: the markdown rendered (headings, not "# Ingest summary" as text).
    page.get_by_text("ingest-summary", exact=True).click()
    expect(page).to_have_url(re.compile(re.escape(served.server.url) + r"/artifacts/artifact/[0-9a-f-]{36}$"))
    expect(page.get_by_role("heading", name="Ingest summary", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Venues", exact=True)).to_be_visible()
    expect(page.get_by_text("sim-alpha", exact=True)).to_be_visible()
    expect(page.get_by_text("# Ingest summary")).to_have_count(0)
    screenshot(page, "prefect-ui-artifact")

    # Every version of the key, one per ingest run, is listed under it.
    page.goto(f"{served.server.url}/artifacts/key/ingest-summary")
    expect(page.get_by_text(run["name"], exact=True)).to_be_visible()
    only_from_the_server(requested, served)
