"""tradeflow's deployments, as ``prefect.yaml`` defines them: served from one process, or registered.

``prefect.yaml`` is the one list of deployments, schedules, descriptions and concurrency limits.
:func:`serve_deployments` runs them all from this process (``tradeflow serve``); :func:`deploy`
registers them with a work pool through ``prefect deploy --all`` (``tradeflow deploy``). Both first
create what the deployments share on the Prefect server: the venues' request budgets and the
streaming session limits (:mod:`tasks.limits`) and the notification automation
(:mod:`tasks.notify`). ``[orchestration] schedules`` overrides a schedule without editing the file.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tradeflow.config import ConfigError, Settings

REPO = Path(__file__).resolve().parents[1]
PREFECT_YAML = REPO / "prefect.yaml"
DEFAULT_POOL = "tradeflow"
UI_PORT = 4200


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment of ``prefect.yaml`` (after ``[orchestration] schedules`` overrides)."""

    flow_name: str
    name: str
    entrypoint: str
    description: str
    tags: list[str]
    schedules: list[dict[str, Any]]
    concurrency_limit: dict[str, Any] | None
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        """``flow-name/deployment-name``, as ``prefect deployment run`` takes it."""
        return f"{self.flow_name}/{self.name}"

    def schedule_text(self) -> str:
        """The schedules in words, for tables."""
        if not self.schedules:
            return "on demand"
        return ", ".join(
            f"{s['cron']} {s.get('timezone', 'UTC')}" + ("" if s.get("active", True) else " (paused)")
            for s in self.schedules
        )


def load_flow(entrypoint: str) -> Any:
    """Import and return the flow at ``path/to/file.py:function`` (relative to the repository)."""
    path, _, function = entrypoint.partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, function)


def _flow_name(entrypoint: str) -> str:
    return str(load_flow(entrypoint).name)


def read_prefect_yaml(path: Path = PREFECT_YAML) -> dict[str, Any]:
    """Return ``prefect.yaml`` as data (anchors resolved)."""
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def _check_cron(key: str, cron: str) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron)
    except ValueError:
        raise ConfigError(
            f"orchestration.schedules.{key}: {cron!r} is not a cron expression (five fields, e.g. "
            '"*/5 * * * *"), nor "off"'
        ) from None


def load_specs(settings: Settings, path: Path = PREFECT_YAML) -> list[DeploymentSpec]:
    """Return the deployments of ``prefect.yaml`` with the config's schedule overrides applied.

    Raises:
        ConfigError: naming ``orchestration.schedules.<key>`` for an unknown deployment or a bad cron.
    """
    specs = []
    for raw in read_prefect_yaml(path)["deployments"]:
        specs.append(
            DeploymentSpec(
                flow_name=_flow_name(raw["entrypoint"]),
                name=raw["name"],
                entrypoint=raw["entrypoint"],
                description=" ".join(str(raw.get("description", "")).split()),
                tags=list(raw.get("tags") or []),
                schedules=[dict(s) for s in raw.get("schedules") or []],
                concurrency_limit=raw.get("concurrency_limit"),
                parameters=dict(raw.get("parameters") or {}),
            )
        )
    by_name = {spec.full_name: spec for spec in specs}
    for key, cron in settings.orchestration.schedules.items():
        if key not in by_name:
            raise ConfigError(
                f"orchestration.schedules.{key}: no such deployment; prefect.yaml has "
                + ", ".join(sorted(by_name))
            )
        spec = by_name[key]
        if cron.strip().lower() == "off":
            schedules = [s | {"active": False} for s in spec.schedules]
        else:
            _check_cron(key, cron)
            schedules = [{"cron": cron, "timezone": "UTC", "active": True}]
        spec.schedules[:] = schedules
    return specs


def select(specs: list[DeploymentSpec], names: list[str]) -> list[DeploymentSpec]:
    """Return the deployments named (``flow/deployment`` or a flow name); all when ``names`` is empty."""
    if not names:
        return specs
    chosen = [s for s in specs if s.full_name in names or s.flow_name in names]
    unknown = [n for n in names if not any(n in (s.full_name, s.flow_name) for s in specs)]
    if unknown:
        raise ConfigError(
            f"no deployment {', '.join(unknown)}; prefect.yaml has " + ", ".join(s.full_name for s in specs)
        )
    return chosen


def _concurrency(spec: DeploymentSpec) -> Any:
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    if not spec.concurrency_limit:
        return None
    return ConcurrencyLimitConfig(
        limit=spec.concurrency_limit["limit"],
        collision_strategy=ConcurrencyLimitStrategy(
            spec.concurrency_limit.get("collision_strategy", "ENQUEUE")
        ),
    )


