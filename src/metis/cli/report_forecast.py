"""``metis report forecast``: this month's spend so far and where it will end.

`attach` adds the command to the ``metis report`` group (cli/report.py).
"""

from decimal import Decimal
from typing import Any

import typer

from metis.analytics.forecast import basis_text
from metis.analytics.forecast_report import BY, forecast_report
from metis.analytics.params import resolve_filters
from metis.analytics.views import parse_view
from metis.cli._common import WIDE_HELP, console, print_json, print_table, ready_engine

NAME_FIELD = {"team": "team_name", "user": "alias", "workspace": "workspace_name"}


def _usd(v: Any) -> str:
    """Dollars rounded to cents for reading (``--json`` keeps every decimal)."""
    return "" if v is None else f"{Decimal(v):,.2f}"


def _pct(v: Any) -> str:
    return "" if v is None else f"{Decimal(v):+.1f}%"


def forecast(
    by: str = typer.Option("team", "--by", help="team, user or workspace."),
    workspace: str | None = typer.Option(None, "--workspace", help="Only this workspace."),
    view: str | None = typer.Option(None, "--view", help="raw or reconciled (default)."),
    as_json: bool = typer.Option(False, "--json", help="Print the /analytics/forecast JSON."),
    wide: bool = typer.Option(False, "--wide", help=WIDE_HELP),
) -> None:
    """Month-to-date spend and the month-end forecast per team, user or workspace.

    The figures of GET /analytics/forecast: the method (weekly means of the
    last four weeks, a line through them with its slope halved) and its error
    on past months are printed below the table. Caps compare the gateway
    spend they count with its forecast and name the day it would reach them.

    Example:

        metis report forecast --by team
    """
    if by not in BY:
        raise typer.BadParameter(f"--by must be one of {', '.join(BY)}")
    v = parse_view(view)
    engine = ready_engine()
    try:
        with engine.connect() as conn:
            filters = resolve_filters(conn, workspace=workspace)
            body = forecast_report(conn, filters, v, by)
    finally:
        engine.dispose()
    if as_json:
        print_json(body)
        return
    id_field = {"team": "team_id", "user": "user_id", "workspace": "workspace_id"}[by]
    rows = []
    for r in body["data"]:
        name = r.get(NAME_FIELD[by])
        cap = r["cap"]
        last = r["backtest"][-1] if r["backtest"] else None
        mid = next((f for f in last["forecasts"] if f["known_days"] == 14), None) if last else None
        rows.append(
            [
                name if r[id_field] else f"(no {by})",
                r[id_field] or "",
                _usd(r["month_to_date_usd"]),
                _usd(r["forecast_usd"]),
                basis_text(r["fit_days"]),
                _usd(cap["limit_usd"]) if cap else "",
                (cap["reaches_on"] or "not this month") if cap else "",
                f"{last['month']} {_pct(mid['error_pct'])}" if last and mid else "",
            ]
        )
    t = body["total"]
    rows.append(
        ["TOTAL", "", _usd(t["month_to_date_usd"]), _usd(t["forecast_usd"]), "", "", "", ""]
    )
    print_table(
        f"Spend in {body['month']} ({body['view']} view, USD): "
        f"{body['complete_days']} of {body['days_in_month']} days complete",
        [by, "id", "so far", "forecast", "fitted on", "monthly cap", "reaches cap", "error day 14"],
        rows,
        wide=wide,
    )
    console.print(f"method: {body['method']['description']}.", soft_wrap=False)
    errors = body["backtest"]["errors"]
    if errors:
        text = ", ".join(
            f"after {e['known_days']} days {Decimal(e['mape_pct']):.1f}%" for e in errors
        )
        console.print(
            f"backtest on {', '.join(body['backtest']['months'])}: mean absolute error {text}.",
            soft_wrap=False,
        )
    else:
        console.print("backtest: no complete past month in the ledger yet.")


def attach(app: typer.Typer) -> None:
    """Register ``forecast`` on the ``metis report`` group."""
    app.command("forecast")(forecast)
