"""``metis alerts``: test the sinks, see delivery health, run a pass by hand."""

import asyncio
from typing import Any

import httpx
import typer

from metis.alerts.delivery import DeliveryWorker, delivery_status
from metis.alerts.engine import AlertEngine, firing, log_alert
from metis.alerts.names import scope_name
from metis.alerts.rules import alerts_file, load_config
from metis.alerts.sinks import DeliveryError, send
from metis.cli._common import console, print_json, print_table, ready_engine, settings
from metis.errors import MetisError
from metis.events import AlertFired, event_row
from metis.ingest.log import use_cli_format
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
    is not stored. With no webhook or Slack sink it says what to set and
    exits 1 (alerts then only reach the server's log); it also exits 1 when a
    sink fails.

    Example:

        METIS_ALERT_WEBHOOK_URL=https://hooks.example.com/metis metis alerts test
    """
    use_cli_format(json_lines=False)
    s = settings()
    config = load_config(s)
    sinks = config.sinks.remote_sinks()
    if not sinks:
        log_where = (
            "they are only written to the log (stderr of `metis serve`)"
            if config.sinks.log
            else "the log sink is off too (sinks.log: false), so they go nowhere"
        )
        raise AlertTestFailed(
            f"no alert sink to test: alerts fire, but {log_where}. To send them somewhere, "
            "set one of\n"
            "  METIS_ALERT_WEBHOOK_URL=https://…      a JSON webhook "
            "(METIS_ALERT_WEBHOOK_SECRET=… signs it)\n"
            "  METIS_ALERT_SLACK_WEBHOOK_URL=https://hooks.slack.com/services/…\n"
            f"or add sinks to {alerts_file(s)} (docs/alerts.md), then run `metis alerts test` again"
        )
    event_id, payload = _test_payload()
    if config.sinks.log:
        log_alert(payload)
        console.print("log: written to stderr")

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
                    "scope_name": scope_name(conn, r["scope"], r["scope_id"]),
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
        ["kind", "scope", "name", "scope id", "period", "threshold", "since"],
        [
            (a["kind"], a["scope"], a["scope_name"], a["scope_id"], a["period"], a["threshold"],
             iso(a["since"]))
            for a in active
        ],
    )  # fmt: skip


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
