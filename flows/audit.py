"""The ``verify-audit-chain`` flow: composition only (verify, report, notify, fail loudly)."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.utilities.annotations import quote

from tasks.audit import check_audit_chain
from tasks.notify import notify_audit_verify_failed, report_audit_damage
from tradeflow.audit.verify import ChainDamagedError
from tradeflow.config import load_settings

__all__ = ["notify_audit_verify_failed", "verify_audit_chain"]  # the CLI notifies through this module


@flow(name="verify-audit-chain", log_prints=True)
def verify_audit_chain(
    config_path: str | None = None, full: bool = False, check_objects: bool = True
) -> dict[str, Any]:
    """Check the tamper-evident audit chain: every hash, link, signed checkpoint and referenced object.

    Starts from the newest checkpoint an earlier clean run confirmed (``full`` re-verifies from
    the first entry) and publishes an ``audit-verification`` artifact. When anything is damaged
    it notifies (``[notifications]``, event ``audit_verify_failed``) and the run fails, naming the
    first bad entry and the kind of damage; ``tradeflow audit verify --full`` shows the rest.

    Args:
        config_path: TOML config file; default ``$TRADEFLOW_CONFIG`` or ``./tradeflow.toml``.
        full: Verify from the first entry, not from the last trusted checkpoint.
        check_objects: Re-hash the objects entries reference (manifests, reports, snapshots).
    """
    settings = load_settings(config_path)
    report = check_audit_chain(quote(settings), full, check_objects)
    if not report["ok"]:
        report_audit_damage(quote(settings), quote(report))
        raise ChainDamagedError(report["message"])
    return report
