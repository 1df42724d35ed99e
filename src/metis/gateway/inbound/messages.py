"""``POST /v1/messages`` (Anthropic shape).

Usage: Anthropic's ``input_tokens`` excludes cache reads and writes; the
canonical input adds them (`metis.gateway.usage.from_anthropic`). Streams:
usage arrives in ``message_start`` and ``message_delta`` (cumulative), all
forwarded unchanged.

Worst case (`worst_case`, `metis.gateway.worst_case`): ``max_tokens``
(required by the API; thinking tokens are part of it; the model's maximum
when absent), per sampling round. Input: the body, an image allowance per
``image`` block (also inside ``tool_result``), the context window for a
``document``, a ``container_upload``, a ``container`` or an unknown block;
a provider-defined client tool (``bash_…``, ``text_editor_…``,
``computer_…``, ``memory_…``) adds its definition's tokens; server tools
(``web_search_…``, ``web_fetch_…``, ``code_execution_…``, any other typed
tool, ``mcp_servers``) run up to `metis.gateway.worst_case.SERVER_TOOL_ROUNDS`
rounds (fewer when every server tool has ``max_uses``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from metis.gateway.inbound.base import InboundAPI, positive_int
from metis.gateway.usage import from_anthropic
from metis.gateway.worst_case import SERVER_TOOL_ROUNDS, WorstCase


class MessagesRequest(msgspec.Struct):
    model: Any = None
    stream: Any = None
    max_tokens: Any = None
    max_completion_tokens: Any = None  # not an Anthropic field: read as absent unless sent


class _Block(msgspec.Struct):
    type: Any = None
    content: msgspec.Raw = msgspec.Raw()  # tool_result: text or blocks (read when needed)


class _Message(msgspec.Struct):
    content: str | list[_Block] | None = None


class _Tool(msgspec.Struct):
    type: Any = None
    max_uses: Any = None


class _Scan(msgspec.Struct):
    """What the worst case reads of a messages request (unknown fields skipped unparsed)."""

    max_tokens: Any = None
    messages: list[_Message] | None = None
    system: str | list[_Block] | None = None
    tools: list[_Tool] | None = None
    mcp_servers: list[msgspec.Raw] | None = None
    container: Any = None


_scan = msgspec.json.Decoder(_Scan)
_nested = msgspec.json.Decoder(str | list[_Block] | None)
_BODY_BOUND = frozenset(
    {
        "text",
        "tool_use",
        "thinking",
        "redacted_thinking",
        "search_result",
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "mcp_tool_use",
        "mcp_tool_result",
    }
)
"""Block types whose tokens are the body's own (replayed results are carried in it)."""
_CLIENT_TYPED = ("bash_", "text_editor_", "computer_", "memory_")


class _Count:
    __slots__ = ("context_bound", "images")

    def __init__(self) -> None:
        self.images = 0
        self.context_bound = False

    def blocks(self, blocks: list[_Block], depth: int = 0) -> None:
        for b in blocks:
            if b.type == "image":
                self.images += 1
            elif b.type == "tool_result":
                if b.content:
                    self.nested(b.content, depth)
            elif b.type not in _BODY_BOUND:
                self.context_bound = True  # document, container_upload or unknown

    def nested(self, content: msgspec.Raw, depth: int) -> None:
        if depth > 8:  # deeper than any real request: do not recurse further
            self.context_bound = True
            return
        try:
            inner = _nested.decode(content)
        except msgspec.DecodeError:
            self.context_bound = True
            return
        if isinstance(inner, list):
            self.blocks(inner, depth + 1)


def worst_case(req: MessagesRequest, raw: bytes) -> WorstCase:
    """What a messages request can make the provider bill (see the module docstring)."""
    try:
        r = _scan.decode(raw)
    except msgspec.DecodeError:
        return WorstCase(context_bound=True)
    count = _Count()
    for m in r.messages or ():
        if isinstance(m.content, list):
            count.blocks(m.content)
    if isinstance(r.system, list):
        count.blocks(r.system)
    tools = r.tools or ()
    typed = [t for t in tools if t.type not in (None, "custom")]
    client_typed = [t for t in typed if str(t.type).startswith(_CLIENT_TYPED)]
    server = [t for t in typed if not str(t.type).startswith(_CLIENT_TYPED)]
    rounds = 1
    if server or r.mcp_servers:
        rounds = SERVER_TOOL_ROUNDS
        uses = [positive_int(t.max_uses) for t in server]
        if not r.mcp_servers and all(u is not None for u in uses):
            rounds = min(SERVER_TOOL_ROUNDS, sum(u for u in uses if u is not None) + 1)
    return WorstCase(
        output_budget=positive_int(r.max_tokens),
        images=count.images,
        context_bound=count.context_bound or r.container is not None,
        rounds=rounds,
        budget_per_round=True,
        tools=len(tools),
        typed_tools=len(client_typed),
    )


API = InboundAPI(
    name="messages",
    shape="anthropic",
    path="/v1/messages",
    decoder=msgspec.json.Decoder(MessagesRequest),
    streams=lambda req: req.stream is True,
    worst_case=worst_case,
    usage=from_anthropic,
    tap="anthropic",
    translatable=True,
)
