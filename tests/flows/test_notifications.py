"""Notifications, delivered for real to receivers on 127.0.0.1: a JSON webhook, Slack's shape, SMTP.

Each event comes from the real thing that raises it: a validation run that quarantines a batch,
a trading session that halts, a tampered audit chain (the flow and the CLI), and a failed flow
run reported by the automation of a real ``prefect server`` started for the purpose.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.prefect_server import BIN, REPO, free_port, prefect_server
from tradeflow.config import Settings, load_settings

# --- receivers ------------------------------------------------------------------------------------


class WebhookReceiver:
    """A threaded HTTP server that answers 200 and keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._changed:
                    receiver.paths.append(self.path)
                    receiver.bodies.append(json.loads(data))
                    receiver._changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/tradeflow"

    def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
        """Return the first body ``match`` accepts, waiting up to ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((body for body in self.bodies if match(body)), None)
                left = deadline - time.monotonic()
                if found is not None or left <= 0:
                    return found
                self._changed.wait(left)

    def events(self, event: str) -> list[dict[str, Any]]:
        with self._changed:
            return [body for body in self.bodies if body.get("event") == event]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver(socketserver.ThreadingTCPServer):
    """Just enough of an SMTP server (EHLO, AUTH PLAIN, MAIL, RCPT, DATA) to receive a message."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", 0), _SmtpSession)
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _SmtpSession(socketserver.StreamRequestHandler):
    server: SmtpReceiver

    def reply(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")

    def handle(self) -> None:
        self.reply("220 127.0.0.1 test SMTP")
        message: dict[str, Any] = {"sender": None, "recipients": [], "auth": None}
        while line := self.rfile.readline():
            command = line.decode().rstrip("\r\n")
            verb, _, argument = command.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                self.reply("250-127.0.0.1\r\n250-AUTH PLAIN\r\n250 8BITMIME")
            elif verb == "HELO":
                self.reply("250 127.0.0.1")
            elif verb == "AUTH":
                _, _, initial = argument.partition(" ")  # PLAIN only
                if not initial:
                    self.reply("334 ")
                    initial = self.rfile.readline().decode().strip()
                _, user, password = base64.b64decode(initial).decode().split("\0")
                message["auth"] = (user, password)
                self.reply("235 2.7.0 Authentication successful")
            elif verb == "MAIL":
                message["sender"] = argument.split(":", 1)[1].strip().strip("<>").split(">")[0]
                self.reply("250 OK")
            elif verb == "RCPT":
                message["recipients"].append(argument.split(":", 1)[1].strip().strip("<>"))
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                data = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                message["message"] = email.message_from_bytes(data, policy=email.policy.default)
                self.server.messages.append(message)
                message = {"sender": None, "recipients": [], "auth": message["auth"]}
                self.reply("250 OK: queued")
            elif verb in ("RSET", "NOOP"):
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("502 Command not implemented")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture
def smtp_receiver() -> Iterator[SmtpReceiver]:
    server = SmtpReceiver()
    yield server
    server.shutdown()
    server.server_close()


def with_notifications(config: str, section: str) -> str:
    """Append a ``[notifications]`` section to a config file; return its path."""
    path = Path(config)
    path.write_text(path.read_text() + f"\n[notifications]\n{section}\n")
    return config


def webhook_settings(write_config: Callable[..., str], url: str, extra: str = "") -> Settings:
    return load_settings(with_notifications(write_config(), f'webhook_url = "{url}"\n{extra}'))


def plain_text(message: email.message.EmailMessage) -> str:
    """Return the text of every text part of an e-mail."""
    return "\n".join(part.get_content() for part in message.walk() if part.get_content_maintype() == "text")


# --- the events tradeflow detects ------------------------------------------------------------------


def test_a_quarantined_batch_is_notified_with_its_name_reasons_and_report(
    write_config: Callable[..., str], receiver: WebhookReceiver
) -> None:
    from flows.ingest import ingest_market_data
    from flows.validate import validate_market_data

    venues = [("sim-alpha", 11, ["BTC/USDT"], ""), ("sim-beta", 22, ["BTC/USDT"], ", spike_rate = 0.01")]
    config = write_config(venues=venues)
    path = Path(config)
    text = path.read_text().replace(
        'symbols = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]', 'symbols = ["BTC/USDT"]'
    )
    text = text.replace('timeframes = ["1m", "1h"]', 'timeframes = ["1m"]')
    path.write_text(text + '\n[validation]\npolicies = { price_spikes = "fail" }\n')
    with_notifications(config, f'webhook_url = "{receiver.url}"')

    ingest_market_data(config_path=config)
    result = validate_market_data(config_path=config)

    run = result["runs"][0]
    quarantined = [b for g in run["groups"] for b in g["batches"] if b["verdict"] == "quarantined"]
    assert [b["venue"] for b in quarantined] == ["sim-beta"]
    [body] = receiver.events("batch_quarantined")  # one per validation run, sent before it returned
    assert body["source"] == "tradeflow"
    assert "1 batch quarantined" in body["subject"] and "ingest batch 00000001" in body["subject"]
    assert "candles sim-beta BTC/USDT 1m: candles/price_spikes" in body["body"]
    [batch] = body["details"]["batches"]
    assert batch["batch"] == "candles sim-beta BTC/USDT 1m" and batch["reasons"] == ["candles/price_spikes"]
    lake = Path(load_settings(config).storage.url)
    assert batch["report"] == str(lake / quarantined[0]["quarantine"] / "report.json")
    assert Path(batch["report"]).is_file() and batch["report"] in body["body"]
    assert body["details"]["validation_id"] == run["validation_id"]


def test_a_risk_halt_is_notified(write_config: Callable[..., str], receiver: WebhookReceiver) -> None:
    from flows.execution import stream_execution

    config = write_config(venues=[("sim-alpha", 11, None, "")])
    extra = '\n[execution]\nstrategy = "churn"\nhealth_port = 0\n'
    Path(config).write_text(Path(config).read_text().replace("[[venues]]", extra + "\n[[venues]]", 1))
    with_notifications(config, f'webhook_url = "{receiver.url}"')

    result = stream_execution(config_path=config, mode="paper", duration_seconds=2.0, kill_switch=True)

    assert result["state"] == "HALTED" and result["orders_sent"] == 0
    [body] = receiver.events("risk_halt")
    reason = "kill switch: stream-execution started with kill_switch = true"
    assert body["subject"] == f"tradeflow: trading HALTED on sim-alpha: {reason}"
    assert "source: prefect" in body["body"] and body["details"]["source"] == "prefect"


def _chain_with_a_checkpoint(settings: Settings) -> None:
    """Five audit entries, the first three covered by a signed checkpoint."""
    from tasks.audit import audit_log

    log = audit_log(settings)
    for seq in range(1, 4):
        log.append("ingest_batch", {"id": f"batch-{seq}", "rows": 100 + seq})
    log.checkpoint()
    for seq in range(4, 6):
        log.append("ingest_batch", {"id": f"batch-{seq}", "rows": 100 + seq})


def _tamper(settings: Settings, seq: int) -> None:
    """Edit the payload of entry ``seq`` in place, as someone with write access to the store would."""
    from tradeflow.audit.chain import segment_key
    from tradeflow.bootstrap import build_store

    path = Path(build_store(settings).describe(segment_key(seq)))
    data = path.read_bytes()
    edited = data.replace(b'"rows":%d' % (100 + seq), b'"rows":%d' % (900 + seq))
    assert edited != data
    path.write_bytes(edited)


def test_a_damaged_audit_chain_fails_the_verify_flow_and_notifies_naming_the_first_bad_entry(
    write_config: Callable[..., str], receiver: WebhookReceiver
) -> None:
    from prefect.client.orchestration import get_client

    from flows.audit import verify_audit_chain
    from tradeflow.audit.verify import ChainDamagedError

    config = with_notifications(write_config(), f'webhook_url = "{receiver.url}"')
    settings = load_settings(config)
    _chain_with_a_checkpoint(settings)
    clean = verify_audit_chain(config_path=config)
    assert clean["ok"] and clean["head_seq"] == 5 and clean["checkpoints"] == 1
    assert receiver.bodies == []  # an intact chain notifies nobody

    _tamper(settings, 4)
    with pytest.raises(ChainDamagedError, match=r"first bad entry 4 \(audit/chain/.*\): content_edited"):
        verify_audit_chain(config_path=config)

    [body] = receiver.events("audit_verify_failed")
    assert body["subject"] == "tradeflow: audit chain damaged at entry 4 (content_edited)"
    assert "First bad: entry 4 (audit/chain/" in body["body"]
    assert body["details"]["first_problem"]["seq"] == 4
    assert body["details"]["first_problem"]["kind"] == "content_edited"
    with get_client(sync_client=True) as client:
        artifact = next(a for a in client.read_latest_artifacts() if a.key == "audit-verification")
    assert "**DAMAGED**" in artifact.data and "First bad: **entry 4 (audit/chain/" in artifact.data


def test_tradeflow_audit_verify_notifies_a_damaged_chain(
    write_config: Callable[..., str], receiver: WebhookReceiver
) -> None:
    from tradeflow.cli import app

    config = with_notifications(write_config(), f'webhook_url = "{receiver.url}"')
    settings = load_settings(config)
    _chain_with_a_checkpoint(settings)
    _tamper(settings, 2)

    result = CliRunner().invoke(app, ["audit", "verify", "--config", config])

    assert result.exit_code == 1, result.output
    [body] = receiver.events("audit_verify_failed")
    assert body["subject"] == "tradeflow: audit chain damaged at entry 2 (content_edited)"
    assert body["details"]["store"] == str(Path(settings.storage.url))


# --- the failed-run automation on a real server ----------------------------------------------------

DOOMED_FLOW = """
import sys
from prefect import flow
from tasks.notify import notify
from tradeflow.config import load_settings

@flow(name="tradeflow-notification-check", flow_run_name=sys.argv[1])
def doomed(config_path):
    settings = load_settings(config_path)
    notify(settings, "batch_quarantined", "tradeflow: a test event", "body", {"batch": "b1"})
    raise RuntimeError("deliberate failure for the notification test")

doomed(sys.argv[2])
"""


def _events(api_url: str, name: str) -> list[dict[str, Any]]:
    """Return the events named ``name`` the server has recorded."""
    import httpx

    query = {"filter": {"event": {"name": [name]}}, "limit": 10}
    return list(httpx.post(f"{api_url}/events/filter", json=query, timeout=10).json()["events"])


@pytest.mark.skipif(not (BIN / "prefect").exists(), reason="needs the prefect CLI to start a real server")
def test_a_failed_flow_run_is_notified_by_the_automation_on_a_real_prefect_server(
    write_config: Callable[..., str], receiver: WebhookReceiver
) -> None:
    """Needs a real ``prefect server`` (started here, about 15 s): its triggers and actions send it."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tasks.notify import AUTOMATION_NAME, BLOCK_NAME, ensure_notifications

    config = with_notifications(write_config(), f'webhook_url = "{receiver.url}"')
    settings = load_settings(config)
    run_name = f"doomed-{uuid.uuid4().hex[:8]}"
    with prefect_server() as server:
        # The server's API for this block only: the session's harness stays the default elsewhere.
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            first = ensure_notifications(settings)
            again = ensure_notifications(settings)  # tradeflow deploy, then tradeflow serve
            with get_client(sync_client=True) as client:
                automations = client.read_automations_by_name(AUTOMATION_NAME)
                block = client.read_block_document(first["block_document_id"])
        assert again == first
        assert [a.id for a in automations] == [uuid.UUID(first["automation_id"])] and automations[0].enabled
        assert block.name == BLOCK_NAME

        command = [sys.executable, "-c", DOOMED_FLOW, run_name, config]
        failed = subprocess.run(command, cwd=REPO, env=server.env, capture_output=True, text=True,
                                timeout=300, check=False)  # fmt: skip
        assert failed.returncode != 0 and "deliberate failure" in failed.stderr, failed.stderr[-3000:]

        body = receiver.wait_for(lambda b: run_name in b.get("body", ""), timeout=180)
        assert body is not None, f"no notification; server log:\n{server.logs()}"
        # The in-flow notification's event, recorded by the server with the flow run it came from.
        deadline = time.monotonic() + 60
        while not (events := _events(server.api_url, "tradeflow.batch_quarantined")):
            assert time.monotonic() < deadline, f"no tradeflow event recorded:\n{server.logs()}"
            time.sleep(0.5)
        # Notifications turned off later: the next deploy pauses the automation, creates nothing.
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            assert ensure_notifications(load_settings(write_config("off.toml"))) == {}
            with get_client(sync_client=True) as client:
                [paused] = client.read_automations_by_name(AUTOMATION_NAME)
        assert not paused.enabled
    assert body["event"] == "flow_run_failed"
    assert body["subject"] == f"tradeflow: flow run {run_name} (tradeflow-notification-check) Failed"
    assert f"Flow run {run_name} of flow tradeflow-notification-check entered Failed" in body["body"]
    assert "deliberate failure for the notification test" in body["body"]
    assert "/runs/flow-run/" in body["body"]  # the flow run's page in the UI
    [event] = events
    assert (
        event["payload"]["details"] == {"batch": "b1"}
        and event["payload"]["subject"] == "tradeflow: a test event"
    )
    related = {r["prefect.resource.role"]: r.get("prefect.resource.name") for r in event["related"]}
    assert related["flow-run"] == run_name
    assert receiver.events("batch_quarantined")[0]["details"] == {"batch": "b1"}


# --- the routes -----------------------------------------------------------------------------------


def test_email_goes_to_the_smtp_server_with_the_credentials_from_the_environment(
    write_config: Callable[..., str], smtp_receiver: SmtpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.blocks.notifications import SlackWebhook

    from tasks.notify import notification_block, notify

    monkeypatch.setenv("TRADEFLOW_TEST_SMTP_USER", "alerts@example.com")
    monkeypatch.setenv("TRADEFLOW_TEST_SMTP_PASSWORD", "p@ss/w:rd")
    config = with_notifications(write_config(), f"""
channel = "email"
smtp_host = "127.0.0.1"
smtp_port = {smtp_receiver.port}
smtp_starttls = false
smtp_username_env = "TRADEFLOW_TEST_SMTP_USER"
smtp_password_env = "TRADEFLOW_TEST_SMTP_PASSWORD"
email_from = "tradeflow@example.com"
email_to = ["ops@example.com", "risk@example.com"]
""")  # fmt: skip
    settings = load_settings(config)

    assert notify(settings, "risk_halt", "tradeflow: trading HALTED on sim-alpha", "The body.\nLine two.")

    sent = smtp_receiver.messages  # one message per recipient
    assert sorted(r for m in sent for r in m["recipients"]) == ["ops@example.com", "risk@example.com"]
    for message in sent:
        assert message["auth"] == ("alerts@example.com", "p@ss/w:rd")
        assert message["sender"] == "tradeflow@example.com"
        assert message["message"]["subject"] == "tradeflow: trading HALTED on sim-alpha"
        assert "Line two." in plain_text(message["message"])

    # What the server-side automation does: load the saved block and send through it.
    block = notification_block(settings)
    assert block is not None
    block.save("tradeflow-notifications-email-test", overwrite=True)
    loaded = SlackWebhook.load("tradeflow-notifications-email-test")
    with loaded.raise_on_failure():
        loaded.notify("Sent by a loaded block.", "tradeflow: loaded")
    assert smtp_receiver.messages[-1]["message"]["subject"] == "tradeflow: loaded"


def test_slack_gets_slacks_json_shape(write_config: Callable[..., str], receiver: WebhookReceiver) -> None:
    from prefect.blocks.notifications import SlackWebhook

    from tasks.notify import notification_block, notify

    config = with_notifications(write_config(), f'channel = "slack"\nwebhook_url = "{receiver.url}"')
    settings = load_settings(config)

    assert notify(settings, "batch_quarantined", "tradeflow: 1 batch quarantined", "- candles sim-beta ...")

    [body] = receiver.bodies
    assert body == {"text": "*tradeflow: 1 batch quarantined*\n- candles sim-beta ..."}
    # A real Slack URL goes through Prefect's own Slack block.
    real = settings.model_copy(update={"notifications": settings.notifications.model_copy(
        update={"webhook_url": "https://hooks.slack.com/services/T000/B000/XXXX"})})  # fmt: skip
    assert isinstance(notification_block(real), SlackWebhook)


def test_notifications_off_send_nothing_and_create_nothing(
    write_config: Callable[..., str], receiver: WebhookReceiver
) -> None:
    from prefect.client.orchestration import get_client

    from tasks.notify import AUTOMATION_NAME, ensure_notifications, notification_block, notify

    off = load_settings(write_config())
    assert off.notifications.webhook_url is None and notification_block(off) is None
    assert notify(off, "risk_halt", "tradeflow: halted", "body") is False
    assert ensure_notifications(off) == {}
    with get_client(sync_client=True) as client:
        assert client.read_automations_by_name(AUTOMATION_NAME) == []

    only_halts = webhook_settings(write_config, receiver.url, 'events = ["risk_halt"]')
    assert notify(only_halts, "batch_quarantined", "tradeflow: quarantined", "body") is False
    assert receiver.bodies == []


def test_a_failed_delivery_is_a_warning_not_an_error(
    write_config: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    from tasks.notify import notify

    settings = webhook_settings(write_config, f"http://127.0.0.1:{free_port()}/nobody-listens")
    assert notify(settings, "risk_halt", "tradeflow: halted", "body") is False
    assert "could not send the risk_halt notification (webhook)" in caplog.text
