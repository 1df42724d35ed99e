"""The delivery worker: sends the alert outbox to the sinks, with retries and backoff.

Runs as a background task of ``metis serve``. Each pass it records the
budget crossings the gateway queued in memory, then claims due rows of
``alert_deliveries`` and posts them concurrently. A failed attempt is
rescheduled with exponential backoff (``DeliveryConfig.backoff``) until
``max_attempts``, then marked ``failed``; failures are visible in
``metis alerts status`` and in the Prometheus metrics
``metis_alert_deliveries_total{sink,outcome}`` and
``metis_alert_deliveries_pending``.

The gateway never waits for any of this: its only part is an in-memory
append (`metis.alerts.engine.check_budget_crossings`). Database calls run in
a worker thread so a slow SQLite write never stalls the event loop.

Claiming is an optimistic UPDATE of ``next_attempt_at``, so several
replicas can run workers on one database without sending a row twice
(short of a worker dying mid-send, when the row is retried after the claim
expires: delivery is at least once; receivers deduplicate on
``X-Metis-Event-Id``).
"""

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from prometheus_client import Counter, Gauge
from sqlalchemy import Connection, Engine, func, select, update

from metis.alerts.engine import AlertEngine
from metis.alerts.rules import AlertConfig
from metis.alerts.sinks import DeliveryError, send
from metis.db.tables import alert_deliveries
from metis.timeutil import utcnow

log = logging.getLogger("metis.alerts")

DELIVERIES = Counter(
    "metis_alert_deliveries",
    "Alert delivery attempts by sink and outcome (delivered, retry, failed).",
    ["sink", "outcome"],
)
PENDING = Gauge("metis_alert_deliveries_pending", "Alert deliveries waiting to be sent.")
CLAIM_SECONDS = 120
BATCH = 50


@dataclass
class PassResult:
    """What one worker pass did."""

    delivered: int = 0
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class DeliveryWorker:
    """Delivers due outbox rows; `run` loops until its stop event is set."""

    def __init__(self, db: Engine, config: AlertConfig) -> None:
        self.db = db
        self.config = config
        self.engine = AlertEngine(db, config)

    # -- database side (sync, called in a thread) -----------------------------------------

    def claim_due(self, now: datetime, limit: int = BATCH) -> list[dict[str, Any]]:
        """Claim up to ``limit`` due pending rows (pushing their next attempt out)."""
        d = alert_deliveries.c
        with self.db.begin() as conn:
            rows = list(
                conn.execute(
                    select(d.id, d.event_id, d.sink, d.payload, d.attempts, d.next_attempt_at)
                    .where(d.status == "pending", d.next_attempt_at <= now)
                    .order_by(d.next_attempt_at, d.id)
                    .limit(limit)
                ).mappings()
            )
            claimed = []
            until = now + timedelta(seconds=CLAIM_SECONDS)
            for r in rows:
                res = conn.execute(
                    update(alert_deliveries)
                    .where(
                        d.id == r["id"],
                        d.status == "pending",
                        d.next_attempt_at == r["next_attempt_at"],
                    )
                    .values(next_attempt_at=until)
                )
                if res.rowcount == 1:
                    claimed.append(dict(r))
            return claimed

    def record(self, row: Mapping[str, Any], error: str | None, now: datetime) -> str:
        """Store the outcome of one attempt; returns delivered, retry or failed."""
        attempts = int(row["attempts"]) + 1
        values: dict[str, Any] = {"attempts": attempts, "last_attempt_at": now}
        if error is None:
            outcome = "delivered"
            values.update(status="delivered", delivered_at=now, last_error=None)
        elif attempts >= self.config.delivery.max_attempts:
            outcome = "failed"
            values.update(status="failed", last_error=error)
        else:
            outcome = "retry"
            wait = self.config.delivery.backoff(attempts)
            values.update(last_error=error, next_attempt_at=now + timedelta(seconds=wait))
        with self.db.begin() as conn:
            conn.execute(
                update(alert_deliveries).where(alert_deliveries.c.id == row["id"]).values(**values)
            )
        DELIVERIES.labels(row["sink"], outcome).inc()
        return outcome

    def pending_count(self) -> int:
        with self.db.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(alert_deliveries.c.status == "pending")
                ).scalar()
                or 0
            )

    # -- network side --------------------------------------------------------------------

    async def run_once(self, client: httpx.AsyncClient | None = None) -> PassResult:
        """Record queued crossings, then send every due delivery once."""
        result = PassResult()
        try:
            await asyncio.to_thread(self.engine.drain_pending)
        except Exception:
            log.exception("alerts: recording queued budget crossings failed")
        now = utcnow()
        rows = await asyncio.to_thread(self.claim_due, now)
        if rows:
            own = client is None
            http = client or httpx.AsyncClient(timeout=self.config.delivery.timeout_seconds)
            try:
                outcomes = await asyncio.gather(*(self._attempt(http, r) for r in rows))
            finally:
                if own:
                    await http.aclose()
            for outcome, err in outcomes:
                if outcome == "delivered":
                    result.delivered += 1
                elif outcome == "retry":
                    result.retried += 1
                else:
                    result.failed += 1
                if err:
                    result.errors.append(err)
        PENDING.set(await asyncio.to_thread(self.pending_count))
        return result

    async def _attempt(self, http: httpx.AsyncClient, row: Mapping[str, Any]) -> tuple[str, str]:
        err: str | None = None
        try:
            await send(http, row["sink"], row["payload"], row["event_id"], self.config.sinks)
        except DeliveryError as exc:
            err = str(exc)
        except Exception as exc:  # a bug in a sink must not kill the worker
            err = f"{row['sink']}: {type(exc).__name__}"
        outcome = await asyncio.to_thread(self.record, row, err, utcnow())
        if err:
            log.warning("alerts: delivery %s of %s: %s (%s)", row["id"], row["sink"], err, outcome)
        return outcome, err or ""

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, polling every ``poll_seconds``."""
        async with httpx.AsyncClient(timeout=self.config.delivery.timeout_seconds) as client:
            while not stop.is_set():
                try:
                    await self.run_once(client)
                except Exception:
                    log.exception("alerts: delivery pass failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.delivery.poll_seconds)


def delivery_status(conn: Connection, *, limit: int = 20) -> dict[str, Any]:
    """Counts of deliveries by sink and status, plus the newest pending/failed rows."""
    d = alert_deliveries.c
    counts = [
        {"sink": s, "status": st, "count": int(n)}
        for s, st, n in conn.execute(
            select(d.sink, d.status, func.count())
            .group_by(d.sink, d.status)
            .order_by(d.sink, d.status)
        )
    ]
    open_rows = [
        {
            "id": r["id"],
            "event_id": r["event_id"],
            "sink": r["sink"],
            "status": r["status"],
            "kind": (r["payload"] or {}).get("kind"),
            "attempts": r["attempts"],
            "next_attempt_at": r["next_attempt_at"],
            "last_error": r["last_error"],
        }
        for r in conn.execute(
            select(alert_deliveries)
            .where(d.status.in_(("pending", "failed")))
            .order_by(d.id.desc())
            .limit(limit)
        ).mappings()
    ]
    return {"counts": counts, "open": open_rows}
