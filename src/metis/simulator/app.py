"""The simulator's ASGI app: routes, fault application, ``/_sim`` control endpoints.

One server plays both providers. Paths are the providers' own (use the server
root as the SDK ``base_url``: ``http://host:port/v1`` for OpenAI,
``http://host:port`` for Anthropic). ``GET /v1/models`` answers in Anthropic's
shape when the request carries ``x-api-key`` or ``anthropic-version``, else in
OpenAI's.

Control endpoints (simulator only, never faulted, no auth):
``GET /_sim/ground_truth[?origin=served|history]``, ``GET /_sim/calls``,
``GET|POST|DELETE /_sim/faults``, ``POST /_sim/reset``, ``GET /_sim/health``.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from metis.simulator import (
    anthropic_count_tokens,
    anthropic_inference,
    anthropic_models,
    limits,
    openai_inference,
    openai_responses,
)
from metis.simulator.faults import REJECTING, Fault, FaultError, validate
from metis.simulator.http import (
    JSONResponse,
    Provider,
    anthropic_error,
    apply_post_fault,
    fault_error,
    install_drop_log_filter,
    openai_error,
)
from metis.simulator.state import SimState

Handler = Callable[[Request, SimState, Any], Awaitable[Response]]
STREAMING_PATHS = (":streamGenerateContent", "/converse-stream", "/invoke-with-response-stream")
"""Paths that stream whatever the body says (Gemini, Bedrock): for ``stream_cut`` faults."""


def _is_anthropic(request: Request) -> bool:
    h = request.headers
    return "x-api-key" in h or "anthropic-version" in h


Precheck = Callable[[bytes], Response | None]


def _too_large(provider: Provider) -> Response:
    """The providers' answer to a body over `limits.MAX_BODY_BYTES`."""
    if provider == "gemini":
        from metis.simulator.gemini import gemini_error

        return gemini_error(400, "Request payload size exceeds the limit: 33554432 bytes.")
    if provider == "bedrock":
        from metis.simulator.bedrock import aws_error

        return aws_error(413, "ValidationException", "Input is too long for requested model.")
    if provider == "anthropic":
        return anthropic_error(
            413, "Request exceeds the maximum allowed number of bytes.", type="request_too_large"
        )
    return openai_error(
        413,
        f"Request too large: the body is over {limits.MAX_BODY_BYTES} bytes.",
        code="request_too_large",
    )


async def _read_body(request: Request) -> bytes | None:
    """The body, or None as soon as it passes `limits.MAX_BODY_BYTES` (never held whole)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _endpoint(
    state: SimState,
    provider: Provider | None,
    handler: Handler,
    *,
    json_body: bool,
    precheck: Precheck | None = None,
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler: read the body within the size limit, run ``precheck`` on the raw
    bytes (limits checked before decoding), parse the JSON, apply faults around it."""

    async def endpoint(request: Request) -> Response:
        prov: Provider = provider or ("anthropic" if _is_anthropic(request) else "openai")
        body: Any = None
        if json_body:
            raw = await _read_body(request)
            if raw is None:
                return _too_large(prov)
            request.state.raw_body = raw  # as received (Bedrock's SigV4 covers its hash)
            if precheck is not None:
                refused = precheck(raw)
                if refused is not None:
                    return refused
            try:
                body = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                if prov in ("gemini", "bedrock"):
                    return _bad_json(prov)
                if prov == "openai":
                    return openai_error(
                        400,
                        "We could not parse the JSON body of your request. (HINT: This likely "
                        "means you aren't using your HTTP library correctly.)",
                    )
                return anthropic_error(400, "There was an error parsing the body of your request")
        fault: Fault | None = None
        if state.faults.active:
            streaming = (isinstance(body, dict) and body.get("stream") is True) or any(
                m in request.url.path for m in STREAMING_PATHS
            )
            fault = state.faults.take(request.url.path, streaming=streaming)
            if fault is not None:
                if fault.kind in REJECTING:
                    return fault_error(prov, fault)
                if fault.kind == "slow":
                    await asyncio.sleep(fault.delay)
        resp = await handler(request, state, body)
        return apply_post_fault(resp, fault)

    return endpoint


def _bad_json(provider: Provider) -> Response:
    if provider == "gemini":
        from metis.simulator.gemini import gemini_error

        return gemini_error(400, "Invalid JSON payload received.")
    from metis.simulator.bedrock import aws_error

    return aws_error(400, "SerializationException", "Could not parse the request body.")


async def _models(request: Request, state: SimState, body: Any) -> Response:
    if _is_anthropic(request):
        return await anthropic_inference.list_models(request, state, body)
    return await openai_inference.list_models(request, state, body)


async def _model(request: Request, state: SimState, body: Any) -> Response:
    if _is_anthropic(request):
        return await anthropic_models.get_model(request, state, body)
    return await openai_inference.get_model(request, state, body)


def _sim_routes(state: SimState) -> list[Route]:
    async def ground_truth(request: Request) -> Response:
        origin = request.query_params.get("origin")
        if origin not in (None, "served", "history"):
            return JSONResponse({"error": "origin must be served or history"}, status_code=400)
        return JSONResponse(state.ledger.ground_truth(origin))

    async def calls(request: Request) -> Response:
        origin = request.query_params.get("origin")
        return JSONResponse({"calls": state.ledger.call_list(origin)})

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            try:
                data = msgspec.json.decode(await request.body())
                items = data if isinstance(data, list) else [data]
                added = [validate(x) for x in items]
            except (msgspec.DecodeError, FaultError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            for f in added:
                state.faults.add(f)
        elif request.method == "DELETE":
            state.faults.clear()
        return JSONResponse({"faults": [msgspec.to_builtins(f) for f in state.faults.to_list()]})

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"ok": True})

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "seed": state.seed, "history_days": state.history_days})

    return [
        Route("/_sim/ground_truth", ground_truth, methods=["GET"]),
        Route("/_sim/calls", calls, methods=["GET"]),
        Route("/_sim/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/_sim/health", health, methods=["GET"]),
    ]


