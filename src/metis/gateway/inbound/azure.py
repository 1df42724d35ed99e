"""Azure OpenAI's paths, for clients built for Azure (the ``openai`` SDK's ``AzureOpenAI``).

An Azure client pointed at the gateway (``azure_endpoint`` = the gateway's URL,
``api_key`` = a ``gw_`` key, sent as the ``api-key`` header) sends:

- ``POST /openai/deployments/{deployment}/chat/completions?api-version=…``
  and ``…/embeddings``: the deployment is the model (`bind`); the body's
  ``model``, if any, is not read;
- ``POST /openai/v1/chat/completions``, ``/openai/v1/embeddings``,
  ``/openai/v1/responses`` (Azure's v1 API; the plain ``OpenAI`` client with
  ``base_url=…/openai/v1/`` sends these too): the body's ``model``.

They are the chat, embeddings and Responses APIs of the OpenAI shape
(`metis.gateway.inbound.chat` …: same usage reading, worst case, error
envelope) whose default provider is the workspace's ``azure`` credential
(`metis.gateway.upstreams.azure`), unless the model addresses another
provider (``groq/llama-3.3-70b-versatile``) or a routing rule sends it
elsewhere. The client's ``api-version`` is for the gateway, not forwarded:
the target's own credential says which version its upstream gets.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from metis.gateway.inbound import chat, embeddings, responses
from metis.gateway.inbound.base import InboundAPI

PROVIDER = "azure"
DEPLOYMENTS = "/openai/deployments/"
_TAILS = {"chat/completions": "chat", "embeddings": "embeddings"}


def deployment_api(path: str) -> str | None:
    """``chat`` / ``embeddings`` for a ``/openai/deployments/{d}/…`` path, else None."""
    dep, _, tail = path[len(DEPLOYMENTS) :].partition("/")
    return _TAILS.get(tail) if dep else None


def _bind_deployment(req: Any, path: str) -> str | None:
    dep, _, tail = path[len(DEPLOYMENTS) :].partition("/")
    if not dep or tail not in _TAILS:
        return "Resource not found"
    req.model = dep
    return None


def _azure(api: InboundAPI, path: str, **kw: Any) -> InboundAPI:
    return dataclasses.replace(api, path=path, provider=PROVIDER, forward_query=False, **kw)


DEPLOYMENT_CHAT = _azure(chat.API, DEPLOYMENTS, bind=_bind_deployment)
DEPLOYMENT_EMBEDDINGS = _azure(embeddings.API, DEPLOYMENTS, bind=_bind_deployment)
V1_CHAT = _azure(chat.API, "/openai/v1/chat/completions")
V1_EMBEDDINGS = _azure(embeddings.API, "/openai/v1/embeddings")
V1_RESPONSES = _azure(responses.API, "/openai/v1/responses")
BY_DEPLOYMENT_API = {"chat": DEPLOYMENT_CHAT, "embeddings": DEPLOYMENT_EMBEDDINGS}
