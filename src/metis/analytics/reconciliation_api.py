"""``GET /analytics/reconciliation``: every cell with each source's totals and its flags.

Query: ``from`` and ``to`` are UTC days (``YYYY-MM-DD``; a full ISO 8601
time is cut to its day), ``to`` exclusive; default the last 7 whole UTC days
through today (`metis.analytics.params.default_window`). ``workspace`` (id
or name) narrows to one workspace.
Admin token required (`metis.analytics.deps.require_admin`).
"""

from datetime import date, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response

from metis import jsonutil
from metis.analytics import schemas
from metis.analytics.deps import EngineDep, require_admin
from metis.analytics.httputil import ADMIN_ERRORS, IDENT, ErrorDetail, ErrorInfo
from metis.analytics.params import DEFAULT_DAYS, ParamError, default_window, resolve_workspace
from metis.ledger.reconcile import MEASURES, cell_json, reconciled_cells
from metis.timeutil import OutOfRange, check_day, parse_iso
from metis.workspaces import list_workspaces

if TYPE_CHECKING:
    from metis.server import Components

MAX_DAYS = 366

router = APIRouter(
    dependencies=[Depends(require_admin)],
    tags=["analytics"],
    responses={
        400: {"model": ErrorInfo, "description": "A bad window or an unknown workspace"},
        401: {"model": ErrorDetail, "description": "Missing, invalid or revoked admin token"},
        429: ADMIN_ERRORS[429],
    },
)
# A day or ISO time (cut to its day); empty means the default, as for the other routes.
_DAY = {"anyOf": [{"type": "string", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"},
                  {"type": "string", "maxLength": 0}, {"type": "null"}]}  # fmt: skip


def _day(value: str, name: str) -> date:
    try:
        d = date.fromisoformat(value) if len(value) == 10 else parse_iso(value).date()
    except ValueError:
        raise ParamError("invalid_window", f"{name} must be YYYY-MM-DD or ISO 8601") from None
    try:
        return check_day(d, name)
    except OutOfRange as exc:
        raise ParamError("invalid_window", str(exc)) from None


@router.get(
    "/analytics/reconciliation",
    summary="Reconciled cells with per-source totals",
    responses=schemas.ok(schemas.ReconciliationResponse),
)
def reconciliation(
    engine: EngineDep,
    start: Annotated[
        str | None, Query(alias="from", description="First UTC day", json_schema_extra=_DAY)
    ] = None,
    end: Annotated[
        str | None, Query(alias="to", description="UTC day after the last", json_schema_extra=_DAY)
    ] = None,
    workspace: Annotated[
        str | None, Query(description="Workspace id or name", json_schema_extra=IDENT)
    ] = None,
) -> Response:
    """Cells (workspace, provider, model, UTC day): each source's totals, attributed,
    unattributed, drift, the reconciled figure and flags (docs/reconciliation.md)."""
    try:
        default = default_window()
        end_d = _day(end, "to") if end else default.end.date()
        start_d = _day(start, "from") if start else end_d - timedelta(days=DEFAULT_DAYS)
        if start_d >= end_d:
            raise ParamError("invalid_window", "from must be before to")
        if (end_d - start_d).days > MAX_DAYS:
            raise ParamError("invalid_window", f"window longer than {MAX_DAYS} days")
        with engine.connect() as conn:
            ws = resolve_workspace(conn, workspace) if workspace is not None else None
            cells = reconciled_cells(conn, start_d, end_d, ws)
            names = {w.id: w.name for w in list_workspaces(conn)}
    except ParamError as exc:
        return JSONResponse({"error": exc.code, "message": exc.message}, status_code=400)
    totals: dict[str, Any] = {}
    for name in ("reconciled", "attributed", "unattributed", "drift"):
        agg: dict[str, int] = dict.fromkeys(MEASURES, 0)  # every measure, even with no cell
        for c in cells:
            for k, v in getattr(c, name).measures().items():
                agg[k] = agg.get(k, 0) + v
        totals[name] = agg
    body = {
        "from": start_d.isoformat(),
        "to": end_d.isoformat(),
        "workspace_id": ws,
        "workspace_name": names.get(ws) if ws else None,
        "cells": [{**cell_json(c), "workspace_name": names.get(c.workspace_id)} for c in cells],
        "totals": totals,
    }
    return Response(jsonutil.dumps(body), media_type="application/json")


def install(comps: "Components") -> None:
    """Register the reconciliation endpoint on ``comps.api``."""
    comps.api.include_router(router)
