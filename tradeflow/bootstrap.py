"""The composition root: the one module that decides which implementation a run gets.

Everything else receives a store, a source or a set of venue URLs; only here does the config
turn into a local folder or S3, a real exchange or a local simulated one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tradeflow.audit.chain import CHECKPOINT_PREFIX, AuditLog
from tradeflow.audit.signing import (
    SigningKeyError,
    StoreCheckpointer,
    load_private_key,
    local_key,
    public_key_text,
    trusted_keys,
)
from tradeflow.audit.verify import VerifyReport, load_trusted, save_trusted, verify_chain
from tradeflow.config import Settings, VenueConfig
from tradeflow.ingest import shared_budget
from tradeflow.sources.ccxt_source import CcxtMarketDataSource, create_exchange
from tradeflow.storage.objectstore import ObjectStore, open_store


def prepare_environment(settings: Settings) -> None:
    """Keep Prefect's home and database in the data folder and turn off telemetry.

    Must run before Prefect is imported; values already set in the environment win.
    """
    data_dir = settings.data_dir.resolve()
    defaults = {
        "PREFECT_HOME": str(data_dir / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        # A first run migrates a new database; 20 s (Prefect's default) is tight on 2 busy cores.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
    }
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)


def build_store(settings: Settings) -> ObjectStore:
    """Return the object store named by ``storage.url``."""
    return open_store(
        settings.storage.url,
        s3_endpoint_url=settings.storage.s3_endpoint_url,
        server_side_encryption=settings.storage.s3_server_side_encryption,
    )


def build_source(
    venue: VenueConfig, base_url: str | None, grant: Callable[[int], None] | None = None
) -> CcxtMarketDataSource:
    """Return a market data source for one venue, drawing on the venue's shared budget.

    ``grant`` takes request weight from a budget shared with other processes (see
    :class:`tradeflow.ingest.WeightBudget`); without it the budget is this process's alone.
    """
    exchange = create_exchange(
        venue.exchange,
        base_url=base_url or venue.base_url,
        timeout_seconds=venue.timeout_seconds,
        options=venue.options,
        api_key_env=venue.api_key_env,
        secret_env=venue.secret_env,
    )
    budget = shared_budget(venue.id, venue.weight_per_minute, grant)
    return CcxtMarketDataSource(venue.id, exchange, acquire=budget.acquire, on_rate_limited=budget.pause)


def simulator_spec(settings: Settings):  # type: ignore[no-untyped-def]  # ClusterSpec, imported lazily
    """Return the simulator cluster spec for the config's simulated venues."""
    from tradeflow.simulator import FAULT_PROFILES, ClusterSpec, SymbolSpec, VenueSpec

    venues = []
    for venue in settings.venues:
        if not venue.simulated or venue.simulator is None:
            continue
        sim = venue.simulator
        transport, data = FAULT_PROFILES[sim.fault_profile or settings.simulator.fault_profile]
        overrides = {"holes": sim.hole_rate, "spikes": sim.spike_rate, "stale": sim.stale_rate,
                     "drift_bps_per_day": sim.drift_bps_per_day or None}  # fmt: skip
        data = data.model_copy(update={k: v for k, v in overrides.items() if v is not None})
        venues.append(
            VenueSpec(
                id=venue.id,
                seed=sim.seed,
                latency_ms=sim.latency_ms,
                noise_bps=sim.noise_bps,
                bias_bps=sim.bias_bps,
                weight_limit_per_minute=sim.weight_limit_per_minute,
                transport=transport,
                data=data,
            )
        )
    symbols = [SymbolSpec(**spec.model_dump()) for spec in settings.simulator.symbols]
    return ClusterSpec(
        world_seed=settings.simulator.world_seed,
        symbols=symbols,
        venues=venues,
        data_root=str(settings.real_data_dir.resolve()),
    )


@contextmanager
def local_venues(
    settings: Settings, mode: Literal["process", "thread"] | None = None
) -> Iterator[dict[str, str]]:
    """Start the simulated venues of ``settings`` and yield venue id → base URL.

    Yields an empty mapping when no venue is simulated (real exchanges only).
    """
    if not any(venue.simulated for venue in settings.venues):
        yield {}
        return
    from tradeflow.simulator import VenueCluster

    cluster = VenueCluster(simulator_spec(settings)).start(mode=mode or settings.simulator.mode)
    try:
        yield dict(cluster.base_urls)
    finally:
        cluster.stop()


def venue_urls(settings: Settings, running: Mapping[str, str]) -> dict[str, str | None]:
    """Return each venue's base URL: the running simulator's, the configured one, or None."""
    urls: dict[str, str | None] = {}
    for venue in settings.venues:
        if venue.simulated:
            if venue.id not in running:
                raise RuntimeError(
                    f"venue {venue.id} is simulated but no local venue is running for it; "
                    "start them with `tradeflow venues up` or let the command start them"
                )
            urls[venue.id] = running[venue.id]
        else:
            urls[venue.id] = venue.base_url
    return urls


