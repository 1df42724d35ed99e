"""``metis alerts``: test the sinks, see delivery health, run a pass by hand."""

import asyncio
from typing import Any

import httpx
import typer

from metis.alerts.delivery import DeliveryWorker, delivery_status
from metis.alerts.engine import AlertEngine, firing, log_alert
from metis.alerts.rules import load_config
from metis.alerts.sinks import DeliveryError, send
from metis.cli._common import console, print_json, print_table, ready_engine, settings
from metis.errors import MetisError
from metis.events import AlertFired, event_row
from metis.timeutil import iso, utcnow

app = typer.Typer(help="Alert sinks, delivery status and manual passes.", no_args_is_help=True)


class AlertTestFailed(MetisError):
    """At least one sink did not accept the test alert."""


def _test_payload() -> tuple[str, dict[str, Any]]:
    now = utcnow()
    payload = AlertFired(
        alert_id="alert_test",
        kind="test",
        state="firing",
        severity="info",
        scope="test",
        scope_id="test",
        period=now.strftime("%Y-%m-%d"),
        message="test alert from `metis alerts test`: this sink is configured correctly",
        fired_at=iso(now),
        test=True,
    )
    row = event_row(payload, ts=now)
    return str(row["event_id"]), row["payload"]


@app.command("test")
def test_cmd() -> None:
    """Send a test alert to every configured sink now and report each result.

    Sinks come from METIS_ALERT_WEBHOOK_URL (+ METIS_ALERT_WEBHOOK_SECRET),
    METIS_ALERT_SLACK_WEBHOOK_URL and $METIS_HOME/alerts.yaml. The test alert
    is not stored. Exits non-zero when a sink fails or none is configured.

    Example:

        METIS_ALERT_WEBHOOK_URL=https://hooks.example.com/metis metis alerts test
    """
    config = load_config(settings())
    sinks = config.sinks.remote_sinks()
    event_id, payload = _test_payload()
    if config.sinks.log:
        log_alert(payload)
        console.print("log: ok")
    if not sinks:
        raise AlertTestFailed(
            "no alert sink configured: set METIS_ALERT_WEBHOOK_URL or "
            "METIS_ALERT_SLACK_WEBHOOK_URL (see docs/alerts.md)"
        )

    async def _run() -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        async with httpx.AsyncClient(timeout=config.delivery.timeout_seconds) as client:
            for s in sinks:
                try:
                    await send(client, s, payload, event_id, config.sinks)
                    out.append((s, None))
                except DeliveryError as exc:
                    out.append((s, str(exc)))
        return out

    failed = 0
    for sink, err in asyncio.run(_run()):
        if err is None:
            console.print(f"{sink}: ok")
        else:
            failed += 1
            console.print(f"{sink}: FAILED ({err})")
    if failed:
        raise AlertTestFailed(f"{failed} of {len(sinks)} alert sinks failed")


@app.command("status")
def status_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Show deliveries by sink and status, pending/failed ones, and firing alerts.

    Pending and failed deliveries are listed with their attempts and last
    error (which names the sink and HTTP status, never the URL).

    Example:

        metis alerts status --json
    """
    engine = ready_engine()
    try:
        with engine.connect() as conn:
            st = delivery_status(conn)
            active = [
                {
                    "kind": r["kind"],
                    "scope": r["scope"],
                    "scope_id": r["scope_id"],
                    "period": r["period"],
                    "threshold": r["threshold"],
                    "since": r["last_fired_at"],
                }
                for r in firing(conn)
            ]
    finally:
        engine.dispose()
    config = load_config(settings())
    st["sinks"] = (
        ["log", *config.sinks.remote_sinks()] if config.sinks.log else config.sinks.remote_sinks()
    )
    st["firing"] = active
    if as_json:
        print_json(st)
        return
    console.print("sinks: " + (", ".join(st["sinks"]) or "none"))
    print_table(
        "deliveries",
        ["sink", "status", "count"],
        [(c["sink"], c["status"], c["count"]) for c in st["counts"]],
    )
    if st["open"]:
        print_table(
            "pending and failed deliveries",
            ["id", "sink", "status", "kind", "attempts", "next attempt", "last error"],
            [
                (o["id"], o["sink"], o["status"], o["kind"], o["attempts"],
                 iso(o["next_attempt_at"]), o["last_error"])
                for o in st["open"]
            ],
        )  # fmt: skip
    print_table(
        "firing alerts",
        ["kind", "scope", "scope id", "period", "threshold", "since"],
        [
            (a["kind"], a["scope"], a["scope_id"], a["period"], a["threshold"], iso(a["since"]))
            for a in active
        ],
    )


@app.command("run")
def run_cmd() -> None:
    """Evaluate every alert rule once and send due deliveries (for cron, without `metis serve`).

    Example:

        metis alerts run
    """
    config = load_config(settings())
    engine = ready_engine()
    try:
        n = AlertEngine(engine, config).evaluate()
        res = asyncio.run(DeliveryWorker(engine, config).run_once())
    finally:
        engine.dispose()
    console.print(
        f"alerts fired or resolved: {n}; delivered: {res.delivered}, "
        f"to retry: {res.retried}, failed: {res.failed}"
    )
