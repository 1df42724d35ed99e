"""Alert sinks: the generic JSON webhook, the Slack incoming webhook, and the log.

Webhook requests are signed so a receiver can check they came from this
Metis and are fresh:

- ``X-Metis-Timestamp``: Unix seconds when the attempt was sent;
- ``X-Metis-Signature``: ``sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``;
- ``X-Metis-Alert-Id`` / ``X-Metis-Event-Id``: stable across retries, for
  receivers to deduplicate.

The body is the ``alert.fired`` event payload as JSON (money as JSON
numbers). Without ``METIS_ALERT_WEBHOOK_SECRET`` no signature header is sent.
Errors raised here name the sink and the HTTP status or the exception class,
never the URL (a Slack URL is a credential).
"""

import contextlib
import hashlib
import hmac
import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from metis import jsonutil
from metis.alerts.rules import SinkConfig
from metis.ingest.log import redact_stdlib_logger, register_secret

redact_stdlib_logger("httpx")  # its request log line carries the (secret) Slack URL

SIGNATURE_HEADER = "X-Metis-Signature"
TIMESTAMP_HEADER = "X-Metis-Timestamp"
USER_AGENT = "metis-alerts/1"


class DeliveryError(Exception):
    """One delivery attempt failed; the message is safe to store and show."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance_seconds: int = 300,
    now: float | None = None,
) -> bool:
    """Check a received webhook: valid signature and a timestamp within tolerance."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


NUMERIC_FIELDS = ("threshold", "value", "limit_usd", "current_usd")


def wire_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload as sent: stored decimal strings become exact JSON numbers."""
    out = dict(payload)
    for k in NUMERIC_FIELDS:
        v = out.get(k)
        if isinstance(v, str):
            with contextlib.suppress(InvalidOperation):
                out[k] = Decimal(v)
    return out


def webhook_request(
    payload: Mapping[str, Any], event_id: str, secret: str | None, now: float | None = None
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of one webhook attempt."""
    body = jsonutil.dumps(wire_payload(payload))
    ts = str(int(time.time() if now is None else now))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: ts,
        "X-Metis-Event-Id": event_id,
        "X-Metis-Alert-Id": str(payload.get("alert_id", "")),
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, ts, body)
    return body, headers


_ICONS = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":white_check_mark:"}


def text_of(payload: Mapping[str, Any]) -> str:
    """A one-line human summary of an alert payload."""
    state = "RESOLVED" if payload.get("state") == "resolved" else str(payload.get("severity", ""))
    prefix = "[TEST] " if payload.get("test") else ""
    return f"{prefix}Metis {state.upper()} {payload.get('kind')}: {payload.get('message')}"


def slack_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook body (``text`` plus one section block)."""
    icon = _ICONS.get(
        "info" if payload.get("state") == "resolved" else str(payload.get("severity")), ""
    )
    text = text_of(payload)
    fields = [
        f"*{k}*: {payload[k]}"
        for k in (
            "scope",
            "scope_name",
            "scope_id",
            "period",
            "threshold",
            "value",
            "unit",
            "workspace_id",
        )
        if payload.get(k) not in (None, "")
    ]
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} {text}".strip()}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(fields)}]},
        ],
    }


async def send(
    client: httpx.AsyncClient,
    sink: str,
    payload: Mapping[str, Any],
    event_id: str,
    sinks: SinkConfig,
) -> None:
    """Send one alert to ``sink``; raise `DeliveryError` on any failure."""
    if sink == "webhook":
        if not sinks.webhook_url:
            raise DeliveryError("webhook sink is not configured")
        url = sinks.webhook_url
        body, headers = webhook_request(payload, event_id, sinks.webhook_secret)
    elif sink == "slack":
        if not sinks.slack_url:
            raise DeliveryError("slack sink is not configured")
        url = sinks.slack_url
        # The URL is the Slack secret, and httpx logs every request URL at INFO.
        register_secret(url)
        register_secret(str(httpx.URL(url)))
        body = jsonutil.dumps(slack_payload(payload))
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    else:
        raise DeliveryError(f"unknown sink {sink!r}")
    try:
        resp = await client.post(url, content=body, headers=headers)
    except httpx.TimeoutException:
        raise DeliveryError(f"{sink}: timed out") from None
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{sink}: {type(exc).__name__}") from None
    if resp.status_code >= 300:
        raise DeliveryError(f"{sink}: HTTP {resp.status_code}")