# --- the audit chain ----------------------------------------------------------------------------


def local_signing_key_path(settings: Settings) -> Path:
    """Return where the embedded default keeps its generated checkpoint signing key."""
    return settings.data_dir.resolve() / "audit" / "signing-key"


def audit_signing_key(settings: Settings, secret_block_value: str | None = None) -> Ed25519PrivateKey:
    """Return the checkpoint signing key.

    From, in order: the environment variable ``audit.signing_key_env``; the value of the Prefect
    Secret block ``audit.signing_key_block`` (read by the caller, which may use Prefect); in the
    embedded mode, a local key generated once under ``data_dir/audit/``.

    Raises:
        SigningKeyError: in production mode with no key, or when a given key cannot be read.
    """
    config = settings.audit
    text = os.environ.get(config.signing_key_env)
    if text:
        return load_private_key(text, f"${config.signing_key_env}")
    if secret_block_value:
        return load_private_key(secret_block_value, f"Prefect Secret block {config.signing_key_block!r}")
    if config.mode == "production":
        raise SigningKeyError(
            "audit.mode is 'production' but no checkpoint signing key was found: "
            f"set ${config.signing_key_env} (base64 of a 32-byte Ed25519 private key) or name a "
            "Prefect Secret block in audit.signing_key_block. `tradeflow audit keygen` prints a new key pair."
        )
    return local_key(local_signing_key_path(settings))


def checkpoint_location(settings: Settings) -> tuple[ObjectStore, str]:
    """Return the store and prefix checkpoints go to (``audit.checkpoint_url``, or the main store)."""
    url = settings.audit.checkpoint_url
    if url is None:
        return build_store(settings), CHECKPOINT_PREFIX
    store = open_store(
        url,
        s3_endpoint_url=settings.storage.s3_endpoint_url,
        server_side_encryption=settings.storage.s3_server_side_encryption,
        object_lock_days=settings.audit.object_lock_days,
    )
    return store, ""


def build_audit_log(settings: Settings, actor: str | None, key: Ed25519PrivateKey) -> AuditLog:
    """Return an audit log on the main store, checkpointing with ``key``."""
    checkpoint_store, prefix = checkpoint_location(settings)
    return AuditLog(
        build_store(settings),
        actor,
        checkpointer=StoreCheckpointer(checkpoint_store, key, prefix),
        checkpoint_every=settings.audit.checkpoint_every,
        hints=settings.data_dir.resolve() / "audit" / "heads.json",
    )


def trusted_public_keys(settings: Settings) -> dict[str, Ed25519PublicKey]:
    """Return the keys ``audit verify`` trusts: ``audit.public_keys`` and the local key's, if any.

    Raises:
        SigningKeyError: if a configured public key cannot be read (naming it).
    """
    texts = [(text, f"audit.public_keys[{i}]") for i, text in enumerate(settings.audit.public_keys)]
    local = Path(f"{local_signing_key_path(settings)}.pub")
    if local.is_file():
        texts.append((local.read_text(), str(local)))
    signing = os.environ.get(settings.audit.signing_key_env)
    if signing:  # whoever holds the signing key trusts its public half
        source = f"${settings.audit.signing_key_env}"
        texts.append((public_key_text(load_private_key(signing, source).public_key()), source))
    return trusted_keys(texts)


def verify_audit(settings: Settings, *, full: bool = False, check_objects: bool = True) -> VerifyReport:
    """Verify the audit chain the config names, from the last trusted checkpoint unless ``full``.

    A clean run remembers its newest checkpoint in ``data_dir/audit/verified.json`` (the next run
    starts there); damage found from a trusted checkpoint is named against the whole chain.

    Raises:
        SigningKeyError: if a trusted public key cannot be read.
    """
    keys = trusted_public_keys(settings)
    store = build_store(settings)
    checkpoint_store, prefix = checkpoint_location(settings)
    state = settings.data_dir.resolve() / "audit" / "verified.json"
    trusted = None if full else load_trusted(state, store.describe())
    report = verify_chain(store, keys, checkpoint_store=checkpoint_store, checkpoint_prefix=prefix,
                          trusted=trusted, check_objects=check_objects)  # fmt: skip
    if trusted is not None and not report.ok:  # name the damage against the whole chain
        report = verify_chain(store, keys, checkpoint_store=checkpoint_store, checkpoint_prefix=prefix,
                              check_objects=check_objects)  # fmt: skip
    save_trusted(state, report)
    return report


def ledger_url(settings: Settings) -> str:
    """Return the ledger's database URL: ``[ledger] url``, or SQLite in the data folder."""
    from tradeflow.ledger.store import default_url

    if settings.ledger.url:
        return settings.ledger.url
    settings.data_dir.resolve().mkdir(parents=True, exist_ok=True)
    return default_url(settings.data_dir.resolve())
