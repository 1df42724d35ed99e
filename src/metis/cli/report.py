"""``metis report``: analytics figures as tables in the terminal."""

import typer

from metis.analytics import service
from metis.analytics.params import parse_window, resolve_filters
from metis.analytics.views import day_window, parse_view
from metis.cli._common import console, print_json, print_table, ready_engine

app = typer.Typer(help="Reports in the terminal.", no_args_is_help=True)


@app.command("cost")
def cost(
    from_: str | None = typer.Option(None, "--from", help="ISO 8601 UTC start (default 7d ago)."),
    to: str | None = typer.Option(None, "--to", help="ISO 8601 UTC end, exclusive."),
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

    Example:

        metis report cost --from 2026-11-01 --group-by user
    """
    window = parse_window(from_, to)
    v = parse_view(view)
    if v == "reconciled":
        window = day_window(window)
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
        rows.append([shown, f"{d['cost_usd']:.6f}", d["call_count"], d["input_tokens"],
                     d["output_tokens"], d["cached_input_tokens"]])  # fmt: skip
    t = body["total"]
    rows.append(["TOTAL", f"{t['cost_usd']:.6f}", t["call_count"], t["input_tokens"],
                 t["output_tokens"], t["cached_input_tokens"]])  # fmt: skip
    w = body["window"]
    print_table(
        f"cost by {group_by}, {w['start']} .. {w['end']} ({body['view']} view)",
        [group_by, "cost_usd", "calls", "input", "output", "cached_input"],
        rows,
    )
    if body["partial_coverage"]:
        console.print("note: a key was retagged in this window (partial_coverage)")


from metis.cli.report_forecast import attach as _attach_forecast  # noqa: E402

_attach_forecast(app)
