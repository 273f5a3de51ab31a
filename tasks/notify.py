"""Notifications: a failed flow run, a quarantined batch, a risk halt, a failed audit verify.

``[notifications]`` picks one route, and it becomes a Prefect notification block: a JSON webhook
(the default), a Slack incoming webhook, or e-mail over SMTP. The same block serves both paths:

- in-process, :func:`notify` sends the three events tradeflow itself detects (a quarantined batch,
  a risk halt, a damaged audit chain);
- on the server, the automation :func:`ensure_notifications` creates sends a failed or crashed
  flow run through the saved block, so a run that dies before it can say anything is reported too.

Every :func:`notify` call also emits the Prefect event ``tradeflow.<event>`` (payload: subject,
body and details), whatever the route, for automations of one's own. Sending never raises: a
notification is a side effect, never the reason a flow run fails.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import re
import socket
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from prefect import task
from prefect.blocks.abstract import NotificationBlock
from prefect.cache_policies import NO_CACHE

from tradeflow.audit.verify import DAMAGE, Problem
from tradeflow.config import NotificationsConfig, Settings
from tradeflow.execution.alerts import Alert, Sink

EVENTS = ("flow_run_failed", "batch_quarantined", "risk_halt", "audit_verify_failed")
"""The events that can notify (``[notifications] events``); each is also the Prefect event
``tradeflow.<event>``."""

BLOCK_NAME = "tradeflow-notifications"
"""The block document the failed-run automation sends through (saved by :func:`ensure_notifications`)."""

AUTOMATION_NAME = "tradeflow: flow run failed"

FAILED_RUN_EVENTS = ("prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut")
"""Flow run state events that mean the run failed (TimedOut is a Failed state with its own name)."""

# Jinja templates rendered by the server when the automation fires (event and flow-run variables).
FAILED_RUN_SUBJECT = "tradeflow: flow run {{ flow_run.name }} ({{ flow.name }}) {{ flow_run.state.name }}"
FAILED_RUN_BODY = (
    "Flow run {{ flow_run.name }} of flow {{ flow.name }} entered {{ flow_run.state.name }} "
    "at {{ event.occurred }}.\n"
    "{% if flow_run.state.message %}Message: {{ flow_run.state.message }}\n{% endif %}"
    "Flow run: {{ (flow_run|ui_url) or flow_run.id }}"
)

_SLACK_URL = re.compile(r"^https://hooks\.slack(-gov)?\.com/services/", re.IGNORECASE)
_log = logging.getLogger(__name__)


# --- the route ------------------------------------------------------------------------------------


def notification_block(
    settings: Settings, *, event: str = "flow_run_failed", details: Mapping[str, Any] | None = None
) -> NotificationBlock | None:
    """Return the notification block ``[notifications]`` describes, or None when it is off.

    Args:
        settings: The configuration.
        event: Written into the JSON webhook's body (``event``); the saved block says
            ``flow_run_failed``, the one event the server sends through it.
        details: Written into the JSON webhook's body (``details``).

    Returns:
        webhook: a ``CustomWebhookNotificationBlock`` that POSTs ``{"source", "event", "subject",
        "body", "details"}``; slack: Prefect's ``SlackWebhook`` for a hooks.slack.com URL, else
        (a Slack-compatible endpoint) a custom webhook that POSTs Slack's ``{"text": ...}``; email:
        an Apprise ``mailto://`` route to ``smtp_host``. None without a URL (webhook, slack) or
        without ``smtp_host`` and ``email_to`` (email).
    """
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook

    config = settings.notifications
    if config.channel == "email":
        return _email_block(config)
    url = config.webhook_url
    if not url:
        return None
    if config.channel == "slack" and _SLACK_URL.match(url):
        return SlackWebhook(url=url)
    if config.channel == "slack":
        body: dict[str, Any] = {"text": "*{{subject}}*\n{{body}}"}
    else:
        body = {
            "source": "tradeflow",
            "event": event,
            "subject": "{{subject}}",
            "body": "{{body}}",
            "details": _literal(dict(details or {})),
        }
    # Prefect guards webhook blocks against server-side request forgery (allow_private_urls; the
    # server sends through this block too). 3.8.8 leaves the guard off by default, but turning it
    # on by default has been proposed upstream (PrefectHQ/prefect#22168), so say it explicitly:
    # the URL is the operator's own, and a receiver on this machine or the private network (an
    # Alertmanager, a relay, the tests' receiver) is a legitimate target that the guard would
    # refuse. Allow private addresses only for a URL whose host is one; keep the guard for the rest.
    return CustomWebhookNotificationBlock(
        name="tradeflow", url=url, json_data=body, allow_private_urls=_is_private_host(url)
    )


def _email_block(config: NotificationsConfig) -> NotificationBlock | None:
    """Return an Apprise SMTP route to ``smtp_host``, or None without a host or recipients."""
    from prefect.blocks.notifications import SlackWebhook

    if not config.smtp_host or not config.email_to:
        return None
    user = os.environ.get(config.smtp_username_env or "") or None
    password = os.environ.get(config.smtp_password_env or "") or None
    # STARTTLS on request; port 465 is SMTP over TLS from the first byte; anything else is plain.
    mode = "starttls" if config.smtp_starttls else "ssl" if config.smtp_port == 465 else "insecure"
    credentials = ""
    if user:
        credentials = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "") + "@"
    host = f"[{config.smtp_host}]" if ":" in config.smtp_host else config.smtp_host
    sender = config.email_from or (user if user and "@" in user else "tradeflow@localhost")
    query = urlencode({"from": sender, "to": ",".join(config.email_to), "mode": mode, "name": "tradeflow"})
    scheme = "mailto" if mode == "insecure" else "mailtos"
    # Prefect 3.8 has no SMTP notification block (SendgridEmail needs Sendgrid's API). Its Apprise
    # block that takes a raw Apprise URL is registered as "Slack Webhook": a URL that is not
    # hooks.slack.com goes to Apprise as it is, and Apprise's mailto:// route speaks SMTP. A block
    # type the server already knows is what lets the server-side automation send e-mail too.
    # The URL (with the password) is a secret field: the API and UI show it obfuscated.
    return SlackWebhook(url=f"{scheme}://{credentials}{host}:{config.smtp_port}/?{query}")


def _is_private_host(url: str) -> bool:
    """Return whether the URL's host is (or resolves only to) a loopback, private or link-local address."""
    host = urlsplit(url).hostname or ""
    try:
        addresses = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    return bool(addresses) and all(a.is_private or a.is_loopback or a.is_link_local for a in addresses)


