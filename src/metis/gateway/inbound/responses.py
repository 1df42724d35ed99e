"""``POST /v1/responses`` (OpenAI Responses API, OpenAI shape).

Billed like chat. Usage: a response's ``usage`` (plain answer) or the
``response`` of the stream's last event (``response.completed``, or
``response.incomplete`` / ``response.failed``): ``input_tokens`` includes
``input_tokens_details.cached_tokens`` and ``cache_write_tokens``,
``output_tokens`` includes ``output_tokens_details.reasoning_tokens``
(`metis.gateway.usage.from_responses`). The body goes upstream as sent
(``previous_response_id``, ``store``, ``background``, tools, ``reasoning``,
``text`` untouched) except for a routed model name.

Worst case (`worst_case`, `metis.gateway.worst_case`): output
``max_output_tokens`` for the whole response (reasoning included), the
model's maximum when absent (Codex never sends it). Input: the body, an
image allowance per ``input_image`` part and per screenshot or generated
image replayed, the context window for ``previous_response_id``,
``conversation``, a stored ``prompt``, an ``input_file``, an
``item_reference`` or an unknown item; built-in tools (``web_search…``,
``file_search``, ``code_interpreter``, ``mcp``, ``image_generation``, any
other type but ``function``, ``custom``, ``namespace`` and the client-run
shell and patch tools) run ``max_tool_calls + 1`` rounds, or
`metis.gateway.worst_case.SERVER_TOOL_ROUNDS` when it is absent.

Not translated: a routing rule that sends a Responses request to another
shape's provider is skipped (the attempt is recorded in ``route.decided``
with status ``unsupported_target`` and its reason) and the next candidate is
tried; docs/routing.md. Background responses (``background: true`` without
``stream``) report their usage only when polled, which the gateway does not
bill (`metis.gateway.inbound.stored`): a key under a hard cap is refused them
(403), as for unpriced models.
"""

from __future__ import annotations

from typing import Any

import msgspec

from metis.gateway.inbound.base import InboundAPI, positive_int
from metis.gateway.usage import from_responses
from metis.gateway.worst_case import SERVER_TOOL_ROUNDS, WorstCase


class ResponsesRequest(msgspec.Struct):
    """The Responses request fields the gateway looks at (others pass through)."""

    model: Any = None
    stream: Any = None
    max_output_tokens: Any = None
    background: Any = None


class _Part(msgspec.Struct):
    type: Any = None


class _Item(msgspec.Struct):
    type: Any = None
    role: Any = None
    content: str | list[_Part] | None = None
    output: msgspec.Raw = msgspec.Raw()  # a tool call's output: text, parts or an object


class _Tool(msgspec.Struct):
    type: Any = None
    tools: list[_Tool] | None = None  # a namespace's tools


class _Scan(msgspec.Struct):
    """What the worst case reads of a Responses request (unknown fields skipped unparsed)."""

    max_output_tokens: Any = None
    max_tool_calls: Any = None
    previous_response_id: Any = None
    conversation: Any = None
    prompt: Any = None
    input: str | list[_Item] | None = None
    tools: list[_Tool] | None = None


_scan = msgspec.json.Decoder(_Scan)
_output = msgspec.json.Decoder(str | list[_Part] | dict[str, Any] | None)
_BODY_BOUND_PARTS = frozenset(
    {"input_text", "output_text", "refusal", "summary_text", "reasoning_text", "input_audio"}
)
_BODY_BOUND_ITEMS = frozenset(
    {
        None,  # an easy input message: {role, content}
        "message",
        "function_call",
        "function_call_output",
        "custom_tool_call",
        "custom_tool_call_output",
        "reasoning",
        "compaction",
        "local_shell_call",
        "local_shell_call_output",
        "shell_call",
        "shell_call_output",
        "apply_patch_call",
        "apply_patch_call_output",
        "computer_call",
        "web_search_call",
        "file_search_call",
        "code_interpreter_call",
        "mcp_call",
        "mcp_list_tools",
        "mcp_approval_request",
        "mcp_approval_response",
    }
)
"""Item types whose tokens are the body's own (what they replay is carried in it)."""
_IMAGE_ITEMS = frozenset({"computer_call_output", "image_generation_call"})
_CLIENT_TOOLS = frozenset(
    {None, "function", "custom", "namespace", "local_shell", "shell", "apply_patch"}
)
_TYPED_TOOLS = frozenset({"computer_use_preview", "computer"})


def _flat(tools: list[_Tool], depth: int = 0) -> list[_Tool]:
    """The tools with a namespace's own tools listed after it."""
    out: list[_Tool] = []
    for t in tools:
        out.append(t)
        if t.tools and depth < 4:
            out.extend(_flat(t.tools, depth + 1))
    return out


def _parts(parts: list[_Part]) -> tuple[int, bool]:
    """(images, context bound) of a list of content parts."""
    images, bound = 0, False
    for p in parts:
        if p.type == "input_image":
            images += 1
        elif p.type not in _BODY_BOUND_PARTS:
            bound = True  # input_file or unknown
    return images, bound


def worst_case(req: ResponsesRequest, raw: bytes) -> WorstCase:
    """What a Responses request can make the provider bill (see the module docstring)."""
    try:
        r = _scan.decode(raw)
    except msgspec.DecodeError:
        return WorstCase(context_bound=True)
    images = 0
    bound = any(x is not None for x in (r.previous_response_id, r.conversation, r.prompt))
    for item in r.input if isinstance(r.input, list) else ():
        if item.type in _IMAGE_ITEMS:
            images += 1
        elif item.type not in _BODY_BOUND_ITEMS:
            bound = True  # item_reference or unknown
        if isinstance(item.content, list):
            i, b = _parts(item.content)
            images, bound = images + i, bound or b
        if item.output and item.type in ("function_call_output", "custom_tool_call_output"):
            try:
                out = _output.decode(item.output)
            except msgspec.DecodeError:
                bound = True
            else:
                if isinstance(out, list):
                    i, b = _parts(out)
                    images, bound = images + i, bound or b
    tools = _flat(r.tools or [])
    n_tools = len(tools)
    typed = sum(1 for t in tools if t.type in _TYPED_TOOLS)
    server = any(t.type not in _CLIENT_TOOLS and t.type not in _TYPED_TOOLS for t in tools)
    rounds = 1
    if server:
        calls = positive_int(r.max_tool_calls)
        rounds = calls + 1 if calls is not None else SERVER_TOOL_ROUNDS
    return WorstCase(
        output_budget=positive_int(r.max_output_tokens),
        images=images,
        context_bound=bound,
        rounds=rounds,
        budget_per_round=False,
        tools=n_tools,
        typed_tools=typed,
    )


def _admit(req: ResponsesRequest, capped: bool) -> str | None:
    if capped and req.background is True and req.stream is not True:
        return (
            "background responses cannot be held to a hard spend cap (their usage is only "
            "known when polled); send stream: true or use a key without a hard cap"
        )
    return None


API = InboundAPI(
    name="responses",
    shape="openai",
    path="/v1/responses",
    decoder=msgspec.json.Decoder(ResponsesRequest),
    streams=lambda req: req.stream is True,
    worst_case=worst_case,
    usage=from_responses,
    tap="responses",
    admit=_admit,
)
