"""``POST /cron/usage``: trigger a provider sync from an external scheduler.

Guarded by ``Authorization: Bearer $METIS_CRON_SECRET`` (constant-time
comparison); any other request gets 401, and too many of those from one
client 429 with ``Retry-After`` (`metis.security.throttle`). With no ``METIS_CRON_SECRET`` set the
route answers 404 ``cron trigger disabled``: nothing can trigger it.

The optional JSON body picks what to sync: ``{"days": 2, "workspace": "acme",
"credential": "cred_…"}``. The sync runs in a worker thread and the answer
lists one summary per credential run (status ``ok``/``failed``/``skipped``);
the HTTP status is 200 even when a run failed (the run's own status says so).
A body naming an unknown workspace or credential is a 400 (nothing runs).
"""

import asyncio
import hmac
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from metis.analytics.deps import EngineDep, SettingsDep, check_throttle
from metis.analytics.httputil import ErrorDetail
from metis.errors import MetisError
from metis.ingest.jobs import run_job
from metis.timeutil import iso

router = APIRouter(tags=["ingest"])


class CronRequest(BaseModel):
    """What to sync; everything optional."""

    days: int | None = Field(None, ge=1, le=31)
    workspace: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,200}$")
    credential: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,200}$")


class CronRun(BaseModel):
    """One credential's sync run."""

    run_id: str
    credential_id: str
    provider: str
    status: str
    window_start: str | None
    window_end: str | None
    stored: int
    updated: int
    unchanged: int
    skipped: int
    errors: int
    error: str | None


class CronResult(BaseModel):
    runs: list[CronRun]


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "Missing or wrong cron secret"},
    429: {
        "model": ErrorDetail,
        "description": "Too many failed attempts from this client (see Retry-After)",
    },
    404: {"model": ErrorDetail, "description": "METIS_CRON_SECRET unset: the trigger is disabled"},
    400: {"model": ErrorDetail, "description": "The body names an unknown workspace or credential"},
    422: {"model": ErrorDetail, "description": "The body is not a valid CronRequest"},
}


def check_cron_auth(header: str | None, secret: str | None) -> None:
    """Raise 404 when disabled, 401 unless ``header`` is ``Bearer <secret>``."""
    if not secret:
        raise HTTPException(
            404,
            {
                "error": "not_found",
                "message": "cron trigger disabled: "
                "set METIS_CRON_SECRET to enable POST /cron/usage",
            },
        )
    scheme, _, token = (header or "").partition(" ")
    ok = scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode("utf-8"), secret.encode("utf-8")
    )
    if not ok:
        raise HTTPException(
            401,
            {"error": "unauthorized", "message": "Authorization: Bearer <METIS_CRON_SECRET>"},
            headers={"WWW-Authenticate": "Bearer"},
        )


@router.post(
    "/cron/usage",
    summary="Run a provider usage sync now",
    response_model=CronResult,
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": CronRequest.model_json_schema()}},
        },
    },
)
async def cron_usage(request: Request, engine: EngineDep, settings: SettingsDep) -> dict[str, Any]:
    secret = settings.cron_secret.get_secret_value() if settings.cron_secret else None
    header = request.headers.get("authorization")
    if not secret:
        check_cron_auth(header, secret)  # 404: a disabled trigger has nothing to guess
    throttle, keys = check_throttle(request, (header or "").partition(" ")[2].strip() or None)
    try:
        check_cron_auth(header, secret)
    except HTTPException:
        throttle.failed(*keys)
        raise
    raw = await request.body()
    try:
        body = CronRequest.model_validate_json(raw) if raw.strip() else CronRequest()
    except ValueError as exc:
        raise HTTPException(
            422, {"error": "invalid_request", "message": str(exc).splitlines()[0]}
        ) from None
    try:
        outcomes = await asyncio.to_thread(
            run_job,
            engine,
            settings,
            name="cron",
            reraise=True,
            workspace=body.workspace,
            credential=body.credential,
            kind="sync",
            days=body.days,
        )
    except MetisError as exc:  # an unknown workspace or credential named in the body
        raise HTTPException(400, {"error": "invalid_request", "message": exc.message}) from None
    return {
        "runs": [
            {
                "run_id": o.run_id,
                "credential_id": o.credential_id,
                "provider": o.provider,
                "status": o.status,
                "window_start": iso(o.window_start) if o.window_start else None,
                "window_end": iso(o.window_end) if o.window_end else None,
                "stored": o.stored,
                "updated": o.updated,
                "unchanged": o.unchanged,
                "skipped": o.skipped,
                "errors": o.errors,
                "error": o.error_message,
            }
            for o in outcomes
        ]
    }