def _literal(value: Any) -> Any:
    """Return ``value`` as plain JSON data with no ``{{`` left for Prefect's template substitution."""

    def scrub(item: Any) -> Any:
        if isinstance(item, str):
            return item.replace("{{", "{ {")
        if isinstance(item, dict):
            return {str(k): scrub(v) for k, v in item.items()}
        if isinstance(item, list):
            return [scrub(v) for v in item]
        return item

    return scrub(json.loads(json.dumps(value, default=str)))


# --- sending --------------------------------------------------------------------------------------


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Return the run logger (shown in the Prefect UI) inside a run, else this module's logger."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return _log


def _emit(event: str, subject: str, body: str, details: Mapping[str, Any]) -> None:
    """Emit ``tradeflow.<event>``; outside a run only when an API server is configured.

    Inside a flow or task run the event goes to the run's API with the run as a related resource.
    Outside one, with no ``PREFECT_API_URL``, there is no server to receive it: Prefect would
    start a temporary one just for this (seconds), whose events nobody could act on, so skip it.
    """
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.events import emit_event
    from prefect.settings import PREFECT_API_URL

    if FlowRunContext.get() is None and TaskRunContext.get() is None and not PREFECT_API_URL.value():
        return
    try:
        emit_event(
            event=f"tradeflow.{event}",
            resource={"prefect.resource.id": f"tradeflow.{event}", "prefect.resource.name": subject[:200]},
            payload={"subject": subject, "body": body, "details": _literal(dict(details))},
        )
    except Exception as error:  # e.g. EventTooLarge: the notification itself still goes out
        _logger().warning("could not emit the tradeflow.%s event: %s", event, error)