def create_app(
    *,
    seed: int = 0,
    history_days: int = 0,
    faults: list[Fault] | None = None,
    clock: Callable[[], float] | None = None,
) -> Starlette:
    """A fresh simulator (its own ledger, faults and prompt cache).

    ``seed`` makes token counts and generated text reproducible;
    ``history_days`` adds deterministic usage for the D days before today;
    ``faults`` are active from the start (and restored by ``/_sim/reset``);
    ``clock`` (unix seconds) is for tests that need a fixed "now".
    """
    install_drop_log_filter()
    kw: dict[str, Any] = {"seed": seed, "history_days": history_days, "faults": faults}
    if clock is not None:
        kw["clock"] = clock
    state = SimState(**kw)

    def ep(
        provider: Provider | None,
        handler: Handler,
        json_body: bool = False,
        precheck: Precheck | None = None,
    ) -> Any:
        return _endpoint(state, provider, handler, json_body=json_body, precheck=precheck)

    routes = [
        Route(
            "/v1/chat/completions",
            ep("openai", openai_inference.chat_completions, True),
            methods=["POST"],
        ),
        Route(
            "/v1/embeddings",
            ep("openai", openai_inference.embeddings, True, openai_inference.embeddings_precheck),
            methods=["POST"],
        ),
        Route("/v1/models", ep(None, _models), methods=["GET"]),
        Route("/v1/models/{model:path}", ep(None, _model), methods=["GET"]),
        Route("/v1/responses", ep("openai", openai_responses.create, True), methods=["POST"]),
        Route(
            "/v1/responses/{response_id}",
            ep("openai", openai_responses.retrieve),
            methods=["GET"],
        ),
        Route(
            "/v1/responses/{response_id}",
            ep("openai", openai_responses.delete),
            methods=["DELETE"],
        ),
        Route(
            "/v1/responses/{response_id}/cancel",
            ep("openai", openai_responses.cancel),
            methods=["POST"],
        ),
        Route(
            "/v1/responses/{response_id}/input_items",
            ep("openai", openai_responses.input_items),
            methods=["GET"],
        ),
        Route(
            "/v1/messages", ep("anthropic", anthropic_inference.messages, True), methods=["POST"]
        ),
        Route(
            "/v1/messages/count_tokens",
            ep("anthropic", anthropic_count_tokens.count_tokens, True),
            methods=["POST"],
        ),
        *_admin_routes(state, ep),
        *_family_routes(ep),
        *_sim_routes(state),
    ]
    app = Starlette(routes=routes)
    app.state.sim = state
    return app


def _family_routes(ep: Callable[..., Any]) -> list[Route]:
    """The profiles of the other provider families (docs/simulator.md "Provider families")."""
    from metis.simulator import azure, bedrock, gemini, openai_compatible

    compat = openai_compatible.PREFIX
    deployments = "/openai/deployments/{deployment}"
    return [
        Route(
            deployments + "/chat/completions",
            ep("openai", azure.deployment_chat, True),
            methods=["POST"],
        ),
        Route(
            deployments + "/embeddings",
            ep("openai", azure.deployment_embeddings, True),
            methods=["POST"],
        ),
        Route("/openai/v1/chat/completions", ep("openai", azure.v1_chat, True), methods=["POST"]),
        Route("/openai/v1/embeddings", ep("openai", azure.v1_embeddings, True), methods=["POST"]),
        Route(
            compat + "/chat/completions",
            ep("openai", openai_compatible.chat_completions, True),
            methods=["POST"],
        ),
        Route(compat + "/models", ep("openai", openai_compatible.list_models), methods=["GET"]),
        Route("/v1beta/models", ep("gemini", gemini.list_models), methods=["GET"]),
        Route("/v1beta/models/{model}", ep("gemini", gemini.get_model), methods=["GET"]),
        Route(
            "/v1beta/models/{rest:path}", ep("gemini", gemini.models_action, True), methods=["POST"]
        ),
        Route("/v1/models/{rest:path}", ep("gemini", gemini.models_action, True), methods=["POST"]),
        Route(
            "/model/{model_id}/{action}",
            ep("bedrock", bedrock.model_action, True),
            methods=["POST"],
        ),
    ]


def _admin_routes(state: SimState, ep: Callable[..., Any]) -> list[Route]:
    from metis.simulator import anthropic_admin, openai_admin

    return [
        Route(
            "/v1/organization/usage/completions",
            ep("openai", openai_admin.usage_completions),
            methods=["GET"],
        ),
        Route(
            "/v1/organization/usage/embeddings",
            ep("openai", openai_admin.usage_embeddings),
            methods=["GET"],
        ),
        Route("/v1/organization/costs", ep("openai", openai_admin.costs), methods=["GET"]),
        Route(
            "/v1/organizations/usage_report/messages",
            ep("anthropic", anthropic_admin.usage_messages),
            methods=["GET"],
        ),
        Route(
            "/v1/organizations/cost_report",
            ep("anthropic", anthropic_admin.cost_report),
            methods=["GET"],
        ),
    ]
