"""Sink payloads: the webhook signature and the Slack-compatible body."""

import time
from decimal import Decimal

from metis import jsonutil
from metis.alerts.sinks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    slack_payload,
    verify,
    webhook_request,
)

PAYLOAD = {
    "alert_id": "alert_1",
    "kind": "budget_threshold",
    "state": "firing",
    "severity": "warning",
    "scope": "team_daily",
    "scope_id": "team_1",
    "period": "2026-11-22",
    "threshold": "80",
    "current_usd": "0.800000001",
    "message": "team_daily spend of team_1 reached 80% of its cap",
}


def test_webhook_signature_covers_timestamp_and_body() -> None:
    body, headers = webhook_request(PAYLOAD, "evt_1", "k")
    ts, sig = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    assert sig.startswith("sha256=") and headers["X-Metis-Event-Id"] == "evt_1"
    assert verify("k", ts, body, sig)
    assert not verify("other", ts, body, sig)
    assert not verify("k", str(int(ts) + 1), body, sig)
    assert not verify("k", ts, body + b" ", sig)
    assert not verify("k", ts, body, sig, now=time.time() + 3600)  # replay of an old request
    # Money goes out as an exact JSON number.
    assert b'"current_usd":0.800000001' in body
    assert jsonutil.loads(body)["threshold"] == 80


def test_no_secret_means_no_signature_header() -> None:
    _, headers = webhook_request(PAYLOAD, "evt_1", None)
    assert SIGNATURE_HEADER not in headers


def test_slack_payload_has_text_and_blocks() -> None:
    p = slack_payload(PAYLOAD)
    assert "budget_threshold" in p["text"] and "team_1" in p["text"]
    assert p["blocks"][0]["type"] == "section"
    assert "threshold*: 80" in p["blocks"][1]["elements"][0]["text"]
    resolved = slack_payload({**PAYLOAD, "state": "resolved"})
    assert "RESOLVED" in resolved["text"]
    assert Decimal(PAYLOAD["current_usd"]) == Decimal("0.800000001")