def notify(
    settings: Settings, event: str, subject: str, body: str, details: Mapping[str, Any] | None = None
) -> bool:
    """Send one notification through the configured route; never raise.

    Emits the Prefect event ``tradeflow.<event>`` in any case; sends only when ``event`` is in
    ``[notifications] events`` and a route is configured.

    Args:
        settings: The configuration.
        event: One of :data:`EVENTS`.
        subject: A one-line summary (the e-mail subject, the bold line on Slack).
        body: What happened and where to look, for people.
        details: Plain data for machines (the JSON webhook's ``details``, the event's payload).

    Returns:
        Whether a notification was delivered.
    """
    details = dict(details or {})
    _emit(event, subject, body, details)
    if event not in settings.notifications.events:
        return False
    try:
        block = notification_block(settings, event=event, details=details)
        if block is None:
            return False
        with block.raise_on_failure():  # Apprise routes report a failed send only when asked to
            block.notify(body, subject, _sync=True)  # type: ignore[call-arg]
    except Exception as error:
        _logger().warning(
            "could not send the %s notification (%s): %s", event, settings.notifications.channel, error
        )
        return False
    _logger().info("sent the %s notification (%s): %s", event, settings.notifications.channel, subject)
    return True


# --- the server side: the saved block and the failed-run automation -------------------------------


def ensure_notifications(settings: Settings) -> dict[str, str]:
    """Save the route as the block ``tradeflow-notifications`` and the failed-run automation.

    Works against the current API (``PREFECT_API_URL``) and is idempotent: the block is
    overwritten and the automation ``tradeflow: flow run failed`` is updated in place (and
    enabled: the config decides, not a pause in the UI) when it exists. The automation fires on
    every flow run that enters Failed, Crashed or TimedOut and sends the flow run's name, state,
    message and URL through the block. With notifications off (no route, or ``flow_run_failed``
    not among the events) nothing is created, and an automation left from before is paused.

    Returns:
        ``{"block_document_id": ..., "automation_id": ...}``, or ``{}`` when notifications are off.
    """
    from prefect.client.orchestration import get_client
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    block = notification_block(settings, details={"automation": AUTOMATION_NAME})
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(AUTOMATION_NAME)
        if block is None or "flow_run_failed" not in settings.notifications.events:
            for automation in existing:
                if automation.enabled:
                    client.pause_automation(automation.id)
            return {}
        block_id = block.save(BLOCK_NAME, overwrite=True, _sync=True)  # type: ignore[call-arg]
        automation = AutomationCore(
            name=AUTOMATION_NAME,
            description="Notify (tradeflow [notifications]) when a flow run fails, crashes or times out.",
            enabled=True,
            trigger=EventTrigger(
                expect=set(FAILED_RUN_EVENTS),
                match={"prefect.resource.id": "prefect.flow-run.*"},
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(0),
            ),
            actions=[SendNotification(block_document_id=block_id, subject=FAILED_RUN_SUBJECT,
                                      body=FAILED_RUN_BODY)],
        )  # fmt: skip
        if existing:
            automation_id = existing[0].id
            client.update_automation(automation_id, automation)
            for duplicate in existing[1:]:  # two deploys racing once: keep one
                client.delete_automation(duplicate.id)
        else:
            automation_id = client.create_automation(automation)
    return {"block_document_id": str(block_id), "automation_id": str(automation_id)}


# --- the events tradeflow detects ----------------------------------------------------------------


