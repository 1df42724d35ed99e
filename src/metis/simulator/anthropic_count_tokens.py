"""Anthropic ``POST /v1/messages/count_tokens`` (also with ``?beta=true``): never billed.

Answers ``{"input_tokens": N}`` where N is the total input the same request
would report from ``POST /v1/messages`` (cache reads and writes included,
since counting does not use the cache), with the same validation except that
``max_tokens`` is not required. Nothing is added to the ledger: counting
tokens costs nothing.
"""

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from metis.simulator import prompt_cache
from metis.simulator.anthropic_inference import _bad, _validate, authenticate
from metis.simulator.http import JSONResponse
from metis.simulator.state import SimState


async def count_tokens(request: Request, state: SimState, body: Any) -> Response:
    ident = authenticate(request)
    if isinstance(ident, Response):
        return ident
    err = _validate(body, need_max_tokens=False)
    if err is not None:
        return err
    try:
        total = prompt_cache.parse(body).total_tokens
    except prompt_cache.CacheRequestError as e:
        return _bad(str(e))
    return JSONResponse({"input_tokens": total})