def runner_deployments(specs: list[DeploymentSpec], running_venues: dict[str, str] | None) -> list[Any]:
    """Return ``RunnerDeployment`` objects for ``prefect.serve``.

    Flows that fetch market data get ``running_venues`` (the local venues this process started)
    as a default parameter, so scheduled runs use them instead of starting their own.
    """
    from prefect.schedules import Cron

    deployments = []
    for spec in specs:
        flow = load_flow(spec.entrypoint)
        parameters = dict(spec.parameters)
        if running_venues and "running_venues" in flow.parameters.properties:
            parameters["running_venues"] = running_venues
        schedules = [
            Cron(s["cron"], timezone=s.get("timezone", "UTC"), active=s.get("active", True))
            for s in spec.schedules
        ]
        deployments.append(
            flow.to_deployment(
                name=spec.name,
                description=spec.description,
                tags=spec.tags,
                schedules=schedules or None,
                concurrency_limit=_concurrency(spec),
                parameters=parameters,
                enforce_parameter_schema=True,
            )
        )
    return deployments


def serve_deployments(deployments: list[Any]) -> None:
    """Serve ``deployments`` (from :func:`runner_deployments`) until interrupted: ``prefect.serve``."""
    from prefect import serve

    serve(*deployments, print_starting_message=False)


def prepare_server(settings: Settings) -> dict[str, Any]:
    """Create what deployments share on the server: venue and session limits, the notification automation."""
    from tasks.limits import ensure_limits

    prepared: dict[str, Any] = {"limits": ensure_limits(settings)}
    try:
        from tasks.notify import ensure_notifications
    except ImportError:  # pragma: no cover - notifications are part of the package
        return prepared
    prepared["notifications"] = ensure_notifications(settings)
    return prepared


def ensure_work_pool(name: str, pool_type: str = "process") -> bool:
    """Create the work pool if it does not exist; return True when it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type=pool_type))
            return True


def effective_yaml(specs: list[DeploymentSpec], config: Path | None, path: Path = PREFECT_YAML) -> str:
    """Return ``prefect.yaml`` with the schedule overrides applied and the config's path passed on."""
    document = read_prefect_yaml(path)
    wanted = {(s.entrypoint, s.name): s for s in specs}
    kept = []
    for raw in document["deployments"]:
        spec = wanted.get((raw["entrypoint"], raw["name"]))
        if spec is None:
            continue
        if spec.schedules:
            raw["schedules"] = spec.schedules
        if config is not None:  # the worker's flow-run process reads this config
            pool = dict(raw.get("work_pool") or {})
            variables = pool.setdefault("job_variables", {})
            variables["env"] = dict(variables.get("env") or {}) | {"TRADEFLOW_CONFIG": str(config.resolve())}
            raw["work_pool"] = pool
        kept.append(raw)
    document["deployments"] = kept
    document.pop("definitions", None)  # anchors are resolved already
    return yaml.safe_dump(document, sort_keys=False)


def deploy(specs: list[DeploymentSpec], pool: str, config: Path | None, home: Path = REPO) -> str:
    """Register ``specs`` with the work pool through ``prefect deploy --all``; return its output.

    Raises:
        RuntimeError: with Prefect's output when the deploy fails.
    """
    with tempfile.TemporaryDirectory(prefix="tradeflow-deploy-") as folder:
        document = Path(folder) / "prefect.yaml"
        document.write_text(effective_yaml(specs, config))
        env = os.environ | {"TRADEFLOW_HOME": os.environ.get("TRADEFLOW_HOME", str(home)),
                            "TRADEFLOW_WORK_POOL": pool}  # fmt: skip
        command = [str(Path(sys.executable).parent / "prefect"), "--no-prompt", "deploy", "--all",
                   "--prefect-file", str(document)]  # fmt: skip
        done = subprocess.run(command, cwd=home, env=env, capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"prefect deploy failed (exit {done.returncode}):\n{output[-4000:]}")
    return output


def server_healthy(url: str) -> bool:
    """Whether a Prefect server answers ``GET /api/health`` at ``url``."""
    try:
        with urllib.request.urlopen(f"{url}/api/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextmanager
def prefect_api(home: Path, port: int = UI_PORT, timeout: float = 120.0) -> Iterator[tuple[str, bool]]:
    """Make sure a Prefect server is there; yield ``(ui_url, started_here)``.

    ``PREFECT_API_URL`` wins when set. Otherwise a server already answering on 127.0.0.1:``port``
    (``make ui``) is used, or ``prefect server start`` is started here, logging to
    ``home/server.log``, and stopped on exit. Sets ``PREFECT_API_URL`` for this process and its
    children; call before Prefect is imported.
    """
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        yield configured.removesuffix("/").removesuffix("/api"), False
        return
    url = f"http://127.0.0.1:{port}"
    if server_healthy(url):
        os.environ["PREFECT_API_URL"] = f"{url}/api"
        yield url, False
        return
    home.mkdir(parents=True, exist_ok=True)
    log = (home / "server.log").open("ab")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while not server_healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Prefect server did not start on {url}; its log: {home / 'server.log'}"
                )
            time.sleep(0.5)
        os.environ["PREFECT_API_URL"] = f"{url}/api"
        yield url, True
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
