"""Fixtures for alert tests: a live webhook receiver and sinks pointed at it."""

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from metis.util.server_thread import ServerThread
from tests.alerts.receiver import Receiver

SINK_VARS = (
    "METIS_ALERT_WEBHOOK_URL",
    "METIS_ALERT_WEBHOOK_SECRET",
    "METIS_ALERT_SLACK_WEBHOOK_URL",
)


@dataclass
class Sinks:
    receiver: Receiver
    url: str
    secret: str

    @property
    def webhook(self) -> str:
        return self.url + "/hook"

    @property
    def slack(self) -> str:
        return self.url + "/slack"


@pytest.fixture
def fast_alerts(metis_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Short retry backoff for delivery tests (via alerts.yaml in METIS_HOME)."""
    for k in SINK_VARS:
        monkeypatch.delenv(k, raising=False)
    (Path(metis_env["METIS_HOME"]) / "alerts.yaml").write_text(
        "schema_version: 1\n"
        "delivery:\n"
        "  retry_base_seconds: 0.05\n"
        "  retry_max_seconds: 0.2\n"
        "  poll_seconds: 0.05\n"
        "  timeout_seconds: 2\n"
    )


@pytest.fixture
def sinks(fast_alerts: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sinks]:
    """A running receiver, with METIS_ALERT_* pointing the webhook and Slack sinks at it."""
    rec = Receiver()
    secret = secrets.token_hex(32)
    with ServerThread(rec.app()) as srv:
        s = Sinks(rec, srv.url, secret)
        monkeypatch.setenv("METIS_ALERT_WEBHOOK_URL", s.webhook)
        monkeypatch.setenv("METIS_ALERT_WEBHOOK_SECRET", secret)
        monkeypatch.setenv("METIS_ALERT_SLACK_WEBHOOK_URL", s.slack)
        yield s


@pytest.fixture(autouse=True)
def _fresh_alert_state() -> Iterator[None]:
    from metis.alerts.engine import clear_pending

    clear_pending()
    yield
    clear_pending()
