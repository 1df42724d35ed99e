"""HTTP helpers shared by the analytics routers: JSON responses and 400 mapping."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import HTTPException, Response

from metis import jsonutil
from metis.analytics.params import ParamError
from metis.errors import MetisError


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
