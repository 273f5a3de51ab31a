"""Prefect tasks and helpers that write the audit chain: entries, checkpoints, the trail artifact.

Entries are appended inside the task that publishes the step they record (see
:func:`record_steps`), so a step is reported done only once its entry is durable. Each flow run
ends with :func:`checkpoint_audit`: a signed checkpoint of the head, and an ``audit-trail``
artifact listing the entries the run wrote.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tradeflow.audit.chain import AuditLog, default_actor
from tradeflow.audit.records import Item, record
from tradeflow.audit.verify import DAMAGE, VerifyReport
from tradeflow.bootstrap import audit_signing_key, build_audit_log, build_store, verify_audit
from tradeflow.config import Settings


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """Return the checkpoint signing key: environment, Prefect Secret block, or the local key."""
    block_value = None
    if settings.audit.signing_key_block and not _in_environment(settings):
        from prefect.blocks.system import Secret

        block_value = str(Secret.load(settings.audit.signing_key_block).get())
    return audit_signing_key(settings, block_value)


def _in_environment(settings: Settings) -> bool:
    import os

    return bool(os.environ.get(settings.audit.signing_key_env))


def actor() -> str:
    """Return this run's actor: ``flow-run:<id>`` inside a flow run, else the process."""
    run_id = flow_run.id
    return f"flow-run:{run_id}" if run_id else default_actor()


def audit_log(settings: Settings) -> AuditLog:
    """Return an audit log for the current flow run."""
    return build_audit_log(settings, actor(), signing_key(settings))


def record_steps(settings: Settings, items: list[Item]) -> list[dict[str, Any]]:
    """Commit ``items`` as one segment; return the entries (plain data) once durable."""
    return [entry.to_dict() for entry in record(audit_log(settings), items)]


def trail_markdown(store_description: str, entries: list[dict[str, Any]], checkpoint: str | None) -> str:
    """Return the ``audit-trail`` artifact: the run's entries and its checkpoint."""
    lines = [
        "# Audit trail of this run",
        "",
        f"Chain: `{store_description}`",
        "",
        "| seq | kind | id | hash |",
        "|---:|---|---|---|",
    ]
    for entry in entries:
        subject = str(entry["payload"].get("id", ""))
        lines.append(f"| {entry['seq']} | {entry['kind']} | `{subject[:24]}` | `{entry['hash'][:16]}` |")
    if not entries:
        lines.append("| | nothing recorded | | |")
    lines += [
        "",
        f"Signed checkpoint: `{checkpoint}`"
        if checkpoint
        else "No new checkpoint (the head was already signed).",
        "",
        "Check the chain with `tradeflow audit verify`; trace an id with `tradeflow audit explain ID`.",
    ]
    return "\n".join(lines)


@task(name="checkpoint-audit", retries=1, retry_delay_seconds=1, cache_policy=NO_CACHE)
def checkpoint_audit(settings: Settings, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Sign a checkpoint of the audit chain's head and link this run's entries in an artifact."""
    log = audit_log(settings)
    head = log.head(refresh=True)
    key = log.checkpoint() if head.seq else None
    create_markdown_artifact(
        key="audit-trail",
        markdown=trail_markdown(build_store(settings).describe("audit/chain/"), entries, key),
        description="Audit entries written by this run, and the signed checkpoint of the chain's head",
    )
    return {"head_seq": head.seq, "head_hash": head.hash, "checkpoint": key, "entries": len(entries)}


def verification_markdown(report: VerifyReport) -> str:
    """Return the ``audit-verification`` artifact: what was checked, and the damage found."""
    status = "**intact**" if report.ok else "**DAMAGED**"
    rows = [
        ("chain", f"`{report.store}`"),
        ("result", status),
        ("mode", report.mode),
        ("entries re-hashed and linked", f"{report.start_seq}..{report.head_seq} ({report.entries:,})"),
        ("signed checkpoints good", f"{report.checkpoints} (newest at entry {report.newest_checkpoint})"),
        ("referenced objects re-hashed", f"{report.objects:,}"),
        ("head", f"{report.head_seq}: `{report.head_hash[:16]}`"),
        ("seconds", f"{report.seconds:.2f}"),
    ]
    lines = ["# Audit chain verification", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    if not report.ok:
        first = report.problems[0]
        lines += ["", f"First bad: **{first.describe()}**", "", f"({DAMAGE.get(first.kind, first.kind)})", ""]
        lines += ["| seq | kind | object | detail |", "|---:|---|---|---|"]
        for problem in report.problems:
            seq = "" if problem.seq is None else problem.seq
            lines.append(f"| {seq} | {problem.kind} | `{problem.key}` | {problem.detail.replace('|', '/')} |")
    return "\n".join(lines)


@task(name="check-audit-chain", cache_policy=NO_CACHE)
def check_audit_chain(settings: Settings, full: bool, check_objects: bool) -> dict[str, Any]:
    """Re-hash and re-link the audit chain, check its signed checkpoints and referenced objects.

    Starts from the last checkpoint a clean verification confirmed (``full`` = from the first
    entry) and publishes an ``audit-verification`` artifact. Returns the report as plain data,
    with ``message`` naming the first bad entry when damage was found.
    """
    report = verify_audit(settings, full=full, check_objects=check_objects)
    create_markdown_artifact(
        key="audit-verification",
        markdown=verification_markdown(report),
        description="Audit chain verification: " + ("intact" if report.ok else "damaged"),
    )
    return report.to_dict() | {"message": report.damage_message()}
