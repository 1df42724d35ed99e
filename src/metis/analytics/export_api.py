"""Export and privacy routes: ``GET /export/usage``, ``GET /export/audit``,
``GET /analytics/user/{user_id}/export`` and ``POST /analytics/user/{user_id}/forget``.

Exports stream (`metis.analytics.exports`): constant memory whatever the size.
All routes need an admin token.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import StreamingResponse

from metis.analytics import exports, privacy
from metis.analytics.deps import EngineDep, require_admin
from metis.analytics.httputil import json_response, param_errors
from metis.analytics.params import guard, parse_window, resolve_filters

router = APIRouter(dependencies=[Depends(require_admin)], tags=["export"])

_MEDIA = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


@router.get("/export/usage")
def export_usage(
    engine: EngineDep,
    format: Annotated[str, Query(description="csv | jsonl")] = "jsonl",
    group_by: Annotated[
        list[str] | None, Query(description="optional: day,user,team,model,… (repeat or comma)")
    ] = None,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
    workspace: str | None = None,
    user: str | None = None,
    team: str | None = None,
    source: str | None = None,
    gateway_key: str | None = None,
) -> Response:
    """Usage rows in the window (raw, each source's rows) or totals per ``group_by``, streamed."""
    with param_errors():
        fmt = exports.parse_format(format)
        groups = exports.parse_group_by(group_by)
        window = parse_window(from_, to)
        with engine.connect() as conn:
            filters = resolve_filters(
                conn, workspace=workspace, user=user, team=team, source=source,
                gateway_key=gateway_key,
            )  # fmt: skip
    return StreamingResponse(
        exports.usage_export(engine, window, filters, fmt, groups), media_type=_MEDIA[fmt]
    )


@router.get("/export/audit")
def export_audit(
    engine: EngineDep,
    format: Annotated[str, Query(description="csv | jsonl")] = "jsonl",
    with_names: Annotated[bool, Query(description="join display names at export time")] = False,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
    workspace: str | None = None,
    user: str | None = None,
    team: str | None = None,
) -> Response:
    """Key issued/revoked, quota exceeded, and who-paid-what rows (ids only by default)."""
    with param_errors():
        fmt = exports.parse_format(format)
        window = parse_window(from_, to)
        with engine.connect() as conn:
            filters = resolve_filters(conn, workspace=workspace, user=user, team=team)
    return StreamingResponse(
        exports.audit_export(engine, window, filters, fmt, with_names), media_type=_MEDIA[fmt]
    )


@router.get("/analytics/user/{user_id}/export")
def user_export(engine: EngineDep, user_id: str) -> Response:
    """Everything stored about one user, as portable JSON."""
    with param_errors():
        guard("user", user_id)
        with engine.connect() as conn:
            return json_response(privacy.export_user(conn, user_id))


@router.post("/analytics/user/{user_id}/forget")
def user_forget(engine: EngineDep, user_id: str) -> Response:
    """Pseudonymize a user in place (idempotent): totals unchanged, no link back to the user."""
    with param_errors():
        guard("user", user_id)
        with engine.begin() as conn:
            return json_response(privacy.forget_user(conn, user_id))