def notify_quarantined(
    settings: Settings, manifest: Mapping[str, Any], describe: Callable[[str], str]
) -> bool:
    """Send one ``batch_quarantined`` notification for a validation run that quarantined batches.

    Args:
        settings: The configuration.
        manifest: The published validation manifest.
        describe: ``ObjectStore.describe``: turns a key into a path or s3:// URL for people.

    Returns:
        Whether a notification was delivered (False, and nothing sent, when nothing was quarantined).
    """
    quarantined = [b for b in manifest.get("batches", []) if b.get("verdict") == "quarantined"]
    if not quarantined:
        return False
    tag = f"{int(manifest['ingest']['sequence']):08d}"
    batches = [
        {
            "batch": b["batch"],
            "reasons": list(b.get("reasons", [])),
            "report": describe(f"{b['quarantine']}/report.json") if b.get("quarantine") else None,
        }
        for b in quarantined
    ]
    reports = manifest.get("reports", {})
    results = describe(reports["results"]) if reports.get("results") else None
    subject = (
        f"tradeflow: {len(batches)} batch{'es' if len(batches) != 1 else ''} quarantined "
        f"(validation {manifest['sequence']}, ingest batch {tag})"
    )
    lines = [f"Validation {manifest['sequence']} of ingest batch {tag} quarantined:"]
    for batch in batches:
        lines.append(f"- {batch['batch']}: {', '.join(batch['reasons']) or 'failed'}")
        if batch["report"]:
            lines.append(f"  report: {batch['report']}")
    if manifest.get("unusable"):
        lines.append(f"No venue passed for: {', '.join(manifest['unusable'])} (nothing curated there).")
    if results:
        lines.append(f"Results: {results}")
    if reports.get("data_docs"):
        lines.append(f"Data Docs: {reports['data_docs']}")
    details = {
        "validation_id": manifest.get("validation_id"),
        "validation_sequence": manifest["sequence"],
        "ingest_sequence": manifest["ingest"]["sequence"],
        "batches": batches,
        "unusable": list(manifest.get("unusable", [])),
        "results": results,
        "flow_run_id": manifest.get("run", {}).get("flow_run_id") or None,
    }
    return notify(settings, "batch_quarantined", subject, "\n".join(lines), details)


def halt_sink(settings: Settings) -> Sink:
    """Return an alert sink for the trading session that notifies ``risk_halt`` on a halt alert.

    The send runs in a worker thread, so a slow route never holds up the trading loop.
    """

    async def send(alert: Alert) -> None:
        if alert.kind != "halt":
            return
        at = datetime.fromtimestamp(alert.time_ms / 1000, UTC).isoformat(timespec="seconds")
        body = (
            f"{alert.summary} (source: {alert.detail.get('source', 'unknown')}) at {at}.\n"
            "No new entries are sent and open orders are cancelled until the halt is released "
            "(`tradeflow kill-switch off` for a kill switch)."
        )
        details = {"summary": alert.summary, "time_ms": alert.time_ms, **alert.detail}
        await asyncio.to_thread(notify, settings, "risk_halt", f"tradeflow: {alert.summary}", body, details)

    return send


def notify_audit_verify_failed(settings: Settings, report: Mapping[str, Any]) -> bool:
    """Send ``audit_verify_failed`` for a damaged chain, naming the first bad entry.

    Args:
        settings: The configuration.
        report: ``VerifyReport.to_dict()`` of a verification that found damage.
    """
    problems = [Problem(p["kind"], p["seq"], p["key"], p["detail"]) for p in report.get("problems", [])]
    if not problems:
        return False
    first = problems[0]
    where = f"entry {first.seq}" if first.seq is not None else "the chain"
    subject = f"tradeflow: audit chain damaged at {where} ({first.kind})"
    lines = [
        f"Audit chain verification failed for {report['store']} ({report['mode']}).",
        f"First bad: {first.describe()}",
        f"({DAMAGE.get(first.kind, first.kind)})",
    ]
    lines += [f"Also: {problem.describe()}" for problem in problems[1:5]]
    if len(problems) > 5:
        lines.append(f"... {len(problems) - 5} more")
    lines.append("Check it with `tradeflow audit verify --full`.")
    details = {
        "store": report["store"],
        "mode": report["mode"],
        "head_seq": report.get("head_seq"),
        "first_problem": {"kind": first.kind, "seq": first.seq, "key": first.key, "detail": first.detail},
        "problems": len(problems),
    }
    return notify(settings, "audit_verify_failed", subject, "\n".join(lines), details)


@task(name="notify-audit-verify-failed", cache_policy=NO_CACHE)
def report_audit_damage(settings: Settings, report: dict[str, Any]) -> bool:
    """Notify (``[notifications]``) that the audit chain failed verification, naming the first bad entry."""
    return notify_audit_verify_failed(settings, report)
