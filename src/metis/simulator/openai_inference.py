"""OpenAI inference: ``POST /v1/chat/completions``, ``POST /v1/embeddings``, ``GET /v1/models``.

Shapes follow the OpenAI API reference field by field (chat completion object,
chat completion chunk object, embedding list, model list, error envelope).
Usage: ``prompt_tokens`` INCLUDES ``prompt_tokens_details.cached_tokens``;
``completion_tokens`` includes ``completion_tokens_details.reasoning_tokens``.

Cache rule (stateless, documented for tests): a chat prompt of at least 1024
tokens reports ``cached_tokens = floor(prompt_tokens / 2 / 128) * 128`` (OpenAI
caches prompts >= 1024 tokens in 128-token steps); shorter prompts report 0.

Tool calls: when the request has ``tools`` and ``tool_choice`` is not
``"none"`` and the last message is not a ``tool`` result, the simulator calls a
tool if ``tool_choice`` forces one (``"required"`` or a named function) or the
last user message contains "use tool" / "use a tool". It calls the named tool,
else a tool whose name appears in that message, else the first tool, with
arguments built from the tool's JSON schema (`catalog.args_from_schema`).
A request whose last message is a tool result gets a normal text answer.

Structured output: with ``response_format`` ``{"type": "json_schema",
"json_schema": {"schema": …}}`` (or ``json_object``) the answer's content is
one JSON value that validates against the schema
(`metis.simulator.schema_values`; ``client.chat.completions.parse`` works);
its completion tokens are its text's, plus reasoning for reasoning models.

The Responses API is `metis.simulator.openai_responses`.

The chat endpoint is shared by every OpenAI-shaped profile through a
`ChatProfile` (who authenticates, which models exist, which ledger provider
is billed, how usage is reported and which provider quirks the answer has):
OpenAI's own here, the OpenAI-compatible variants in
`metis.simulator.openai_compatible`, Azure OpenAI in `metis.simulator.azure`.
"""

from __future__ import annotations

import array
import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from metis.pricing import has_price
from metis.simulator import catalog, limits, tokens
from metis.simulator.http import (
    JSONResponse,
    SSEResponse,
    bearer,
    openai_error,
    sse_data,
    stream_interval,
)
from metis.simulator.keys import KeyIdentity, is_openai_key, openai_identity
from metis.simulator.ledger import Call
from metis.simulator.schema_values import value_for
from metis.simulator.state import SimState

FINGERPRINT = "fp_sim0000001"
CACHE_MIN_TOKENS = 1024
CACHE_STEP = 128


