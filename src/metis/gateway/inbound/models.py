"""``GET /v1/models`` and ``GET /v1/models/{id}``, in the shape the client speaks.

The shape comes from the headers (Anthropic when ``anthropic-version`` or
``x-api-key`` is sent, `metis.gateway.http_io.shape_of`). The list holds the
models that shape can serve for this key:

1. its provider's own list, read from the provider with the workspace's
   ``inference`` credential (OpenAI ``GET /v1/models``; Anthropic's, every
   page) and kept `LIST_TTL_S` per workspace and provider: exactly the
   current models that credential can call (retired ones are not listed by
   the provider; genai-prices has no retirement data to decide it);
2. plus, for each of the workspace's other providers of that shape's wire
   whose family lists models (OpenAI-compatible providers: ``GET
   <base>/models``), its models as ``<provider>/<model>`` (the address a
   client uses, `metis.gateway.plan`), owned by the provider's name; a
   provider that fails to answer is left out of the list (and logged);
3. plus the model names only routing rules or aliases make reachable
   (`metis.gateway.routing.router.Router.reachable`), listed as owned by
   ``metis-routing``;
4. minus what the key's ``allowed_models`` forbids.

No OpenAI models in the Anthropic list or the other way round, unless a rule
routes them. A provider the workspace has no credential for contributes
nothing; a provider that does not answer makes the list fail with its error
(502/504 in the shape's envelope, or the provider's own status and body).
Anthropic's list pages like Anthropic's (``limit``, default 20, at most
1000; ``after_id`` / ``before_id``; ``has_more``, ``first_id``,
``last_id``); OpenAI's is one page.

``GET /v1/models/{id}``: 404 in the shape's envelope when ``allowed_models``
forbids it; else forwarded to the provider (its answer, e.g. an alias
resolved to a dated id, or its 404), and a routing-only name the provider
does not know gets the same object the list shows. Not billed; counted in
``metis_gateway_unbilled_requests_total{endpoint="models"}``.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

import msgspec

from metis.gateway import http_io, metrics
from metis.gateway.http_io import Receive, Send
from metis.gateway.inbound.unknown import unknown
from metis.gateway.lifecycle import request_id
from metis.gateway.passthrough import Fetched, fetch, no_credential
from metis.gateway.upstreams import family_of
from metis.jsonutil import DECODE_ERRORS

if TYPE_CHECKING:
    from metis.gateway.app import Gateway

PATH = "/v1/models"
PREFIX = "/v1/models/"
LIST_TTL_S = 300.0
"""How long a provider's model list is reused before it is read again."""
MAX_PAGES = 20
_ID = re.compile(r"[A-Za-z0-9._:/@-]{1,200}")
PROVIDER_OF = {"openai": "openai", "anthropic": "anthropic"}
LISTING_FAMILIES = ("openai-compatible",)
"""Families besides OpenAI and Anthropic whose model list the gateway reads (Azure's lists
base models, not deployments; Bedrock's is a control-plane API of another host)."""
log = logging.getLogger("metis.gateway")


class ModelListCache:
    """Provider model lists per (workspace, provider), each kept `LIST_TTL_S`."""

    def __init__(self) -> None:
        self._lists: dict[tuple[str, str], tuple[float, list[dict[str, Any]]]] = {}

    def get(self, workspace_id: str, provider: str) -> list[dict[str, Any]] | None:
        hit = self._lists.get((workspace_id, provider))
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, workspace_id: str, provider: str, models: list[dict[str, Any]]) -> None:
        if len(self._lists) > 10_000:
            self._lists.clear()
        self._lists[(workspace_id, provider)] = (time.monotonic() + LIST_TTL_S, models)

    def invalidate(self, workspace_id: str | None = None, provider: str | None = None) -> None:
        self._lists.clear()


def _alias(shape: str, model: str) -> dict[str, Any]:
    if shape == "anthropic":
        return {
            "type": "model",
            "id": model,
            "display_name": model,
            "created_at": "1970-01-01T00:00:00Z",
        }
    return {"id": model, "object": "model", "created": 0, "owned_by": "metis-routing"}


async def _provider_list(
    gw: Gateway, workspace_id: str, provider: str, headers: dict[bytes, bytes]
) -> list[dict[str, Any]] | Fetched | tuple[str, str] | None:
    """The provider's models (cached), its error answer, a gateway error, or None (no
    credential)."""
    cached = gw.model_lists.get(workspace_id, provider)
    if cached is not None:
        return cached
    cred = await gw.creds.get(workspace_id, provider)
    if cred is None:
        return None
    out: list[dict[str, Any]] = []
    paged = cred.family == "anthropic"
    query = b"limit=1000" if paged else b""
    for _ in range(MAX_PAGES):
        got = await fetch(gw, cred, "GET", "/models", query, headers)
        if not isinstance(got, Fetched):
            return got
        if got.status >= 400:
            return got
        try:
            doc: Any = msgspec.json.decode(got.body)
        except DECODE_ERRORS:
            return "upstream_error", "the provider's model list is not JSON"
        data = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(data, list):
            return "upstream_error", "the provider's model list has no data"
        out.extend(m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str))
        last = doc.get("last_id")
        if not paged or doc.get("has_more") is not True or not isinstance(last, str):
            break
        query = b"limit=1000&after_id=" + quote(last, safe="").encode()
    gw.model_lists.put(workspace_id, provider, out)
    return out


