"""Forwarding a request the gateway does not bill (count_tokens, stored responses, model lookup).

The request was authenticated by the caller (a ``gw_`` key). It goes to the
workspace's ``inference`` credential of ``provider`` with the same method and
query string, at the same API path below the credential's family prefix
(`metis.gateway.upstreams`: ``/v1/models`` of an OpenAI-compatible provider
is its base URL plus ``/models``), with the headers of docs/gateway.md
"Headers that reach the provider"; the answer comes back with its status, content type, body (an
SSE body is relayed as it arrives) and ``retry-after`` / ``x-should-retry``.
No usage record, no cap: these calls cost nothing at the provider. Each one
is counted in ``metis_gateway_unbilled_requests_total{endpoint}``. Errors the
gateway makes itself (no credential, upstream unreachable or silent) are in
the inbound ``shape``'s envelope.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metis.gateway import http_io, metrics, upstream
from metis.gateway.http_client import UpstreamError, describe
from metis.gateway.http_io import Header, Receive, Send
from metis.gateway.lifecycle import relayed_headers
from metis.gateway.upstream import UpstreamCredential
from metis.gateway.upstreams import family_of

if TYPE_CHECKING:
    from metis.gateway.app import Gateway


class Fetched:
    """A whole upstream answer (status, content type, scrubbed body, relayed headers)."""

    __slots__ = ("body", "ctype", "headers", "status")

    def __init__(self, status: int, ctype: str, body: bytes, headers: list[Header]) -> None:
        self.status, self.ctype, self.body, self.headers = status, ctype, body, headers


async def fetch(
    gw: Gateway,
    cred: UpstreamCredential,
    method: str,
    rel: str,
    query: bytes,
    client_headers: dict[bytes, bytes],
    body: bytes = b"",
) -> Fetched | tuple[str, str]:
    """One whole upstream exchange of ``rel`` (a path below the family's prefix, e.g.
    ``/models``), or (error kind, message) when none could be had."""
    assert gw.session is not None
    fam = family_of(cred.family)
    headers = fam.headers(cred, client_headers)
    try:
        resp = await gw.session.request(
            method, fam.url(cred, rel, query), body, headers, timeout=upstream.READ_TIMEOUT_S
        )
        try:
            data = upstream.scrub_secret(await resp.read(), cred)
            return Fetched(
                resp.status,
                resp.headers.get("content-type", "application/json"),
                data,
                relayed_headers(resp),
            )
        finally:
            resp.release()
    except TimeoutError:
        return "upstream_timeout", "upstream timed out"
    except UpstreamError as e:
        return "upstream_error", f"upstream connection failed: {describe(e)}"


async def forward_unbilled(
    gw: Gateway,
    scope: dict[str, Any],
    send: Send,
    *,
    rid: str,
    workspace_id: str,
    shape: str,
    provider: str,
    endpoint: str,
    rel: str,
    body: bytes = b"",
) -> None:
    """Relay one request to ``provider`` unchanged, at ``rel`` below its family's prefix."""
    metrics.UNBILLED.labels(endpoint).inc()
    cred = await gw.creds.get(workspace_id, provider)
    if cred is None:
        await no_credential(send, shape, provider, rid)
        return
    fam = family_of(cred.family)
    if fam.wire != shape:
        await http_io.error(
            send,
            shape,
            "upstream_error",
            f"provider {provider} ({cred.family}) does not serve {endpoint} requests",
            rid,
        )
        return
    assert gw.session is not None
    url = fam.url(cred, rel, scope.get("query_string", b""))
    headers = fam.headers(cred, dict(scope["headers"]))
    try:
        resp = await gw.session.request(
            scope["method"], url, body, headers, timeout=upstream.READ_TIMEOUT_S
        )
    except TimeoutError:
        await http_io.error(send, shape, "upstream_timeout", "upstream timed out", rid)
        return
    except UpstreamError as e:
        await http_io.error(
            send, shape, "upstream_error", f"upstream connection failed: {describe(e)}", rid
        )
        return
    try:
        ctype = resp.headers.get("content-type", "application/json")
        if resp.status == 401:
            gw.creds.invalidate(workspace_id, provider)
        if resp.status < 400 and ctype.startswith("text/event-stream"):
            await _relay_stream(send, resp, rid, ctype)
            return
        try:
            data = upstream.scrub_secret(await resp.read(), cred)
        except TimeoutError:
            await http_io.error(send, shape, "upstream_timeout", "upstream timed out", rid)
            return
        except UpstreamError as e:
            await http_io.error(
                send,
                shape,
                "upstream_error",
                f"upstream connection failed: {describe(e)}",
                rid,
            )
            return
        await http_io.respond(
            send, resp.status, data, rid, (b"content-type", ctype.encode()), relayed_headers(resp)
        )
    finally:
        resp.release()


async def no_credential(send: Send, shape: str, provider: str, rid: str) -> None:
    await http_io.error(
        send,
        shape,
        "upstream_error",
        f"workspace has no {provider} credential with purpose inference",
        rid,
    )


async def _relay_stream(send: Send, resp: Any, rid: str, ctype: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": resp.status,
            "headers": [
                (b"content-type", ctype.encode()),
                (b"cache-control", b"no-cache"),
                (b"x-metis-request-id", rid.encode()),
            ],
        }
    )
    try:
        async for chunk in resp.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except (TimeoutError, UpstreamError):
        pass  # the client sees the stream end early, as the upstream ended it
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def discard_body(receive: Receive) -> None:
    """Read and drop a request body the gateway does not forward."""
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect" or not msg.get("more_body"):
            return
