"""Database failures in the API answer 503 with a reason, never a 500 with a traceback.

A database that is down, read-only or out of disk is an operational state,
not a bug: the admin, analytics and ingest API (everything outside the
gateway's hot routes, which have their own policy in `metis.gateway.app`)
answers ``503 {"error": "database_unavailable", "message": ...}`` naming the
kind of failure, with ``Retry-After``. The driver's own message goes to the
log only (it can name hosts and paths). What the failed transaction would
have written is not there (e.g. a push batch is stored whole or not at all).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

log = logging.getLogger("metis.server")


def describe(exc: BaseException) -> str:
    """What kind of database failure ``exc`` is, in words a user can act on."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    if "readonly" in text or "read-only" in text:
        return "the database is read-only"
    if "full" in text or "no space" in text:
        return "the database's disk is full"
    return "the database is unavailable"


async def _db_error(request: Request, exc: Exception) -> JSONResponse:
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [""])[0]
    log.error(
        "%s %s: database error (%s: %s)",
        request.method,
        request.url.path,
        type(orig).__name__,
        first,
    )
    return JSONResponse(
        {"error": "database_unavailable", "message": f"{describe(exc)}; retry later"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def install(comps: Any) -> None:
    """Register the handler on the API app."""
    comps.api.add_exception_handler(OperationalError, _db_error)
