"""Anthropic ``GET /v1/models/{model_id}``: one model object, an alias resolved.

The simulator's Anthropic catalog (`metis.simulator.catalog.ANTHROPIC_MODELS`)
holds dated ids and a few undated ones; an alias without the date
(``claude-haiku-4-5`` for ``claude-haiku-4-5-20251001``) resolves to the
dated model, as the real API does. Anything else: 404 ``not_found_error``.
"""

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from metis.simulator import catalog
from metis.simulator.anthropic_inference import authenticate
from metis.simulator.http import JSONResponse, anthropic_error
from metis.simulator.state import SimState


def resolve(model: str) -> str | None:
    """The catalog id ``model`` names (itself, or the dated id of an alias)."""
    if model in catalog.ANTHROPIC_MODELS:
        return model
    dated = [
        m
        for m in catalog.ANTHROPIC_MODELS
        if m.startswith(model + "-") and m[len(model) + 1 :].isdigit()
    ]
    return dated[0] if len(dated) == 1 else None


async def get_model(request: Request, state: SimState, body: Any) -> Response:
    ident = authenticate(request)
    if isinstance(ident, Response):
        return ident
    requested = request.path_params["model"]
    mid = resolve(requested)
    if mid is None:
        return anthropic_error(404, f"model: {requested}", type="not_found_error")
    return JSONResponse(
        {
            "type": "model",
            "id": mid,
            "display_name": catalog.ANTHROPIC_MODELS[mid],
            "created_at": "2025-01-01T00:00:00Z",
        }
    )
