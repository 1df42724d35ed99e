"""Anthropic Messages ⇄ Bedrock Converse: requests, answers and streams.

The Bedrock family speaks the Anthropic wire (`metis.gateway.upstreams.catalog`),
so every inbound shape that reaches Anthropic (Messages natively, OpenAI chat
through `metis.gateway.translate`) reaches Converse through these functions.
Pure functions and one small state machine; no I/O.

Requests (`to_converse`): ``system`` (string or text blocks) -> ``system``
text blocks; ``messages`` content: ``text`` -> ``text``, ``image`` (base64)
-> ``image`` with its format and bytes, ``tool_use`` -> ``toolUse``,
``tool_result`` -> ``toolResult`` (text parts; ``is_error`` -> status
``error``), ``thinking`` -> ``reasoningContent``; a block's
``cache_control`` -> a ``cachePoint`` after it (also on tools and system
blocks); ``max_tokens``/``temperature``/``top_p``/``stop_sequences`` ->
``inferenceConfig``; ``top_k`` and ``thinking`` -> the model's
``additionalModelRequestFields``; ``tools`` -> ``toolConfig.tools``;
``tool_choice`` auto/any/tool -> ``toolChoice``. Not expressible, refused
with the field named (`UnsupportedFeature`, a 400 to the client):
``tool_choice: none``, ``document`` and other block types, an image given by
URL.

Answers (`from_converse`): ``output.message.content`` -> Anthropic blocks,
``stopReason`` -> ``stop_reason``, ``usage`` -> Anthropic usage. Converse's
``inputTokens`` excludes cache reads and writes (``cacheReadInputTokens``,
``cacheWriteInputTokens``; ``totalTokens`` is the sum of all four), which is
Anthropic's convention: the fields map one to one. Converse answers have no
id: the message id is ``msg_bdrk_`` plus the ``x-amzn-requestid`` header.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from metis.gateway.translate.errors import TranslationError, UnsupportedFeature

TARGET = "bedrock (Converse)"
_STOP = {
    "end_turn": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "guardrail_intervened": "refusal",
    "content_filtered": "refusal",
    "model_context_window_exceeded": "model_context_window_exceeded",
}
_CACHE_POINT = {"cachePoint": {"type": "default"}}


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    if not isinstance(content, list):
        raise TranslationError(f"{where}: content must be a string or a list", field=where)
    out: list[dict[str, Any]] = []
    for i, b in enumerate(content):
        here = f"{where}[{i}]"
        if not isinstance(b, dict):
            raise TranslationError(f"{here}: a content block must be an object", field=here)
        kind = b.get("type")
        if kind == "text":
            out.append({"text": str(b.get("text") or "")})
        elif kind == "image":
            out.append(_image(b.get("source"), here))
        elif kind == "tool_use":
            out.append(
                {
                    "toolUse": {
                        "toolUseId": b.get("id"),
                        "name": b.get("name"),
                        "input": b.get("input") or {},
                    }
                }
            )
        elif kind == "tool_result":
            out.append(_tool_result(b, here))
        elif kind == "thinking":
            rt: dict[str, Any] = {"text": str(b.get("thinking") or "")}
            if b.get("signature"):
                rt["signature"] = b["signature"]
            out.append({"reasoningContent": {"reasoningText": rt}})
        elif kind == "redacted_thinking":
            out.append({"reasoningContent": {"redactedContent": b.get("data")}})
        else:
            raise UnsupportedFeature(f"{here}.type {kind!r}", TARGET)
        if isinstance(b.get("cache_control"), dict):
            out.append(dict(_CACHE_POINT))
    return out


def _image(source: Any, where: str) -> dict[str, Any]:
    if not isinstance(source, dict) or source.get("type") != "base64":
        raise UnsupportedFeature(f"{where}.source (not base64)", TARGET, "send the image inline")
    media = str(source.get("media_type") or "")
    fmt = media.split("/", 1)[1] if "/" in media else ""
    if fmt not in ("png", "jpeg", "gif", "webp"):
        raise UnsupportedFeature(f"{where}.source.media_type {media!r}", TARGET)
    data = str(source.get("data") or "")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise TranslationError(f"{where}.source.data: not base64", field=where) from None
    return {"image": {"format": fmt, "source": {"bytes": data}}}


def _tool_result(b: dict[str, Any], where: str) -> dict[str, Any]:
    content = b.get("content")
    parts: list[dict[str, Any]] = []
    if isinstance(content, str):
        parts = [{"text": content}]
    elif isinstance(content, list):
        for j, p in enumerate(content):
            if isinstance(p, dict) and p.get("type") == "text":
                parts.append({"text": str(p.get("text") or "")})
            elif isinstance(p, dict) and p.get("type") == "image":
                parts.append(_image(p.get("source"), f"{where}.content[{j}]"))
            else:
                raise UnsupportedFeature(f"{where}.content[{j}]", TARGET)
    out: dict[str, Any] = {"toolUseId": b.get("tool_use_id"), "content": parts or [{"text": ""}]}
    if b.get("is_error") is True:
        out["status"] = "error"
    return {"toolResult": out}


def to_converse(body: dict[str, Any]) -> dict[str, Any]:
    """A Converse request body for an Anthropic Messages request body (see the module doc)."""
    out: dict[str, Any] = {}
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise TranslationError("messages: a non-empty list is required", field="messages")
    messages = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise UnsupportedFeature(f"messages[{i}].role", TARGET, "user and assistant only")
        messages.append(
            {"role": m["role"], "content": _blocks(m.get("content"), f"messages[{i}].content")}
        )
    out["messages"] = messages
    system = body.get("system")
    if system is not None:
        out["system"] = _blocks(system, "system")
    ic: dict[str, Any] = {}
    for src, dst in (("max_tokens", "maxTokens"), ("temperature", "temperature"), ("top_p", "topP"),
                     ("stop_sequences", "stopSequences")):  # fmt: skip
        if body.get(src) is not None:
            ic[dst] = body[src]
    if ic:
        out["inferenceConfig"] = ic
    extra: dict[str, Any] = {}
    for key in ("top_k", "thinking"):
        if body.get(key) is not None:
            extra[key] = body[key]
    if extra:
        out["additionalModelRequestFields"] = extra
    tools = body.get("tools")
    if tools:
        specs: list[dict[str, Any]] = []
        for i, t in enumerate(tools):
            if not isinstance(t, dict) or not isinstance(t.get("name"), str):
                raise TranslationError(f"tools[{i}]: needs a name", field=f"tools[{i}]")
            if t.get("type") not in (None, "custom"):
                raise UnsupportedFeature(f"tools[{i}].type {t.get('type')!r}", TARGET)
            spec = {"name": t["name"], "inputSchema": {"json": t.get("input_schema") or {}}}
            if t.get("description"):
                spec["description"] = t["description"]
            specs.append({"toolSpec": spec})
            if isinstance(t.get("cache_control"), dict):
                specs.append(dict(_CACHE_POINT))
        tc: dict[str, Any] = {"tools": specs}
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            kind = choice.get("type")
            if kind == "none":
                raise UnsupportedFeature("tool_choice none", TARGET, "leave the tools out instead")
            if kind == "any":
                tc["toolChoice"] = {"any": {}}
            elif kind == "tool":
                tc["toolChoice"] = {"tool": {"name": choice.get("name")}}
            else:
                tc["toolChoice"] = {"auto": {}}
        out["toolConfig"] = tc
    return out


def usage_to_anthropic(u: Any) -> dict[str, int]:
    u = u if isinstance(u, dict) else {}

    def n(k: str) -> int:
        v = u.get(k)
        return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0

    return {
        "input_tokens": n("inputTokens"),
        "output_tokens": n("outputTokens"),
        "cache_read_input_tokens": n("cacheReadInputTokens"),
        "cache_creation_input_tokens": n("cacheWriteInputTokens"),
    }


def _content_from(blocks: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for b in blocks if isinstance(blocks, list) else []:
        if not isinstance(b, dict):
            continue
        if isinstance(b.get("text"), str):
            out.append({"type": "text", "text": b["text"]})
        elif isinstance(b.get("toolUse"), dict):
            tu = b["toolUse"]
            out.append(
                {
                    "type": "tool_use",
                    "id": tu.get("toolUseId"),
                    "name": tu.get("name"),
                    "input": tu.get("input") or {},
                }
            )
        elif isinstance(b.get("reasoningContent"), dict):
            rt = b["reasoningContent"].get("reasoningText") or {}
            out.append(
                {
                    "type": "thinking",
                    "thinking": rt.get("text", ""),
                    "signature": rt.get("signature", ""),
                }
            )
    return out


def from_converse(doc: Any, message_id: str, model: str) -> dict[str, Any]:
    """An Anthropic message for a Converse answer (see the module doc)."""
    if not isinstance(doc, dict):
        raise TranslationError("upstream answer is not an object")
    msg = (doc.get("output") or {}).get("message") or {}
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _content_from(msg.get("content")),
        "stop_reason": _STOP.get(str(doc.get("stopReason")), "end_turn"),
        "stop_sequence": None,
        "usage": usage_to_anthropic(doc.get("usage")),
    }


class ConverseStreamToAnthropic:
    """ConverseStream events (type, payload) in, Anthropic SSE event objects out.

    Converse sends the stop reason (``messageStop``) before the usage
    (``metadata``); Anthropic's ``message_delta`` carries both, so it is sent
    when ``metadata`` arrives (or at the end, without usage, if it never does).
    ``message_start`` carries zero usage; ``message_delta`` the totals, which
    the Anthropic SDK applies.
    """

    def __init__(self, message_id: str, model: str) -> None:
        self.message_id = message_id
        self.model = model
        self._open: dict[int, str] = {}  # converse block index -> kind
        self._index: dict[int, int] = {}  # converse block index -> anthropic index
        self._stop: str | None = None
        self.started = False
        self.done = False

    def _start(self) -> list[dict[str, Any]]:
        if self.started:
            return []
        self.started = True
        usage = {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
                 "cache_creation_input_tokens": 0}  # fmt: skip
        return [{
            "type": "message_start",
            "message": {"id": self.message_id, "type": "message", "role": "assistant",
                        "model": self.model, "content": [], "stop_reason": None,
                        "stop_sequence": None, "usage": usage},
        }]  # fmt: skip

    def _block(self, i: int, block: dict[str, Any]) -> list[dict[str, Any]]:
        idx = self._index[i] = len(self._index)
        self._open[i] = block["type"]
        return [{"type": "content_block_start", "index": idx, "content_block": block}]

    def event(self, kind: str, p: Any) -> list[dict[str, Any]]:
        p = p if isinstance(p, dict) else {}
        out = self._start()
        i = p.get("contentBlockIndex") if isinstance(p.get("contentBlockIndex"), int) else 0
        if kind == "contentBlockStart":
            tu = (p.get("start") or {}).get("toolUse")
            if isinstance(tu, dict):
                out += self._block(
                    i,
                    {
                        "type": "tool_use",
                        "id": tu.get("toolUseId"),
                        "name": tu.get("name"),
                        "input": {},
                    },
                )
        elif kind == "contentBlockDelta":
            d = p.get("delta") or {}
            if "text" in d:
                if i not in self._index:
                    out += self._block(i, {"type": "text", "text": ""})
                delta = {"type": "text_delta", "text": str(d["text"])}
            elif isinstance(d.get("toolUse"), dict):
                if i not in self._index:
                    out += self._block(
                        i, {"type": "tool_use", "id": None, "name": None, "input": {}}
                    )
                delta = {
                    "type": "input_json_delta",
                    "partial_json": str(d["toolUse"].get("input") or ""),
                }
            elif isinstance(d.get("reasoningContent"), dict):
                if i not in self._index:
                    out += self._block(i, {"type": "thinking", "thinking": ""})
                rc = d["reasoningContent"]
                delta = (
                    {"type": "signature_delta", "signature": rc["signature"]}
                    if "signature" in rc
                    else {"type": "thinking_delta", "thinking": str(rc.get("text") or "")}
                )
            else:
                return out
            out.append({"type": "content_block_delta", "index": self._index[i], "delta": delta})
        elif kind == "contentBlockStop":
            if i in self._index and i in self._open:
                del self._open[i]
                out.append({"type": "content_block_stop", "index": self._index[i]})
        elif kind == "messageStop":
            self._stop = _STOP.get(str(p.get("stopReason")), "end_turn")
        elif kind == "metadata":
            out += self._finish(usage_to_anthropic(p.get("usage")))
        return out

    def _finish(self, usage: dict[str, int] | None) -> list[dict[str, Any]]:
        if self.done:
            return []
        self.done = True
        out = [{"type": "content_block_stop", "index": self._index[i]} for i in list(self._open)]
        self._open.clear()
        delta: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": self._stop or "end_turn", "stop_sequence": None},
        }
        if usage is not None:
            delta["usage"] = usage
        return [*out, delta, {"type": "message_stop"}]

    def close(self) -> list[dict[str, Any]]:
        """At the stream's end: finish a message whose usage never came (stop reason seen)."""
        if self.done or self._stop is None:
            return []
        return self._finish(None)
