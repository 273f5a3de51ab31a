"""Offline checks of the deployment files under infra/: no container engine or cluster is used.

- ``docker-compose.yml``: compose's variable interpolation (demo defaults only), then the
  compose-spec JSON schema, then the stack's own rules (dependencies, health checks, mounts, pinned
  images, published ports, the worker's API URL, the buckets minio-init makes, the tradeflow
  settings as tradeflow's own config loader reads them), plus the two init scripts and the venues
  helper actually run (a throwaway PostgreSQL cluster, a venue server on 127.0.0.1).
- ``Dockerfile`` / ``.dockerignore``: the rules of the image (slim Python 3.11, uv from the lock,
  compiled bytecode, a non-root user) read from the files.
- ``k8s/worker-values.yaml``: the prefect-worker Helm chart's own ``values.schema.json``.
- ``k8s/base-job-template.json``: accepted by the Prefect server's work pool schema, its variables a
  valid JSON schema, rendered with Prefect's templating the way a Kubernetes worker renders it, and
  the resulting Job checked against the Kubernetes schema and decoded by kubectl into the Go types.
- Each validator is also shown a broken copy and must reject it.

The schemas are vendored in tests/unit/schemas/ (see the README there for where each came from).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import pwd
import re
import selectors
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
import uuid
from collections.abc import Iterator
from glob import glob
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
SCHEMAS = Path(__file__).parent / "schemas"
COMPOSE_FILE = INFRA / "docker-compose.yml"
JOB_TEMPLATE = INFRA / "k8s" / "base-job-template.json"
WORKER_VALUES = INFRA / "k8s" / "worker-values.yaml"
K8S_MANIFESTS = [INFRA / "k8s" / "tradeflow-config.yaml", INFRA / "k8s" / "tradeflow-secrets.example.yaml"]
PROJECT_VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]

# ---------------------------------------------------------------------------------------------
# Compose: interpolation and the file's own rules
# ---------------------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^{}]*)\}|(?P<named>[_A-Za-z][_A-Za-z0-9]*))")
_BRACED = re.compile(r"(?P<name>[_A-Za-z][_A-Za-z0-9]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.S)


def interpolate(node: Any, env: dict[str, str], unset: list[str]) -> Any:
    """Apply compose's variable interpolation to every string value (``$$``, ``$VAR``, ``${VAR}``,
    ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``, ``${VAR:+alternative}``).

    Names used without a default while unset are appended to ``unset`` (compose warns and uses "").
    """
    if isinstance(node, dict):
        return {key: interpolate(value, env, unset) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(item, env, unset) for item in node]
    if not isinstance(node, str):
        return node

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            name, op, arg = match["named"], None, ""
        else:
            braced = _BRACED.fullmatch(match["braced"])
            if braced is None:
                raise ValueError(f"invalid interpolation {match[0]!r}")
            name, op, arg = braced["name"], braced["op"], braced["arg"] or ""
        value = env.get(name)
        if op is None:
            if value is None:
                unset.append(name)
            return value or ""
        missing = value is None or (op.startswith(":") and value == "")
        if op.endswith("-"):
            return arg if missing else str(value)
        if op.endswith("?"):
            if missing:
                raise ValueError(f"required variable {name} is not set: {arg}")
            return str(value)
        return "" if missing else arg  # ":+" / "+"

    return _VARIABLE.sub(replace, node)


def load_compose(env: dict[str, str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Return the compose file as compose sees it with ``env`` (default: nothing set), and unset names."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    unset: list[str] = []
    return interpolate(raw, env or {}, unset), unset


def _compose_schema_errors(doc: dict[str, Any]) -> list[str]:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(doc)
    ]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _option(command: list[str], name: str) -> str | None:
    """Return the value of ``--name VALUE`` or ``--name=VALUE`` in a command."""
    for index, part in enumerate(command):
        if part == name and index + 1 < len(command):
            return command[index + 1]
        if part.startswith(name + "="):
            return part.split("=", 1)[1]
    return None


def _published_ports(spec: Any) -> list[tuple[str, int]]:
    """Return (host ip, host port) pairs of one ``ports`` entry (short or long syntax)."""
    if isinstance(spec, dict):
        published = spec.get("published")
        return [] if published is None else [(spec.get("host_ip", "0.0.0.0"), int(published))]
    parts = str(spec).rsplit("/", 1)[0].split(":")
    if len(parts) == 1:
        return []  # a container port only: the engine picks a free host port
    host_ip, published = (parts[0], parts[1]) if len(parts) == 3 else ("0.0.0.0", parts[0])
    first, _, last = published.partition("-")
    return [(host_ip, port) for port in range(int(first), int(last or first) + 1)]


def compose_problems(doc: dict[str, Any], base: Path = INFRA) -> list[str]:
    """Return what is wrong with a compose file beyond its schema (empty when nothing is)."""
    problems: list[str] = []
    services: dict[str, Any] = doc.get("services", {})
    named_volumes = set(doc.get("volumes") or {})
    graph: dict[str, list[str]] = {}
    published: dict[tuple[str, int], str] = {}
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        conditions = (
            dict.fromkeys(depends, "service_started")
            if isinstance(depends, list)
            else {
                target: (options or {}).get("condition", "service_started")
                for target, options in depends.items()
            }
        )
        graph[name] = list(conditions)
        for target, condition in conditions.items():
            if target not in services:
                problems.append(f"{name}: depends_on names no service: {target}")
                continue
            healthcheck = services[target].get("healthcheck") or {}
            if condition == "service_healthy" and (not healthcheck.get("test") or healthcheck.get("disable")):
                problems.append(f"{name}: waits for {target} to be healthy, but {target} has no healthcheck")
            if (
                condition == "service_completed_successfully"
                and services[target].get("restart", "no") != "no"
            ):
                problems.append(f"{name}: waits for {target} to complete, but {target} restarts")
        image = service.get("image")
        if not image:
            problems.append(f"{name}: no image (every service names a pinned image)")
        elif "@sha256:" not in image:
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            if not tag or tag == "latest":
                problems.append(f"{name}: image {image} is not pinned to a tag")
        build = service.get("build")
        if build is not None:
            context = base / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            if not (context / dockerfile).is_file():
                problems.append(f"{name}: build file {context / dockerfile} does not exist")
        for env_file in _as_list(service.get("env_file")):
            path = env_file if isinstance(env_file, str) else env_file.get("path", "")
            required = True if isinstance(env_file, str) else env_file.get("required", True)
            if required and not (base / path).is_file():
                problems.append(f"{name}: env_file {path} does not exist")
        for volume in _as_list(service.get("volumes")):
            if isinstance(volume, dict):
                kind, source = volume.get("type", "volume"), volume.get("source", "")
            else:
                source = str(volume).split(":", 1)[0]
                kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            if kind == "bind" and not (base / source).exists():
                problems.append(f"{name}: bind mount source {source} does not exist")
            if kind == "volume" and source and source not in named_volumes:
                problems.append(f"{name}: volume {source} is not declared under top-level volumes")
        for spec in _as_list(service.get("ports")):
            for host_port in _published_ports(spec):
                other = published.setdefault(host_port, name)
                if other != name:
                    problems.append(
                        f"{name}: host port {host_port[0]}:{host_port[1]} is also published by {other}"
                    )

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            problems.append(f"dependency cycle: {' -> '.join([*path[path.index(node) :], node])}")
            return
        for target in graph.get(node, []):
            visit(target, [*path, node])

    for name in graph:
        visit(name, [])
    return sorted(set(problems))


def _bucket(url: str) -> str:
    parts = urlsplit(url)
    assert parts.scheme == "s3", url
    return parts.netloc


def _minio_buckets(script: str) -> dict[str, set[str]]:
    """Return bucket -> flags of every ``mc mb [flags] local/BUCKET`` in the init script."""
    made: dict[str, set[str]] = {}
    for match in re.finditer(
        r"^\s*mc mb (?P<flags>(?:--\S+\s+)*)local/(?P<bucket>[a-z0-9.-]+)\s*$", script, re.M
    ):
        made.setdefault(match["bucket"], set()).update(match["flags"].split())
    return made


def stack_problems(doc: dict[str, Any], minio_script: str) -> list[str]:
    """Return where the services disagree with each other (API URL, buckets, hosts)."""
    problems: list[str] = []
    services = doc["services"]
    worker = services["prefect-worker"]
    env = _environment(worker)
    api = urlsplit(env.get("PREFECT_API_URL", ""))
    server = services.get(api.hostname or "")
    if server is None:
        problems.append(f"prefect-worker: PREFECT_API_URL {env.get('PREFECT_API_URL')!r} names no service")
    else:
        command = _command(server)
        if command[:3] != ["prefect", "server", "start"]:
            problems.append(f"{api.hostname}: is not a Prefect server ({' '.join(command)})")
        if str(api.port) != (_option(command, "--port") or "4200") or api.path != "/api":
            problems.append(f"prefect-worker: PREFECT_API_URL does not match {api.hostname}'s port and /api")
    pool = _option(_command(worker), "--pool")
    if _option(_command(services.get("deploy", {})), "--pool") != pool:
        problems.append("deploy: registers its deployments on another pool than the worker polls")

    made = _minio_buckets(minio_script)
    needed = {
        "storage.url": env.get("TRADEFLOW_STORAGE__URL", ""),
        "audit.checkpoint_url": env.get("TRADEFLOW_AUDIT__CHECKPOINT_URL", ""),
        "mlflow --artifacts-destination": _option(_command(services["mlflow"]), "--artifacts-destination")
        or "",
    }
    for what, url in needed.items():
        if not url.startswith("s3://"):
            problems.append(f"{what}: {url!r} is not on the stack's S3")
        elif _bucket(url) not in made:
            problems.append(f"{what}: bucket {_bucket(url)} is not created by minio-init")
    audit = needed["audit.checkpoint_url"]
    if audit.startswith("s3://") and _bucket(audit) in made:
        if "--with-lock" not in made[_bucket(audit)]:
            problems.append(f"audit bucket {_bucket(audit)} is created without Object Lock (--with-lock)")
        if not re.search(
            rf"^\s*mc retention set --default \S+ \S+ local/{_bucket(audit)}\s*$", minio_script, re.M
        ):
            problems.append(f"audit bucket {_bucket(audit)} gets no default retention")
    for key in (
        "TRADEFLOW_STORAGE__S3_ENDPOINT_URL",
        "TRADEFLOW_MLFLOW__TRACKING_URI",
        "TRADEFLOW_LEDGER__URL",
    ):
        host = urlsplit(env.get(key, "")).hostname
        if host not in services:
            problems.append(f"prefect-worker: {key} names no service ({host})")
    return problems


def unknown_settings(env: dict[str, str]) -> list[str]:
    """Return the TRADEFLOW_* names in ``env`` that name no config key (they would be ignored)."""
    from pydantic import BaseModel

    from tradeflow.config import AuditConfig, Settings

    # Read by tradeflow, but not config keys: the config file, the signing key, the deploy's code path.
    not_settings = {"TRADEFLOW_CONFIG", AuditConfig().signing_key_env, "TRADEFLOW_HOME"}
    unknown = []
    for name in env:
        if not name.startswith("TRADEFLOW_") or name in not_settings:
            continue
        model: Any = Settings
        for part in name.removeprefix("TRADEFLOW_").lower().split("__"):
            field = model.model_fields.get(part) if isinstance(model, type) else None
            if field is None:
                unknown.append(name)
                break
            model = (
                field.annotation
                if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
                else None
            )
    return unknown


# ---------------------------------------------------------------------------------------------
# Compose tests
# ---------------------------------------------------------------------------------------------


def test_interpolation_follows_compose_rules() -> None:
    unset: list[str] = []
    given = {"a": "${X:-d}", "b": "${X-d}", "c": "$${X}", "d": "${Y}", "e": ["${X:+on}", "$X!"]}
    assert interpolate(given, {"X": ""}, unset) == {"a": "d", "b": "", "c": "${X}", "d": "", "e": ["", "!"]}
    assert unset == ["Y"]
    with pytest.raises(ValueError, match="Z is not set: set Z"):
        interpolate("${Z:?set Z}", {}, [])


def test_compose_file_matches_the_compose_spec_schema() -> None:
    doc, _ = load_compose()
    assert _compose_schema_errors(doc) == []


def test_compose_schema_rejects_a_broken_copy() -> None:
    doc, _ = load_compose()
    broken = copy.deepcopy(doc)
    broken["services"]["prefect-worker"]["healthcheck"]["intervall"] = "5s"  # misspelt key
    broken["services"]["postgres"]["restart"] = 5  # not a string
    broken["volumes"]["minio-data"] = {"drivr": "local"}  # misspelt key
    errors = _compose_schema_errors(broken)
    assert any("intervall" in e for e in errors), errors
    assert any(e.startswith("services/postgres/restart") for e in errors), errors
    assert any("drivr" in e for e in errors), errors


def test_compose_variables_all_have_demo_defaults_and_can_be_overridden() -> None:
    doc, unset = load_compose()
    assert unset == [], f"variables without a default: {unset}"
    overridden, _ = load_compose(env={"PREFECT_PORT": "14200", "TRADEFLOW_DB_PASSWORD": "s3cret"})
    assert "127.0.0.1:14200:4200" in overridden["services"]["prefect-server"]["ports"]
    ledger = _environment(overridden["services"]["prefect-worker"])["TRADEFLOW_LEDGER__URL"]
    assert urlsplit(ledger).password == "s3cret"
    assert "${" not in json.dumps(doc)


def test_compose_services_agree_on_dependencies_mounts_images_and_ports() -> None:
    doc, _ = load_compose()
    assert compose_problems(doc) == []
    assert set(doc["services"]) >= {
        "postgres",
        "minio",
        "minio-init",
        "mlflow",
        "prefect-server",
        "prefect-worker",
        "deploy",
        "venues",
    }


def test_compose_consistency_check_rejects_broken_copies() -> None:
    doc, _ = load_compose()
    broken = copy.deepcopy(doc)
    broken["services"]["prefect-worker"]["depends_on"]["ghost"] = {"condition": "service_started"}
    broken["services"]["deploy"]["depends_on"]["minio-init"] = {"condition": "service_healthy"}
    broken["services"]["minio"]["image"] = "quay.io/minio/minio:latest"
    broken["services"]["postgres"]["volumes"].append("./compose/missing-init.sh:/x.sh:ro")
    broken["services"]["postgres"]["depends_on"] = {"deploy": {"condition": "service_started"}}
    broken["services"]["mlflow"]["ports"] = ["127.0.0.1:4200:5000"]
    problems = "\n".join(compose_problems(broken))
    assert "depends_on names no service: ghost" in problems
    assert "waits for minio-init to be healthy, but minio-init has no healthcheck" in problems
    assert "minio:latest is not pinned" in problems
    assert "missing-init.sh does not exist" in problems
    assert "dependency cycle" in problems
    assert "host port 127.0.0.1:4200" in problems


def test_compose_worker_points_at_the_server_and_the_buckets_exist() -> None:
    doc, _ = load_compose()
    script = (INFRA / "compose" / "minio-init.sh").read_text()
    assert stack_problems(doc, script) == []
    worker = _command(doc["services"]["prefect-worker"])
    assert worker[:3] == ["prefect", "worker", "start"]
    assert _option(worker, "--pool") == "tradeflow" and _option(worker, "--type") == "process"
    assert _command(doc["services"]["deploy"]) == ["tradeflow", "deploy", "--pool", "tradeflow"]
    assert set(_minio_buckets(script)) == {"lake", "mlflow", "audit"}
    # MinIO's default retention and tradeflow's own retention are the same setting.
    minio_init_env = _environment(doc["services"]["minio-init"])
    worker_env = _environment(doc["services"]["prefect-worker"])
    assert minio_init_env["AUDIT_LOCK_DAYS"] == worker_env["TRADEFLOW_AUDIT__OBJECT_LOCK_DAYS"] == "400"
    assert minio_init_env["AUDIT_LOCK_MODE"] == "COMPLIANCE"  # the mode tradeflow writes (infra/s3)


def test_stack_check_rejects_a_missing_bucket_and_a_wrong_api_url() -> None:
    doc, _ = load_compose()
    script = (INFRA / "compose" / "minio-init.sh").read_text()
    broken = copy.deepcopy(doc)
    broken["services"]["prefect-worker"]["environment"]["PREFECT_API_URL"] = "http://prefect:4200/api"
    without_lock = script.replace("mc mb --ignore-existing --with-lock local/audit", "mc mb local/audit")
    without_mlflow = script.replace("mc mb --ignore-existing local/mlflow\n", "")
    assert any("names no service" in p for p in stack_problems(broken, script))
    assert any("without Object Lock" in p for p in stack_problems(doc, without_lock))
    assert any("bucket mlflow is not created" in p for p in stack_problems(doc, without_mlflow))


def test_compose_tradeflow_environment_is_a_valid_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from tradeflow.config import load_settings

    doc, _ = load_compose()
    env = _environment(doc["services"]["prefect-worker"])
    assert unknown_settings(env) == []
    assert _environment(doc["services"]["deploy"]) == env
    for name, value in env.items():
        if name.startswith("TRADEFLOW_"):
            monkeypatch.setenv(name, value)
    # The image's /app/tradeflow.toml under the worker's environment, as the worker reads it.
    settings = load_settings(REPO / "tradeflow.toml")
    assert settings.storage.url.startswith("s3://lake/")
    assert settings.storage.s3_endpoint_url == "http://minio:9000"
    assert settings.audit.object_lock_days == 400
    assert settings.mlflow.artifact_location == "mlflow-artifacts:/tradeflow"
    assert [venue.simulated for venue in settings.venues] == [False, False, False]
    # The worker's venues are the venues service's simulated ones, at the ports it serves them on.
    monkeypatch.delenv("TRADEFLOW_VENUES")
    simulated = [venue.id for venue in load_settings(REPO / "tradeflow.toml").venues if venue.simulated]
    assert [venue.id for venue in settings.venues] == simulated
    first = int(_option(_command(doc["services"]["venues"]), "--first-port") or 0)
    assert [venue.base_url for venue in settings.venues] == [
        f"http://venues:{first + index}" for index in range(len(simulated))
    ]
    published = {port for spec in doc["services"]["venues"]["ports"] for _, port in _published_ports(spec)}
    assert published == {first + index for index in range(len(simulated))}


def test_unknown_setting_names_are_caught() -> None:
    assert unknown_settings({"TRADEFLOW_STORAGE__ENDPOINT_URL": "x", "TRADEFLOW_STORAGES__URL": "y"}) == [
        "TRADEFLOW_STORAGE__ENDPOINT_URL",
        "TRADEFLOW_STORAGES__URL",
    ]
    assert (
        unknown_settings({"TRADEFLOW_LEDGER__URL": "x", "TRADEFLOW_CONFIG": "y", "TRADEFLOW_DATA_DIR": "z"})
        == []
    )


def _load_serve_venues() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("serve_venues", INFRA / "compose" / "serve_venues.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_serve_venues_gives_the_simulated_venues_the_compose_ports() -> None:
    from tradeflow.config import load_settings

    served = _load_serve_venues().served_spec(load_settings(REPO / "tradeflow.toml"), "0.0.0.0", 9101)
    assert served.host == "0.0.0.0"
    assert [(venue.id, venue.port) for venue in served.venues] == [
        ("sim-alpha", 9101),
        ("sim-beta", 9102),
        ("sim-gamma", 9103),
    ]


@pytest.fixture
def venue_server(tmp_path: Path) -> Iterator[dict[str, str]]:
    """``serve_venues.py`` as the venues service runs it, on 127.0.0.1 and free ports; yields its URLs."""
    script = INFRA / "compose" / "serve_venues.py"
    log = tmp_path / "venues.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(script), "--host", "127.0.0.1", "--first-port", "0"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=180)  # a generous bound so a hung start fails, not hangs
        line = process.stdout.readline() if ready else b""
        assert line, f"no ready line from serve_venues.py; its log:\n{log.read_text()[-4000:]}"
        yield json.loads(line)["venues"]
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_serve_venues_serves_the_exchanges_over_http(venue_server: dict[str, str]) -> None:
    assert list(venue_server) == ["sim-alpha", "sim-beta", "sim-gamma"]
    for url in venue_server.values():
        with urllib.request.urlopen(f"{url}/api/v3/ping", timeout=30) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{url}/api/v3/exchangeInfo", timeout=30) as response:
            symbols = {s["symbol"] for s in json.load(response)["symbols"]}
        assert {"BTCUSDT", "ETHUSDT", "SOLUSDT"} <= symbols


def _postgres_bin() -> Path | None:
    found = sorted(glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def test_postgres_init_script_creates_the_three_databases() -> None:
    """Run compose/postgres-init.sh on a throwaway PostgreSQL cluster, as the image's entrypoint would."""
    bin_dir = _postgres_bin()
    if bin_dir is None or not shutil.which("psql"):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) or psql are not installed")
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run initdb as")
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser to run initdb as the postgres user")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    home = Path(tempfile.mkdtemp(prefix="tradeflow-pginit-"))
    if as_postgres:
        shutil.chown(home, "postgres")
    data = home / "data"
    socket_env = {"PGHOST": str(home), "PGPORT": "5999"}  # a unix socket in the temp folder; no TCP
    try:
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
        subprocess.run([*as_postgres, *initdb], check=True, capture_output=True)
        options = f"-k {home} -c listen_addresses='' -p 5999"
        start = [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(home / "log"),
            "-w",
            "-o",
            options,
            "start",
        ]
        subprocess.run([*as_postgres, *start], check=True, capture_output=True)
        # What the postgres service's environment gives the script (a password with a quote, too).
        service_env = {
            **socket_env,
            "POSTGRES_USER": "postgres",
            "PREFECT_DB_PASSWORD": "it's quoted",
            "MLFLOW_DB_PASSWORD": "m",
            "TRADEFLOW_DB_PASSWORD": "t",
        }
        assignments = [f"{k}={v}" for k, v in service_env.items()]
        script = INFRA / "compose" / "postgres-init.sh"
        subprocess.run(
            [*as_postgres, "env", *assignments, "sh", str(script)], check=True, capture_output=True
        )

        def query(sql: str, database: str = "postgres") -> str:
            done = subprocess.run(
                [
                    *as_postgres,
                    "env",
                    *[f"{k}={v}" for k, v in socket_env.items()],
                    "psql",
                    "-U",
                    "postgres",
                    "-d",
                    database,
                    "-Atc",
                    sql,
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            return done.stdout.strip()

        owners = query("select datname || '=' || pg_get_userbyid(datdba) from pg_database order by 1")
        assert {"mlflow=mlflow", "prefect=prefect", "tradeflow=tradeflow"} <= set(owners.split())
        assert query("select extname from pg_extension where extname = 'pg_trgm'", "prefect") == "pg_trgm"
    finally:
        if (data / "postmaster.pid").exists():
            stop = [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
            subprocess.run([*as_postgres, *stop], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_compose_databases_are_the_ones_the_init_script_creates() -> None:
    doc, _ = load_compose()
    script = (INFRA / "compose" / "postgres-init.sh").read_text()
    created = dict(re.findall(r"^create_database (\w+) \"\$\w+\" (\w+)", script, re.M))  # role -> database
    urls = [
        _option(_command(doc["services"]["mlflow"]), "--backend-store-uri"),
        _environment(doc["services"]["prefect-server"])["PREFECT_API_DATABASE_CONNECTION_URL"],
        _environment(doc["services"]["prefect-worker"])["TRADEFLOW_LEDGER__URL"],
    ]
    for url in urls:
        parts = urlsplit(url or "")
        assert parts.hostname == "postgres" and parts.port == 5432, url
        assert created.get(parts.username or "") == parts.path.lstrip("/"), url


# ---------------------------------------------------------------------------------------------
# The image
# ---------------------------------------------------------------------------------------------


def test_dockerfile_builds_a_slim_locked_non_root_image() -> None:
    lines = [line.strip() for line in (INFRA / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert re.fullmatch(
        r"FROM python:3\.11(\.\d+)?-slim(-\w+)?", next(i for i in instructions if i.startswith("FROM"))
    )
    text = "\n".join(instructions)
    assert "uv sync --frozen --no-dev" in text
    assert re.search(r"\bUV_COMPILE_BYTECODE=1\b", text)
    assert re.search(r"COPY --from=ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+ ", text), "pin the uv image"
    user = [i.split()[1] for i in instructions if i.startswith("USER ")][-1]
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0
    job = json.loads(JOB_TEMPLATE.read_text())["job_configuration"]["job_manifest"]
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(user.split(":")[0])
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", "data", ".env"} <= ignored


def test_compose_builds_the_project_version() -> None:
    doc, _ = load_compose()
    tradeflow_images = {s["image"] for s in doc["services"].values() if "build" in s}
    assert tradeflow_images == {f"tradeflow:{PROJECT_VERSION}"}
    assert all(
        s["build"] == {"context": "..", "dockerfile": "infra/Dockerfile"}
        for s in doc["services"].values()
        if "build" in s
    )


# ---------------------------------------------------------------------------------------------
# Helm: the prefect-worker chart's values
# ---------------------------------------------------------------------------------------------


def worker_values_problems(values: dict[str, Any]) -> list[str]:
    """Validate Helm values the way ``helm install`` does with the chart's values.schema.json.

    The chart's schema allows unknown top-level keys (``additionalProperties: true``), which Helm
    would silently ignore; those are reported here too.
    """
    schema = json.loads((SCHEMAS / "prefect-worker-values.schema.json").read_text())
    # The file declares the draft-less "$schema": "http://json-schema.org/schema#" and uses a
    # draft-07 keyword ("dependencies"), so it is read as draft 7.
    validator = jsonschema.Draft7Validator(schema)
    problems = [
        f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(values)
    ]
    problems += [f"{key}: not a value of the chart" for key in values if key not in schema["properties"]]
    return problems


def _values_as_installed() -> dict[str, Any]:
    """The values file plus what ``--set-file worker.config.baseJobTemplate.configuration=...`` adds."""
    values = yaml.safe_load(WORKER_VALUES.read_text())
    values["worker"]["config"]["baseJobTemplate"]["configuration"] = JOB_TEMPLATE.read_text()
    return values


def test_worker_values_match_the_chart_schema() -> None:
    assert worker_values_problems(yaml.safe_load(WORKER_VALUES.read_text())) == []
    assert worker_values_problems(_values_as_installed()) == []


def test_worker_values_point_the_kubernetes_worker_at_the_server_and_pool() -> None:
    import prefect

    worker = _values_as_installed()["worker"]
    assert worker["apiConfig"] == "selfHostedServer"
    api = urlsplit(worker["selfHostedServerApiConfig"]["apiUrl"])
    assert api.path == "/api" and api.hostname and api.hostname.startswith("prefect-server.")
    assert worker["config"]["workPool"] == "tradeflow-k8s" and worker["config"]["type"] == "kubernetes"
    assert worker["image"]["prefectTag"] == f"{prefect.__version__}-python3.11-kubernetes"
    assert json.loads(worker["config"]["baseJobTemplate"]["configuration"]) == json.loads(
        JOB_TEMPLATE.read_text()
    )


def test_worker_values_check_rejects_broken_copies() -> None:
    broken = _values_as_installed()
    broken["worker"]["config"]["workpool"] = "tradeflow-k8s"  # misspelt
    broken["worker"]["apiConfig"] = "server"  # the value before the chart's 2025 rename
    broken["worker"]["replicaCount"] = "1"
    broken["serviceAcount"] = {"create": True}
    problems = "\n".join(worker_values_problems(broken))
    assert "'workpool' was unexpected" in problems
    assert "worker.apiConfig: 'server' is not one of" in problems
    assert "worker.replicaCount: '1' is not of type 'integer'" in problems
    assert "serviceAcount: not a value of the chart" in problems


# ---------------------------------------------------------------------------------------------
# Kubernetes: the work pool's base job template and the manifests it names
# ---------------------------------------------------------------------------------------------


def _k8s_errors(kind: str, manifest: dict[str, Any]) -> list[str]:
    """Validate against the vendored Kubernetes strict schema of ``kind`` (e.g. kind.batch.v1.Job)."""
    bundle = json.loads((SCHEMAS / "kubernetes-v1.32.0-strict.json").read_text())
    validator = jsonschema.Draft202012Validator({**bundle, "$ref": f"#/$defs/{kind}"})
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(manifest)
    ]


def _template() -> dict[str, Any]:
    return json.loads(JOB_TEMPLATE.read_text())


def test_job_template_is_accepted_by_the_prefect_server() -> None:
    from prefect.server.schemas.actions import WorkPoolCreate

    WorkPoolCreate(name="tradeflow-k8s", type="kubernetes", base_job_template=_template())
    broken = _template()
    broken["job_configuration"]["job_manifest"]["spec"]["suspend"] = "{{ suspended }}"  # no such variable
    with pytest.raises(ValueError, match="undeclared variable"):
        WorkPoolCreate(name="tradeflow-k8s", type="kubernetes", base_job_template=broken)


def test_job_template_variables_are_a_valid_json_schema() -> None:
    from prefect.utilities.schema_tools.validation import is_valid_schema, validate

    variables = _template()["variables"]
    jsonschema.Draft202012Validator.check_schema(variables)  # the meta-schema check
    is_valid_schema(variables)  # Prefect's own check (with its preprocessing)
    defaults = {key: prop["default"] for key, prop in variables["properties"].items() if "default" in prop}
    assert validate(defaults, variables) == []
    assert validate({"image_pull_policy": "Sometimes", "memory_limit": 4}, variables) != []
    broken = copy.deepcopy(variables)
    broken["properties"]["namespace"]["type"] = "strng"
    with pytest.raises(jsonschema.SchemaError):
        jsonschema.Draft202012Validator.check_schema(broken)


def _job_configuration_class() -> Any:
    from prefect.workers.base import BaseJobConfiguration
    from pydantic import Field

    class KubernetesJobConfiguration(BaseJobConfiguration):
        """The fields of prefect-kubernetes' KubernetesWorkerJobConfiguration (0.8.0), minus its client."""

        annotations: dict[str, str] = Field(default_factory=dict)
        namespace: str = "default"
        job_manifest: dict[str, Any]
        cluster_config: dict[str, Any] | None = None
        job_watch_timeout_seconds: int | None = None
        pod_watch_timeout_seconds: int = 60
        stream_output: bool = True

    return KubernetesJobConfiguration


class _NoClient:
    """Stands in for the API client: the template uses no block or Prefect variable placeholders."""


def _flow_run() -> Any:
    from prefect.client.schemas.objects import FlowRun

    return FlowRun(flow_id=uuid.uuid4(), name="brave-fox")


def render_job(values: dict[str, Any], template: dict[str, Any] | None = None) -> dict[str, Any]:
    """Render the base job template into the Job a Kubernetes worker would submit for one flow run.

    Prefect's own code does the work: ``BaseJobConfiguration.from_template_and_values`` (variable
    defaults, job variables, ``apply_values``) and ``prepare_for_flow_run`` (environment, labels,
    command). The last step is what prefect-kubernetes 0.8.0's ``prepare_for_flow_run`` adds on top
    (``_populate_env_in_manifest``, ``_populate_command_if_not_present``, ``_slugify_labels``,
    ``_propagate_labels_to_pod``, ``_populate_generate_name_if_not_present``), written out here
    because prefect-kubernetes is not a dependency; ``test_job_renders_with_prefect_kubernetes``
    runs the real thing where it is installed.
    """
    configuration_class = _job_configuration_class()
    config = asyncio.run(
        configuration_class.from_template_and_values(template or _template(), values, client=_NoClient())
    )
    config.prepare_for_flow_run(_flow_run())
    manifest = copy.deepcopy(config.job_manifest)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": key, "value": value} for key, value in config.env.items()]
    args = container.get("args")
    container["args"] = (
        shlex.split(config.command)
        if args is None
        else (shlex.split(args) if isinstance(args, str) else args)
    )
    labels = {**manifest["metadata"].get("labels", {}), **config.labels}
    manifest["metadata"]["labels"] = labels
    manifest["spec"]["template"].setdefault("metadata", {})["labels"] = labels
    manifest["metadata"]["annotations"] = {
        **manifest["metadata"].get("annotations", {}),
        **config.annotations,
    }
    if manifest["metadata"].get("generateName", "-") in ("-", "None-", ""):
        slug = re.sub(r"[^a-z0-9-]+", "-", (config.name or "").lower()).strip("-")[:45]
        manifest["metadata"]["generateName"] = f"{slug or 'prefect-job'}-"
    return manifest


#: What prefect-kubernetes (0.8.0, ``_get_base_job_manifest``) requires of every job manifest. It
#: insists on parallelism and completions inside the *pod* spec, where Kubernetes has no such
#: fields: the API server drops them with a warning. The strict schema check removes exactly these.
PREFECT_REQUIRED_POD_SPEC = {"parallelism": 1, "completions": 1, "restartPolicy": "Never"}


def job_problems(manifest: dict[str, Any]) -> list[str]:
    """Return what the Kubernetes schema and the Kubernetes worker's own check reject."""
    pod_spec = manifest["spec"]["template"]["spec"]
    problems = [
        f"spec.template.spec.{key} must be {value!r} for the Kubernetes worker"
        for key, value in PREFECT_REQUIRED_POD_SPEC.items()
        if pod_spec.get(key) != value
    ]
    if [c.get("name") for c in pod_spec.get("containers", [])][:1] != ["prefect-job"]:
        problems.append("the first container must be named prefect-job for the Kubernetes worker")
    strict = copy.deepcopy(manifest)
    for key in ("parallelism", "completions"):
        strict["spec"]["template"]["spec"].pop(key, None)
    return problems + _k8s_errors("kind.batch.v1.Job", strict)


def test_job_template_renders_to_a_valid_job_with_its_defaults() -> None:
    manifest = render_job({})
    assert job_problems(manifest) == []
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"tradeflow:{PROJECT_VERSION}"
    assert manifest["metadata"]["namespace"] == "tradeflow"
    assert container["args"] == ["prefect", "flow-run", "execute"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["PREFECT_HOME"] == "/data/prefect"
    assert [list(source) for source in container["envFrom"]] == [["configMapRef"], ["secretRef"]]
    assert "activeDeadlineSeconds" not in manifest["spec"]  # unset: the always-on stream flow runs on


def test_job_template_renders_job_variables_a_deployment_sets() -> None:
    manifest = render_job(
        {
            "image": "registry.example.com/tradeflow:abc",
            "memory_limit": "8Gi",
            "namespace": "research",
            "env": {"EXTRA": "1"},
            "active_deadline_seconds": 3600,
            "secret_name": "other-secrets",
        }
    )
    assert job_problems(manifest) == []
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/tradeflow:abc"
    assert container["resources"]["limits"]["memory"] == "8Gi"
    assert manifest["metadata"]["namespace"] == "research"
    assert manifest["spec"]["activeDeadlineSeconds"] == 3600
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["EXTRA"] == "1" and env["PREFECT_HOME"] == "/data/prefect"  # merged with the default
    assert {"secretRef": {"name": "other-secrets"}} in container["envFrom"]


def test_job_check_rejects_broken_templates() -> None:
    typo = _template()
    typo["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0][
        "imagePullPolicyy"
    ] = "Always"
    wrong_type = _template()
    wrong_type["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["volumes"] = {"name": "data"}
    unnamed = _template()
    unnamed["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]["name"] = "main"
    assert any("'imagePullPolicyy' was unexpected" in p for p in job_problems(render_job({}, typo)))
    assert any(p.startswith("spec/template/spec/volumes") for p in job_problems(render_job({}, wrong_type)))
    assert any("named prefect-job" in p for p in job_problems(render_job({}, unnamed)))


KUBECTL_SENTINEL = "decoded-by-kubectl:1"


def _kubectl_decode(manifest: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Decode a Job with kubectl's client-side scheme (no cluster): ``kubectl set image --local``.

    The command decodes the object into the typed Go structs to change the image (to a sentinel:
    an unchanged image prints nothing), then prints the object again.
    """
    path = tmp_path / "job.json"
    path.write_text(json.dumps(manifest))
    command = ["kubectl", "set", "image", "--local", "-f", str(path), f"prefect-job={KUBECTL_SENTINEL}"]
    return subprocess.run(
        [*command, "-o", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": os.devnull},
        timeout=120,
    )


def test_rendered_job_decodes_with_kubectl(tmp_path: Path) -> None:
    """kubectl decodes the rendered Job into the typed batch/v1 Go structs (wrong types fail there).

    ``kubectl create --dry-run=client -f`` needs the API server's discovery even with
    ``--validate=false``, so without a cluster this is the client-side check kubectl offers.
    """
    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed")
    manifest = render_job({})
    done = _kubectl_decode(manifest, tmp_path)
    assert done.returncode == 0, done.stderr
    decoded = json.loads(done.stdout)
    assert decoded["kind"] == "Job"
    assert decoded["spec"]["template"]["spec"]["containers"][0]["image"] == KUBECTL_SENTINEL
    broken = copy.deepcopy(manifest)
    broken["spec"]["backoffLimit"] = "zero"
    failed = _kubectl_decode(broken, tmp_path)
    assert failed.returncode != 0 and "backoffLimit" in failed.stderr


def test_job_renders_with_prefect_kubernetes() -> None:
    """The Kubernetes worker's own configuration class renders the template into a valid Job."""
    kubernetes_worker = pytest.importorskip(
        "prefect_kubernetes.worker", reason="prefect-kubernetes is not installed (not a project dependency)"
    )
    config = asyncio.run(
        kubernetes_worker.KubernetesWorkerJobConfiguration.from_template_and_values(
            _template(), {}, client=_NoClient()
        )
    )
    config.prepare_for_flow_run(_flow_run())
    assert job_problems(config.job_manifest) == []

    # ...and to the Job render_job writes out without it (but for ids, labels and the env's values).
    def stable(manifest: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
        manifest = copy.deepcopy(manifest)
        manifest["metadata"].pop("labels", None)
        manifest["spec"]["template"].pop("metadata", None)
        container = manifest["spec"]["template"]["spec"]["containers"][0]
        return manifest, {item["name"] for item in container.pop("env")}

    real, real_env = stable(config.job_manifest)
    ours, our_env = stable(render_job({}))
    assert real == ours
    assert our_env <= real_env


def test_k8s_manifests_match_the_kubernetes_schema_and_the_template() -> None:
    docs = [doc for path in K8S_MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]
    for doc in docs:
        group = doc["apiVersion"].replace("/", ".")
        assert _k8s_errors(f"kind.{group}.{doc['kind']}", doc) == [], doc["metadata"]["name"]
    names = {doc["kind"]: doc["metadata"]["name"] for doc in docs}
    defaults = {key: prop.get("default") for key, prop in _template()["variables"]["properties"].items()}
    assert names == {
        "ConfigMap": defaults["config_map_name"],
        "Secret": defaults["secret_name"],
        "ServiceAccount": defaults["service_account_name"],
    }
    assert {doc["metadata"]["namespace"] for doc in docs} == {defaults["namespace"]}
    broken = copy.deepcopy(next(doc for doc in docs if doc["kind"] == "ConfigMap"))
    broken["data"]["TRADEFLOW_AUDIT__OBJECT_LOCK_DAYS"] = 400  # ConfigMap values must be strings
    assert any("is not of type 'string'" in e for e in _k8s_errors("kind.v1.ConfigMap", broken))


def test_k8s_environment_is_a_valid_production_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from tradeflow.config import load_settings

    env: dict[str, str] = {}
    for path in K8S_MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            env |= doc.get("data") or {}
            env |= doc.get("stringData") or {}
    assert unknown_settings(env) == []
    for name, value in env.items():
        if name.startswith("TRADEFLOW_"):
            monkeypatch.setenv(name, value)
    settings = load_settings(REPO / "tradeflow.toml")
    assert settings.audit.mode == "production"
    # The same buckets and prefixes as infra/s3's policies.
    assert settings.storage.url == "s3://tradeflow-lake/lake"
    assert settings.audit.checkpoint_url == "s3://tradeflow-audit-checkpoints/checkpoints"
    assert settings.audit.object_lock_days == 400
