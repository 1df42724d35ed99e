"""``GET /analytics/forecast``: month-to-date spend and the month-end forecast.

Its own router (same admin dependency and error mapping as
`metis.analytics.api`); the answer is `metis.analytics.forecast_report`.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from metis.analytics.deps import EngineDep, require_admin
from metis.analytics.forecast_report import BY, forecast_report, parse_by
from metis.analytics.httputil import ADMIN_ERRORS, IDENT, json_response, one_of, param_errors
from metis.analytics.params import resolve_filters
from metis.analytics.schemas import Envelope, Usd, ok
from metis.analytics.schemas import _Out as Out
from metis.analytics.views import parse_view

router = APIRouter(
    dependencies=[Depends(require_admin)], tags=["analytics"], responses=ADMIN_ERRORS
)


class CapForecast(Out):
    scope: str
    limit_usd: Usd
    spent_usd: Usd
    forecast_usd: Usd
    reaches_on: str | None
    status: str


class BacktestForecast(Out):
    known_days: int
    forecast_usd: Usd
    error_pct: float | None


class BacktestMonth(Out):
    month: str
    actual_usd: Usd
    forecasts: list[BacktestForecast]


class ForecastRow(Out):
    """One team, user or workspace (its id field and name fields, null for the no-value row)."""

    month_to_date_usd: Usd
    forecast_usd: Usd
    daily_rate_usd: Usd
    trend_usd_per_day: Usd
    fit_days: int
    cap: CapForecast | None
    backtest: list[BacktestMonth]


class ForecastError(Out):
    known_days: int
    points: int
    mape_pct: float
    wape_pct: float


class ForecastBacktest(Out):
    months: list[str]
    checkpoints: list[int]
    errors: list[ForecastError]


class ForecastMethod(Out):
    name: str
    fit_days: int
    min_trend_weeks: int
    damping: float
    description: str


class ForecastTotal(Out):
    month_to_date_usd: Usd
    forecast_usd: Usd


class ForecastResponse(Envelope):
    view: str
    by: str
    month: str
    as_of: str
    days_in_month: int
    complete_days: int
    method: ForecastMethod
    backtest: ForecastBacktest
    total: ForecastTotal
    data: list[ForecastRow]


@router.get("/analytics/forecast", responses=ok(ForecastResponse))
def forecast(
    engine: EngineDep,
    by: Annotated[
        str | None,
        Query(description="team | user | workspace", json_schema_extra=one_of(*BY)),
    ] = None,
    workspace: Annotated[
        str | None, Query(description="workspace id or name", json_schema_extra=IDENT)
    ] = None,
    user: Annotated[
        str | None, Query(description="user id (usr_…) or alias", json_schema_extra=IDENT)
    ] = None,
    team: Annotated[
        str | None, Query(description="team id (team_…) or name", json_schema_extra=IDENT)
    ] = None,
    source: Annotated[
        str | None, Query(description="only rows of this source", json_schema_extra=IDENT)
    ] = None,
    view: Annotated[
        str | None,
        Query(description="raw | reconciled", json_schema_extra=one_of("raw", "reconciled")),
    ] = None,
) -> Response:
    """This UTC month's spend so far and its month-end forecast per team, user or workspace.

    The method (weekly means of the last four weeks, a least-squares line
    through them with its slope halved) is stated in ``method``; ``backtest``
    gives its error on past months (the forecast made after 7, 14 and 21
    days of each month against what the month cost). Rows with a monthly
    hard cap carry ``cap``: the gateway spend the cap counts, its forecast
    and the day it is forecast to reach it.
    """
    with param_errors():
        b = parse_by(by)
        v = parse_view(view)
        with engine.connect() as conn:
            filters = resolve_filters(
                conn, workspace=workspace, user=user, team=team, source=source
            )
            return json_response(forecast_report(conn, filters, v, b))