def authenticate(request: Request) -> KeyIdentity | Response:
    """The key's identity, or OpenAI's 401 envelope."""
    key = bearer(request.headers)
    if key is None:
        return openai_error(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    if not is_openai_key(key):
        return openai_error(
            401,
            f"Incorrect API key provided: sk-...{key[-4:] if len(key) > 8 else ''}. "
            "You can find your API key at https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )
    return openai_identity(key)


def request_time(request: Request, state: SimState) -> int:
    """Unix seconds of the call: now, or the simulator-only ``x-sim-time`` header."""
    v = request.headers.get("x-sim-time")
    if v:
        try:
            return int(float(v))
        except ValueError:
            pass
    return int(state.clock())


def forced_output(request: Request) -> int | None:
    v = request.headers.get("x-sim-output-tokens")
    if v and v.isdigit():
        return max(1, int(v))
    return None


def cached_tokens(prompt_tokens: int) -> int:
    if prompt_tokens < CACHE_MIN_TOKENS:
        return 0
    return (prompt_tokens // 2) // CACHE_STEP * CACHE_STEP


def _bad(message: str, param: str | None = None) -> Response:
    return openai_error(400, message, param=param)


def _model_not_found(model: str) -> Response:
    return openai_error(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        code="model_not_found",
    )


def _pick_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    tools: Any = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    funcs: list[dict[str, Any]] = [
        t["function"]
        for t in tools
        if isinstance(t, dict)
        and isinstance(t.get("function"), dict)
        and isinstance(t["function"].get("name"), str)
    ]
    if not funcs:
        return None
    choice = body.get("tool_choice")
    if choice == "none":
        return None
    messages = body["messages"]
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    if last.get("role") == "tool":
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        for f in funcs:
            if f["name"] == name:
                return f
    text = catalog.last_text(last.get("content")) if last.get("role") == "user" else ""
    if choice == "required" or isinstance(choice, dict) or catalog.asks_for_tool(text):
        for f in funcs:
            if f["name"] in text:
                return f
        return funcs[0]
    return None


def _cap(body: dict[str, Any]) -> int | None:
    for k in ("max_completion_tokens", "max_tokens"):
        v = body.get(k)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None


def _usage(prompt: int, cached: int, completion: int, reasoning: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_usage(
    prompt: int, cached: int, completion: int, reasoning: int, stated_nanousd: int | None = None
) -> dict[str, Any]:
    return _usage(prompt, cached, completion, reasoning)


@dataclass(frozen=True)
class ChatProfile:
    """One OpenAI-shaped provider as the chat endpoint plays it (see the module doc)."""

    provider: str  # the ledger's provider: the genai-prices id its calls are priced by
    authenticate: Callable[[Request], KeyIdentity | Response]
    accepts: Callable[[str], bool]  # the model exists (else 404 model_not_found)
    served: Callable[[str], str]  # the model name the answer reports
    cached: Callable[[int], int]  # cached prompt tokens of a prompt of N tokens
    usage: Callable[[int, int, int, int, int | None], dict[str, Any]]
    stream_usage_always: bool = False  # a usage chunk ends every stream (OpenRouter, Mistral)
    x_groq: bool = False  # the finishing chunk carries x_groq.usage (Groq)
    azure: bool = False  # Azure's content-filter fields and empty first stream chunk
    stated_cost: bool = False  # usage.cost states the call's price (OpenRouter)
    fingerprint: bool = True  # system_fingerprint / service_tier fields
    reasoning: Callable[[str], bool] = tokens.is_reasoning_model


def _openai_accepts(model: str) -> bool:
    return has_price("openai", model) and not model.startswith("text-embedding")


def _validate_chat(body: Any, profile: ChatProfile | None = None) -> Response | None:
    if not isinstance(body, dict):
        return _bad("Invalid request body: expected a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return _bad("you must provide a model parameter", "model")
    messages = body.get("messages")
    if not isinstance(messages, list):
        return _bad("Missing required parameter: 'messages'.", "messages")
    if not messages:
        return _bad(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.", "messages"
        )
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in (
            "system",
            "developer",
            "user",
            "assistant",
            "tool",
            "function",
        ):
            return _bad(f"Invalid value for 'messages[{i}].role'.", f"messages[{i}].role")
    n = 1 if body.get("n") is None else body["n"]
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128:
        return _bad("Invalid 'n': expected an integer between 1 and 128.", "n")
    if body.get("stream_options") is not None and body.get("stream") is not True:
        return _bad(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )
    if not (profile.accepts if profile is not None else _openai_accepts)(model):
        return _model_not_found(model)
    return None


async def chat_completions(request: Request, state: SimState, body: Any) -> Response:
    return await chat(request, state, body, OPENAI)


async def chat(request: Request, state: SimState, body: Any, profile: ChatProfile) -> Response:
    """``POST …/chat/completions`` as ``profile`` answers it."""
    ident = profile.authenticate(request)
    if isinstance(ident, Response):
        return ident
    err = _validate_chat(body, profile)
    if err is not None:
        return err
    model = profile.served(body["model"])
    ts = request_time(request, state)
    prompt = tokens.openai_prompt_tokens(body)
    cached = profile.cached(prompt)
    h = tokens.request_hash(state.seed, body["model"], body["messages"], body.get("tools"))
    tool = _pick_tool(body)
    stream = body.get("stream") is True
    opts = body.get("stream_options")
    include_usage = stream and isinstance(opts, dict) and opts.get("include_usage") is True
    cid = "chatcmpl-" + secrets.token_hex(15)
    base = {
        "id": cid,
        "object": "chat.completion.chunk" if stream else "chat.completion",
        "created": ts,
        "model": model,
    }

    n = body.get("n") or 1
    plans = [_plan(request, body, state.seed, model, h, i, tool, profile) for i in range(n)]
    completion = sum(p.completion for p in plans)
    reasoning = sum(p.reasoning for p in plans)
    call = Call(
        provider=profile.provider,
        kind="completions",
        ts=ts,
        api_key_id=ident.api_key_id,
        model=model,
        input_tokens=prompt,
        cached_input_tokens=cached,
        output_tokens=completion,
        reasoning_tokens=reasoning,
        project_id=ident.project_id,
        user_id=ident.user_id,
        response_id=cid,
    )
    state.ledger.add(call)
    usage = profile.usage(
        prompt, cached, completion, reasoning, call.cost_nanousd if profile.stated_cost else None
    )
    headers = {"x-request-id": "req_" + cid[9:], "openai-processing-ms": "1"}
    extra: dict[str, Any] = (
        {"service_tier": "default", "system_fingerprint": FINGERPRINT}
        if profile.fingerprint
        else {}
    )
    if profile.azure:
        extra["prompt_filter_results"] = [{"prompt_index": 0, **_AZURE_FILTERS}]

    if not stream:
        return JSONResponse(
            {
                **base,
                "choices": [
                    {
                        "index": p.index,
                        "message": p.message(),
                        "logprobs": None,
                        "finish_reason": p.finish,
                        **({"content_filter_results": _AZURE_FILTERS} if profile.azure else {}),
                    }
                    for p in plans
                ],
                "usage": usage,
                **extra,
            },
            headers=headers,
        )

    usage_chunk = include_usage or profile.stream_usage_always
    tail: dict[str, Any] = {k: v for k, v in extra.items() if k != "prompt_filter_results"}
    if usage_chunk:
        tail["usage"] = None

    def chunk(
        index: int, delta: dict[str, Any], finish_reason: str | None = None, last: bool = False
    ) -> bytes:
        choice: dict[str, Any] = {
            "index": index,
            "delta": delta,
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        if profile.azure:
            choice["content_filter_results"] = {} if finish_reason else _AZURE_FILTERS
        obj = {**base, **tail, "choices": [choice]}
        if last and profile.x_groq:
            obj["x_groq"] = {"id": headers["x-request-id"], "usage": usage}
        return sse_data(obj)

    events: list[bytes] = []
    if profile.azure:  # Azure's first chunk: the prompt's filter results, no id, no choices
        events.append(
            sse_data(
                {
                    "choices": [],
                    "created": 0,
                    "id": "",
                    "model": "",
                    "object": "",
                    "prompt_filter_results": extra["prompt_filter_results"],
                }
            )
        )
    for i, p in enumerate(plans):
        events += [chunk(p.index, d) for d in p.deltas()]
        events.append(chunk(p.index, {}, p.finish, last=i == len(plans) - 1))
    if usage_chunk:
        events.append(sse_data({**base, **tail, "choices": [], "usage": usage}))
    events.append(b"data: [DONE]\n\n")
    resp = SSEResponse(events, headers=headers)
    resp.interval = stream_interval(request.headers)
    return resp


class _Choice:
    """One choice's answer: a tool call or text (its tokens, finish reason, deltas)."""

    def __init__(
        self,
        index: int,
        completion: int,
        reasoning: int,
        finish: str,
        text_words: list[str],
        tool_name: str | None = None,
        args: str = "",
    ) -> None:
        self.index = index
        self.completion = completion
        self.reasoning = reasoning
        self.finish = finish
        self.text_words = text_words
        self.tool_name = tool_name
        self.args = args
        self.call_id = "call_" + secrets.token_hex(12) if tool_name else ""

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "annotations": [],
        }
        if self.tool_name is not None:
            message["tool_calls"] = [
                {
                    "id": self.call_id,
                    "type": "function",
                    "function": {"name": self.tool_name, "arguments": self.args},
                }
            ]
        else:
            message["content"] = " ".join(self.text_words)
        return message

    def deltas(self) -> list[dict[str, Any]]:
        if self.tool_name is not None:
            first: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "index": 0,
                        "id": self.call_id,
                        "type": "function",
                        "function": {"name": self.tool_name, "arguments": ""},
                    }
                ],
                "refusal": None,
            }
            return [first] + [
                {"tool_calls": [{"index": 0, "function": {"arguments": self.args[i : i + 16]}}]}
                for i in range(0, len(self.args), 16)
            ]
        out: list[dict[str, Any]] = [{"role": "assistant", "content": "", "refusal": None}]
        out += [{"content": w if i == 0 else " " + w} for i, w in enumerate(self.text_words)]
        return out


def _plan(
    request: Request,
    body: dict[str, Any],
    seed: int,
    model: str,
    h: int,
    index: int,
    tool: dict[str, Any] | None,
    profile: ChatProfile | None = None,
) -> _Choice:
    """Choice ``index`` (n > 1 gives each choice its own deterministic answer)."""
    if tool is not None:
        args = tokens.canonical(catalog.args_from_schema(tool.get("parameters"))).decode()
        completion = tokens.text_tokens(tool["name"]) + tokens.text_tokens(args) + 3
        return _Choice(index, completion, 0, "tool_calls", [], tool["name"], args)
    hi = h if index == 0 else tokens.request_hash(seed, h, index)
    cap = _cap(body)
    completion, truncated = tokens.output_tokens(hi, cap, forced_output(request))
    is_reasoning = (profile.reasoning if profile is not None else tokens.is_reasoning_model)(model)
    reasoning = tokens.reasoning_split(hi, model, completion, is_reasoning)
    schema = _json_output_schema(body)
    if schema is not None:
        # Structured output: one JSON value that validates against the schema; its
        # tokens are its text's (reasoning models spend their reasoning on top).
        text = msgspec.json.encode(value_for(schema)).decode()
        completion = reasoning + tokens.text_tokens(text)
        truncated = cap is not None and cap >= 1 and completion > cap
        if truncated:
            assert cap is not None
            text = text[: max(0, cap - reasoning) * 4]
            completion = reasoning + tokens.text_tokens(text)
        return _Choice(index, completion, reasoning, "length" if truncated else "stop", [text])
    words = tokens.words(hi, completion - reasoning)
    return _Choice(index, completion, reasoning, "length" if truncated else "stop", words)


def _json_output_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The schema the answer must follow (``response_format`` json_schema / json_object)."""
    rf = body.get("response_format")
    if not isinstance(rf, dict):
        return None
    if rf.get("type") == "json_object":
        return {"type": "object"}
    if rf.get("type") == "json_schema" and isinstance(rf.get("json_schema"), dict):
        schema = rf["json_schema"].get("schema")
        return schema if isinstance(schema, dict) else {"type": "object"}
    return None


_BASE_VECTORS: dict[int, array.array[float]] = {}


def _vector(dims: int, h: int) -> array.array[float]:
    base = _BASE_VECTORS.get(dims)
    if base is None:
        import random

        rnd = random.Random(dims)  # noqa: S311 - filler vectors
        base = _BASE_VECTORS[dims] = array.array(
            "f", (rnd.uniform(-0.05, 0.05) for _ in range(dims))
        )
    off = h % dims
    return base[off:] + base[:off]


_encode = msgspec.json.Encoder(decimal_format="number").encode


def embeddings_precheck(raw: bytes) -> Response | None:
    """400 for more than `limits.EMBEDDINGS_MAX_INPUTS` inputs, read from the raw body
    before it is decoded (so a million inputs cost no per-input memory)."""
    n = limits.embeddings_input_count(raw, limits.EMBEDDINGS_MAX_INPUTS)
    if n is not None and n > limits.EMBEDDINGS_MAX_INPUTS:
        return _bad(
            f"Invalid 'input': array too long. Expected an array with maximum length "
            f"{limits.EMBEDDINGS_MAX_INPUTS}, but got an array with a greater length instead.",
            "input",
        )
    return None


def _embeddings_body(data: list[bytes], model: str, prompt: int) -> Response:
    """The response, from embeddings already encoded one by one (no list of all floats)."""
    head = b'{"object":"list","data":['
    tail = _encode({"model": model, "usage": {"prompt_tokens": prompt, "total_tokens": prompt}})
    return Response(head + b",".join(data) + b"]," + tail[1:], media_type="application/json")


async def embeddings(request: Request, state: SimState, body: Any) -> Response:
    return await embed(request, state, body, OPENAI)


async def embed(
    request: Request,
    state: SimState,
    body: Any,
    profile: ChatProfile,
    deployment_model: str | None = None,
) -> Response:
    """``POST …/embeddings`` as ``profile`` answers it (``deployment_model``: the model an
    Azure deployment path names, instead of the body's)."""
    ident = profile.authenticate(request)
    if isinstance(ident, Response):
        return ident
    if not isinstance(body, dict):
        return _bad("Invalid request body: expected a JSON object.")
    model = deployment_model or body.get("model")
    if not isinstance(model, str) or not model:
        return _bad("you must provide a model parameter", "model")
    if "input" not in body or body["input"] in ("", [], None):
        return _bad(
            "'$.input' is invalid. Please check the API reference: "
            "https://platform.openai.com/docs/api-reference.",
            "input",
        )
    if not model.startswith("text-embedding") or not has_price(profile.provider, model):
        return _model_not_found(model)
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        return _bad(
            "Invalid value for 'encoding_format': expected 'float' or 'base64'.", "encoding_format"
        )
    dims = catalog.OPENAI_EMBEDDING_DIMS.get(model, 1536)
    if isinstance(body.get("dimensions"), int) and 1 <= body["dimensions"] <= dims:
        dims = body["dimensions"]
    counts = tokens.embedding_input_tokens(body["input"])
    if len(counts) > limits.EMBEDDINGS_MAX_INPUTS:  # the precheck counts first; this is exact
        return _bad(
            f"Invalid 'input': array too long. Expected an array with maximum length "
            f"{limits.EMBEDDINGS_MAX_INPUTS}, but got an array with length {len(counts)} instead.",
            "input",
        )
    longest = max(counts, default=0)
    if longest > limits.EMBEDDINGS_MAX_INPUT_TOKENS:
        return _bad(
            f"This model's maximum context length is {limits.EMBEDDINGS_MAX_INPUT_TOKENS} "
            f"tokens, however you requested {longest} tokens ({longest} in your prompt; 0 for "
            "the completion). Please reduce your prompt; or completion length.",
            "input",
        )
    prompt = sum(counts)
    if prompt > limits.EMBEDDINGS_MAX_TOTAL_TOKENS:
        return _bad(
            f"Requested {prompt} tokens, max {limits.EMBEDDINGS_MAX_TOTAL_TOKENS} tokens per "
            "request",
            "input",
        )
    ts = request_time(request, state)
    state.ledger.add(
        Call(
            provider=profile.provider,
            kind="embeddings",
            ts=ts,
            api_key_id=ident.api_key_id,
            model=model,
            input_tokens=prompt,
            project_id=ident.project_id,
            user_id=ident.user_id,
        )
    )
    data = []
    for i, n in enumerate(counts):
        vec = _vector(dims, state.seed * 7919 + n * 31 + i)
        emb: Any = base64.b64encode(vec.tobytes()).decode() if fmt == "base64" else vec.tolist()
        data.append(_encode({"object": "embedding", "index": i, "embedding": emb}))
    return _embeddings_body(data, model, prompt)


def _model_obj(mid: str) -> dict[str, Any]:
    return {"id": mid, "object": "model", "created": catalog.MODEL_CREATED, "owned_by": "system"}


async def list_models(request: Request, state: SimState, body: Any) -> Response:
    ident = authenticate(request)
    if isinstance(ident, Response):
        return ident
    return JSONResponse({"object": "list", "data": [_model_obj(m) for m in catalog.OPENAI_MODELS]})


async def get_model(request: Request, state: SimState, body: Any) -> Response:
    ident = authenticate(request)
    if isinstance(ident, Response):
        return ident
    mid = request.path_params["model"]
    if mid not in catalog.OPENAI_MODELS:
        return _model_not_found(mid)
    return JSONResponse(_model_obj(mid))


_AZURE_FILTERS: dict[str, Any] = {
    c: {"filtered": False, "severity": "safe"} for c in ("hate", "self_harm", "sexual", "violence")
}

OPENAI = ChatProfile(
    provider="openai",
    authenticate=authenticate,
    accepts=_openai_accepts,
    served=catalog.openai_served_model,
    cached=cached_tokens,
    usage=openai_usage,
)
