"""Database failures in the API answer what they are, never a 500 with a traceback.

Everything outside the gateway's hot routes (which have their own policy in
`metis.gateway.app`): the admin, analytics, export, ingest and cron API and
the dashboard's data. `metis.db.errors.classify` decides:

- a database that is down, read-only, busy or out of disk is an operational
  state: ``503 {"error": "database_unavailable", "message": ...}`` naming the
  kind of failure, with ``Retry-After``;
- a value the database refused is not an outage: ``422
  value_out_of_range`` (an integer or sum past 64 bits) or ``409 conflict``
  (a constraint), no ``Retry-After``;
- a write that would take a rollup past the ledger's bounds
  (`metis.ledger.bounds.LedgerLimitError`): ``422 ledger_limit_exceeded``;
- any other database error: ``503 database_error`` naming the error class.

The driver's own message goes to the log only (it can name hosts and paths).
What the failed transaction would have written is not there.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from metis.db.errors import classify
from metis.ledger.bounds import LedgerLimitError

log = logging.getLogger("metis.server")


def describe(exc: BaseException) -> str:
    """What kind of database failure ``exc`` is, in words a user can act on."""
    return classify(exc).message


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
    f = classify(exc)
    return JSONResponse(
        {"error": f.code, "message": f.message},
        status_code=f.status,
        headers={"Retry-After": "5"} if f.retryable else None,
    )


async def _ledger_limit(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LedgerLimitError)
    return JSONResponse({"error": "ledger_limit_exceeded", "message": exc.message}, 422)


def install(comps: Any) -> None:
    """Register the handlers on the API app."""
    comps.api.add_exception_handler(DBAPIError, _db_error)
    comps.api.add_exception_handler(LedgerLimitError, _ledger_limit)