async def list_models(gw: Gateway, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    headers = dict(scope["headers"])
    shape = http_io.shape_of(headers)
    if scope["method"] not in ("GET", "HEAD"):
        await unknown(scope, receive, send, shape)
        return
    rid = request_id()
    resolved = await gw.authenticate_key(scope, headers, send, shape, rid)
    if resolved is None:
        return
    metrics.UNBILLED.labels("models").inc()
    got = await _provider_list(gw, resolved.principal.workspace_id, PROVIDER_OF[shape], headers)
    if isinstance(got, Fetched):
        await http_io.respond(
            send, got.status, got.body, rid, (b"content-type", got.ctype.encode()), got.headers
        )
        return
    if isinstance(got, tuple):
        await http_io.error(send, shape, got[0], got[1], rid)
        return
    models = list(got or ())
    ws = resolved.principal.workspace_id
    for name, info in gw.providers.of(ws).items():
        if (
            info.family not in LISTING_FAMILIES
            or name == PROVIDER_OF[shape]
            or family_of(info.family).wire != shape
        ):
            continue
        extra = await _provider_list(gw, ws, name, headers)
        if not isinstance(extra, list):
            log.warning("model list of provider %s unavailable; left out of /v1/models", name)
            continue
        models += [_addressed(shape, name, m) for m in extra]
    seen = {m["id"] for m in models}
    models += [
        _alias(shape, a) for a in gw.reachable_models(shape, resolved.principal) if a not in seen
    ]
    allowed = resolved.snapshot.allowed_models
    if allowed is not None:
        models = [m for m in models if m["id"] in allowed]
    if shape == "anthropic":
        body = _anthropic_page(models, scope.get("query_string", b""))
    else:
        body = msgspec.json.encode({"object": "list", "data": models})
    await http_io.respond(send, 200, body, rid)


def _addressed(shape: str, provider: str, m: dict[str, Any]) -> dict[str, Any]:
    """A provider's model as ``provider/model`` in ``shape``'s list."""
    mid = f"{provider}/{m['id']}"
    if shape == "anthropic":
        return {
            "type": "model",
            "id": mid,
            "display_name": mid,
            "created_at": "1970-01-01T00:00:00Z",
        }
    created = m.get("created")
    return {
        "id": mid,
        "object": "model",
        "created": created if isinstance(created, int) else 0,
        "owned_by": provider,
    }


def _anthropic_page(models: list[dict[str, Any]], query: bytes) -> bytes:
    q = parse_qs(query.decode("latin-1"))
    limit_s = (q.get("limit") or ["20"])[0]
    limit = min(max(int(limit_s), 1), 1000) if limit_s.isdigit() else 20
    ids = [m["id"] for m in models]
    after = q["after_id"][0] if q.get("after_id") else None
    before = q["before_id"][0] if q.get("before_id") else None
    if before is not None and before in ids:
        end = ids.index(before)
        page = models[max(0, end - limit) : end]
        more = end - limit > 0
    else:
        start = ids.index(after) + 1 if after is not None and after in ids else 0
        page = models[start : start + limit]
        more = start + limit < len(models)
    return msgspec.json.encode(
        {
            "data": page,
            "has_more": more,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        }
    )


async def retrieve_model(gw: Gateway, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    headers = dict(scope["headers"])
    shape = http_io.shape_of(headers)
    model = scope["path"][len(PREFIX) :]
    if scope["method"] not in ("GET", "HEAD") or not _ID.fullmatch(model):
        await unknown(scope, receive, send, shape)
        return
    rid = request_id()
    resolved = await gw.authenticate_key(scope, headers, send, shape, rid)
    if resolved is None:
        return
    metrics.UNBILLED.labels("models").inc()
    allowed = resolved.snapshot.allowed_models
    if allowed is not None and model not in allowed:
        await _not_found(send, shape, model, rid)
        return
    provider = PROVIDER_OF[shape]
    routed = model in gw.reachable_models(shape, resolved.principal)
    cred = await gw.creds.get(resolved.principal.workspace_id, provider)
    if cred is None:
        if routed:
            await http_io.respond(send, 200, msgspec.json.encode(_alias(shape, model)), rid)
        else:
            await no_credential(send, shape, provider, rid)
        return
    got = await fetch(gw, cred, "GET", "/models/" + quote(model, safe=":@"), b"", headers)
    if isinstance(got, tuple):
        await http_io.error(send, shape, got[0], got[1], rid)
    elif got.status == 404 and routed:
        await http_io.respond(send, 200, msgspec.json.encode(_alias(shape, model)), rid)
    else:
        await http_io.respond(
            send, got.status, got.body, rid, (b"content-type", got.ctype.encode()), got.headers
        )


async def _not_found(send: Send, shape: str, model: str, rid: str) -> None:
    msg = f"The model '{model}' does not exist or you do not have access to it."
    if shape == "openai":
        await http_io.error(send, shape, "not_found", msg, rid, code="model_not_found")
    else:
        await http_io.error(send, shape, "not_found", msg, rid)
