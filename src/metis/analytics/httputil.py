"""HTTP helpers shared by the analytics routers: JSON responses, 400 mapping, and
the OpenAPI declarations of both (error bodies, parameter constraints).

The constraints are declared for clients and API fuzzers only
(``json_schema_extra``): the handlers check them themselves so a violation is
the documented 400 ``{"detail": {"error": "invalid_<field>", ...}}``, not
FastAPI's generic 422.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import HTTPException, Response
from pydantic import BaseModel

from metis import jsonutil
from metis.analytics.params import SAFE_RE, ParamError
from metis.errors import MetisError


class ErrorInfo(BaseModel):
    """What went wrong: a stable code (``invalid_user``, ``unauthorized`` …) and a sentence."""

    error: str
    message: str


class ErrorDetail(BaseModel):
    """The body of an admin API 400 or 401."""

    detail: ErrorInfo


ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorDetail,
        "description": "A bad or unknown parameter (invalid_window, unknown_user, …)",
    },
    401: {"model": ErrorDetail, "description": "Missing, invalid or revoked admin token"},
    429: {
        "model": ErrorDetail,
        "description": "Too many failed authentications from this client or for this "
        "token prefix (see Retry-After)",
    },
}
"""``responses=`` of every admin router."""

IDENT: dict[str, Any] = {"pattern": SAFE_RE.pattern}
"""``json_schema_extra`` of an identifier parameter (workspace, user, team, key, source)."""

TIME: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "maxLength": 0},
        {"type": "null"},
    ]
}
"""``json_schema_extra`` of ``from``/``to``: ISO 8601 (no offset means UTC); empty means the
default."""


def one_of(*values: str) -> dict[str, Any]:
    """``json_schema_extra`` of a parameter that takes one of ``values``."""
    return {"enum": list(values)}


def bad_request(code: str, message: str) -> HTTPException:
    """A 400 ``{"detail": {"error": code, "message": message}}``."""
    return HTTPException(status_code=400, detail={"error": code, "message": message})


@contextmanager
def param_errors() -> Iterator[None]:
    """Turn `ParamError` (and any other `MetisError`) raised inside into a 400."""
    try:
        yield
    except ParamError as exc:
        raise bad_request(exc.code, exc.message) from None
    except MetisError as exc:
        raise bad_request("invalid_request", exc.message) from None


def json_response(obj: Any) -> Response:
    """Encode with `metis.jsonutil` (Decimals as exact JSON numbers)."""
    return Response(content=jsonutil.dumps(obj), media_type="application/json")
