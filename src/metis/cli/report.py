"""``metis report``: analytics figures as tables in the terminal."""

import typer

from metis.analytics import service
from metis.analytics.params import resolve_filters
from metis.analytics.views import parse_view, query_window
from metis.cli._common import console, print_json, print_table, ready_engine
from metis.money import plain_usd

app = typer.Typer(help="Reports in the terminal.", no_args_is_help=True)


@app.command("cost")
def cost(
    from_: str | None = typer.Option(
        None, "--from", help="ISO 8601 UTC start, inclusive (default: 6 days before today)."
    ),
    to: str | None = typer.Option(
        None, "--to", help="ISO 8601 UTC end, exclusive (default: tomorrow 00:00Z)."
    ),
    group_by: str = typer.Option(
        "team",
        "--group-by",
        help="team, user, model, source, day, provider, workspace, gateway_key",
    ),
    workspace: str | None = typer.Option(None, "--workspace"),
    user: str | None = typer.Option(None, "--user"),
    team: str | None = typer.Option(None, "--team"),
    source: str | None = typer.Option(None, "--source"),
    view: str | None = typer.Option(None, "--view", help="raw or reconciled."),
    as_json: bool = typer.Option(False, "--json", help="Print the /analytics/cost JSON."),
) -> None:
    """Cost by team, user, model, source or day: the figures of /analytics/cost.

    The window is half-open, [from, to), in whole UTC days for the
    reconciled view; the default is the last 7 days through today. The
    table prints the window it answered for, exact USD, billed calls and
    errors (gateway calls the upstream failed, not billed) separately.

    Example:

        metis report cost --from 2026-11-01 --to 2026-11-08 --group-by user
    """
    v = parse_view(view)
    window = query_window(from_, to, v)
    engine = ready_engine()
    try:
        with engine.connect() as conn:
            filters = resolve_filters(
                conn, workspace=workspace, user=user, team=team, source=source
            )
            body = service.cost(conn, window, filters, v, group_by)
    finally:
        engine.dispose()
    if as_json:
        print_json(body)
        return
    label = {"user": "user_id", "team": "team_id", "gateway_key": "key_id"}.get(group_by, group_by)
    named = group_by in ("user", "team", "gateway_key")
    rows = []
    for d in body["data"]:
        ident = d[label]
        name = d.get("display_name" if group_by == "user" else "name") if named else None
        shown = "(none)" if ident is None else (f"{name} ({ident})" if name else str(ident))
        rows.append([shown, plain_usd(d["cost_usd"]), d["call_count"], d["error_count"],
                     d["input_tokens"], d["output_tokens"], d["cached_input_tokens"]])  # fmt: skip
    t = body["total"]
    rows.append(["TOTAL", plain_usd(t["cost_usd"]), t["call_count"], t["error_count"],
                 t["input_tokens"], t["output_tokens"], t["cached_input_tokens"]])  # fmt: skip
    w = body["window"]
    print_table(
        f"cost by {group_by}, [{w['start']}, {w['end']}) ({body['view']} view)",
        [group_by, "cost_usd", "calls", "errors", "input", "output", "cached_input"],
        rows,
    )
    for lag in body.get("provider_lagging", []):
        console.print(
            f"note: {lag['provider']} {lag['day']} is still in progress: the provider's "
            f"figure is as of sync {lag['as_of'][11:16]}Z, a lower bound (provider_lagging)"
        )
    if body["partial_coverage"]:
        console.print("note: a key was retagged in this window (partial_coverage)")


from metis.cli.report_forecast import attach as _attach_forecast  # noqa: E402

_attach_forecast(app)
