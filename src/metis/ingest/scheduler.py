"""The sync scheduler inside ``metis serve``, the cron trigger and ``/metrics``.

`install(comps)` (called from `metis.server.create_app`):

- adds ``POST /cron/usage`` (`metis.ingest.cron`);
- adds ``GET /metrics`` (Prometheus text format, default registry) unless
  another component already serves it;
- unless ``METIS_INGEST_SCHEDULER=false``, starts an APScheduler
  ``AsyncIOScheduler`` on startup with two jobs (crontab expressions in UTC):
  the daily sync (``METIS_INGEST_DAILY_CRON``, default ``0 1 * * *``: re-fetches
  yesterday and today, plus any gap since the cursor) and the hourly top-up of
  today (``METIS_INGEST_HOURLY_CRON``, default ``5 * * * *``). Jobs run in a
  worker thread so the event loop (gateway) never blocks on a sync; leases
  make several replicas safe (one syncs a credential, the others skip).
"""

import asyncio
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from fastapi import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine

from metis.db import partitions
from metis.db.engine import make_engine
from metis.errors import ConfigError
from metis.ingest.cron import router as cron_router
from metis.ingest.jobs import run_job
from metis.ingest.log import get_logger
from metis.ingest.settings import IngestSettings, get_ingest_settings

if TYPE_CHECKING:
    from metis.server import Components


def cron_trigger(expr: str, name: str) -> CronTrigger:
    """A UTC crontab trigger; `ConfigError` naming the variable when malformed."""
    try:
        return CronTrigger.from_crontab(expr, timezone=UTC)
    except ValueError as exc:
        raise ConfigError(f"{name} is not a valid crontab expression: {exc}") from None


PARTITIONS_CRON = "10 0 * * *"


def partitions_job(engine: Engine, today: date | None = None) -> list[str]:
    """Create the partitions ahead of ``today`` (default: the UTC date); log, never raise.

    Returns the partitions created (none on SQLite). A failure is logged and
    retried at the next run: until then rows land in the DEFAULT partitions,
    which the next successful run empties into their months.
    """
    log = get_logger().bind(job="partitions")
    try:
        created = partitions.maintain(engine, today or datetime.now(UTC).date())
    except Exception as exc:
        first_line = (str(exc).splitlines() or [""])[0]
        log.error("db.partitions_failed", error=f"{type(exc).__name__}: {first_line}")
        return []
    if created:
        log.info("db.partitions_created", partitions=created)
    return created


def build_scheduler(
    engine_ref: dict[str, Engine], settings: Any, ing: IngestSettings
) -> AsyncIOScheduler:
    """The scheduler with the daily and hourly jobs (not started)."""
    sched = AsyncIOScheduler(timezone=UTC)

    async def daily() -> None:
        await asyncio.to_thread(run_job, engine_ref["engine"], settings, name="daily", kind="sync")

    async def hourly() -> None:
        await asyncio.to_thread(
            run_job, engine_ref["engine"], settings, name="hourly", kind="sync", days=1
        )

    sched.add_job(
        daily,
        cron_trigger(ing.ingest_daily_cron, "METIS_INGEST_DAILY_CRON"),
        id="ingest-daily",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=3600,
    )
    if engine_ref["engine"].dialect.name == "postgresql":

        async def partitions_ahead() -> None:
            await asyncio.to_thread(partitions_job, engine_ref["engine"])

        sched.add_job(
            partitions_ahead,
            CronTrigger.from_crontab(PARTITIONS_CRON, timezone=UTC),
            id="db-partitions",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=3600,
            next_run_time=datetime.now(UTC),  # and once at start
        )
    sched.add_job(
        hourly,
        cron_trigger(ing.ingest_hourly_cron, "METIS_INGEST_HOURLY_CRON"),
        id="ingest-hourly",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=600,
    )
    return sched


def install(comps: "Components") -> None:
    """Register the cron route, ``/metrics`` and the scheduler hooks."""
    api = comps.api
    api.include_router(cron_router)
    if not any(getattr(r, "path", None) == "/metrics" for r in api.routes):

        @api.get("/metrics", include_in_schema=False)
        def metrics() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    ing = get_ingest_settings()
    if not ing.ingest_scheduler:
        return
    # Validate the expressions at build time, so a typo fails `metis serve` at once.
    cron_trigger(ing.ingest_daily_cron, "METIS_INGEST_DAILY_CRON")
    cron_trigger(ing.ingest_hourly_cron, "METIS_INGEST_HOURLY_CRON")
    state: dict[str, Any] = {}

    async def start() -> None:
        engine = getattr(api.state, "metis_engine", None)
        if engine is None:
            engine = make_engine(settings=comps.settings)
            state["own_engine"] = engine
        state["engine"] = engine
        sched = build_scheduler(state, comps.settings, ing)
        sched.start()
        state["scheduler"] = sched

    async def stop() -> None:
        sched = state.pop("scheduler", None)
        if sched is not None:
            sched.shutdown(wait=False)
        own = state.pop("own_engine", None)
        if own is not None:
            own.dispose()

    comps.startup.append(start)
    comps.shutdown.append(stop)
