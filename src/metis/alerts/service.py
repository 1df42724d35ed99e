"""Alerts and retention inside ``metis serve``: background tasks and their lifecycle.

`install` adds a startup hook that starts three asyncio tasks on the server's
event loop, and a shutdown hook that stops them:

- the delivery worker (`metis.alerts.delivery.DeliveryWorker`), which also
  records the budget crossings the gateway queued in memory;
- the periodic evaluator (`metis.alerts.engine.AlertEngine.evaluate`): stale
  syncs, reconciliation drift, unpriced models, budget sweep;
- the scheduled prune (`metis.ledger.prune.prune`) when
  ``METIS_RETENTION_DAYS`` is set.

Database work runs in threads (``asyncio.to_thread``), never on the loop the
gateway serves requests from. On shutdown, crossings still queued in memory
are recorded so none is lost; unsent deliveries stay in the outbox for the
next start.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from metis.alerts.delivery import DeliveryWorker
from metis.alerts.engine import AlertEngine, set_active_config
from metis.alerts.rules import AlertConfig, load_config
from metis.config import Settings
from metis.db.engine import make_engine
from metis.ledger.prune import DEFAULT_SYNC_WINDOW_DAYS, prune

if TYPE_CHECKING:
    from metis.server import Components

log = logging.getLogger("metis.alerts")


def sync_window_days() -> int:
    """Days the provider sync re-fetches (``METIS_INGEST_DEFAULT_DAYS``, default 2)."""
    try:
        from metis.ingest.settings import get_ingest_settings

        return int(get_ingest_settings().ingest_default_days)
    except Exception:
        return DEFAULT_SYNC_WINDOW_DAYS


async def _every(
    seconds: float, stop: asyncio.Event, job: Callable[[], Awaitable[object]], name: str
) -> None:
    while not stop.is_set():
        try:
            await job()
        except Exception:
            log.exception("alerts: %s failed", name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)


class AlertService:
    """The running background tasks of one server."""

    def __init__(self, settings: Settings, config: AlertConfig, db: Engine) -> None:
        self.settings = settings
        self.config = config
        self.db = db
        self.worker = DeliveryWorker(db, config)
        self.engine = AlertEngine(db, config)
        self.stop_event = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        d = self.config.delivery
        self.tasks.append(asyncio.create_task(self.worker.run(self.stop_event)))

        async def evaluate() -> None:
            await asyncio.to_thread(self.engine.evaluate)

        self.tasks.append(
            asyncio.create_task(_every(d.evaluate_every_seconds, self.stop_event, evaluate, "eval"))
        )
        days = self.settings.retention_days
        if days:
            window = sync_window_days()

            async def scheduled_prune() -> None:
                res = await asyncio.to_thread(
                    prune, self.db, retention_days=days, sync_window_days=window
                )
                log.info(
                    "retention: pruned %s records and %s events before %s",
                    res.records,
                    res.events,
                    res.cutoff.isoformat(),
                )

            self.tasks.append(
                asyncio.create_task(
                    _every(d.prune_every_seconds, self.stop_event, scheduled_prune, "prune")
                )
            )

    async def stop(self) -> None:
        self.stop_event.set()
        for t in self.tasks:
            try:
                await asyncio.wait_for(t, 10)
            except (TimeoutError, asyncio.CancelledError):
                t.cancel()
        try:
            await asyncio.to_thread(self.engine.drain_pending)
        except Exception:
            log.exception("alerts: recording queued crossings at shutdown failed")


def install(comps: "Components") -> None:
    """Run the alert worker, evaluator and scheduled prune inside the server."""
    holder: list[AlertService] = []

    async def _start() -> None:
        config = load_config(comps.settings)
        set_active_config(config)
        db = make_engine(settings=comps.settings, pooled=True)  # polled every tick
        svc = AlertService(comps.settings, config, db)
        svc.start()
        holder.append(svc)
        comps.api.state.metis_alerts = svc

    async def _stop() -> None:
        while holder:
            svc = holder.pop()
            await svc.stop()
            svc.db.dispose()
        set_active_config(None)

    comps.startup.append(_start)
    comps.shutdown.append(_stop)
