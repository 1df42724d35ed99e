"""Azure OpenAI: a resource whose deployments are named after their models.

Paths (the simulator's root plays ``https://<resource>.openai.azure.com``):

- ``POST /openai/deployments/{deployment}/chat/completions?api-version=…`` and
  ``…/embeddings``: the deployment names the model (a deployment exists for
  every model Azure prices, named like it: ``gpt-4o-mini``,
  ``text-embedding-3-small``); ``api-version`` is required (without it, or
  with one Azure does not serve, ``404 Resource not found``);
- ``POST /openai/v1/chat/completions`` and ``/openai/v1/embeddings`` (the v1
  API): the body's ``model`` names the deployment, no ``api-version``.

Auth: the ``api-key`` header (``Authorization: Bearer`` is accepted on the
v1 paths, as Azure does for Entra ID tokens), any key of 16+ characters;
errors in Azure's envelope ``{"error": {"code", "message"}}``. Answers are
OpenAI's with Azure's extra fields: ``prompt_filter_results`` and each
choice's ``content_filter_results``; a stream starts with a chunk whose
``id`` and ``model`` are empty and whose ``choices`` are empty (the prompt's
filter results), then OpenAI's chunks (with ``stream_options.include_usage``
the usage chunk). The answer's ``model`` is the deployed model's dated
snapshot. Calls are in the ledger under provider ``azure`` (genai-prices'
Azure prices).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from metis.pricing import has_price
from metis.simulator import catalog
from metis.simulator.http import JSONResponse, bearer
from metis.simulator.keys import KeyIdentity
from metis.simulator.openai_inference import (
    ChatProfile,
    cached_tokens,
    chat,
    embed,
    openai_usage,
)
from metis.simulator.state import SimState

API_VERSIONS = re.compile(r"^20\d\d-\d\d-\d\d(-preview)?$")
"""The api-version values the simulated resource serves (dated GA or preview versions)."""


def azure_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def _key(request: Request) -> str | None:
    key = request.headers.get("api-key")
    if key:
        return key.strip()
    if request.url.path.startswith("/openai/v1/"):
        return bearer(request.headers)
    return None


def authenticate(request: Request) -> KeyIdentity | Response:
    key = _key(request)
    if not key or len(key) < 16:
        return azure_error(
            401,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure "
            "to provide a valid key for an active subscription and use a correct regional "
            "API endpoint for your resource.",
        )
    h = hashlib.sha256(b"azure:" + key.encode()).hexdigest()
    return KeyIdentity(provider="azure", api_key_id=f"key_{h[:16]}")


def _chat_model(model: str) -> bool:
    return has_price("azure", model) and not model.startswith("text-embedding")


PROFILE = ChatProfile(
    provider="azure",
    authenticate=authenticate,
    accepts=_chat_model,
    served=catalog.openai_served_model,
    cached=cached_tokens,
    usage=openai_usage,
    azure=True,
)


def _deployment(request: Request, state: SimState) -> str | Response:
    """The deployment of a ``/openai/deployments/…`` request, or Azure's 404."""
    version = request.query_params.get("api-version")
    if version is None or not API_VERSIONS.match(version):
        return azure_error(404, "404", "Resource not found")
    return str(request.path_params["deployment"])


def _not_deployed(deployment: str) -> Response:
    return azure_error(
        404,
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the deployment "
        "within the last 5 minutes, please wait a moment and try again.",
    )


async def deployment_chat(request: Request, state: SimState, body: Any) -> Response:
    dep = _deployment(request, state)
    if isinstance(dep, Response):
        return dep
    if not _chat_model(dep):
        auth = authenticate(request)
        return auth if isinstance(auth, Response) else _not_deployed(dep)
    if isinstance(body, dict):
        body = {**body, "model": dep}  # the deployment decides, whatever the body says
    return await chat(request, state, body, PROFILE)


async def deployment_embeddings(request: Request, state: SimState, body: Any) -> Response:
    dep = _deployment(request, state)
    if isinstance(dep, Response):
        return dep
    if not (dep.startswith("text-embedding") and has_price("azure", dep)):
        auth = authenticate(request)
        return auth if isinstance(auth, Response) else _not_deployed(dep)
    return await embed(request, state, body, PROFILE, deployment_model=dep)


def _v1_undeployed(request: Request, body: Any, embeddings: bool) -> Response | None:
    model = body.get("model") if isinstance(body, dict) else None
    if not isinstance(model, str) or not model:
        return None  # the endpoint answers its own 400
    ok = (
        model.startswith("text-embedding") and has_price("azure", model)
        if embeddings
        else _chat_model(model)
    )
    if ok:
        return None
    auth = authenticate(request)
    return auth if isinstance(auth, Response) else _not_deployed(model)


async def v1_chat(request: Request, state: SimState, body: Any) -> Response:
    return _v1_undeployed(request, body, False) or await chat(request, state, body, PROFILE)


async def v1_embeddings(request: Request, state: SimState, body: Any) -> Response:
    return _v1_undeployed(request, body, True) or await embed(request, state, body, PROFILE)
