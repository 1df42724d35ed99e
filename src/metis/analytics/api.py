"""The analytics/admin HTTP API: `install` adds its routers to the server's FastAPI app.

Every route needs an admin token (`metis.analytics.deps.require_admin`).
Common query parameters: ``from``/``to`` (ISO 8601 UTC, half-open; default
the last 7 whole UTC days through today, `metis.analytics.params.default_window`;
the reconciled view widens to whole days and every answer's ``window`` says
which window it is), ``workspace`` (id or name), ``user`` (id or alias), ``team``
(id or name), ``source``, ``gateway_key`` and ``view`` (``raw`` or
``reconciled``; see `metis.analytics.views`). Bad input is a 400
``{"detail": {"error": "<code>", "message": "..."}}`` (``invalid_user``,
``unknown_team``, ``invalid_window`` …) raised before any query runs.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import Connection

from metis.analytics import schemas, service
from metis.analytics.deps import AdminDep, EngineDep, bind_app, require_admin
from metis.analytics.export_api import router as export_router
from metis.analytics.forecast_api import router as forecast_router
from metis.analytics.httputil import ADMIN_ERRORS, IDENT, TIME, json_response, one_of, param_errors
from metis.analytics.params import Filters, Window, resolve_filters
from metis.analytics.query import GROUP_DIMS
from metis.analytics.views import View, parse_view, query_window

if TYPE_CHECKING:
    from metis.server import Components

router = APIRouter(
    dependencies=[Depends(require_admin)], tags=["analytics"], responses=ADMIN_ERRORS
)


@dataclass
class Query_:
    """Parsed common parameters plus a connection for the handler."""

    conn: Connection
    window: Window
    filters: Filters
    view: View


FromQ = Annotated[
    str | None,
    Query(alias="from", description="ISO 8601 UTC start (inclusive)", json_schema_extra=TIME),
]
ToQ = Annotated[
    str | None, Query(description="ISO 8601 UTC end (exclusive)", json_schema_extra=TIME)
]
WsQ = Annotated[str | None, Query(description="workspace id or name", json_schema_extra=IDENT)]
UserQ = Annotated[
    str | None, Query(description="user id (usr_…) or alias", json_schema_extra=IDENT)
]
TeamQ = Annotated[
    str | None, Query(description="team id (team_…) or name", json_schema_extra=IDENT)
]
SourceQ = Annotated[
    str | None,
    Query(
        description="only rows of this source (gateway, hermes_plugin, …)", json_schema_extra=IDENT
    ),
]
KeyQ = Annotated[str | None, Query(description="gateway key id or name", json_schema_extra=IDENT)]
ViewQ = Annotated[
    str | None, Query(description="raw | reconciled", json_schema_extra=one_of("raw", "reconciled"))
]


def _run(
    engine: Any,
    fn: Callable[[Query_], Any],
    from_: str | None,
    to: str | None,
    workspace: str | None,
    user: str | None,
    team: str | None,
    source: str | None,
    gateway_key: str | None,
    view: str | None,
) -> Response:
    with param_errors():
        v = parse_view(view)
        window = query_window(from_, to, v)
        with engine.connect() as conn:
            filters = resolve_filters(
                conn,
                workspace=workspace,
                user=user,
                team=team,
                source=source,
                gateway_key=gateway_key,
            )
            return json_response(fn(Query_(conn, window, filters, v)))


@router.get("/admin/whoami")
def whoami(admin: AdminDep) -> dict[str, str]:
    """Which admin token this request authenticated with (a cheap auth check)."""
    return {"token_id": admin.token_id, "name": admin.name}


@router.get("/analytics/cost", responses=schemas.ok(schemas.CostResponse))
def cost(
    engine: EngineDep,
    group_by: Annotated[
        str,
        Query(
            description="model|provider|day|workspace|gateway_key|user|team|source",
            json_schema_extra=one_of(*GROUP_DIMS),
        ),
    ] = "model",
    from_: FromQ = None,
    to: ToQ = None,
    workspace: WsQ = None,
    user: UserQ = None,
    team: TeamQ = None,
    source: SourceQ = None,
    gateway_key: KeyQ = None,
    view: ViewQ = None,
) -> Response:
    """Cost and tokens grouped by one dimension, cost DESC (``day``: chronological)."""
    return _run(
        engine,
        lambda q: service.cost(q.conn, q.window, q.filters, q.view, group_by),
        from_, to, workspace, user, team, source, gateway_key, view,
    )  # fmt: skip


@router.get("/analytics/by_key", responses=schemas.ok(schemas.ByKeyResponse))
def by_key(
    engine: EngineDep,
    from_: FromQ = None,
    to: ToQ = None,
    workspace: WsQ = None,
    user: UserQ = None,
    team: TeamQ = None,
    source: SourceQ = None,
    gateway_key: KeyQ = None,
    view: ViewQ = None,
) -> Response:
    """Per gateway key, with its binding; the null bucket holds traffic without a key."""
    return _run(
        engine,
        lambda q: service.by_key(q.conn, q.window, q.filters, q.view),
        from_, to, workspace, user, team, source, gateway_key, view,
    )  # fmt: skip


@router.get("/analytics/by_team", responses=schemas.ok(schemas.ByTeamResponse))
def by_team(
    engine: EngineDep,
    from_: FromQ = None,
    to: ToQ = None,
    workspace: WsQ = None,
    user: UserQ = None,
    team: TeamQ = None,
    source: SourceQ = None,
    gateway_key: KeyQ = None,
    view: ViewQ = None,
) -> Response:
    """Per team (spec 003 §5): totals, caps echoed, ``by_user``, null bucket, cost DESC."""
    return _run(
        engine,
        lambda q: service.by_team(q.conn, q.window, q.filters, q.view),
        from_, to, workspace, user, team, source, gateway_key, view,
    )  # fmt: skip


@router.get("/analytics/cache_effectiveness", responses=schemas.ok(schemas.CacheResponse))
def cache_effectiveness(
    engine: EngineDep,
    from_: FromQ = None,
    to: ToQ = None,
    workspace: WsQ = None,
    user: UserQ = None,
    team: TeamQ = None,
    source: SourceQ = None,
    gateway_key: KeyQ = None,
    view: ViewQ = None,
) -> Response:
    """Cached vs uncached input tokens per model and what caching saved."""
    return _run(
        engine,
        lambda q: service.cache_effectiveness(q.conn, q.window, q.filters, q.view),
        from_, to, workspace, user, team, source, gateway_key, view,
    )  # fmt: skip


@router.get("/analytics/savings", responses=schemas.ok(schemas.SavingsResponse))
def savings(
    engine: EngineDep,
    baseline: Annotated[
        str, Query(description="provider:model every call is re-priced on")
    ] = "openai:gpt-4o",
    from_: FromQ = None,
    to: ToQ = None,
    workspace: WsQ = None,
    user: UserQ = None,
    team: TeamQ = None,
    source: SourceQ = None,
    gateway_key: KeyQ = None,
    view: ViewQ = None,
) -> Response:
    """Actual cost vs the counterfactual of every call on ``baseline`` (priced per day)."""

    def fn(q: Query_) -> Any:
        return service.savings(
            q.conn, q.window, q.filters, q.view, service.parse_baseline(baseline)
        )

    return _run(engine, fn, from_, to, workspace, user, team, source, gateway_key, view)


@router.get("/analytics/routing", responses=schemas.ok(schemas.RoutingResponse))
def routing(
    engine: EngineDep,
    from_: FromQ = None,
    to: ToQ = None,
    workspace: WsQ = None,
    user: UserQ = None,
    team: TeamQ = None,
    gateway_key: KeyQ = None,
) -> Response:
    """Route decisions, rule hits, fallbacks and hard failures (incl. quota) from events."""
    return _run(
        engine,
        lambda q: service.routing(q.conn, q.window, q.filters),
        from_, to, workspace, user, team, None, gateway_key, None,
    )  # fmt: skip


@router.get("/analytics/reliability", responses=schemas.ok(schemas.ReliabilityResponse))
def reliability(
    engine: EngineDep,
    from_: FromQ = None,
    to: ToQ = None,
    workspace: WsQ = None,
    user: UserQ = None,
    team: TeamQ = None,
    gateway_key: KeyQ = None,
) -> Response:
    """Error rate and latency percentiles per provider/model of gateway calls."""
    return _run(
        engine,
        lambda q: service.reliability(q.conn, q.window, q.filters),
        from_, to, workspace, user, team, None, gateway_key, None,
    )  # fmt: skip


@router.get("/analytics/ingest", responses=schemas.ok(schemas.IngestResponse))
def ingest(
    engine: EngineDep,
    from_: FromQ = None,
    to: ToQ = None,
    workspace: WsQ = None,
) -> Response:
    """Sync health per provider credential: cursors, last success/error, runs in the window."""
    return _run(
        engine,
        lambda q: service.ingest_health(q.conn, q.window, q.filters.workspace_id),
        from_, to, workspace, None, None, None, None, None,
    )  # fmt: skip


def install(comps: "Components") -> None:
    """Register the analytics API on ``comps.api`` and dispose its engine on shutdown."""
    bind_app(comps.api, comps.settings)
    comps.api.include_router(router)
    comps.api.include_router(export_router)
    comps.api.include_router(forecast_router)

    async def _dispose() -> None:
        eng = getattr(comps.api.state, "metis_engine", None)
        if eng is not None:
            eng.dispose()

    comps.shutdown.append(_dispose)
