"""Export and privacy routes: ``GET /export/usage``, ``GET /export/audit``,
``GET /export/focus``, ``GET /analytics/user/{user_id}/export`` and
``POST /analytics/user/{user_id}/forget``.

Exports stream (`metis.analytics.exports`): constant memory whatever the size.
All routes need an admin token.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from metis.analytics import exports, focus, focus_encode, privacy, schemas
from metis.analytics.deps import EngineDep, require_admin
from metis.analytics.httputil import (
    ADMIN_ERRORS,
    IDENT,
    TIME,
    json_response,
    one_of,
    param_errors,
)
from metis.analytics.params import Window, guard, parse_window, resolve_filters
from metis.analytics.query import GROUP_DIMS
from metis.analytics.views import parse_view, query_window

router = APIRouter(dependencies=[Depends(require_admin)], tags=["export"], responses=ADMIN_ERRORS)

_MEDIA = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
_GROUPS_RE = "^(" + "|".join(GROUP_DIMS) + ")(,(" + "|".join(GROUP_DIMS) + "))*$"
_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The rows, streamed (``format``: csv or jsonl)",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}
FormatQ = Annotated[str, Query(description="csv | jsonl", json_schema_extra=one_of("csv", "jsonl"))]
FromQ = Annotated[str | None, Query(alias="from", json_schema_extra=TIME)]
ToQ = Annotated[str | None, Query(json_schema_extra=TIME)]
IdentQ = Annotated[str | None, Query(json_schema_extra=IDENT)]
UserId = Annotated[str, Path(description="user id (usr_…)", json_schema_extra=IDENT)]


def _window_headers(window: Window, view: str | None) -> dict[str, str]:
    w = window.as_json()
    out = {"x-metis-window-start": w["start"], "x-metis-window-end": w["end"]}
    if view is not None:
        out["x-metis-view"] = view
    return out


@router.get("/export/usage", response_class=StreamingResponse, responses=_STREAMED)
def export_usage(
    engine: EngineDep,
    format: FormatQ = "jsonl",
    group_by: Annotated[
        list[str] | None,
        Query(
            description="optional: day,user,team,model,… (repeat or comma)",
            json_schema_extra={"items": {"type": "string", "pattern": _GROUPS_RE}},
        ),
    ] = None,
    from_: FromQ = None,
    to: ToQ = None,
    workspace: IdentQ = None,
    user: IdentQ = None,
    team: IdentQ = None,
    source: IdentQ = None,
    gateway_key: IdentQ = None,
    view: Annotated[
        str | None,
        Query(
            description="reconciled (default) | raw", json_schema_extra=one_of("raw", "reconciled")
        ),
    ] = None,
) -> Response:
    """Usage in ``view`` for the window: totals per ``group_by`` (the ``/analytics/cost``
    figures), or every row with its reconciliation ``class`` and ``counted`` (the counted
    rows add up to the view's total), streamed. Headers ``x-metis-window-start``/``-end``
    and ``x-metis-view`` say what was answered (default window: the last 7 UTC days
    through today)."""
    with param_errors():
        fmt = exports.parse_format(format)
        groups = exports.parse_group_by(group_by)
        v = parse_view(view)
        window = query_window(from_, to, v)
        with engine.connect() as conn:
            filters = resolve_filters(
                conn, workspace=workspace, user=user, team=team, source=source,
                gateway_key=gateway_key,
            )  # fmt: skip
    chunks = exports.primed(exports.usage_export(engine, window, filters, fmt, groups, v))
    return StreamingResponse(chunks, media_type=_MEDIA[fmt], headers=_window_headers(window, v))


_FOCUS_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "FOCUS rows, streamed (``format``: csv or parquet)",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.get("/export/focus", response_class=StreamingResponse, responses=_FOCUS_STREAMED)
def export_focus(
    engine: EngineDep,
    version: Annotated[
        str | None,
        Query(description="FOCUS 1.2 (default) | 1.0", json_schema_extra=one_of("1.0", "1.2")),
    ] = None,
    format: Annotated[
        str | None,
        Query(description="csv (default) | parquet", json_schema_extra=one_of("csv", "parquet")),
    ] = None,
    from_: FromQ = None,
    to: ToQ = None,
) -> Response:
    """The reconciled ledger as FOCUS (FinOps Open Cost and Usage Specification) rows: one
    per day, provider, model, workspace, team, user, key and charge kind, unattributed
    provider spend included; ``BilledCost`` sums to ``/analytics/cost``'s total for the same
    window. Whole UTC days (headers ``x-metis-window-start``/``-end``; default window: the
    last 7 UTC days through today). Column mapping: docs/exports.md."""
    with param_errors():
        v = focus.parse_version(version)
        fmt = focus.parse_focus_format(format)
        window = query_window(from_, to, "reconciled")
        if fmt == "parquet":
            focus_encode.arrow_schema(())  # a missing pyarrow is a 400 before the 200 starts
    chunks = exports.primed(focus_encode.focus_export(engine, window, v, fmt))
    headers = {**_window_headers(window, "reconciled"), "x-metis-focus-version": v}
    return StreamingResponse(chunks, media_type=focus_encode.MEDIA_TYPES[fmt], headers=headers)


@router.get("/export/audit", response_class=StreamingResponse, responses=_STREAMED)
def export_audit(
    engine: EngineDep,
    format: FormatQ = "jsonl",
    with_names: Annotated[bool, Query(description="join display names at export time")] = False,
    from_: FromQ = None,
    to: ToQ = None,
    workspace: IdentQ = None,
    user: IdentQ = None,
    team: IdentQ = None,
) -> Response:
    """Key issued/revoked, quota exceeded, and who-paid-what rows (ids only by default)."""
    with param_errors():
        fmt = exports.parse_format(format)
        window = parse_window(from_, to)
        with engine.connect() as conn:
            filters = resolve_filters(conn, workspace=workspace, user=user, team=team)
    chunks = exports.primed(exports.audit_export(engine, window, filters, fmt, with_names))
    return StreamingResponse(chunks, media_type=_MEDIA[fmt], headers=_window_headers(window, None))


@router.get("/analytics/user/{user_id}/export", responses=schemas.ok(schemas.UserExport))
def user_export(engine: EngineDep, user_id: UserId) -> Response:
    """Everything stored about one user, as portable JSON."""
    with param_errors():
        guard("user", user_id)
        with engine.connect() as conn:
            return json_response(privacy.export_user(conn, user_id))


@router.post("/analytics/user/{user_id}/forget", responses=schemas.ok(schemas.ForgetResult))
def user_forget(request: Request, engine: EngineDep, user_id: UserId) -> Response:
    """Pseudonymize a user in place (idempotent): totals unchanged, no link back to the user.

    Calls of the user still buffered in this server's gateway are written (and
    pseudonymized) first; the user's keys fail from the next request on.
    """
    with param_errors():
        guard("user", user_id)
        for hook in getattr(request.app.state, "metis_before_forget", []):
            hook()
        with engine.begin() as conn:
            result = privacy.forget_user(conn, user_id)
        for after in getattr(request.app.state, "metis_after_forget", []):
            after(user_id)
        return json_response(result)
