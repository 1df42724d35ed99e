"""Request bodies: OpenAI chat completions ⇄ Anthropic messages.

Both functions take the decoded inbound JSON and the target model and return
a new body for the other provider; the input is never mutated. Anything the
target cannot express faithfully raises `UnsupportedFeature` (a 400 naming
the field) rather than being dropped silently. Fields that do not change the
answer (``seed``, ``store``, ``service_tier``, ``cache_control`` …) are dropped.

Mapping notes a caller must know:

* OpenAI ``system``/``developer`` messages are hoisted into Anthropic's
  top-level ``system`` wherever they appear (Anthropic has no mid-conversation
  system turn); consecutive same-role turns are merged.
* Anthropic requires ``max_tokens``: ``max_completion_tokens`` or
  ``max_tokens`` is used, else `DEFAULT_MAX_TOKENS`.
* OpenAI ``temperature`` ranges 0-2, Anthropic's 0-1: a value above 1 is
  refused rather than clamped.
* OpenAI ``tool`` messages become ``tool_result`` blocks in a user turn and
  vice versa (tool results first, then any other user content, so the OpenAI
  order "assistant tool_calls → tool messages" holds).
* A streaming Anthropic-shaped request routed to OpenAI always asks for
  ``stream_options.include_usage`` (the Anthropic stream must end with usage).
"""

from typing import Any

from metis.gateway.translate._check import (
    Obj,
    arr,
    boolean,
    dumps_str,
    integer,
    loads_args,
    number,
    obj,
    opt_string,
    string,
)
from metis.gateway.translate.errors import TranslationError, UnsupportedFeature

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` sent to Anthropic when an OpenAI-shaped request names none."""

_ANTHROPIC = "an Anthropic model"
_OPENAI = "an OpenAI model"

# OpenAI request fields that do not change the answer: dropped.
_OPENAI_DROPPED = frozenset(
    {"seed", "store", "metadata", "service_tier", "prompt_cache_key", "safety_identifier"}
)
_OPENAI_HANDLED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "user",
        "n",
        "logprobs",
        "top_logprobs",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "response_format",
        "modalities",
    }
)
_ANTHROPIC_DROPPED = frozenset({"service_tier"})
_ANTHROPIC_HANDLED = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "metadata",
        "tools",
        "tool_choice",
        "thinking",
    }
)
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


# ---------------------------------------------------------------- OpenAI -> Anthropic


def openai_to_anthropic_request(body: Any, target_model: str) -> Obj:
    """Translate an OpenAI chat-completions request into an Anthropic messages request."""
    body = obj(body, "body")
    for key in body:
        if key not in _OPENAI_HANDLED and key not in _OPENAI_DROPPED:
            raise UnsupportedFeature(key, _ANTHROPIC)
    _refuse_openai_options(body)

    system: list[str] = []
    messages: list[Obj] = []
    for i, raw in enumerate(arr(body.get("messages"), "messages")):
        field = f"messages[{i}]"
        msg = obj(raw, field)
        role = msg.get("role")
        if role in ("system", "developer"):
            system.append(_openai_text(msg.get("content"), f"{field}.content"))
        elif role == "user":
            _push(messages, "user", _openai_user_blocks(msg.get("content"), f"{field}.content"))
        elif role == "assistant":
            _push(messages, "assistant", _openai_assistant_blocks(msg, field))
        elif role == "tool":
            tool_id = string(msg.get("tool_call_id"), f"{field}.tool_call_id")
            text = _openai_text(msg.get("content"), f"{field}.content")
            block = {"type": "tool_result", "tool_use_id": tool_id, "content": text}
            _push(messages, "user", [block])
        elif role == "function":
            raise UnsupportedFeature("messages[].role=function", _ANTHROPIC, "use tool messages")
        else:
            raise TranslationError(f"{field}.role {role!r} is not valid", field=f"{field}.role")
    if not messages:
        raise TranslationError("messages must contain a user message", field="messages")

    out: Obj = {"model": target_model, "messages": messages, "max_tokens": _max_tokens(body)}
    if system:
        out["system"] = "\n\n".join(system)
    if body.get("stream") is not None and boolean(body["stream"], "stream"):
        out["stream"] = True
    temperature = body.get("temperature")
    if temperature is not None:
        if number(temperature, "temperature") > 1:
            raise UnsupportedFeature("temperature", _ANTHROPIC, "values above 1 (range is 0-1)")
        out["temperature"] = temperature
    if body.get("top_p") is not None:
        out["top_p"] = number(body["top_p"], "top_p")
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else arr(stop, "stop")
        out["stop_sequences"] = [string(s, "stop[]") for s in stops]
    if body.get("user") is not None:
        out["metadata"] = {"user_id": string(body["user"], "user")}
    tools = body.get("tools")
    if tools is not None:
        converted = [_openai_tool(t, f"tools[{i}]") for i, t in enumerate(arr(tools, "tools"))]
        if converted:
            out["tools"] = converted
            choice = _openai_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
            if choice is not None:
                out["tool_choice"] = choice
    elif body.get("tool_choice") not in (None, "none", "auto"):
        raise TranslationError("tool_choice requires tools", field="tool_choice")
    return out


def _refuse_openai_options(body: Obj) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise UnsupportedFeature("n", _ANTHROPIC, "only n=1")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise UnsupportedFeature("logprobs", _ANTHROPIC)
    for pen in ("presence_penalty", "frequency_penalty"):
        if body.get(pen) not in (None, 0, 0.0):
            raise UnsupportedFeature(pen, _ANTHROPIC)
    if body.get("logit_bias"):
        raise UnsupportedFeature("logit_bias", _ANTHROPIC)
    rf = body.get("response_format")
    if rf is not None:
        kind = obj(rf, "response_format").get("type")
        if kind != "text":
            raise UnsupportedFeature(f"response_format.type={kind}", _ANTHROPIC)
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise UnsupportedFeature("modalities", _ANTHROPIC, "only text output")


def _max_tokens(body: Obj) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        if body.get(key) is not None:
            v = integer(body[key], key)
            if v < 1:
                raise TranslationError(f"{key} must be at least 1", field=key)
            return v
    return DEFAULT_MAX_TOKENS


def _push(messages: list[Obj], role: str, blocks: list[Obj]) -> None:
    """Append a turn, merging with the previous one of the same role."""
    if not blocks:
        return
    if messages and messages[-1]["role"] == role:
        prev = messages[-1]["content"]
        # Tool results must lead a user turn; keep them ahead of text.
        if role == "user" and blocks[0].get("type") == "tool_result":
            lead = [b for b in prev if b.get("type") == "tool_result"]
            rest = [b for b in prev if b.get("type") != "tool_result"]
            messages[-1]["content"] = [*lead, *blocks, *rest]
        else:
            prev.extend(blocks)
    else:
        messages.append({"role": role, "content": list(blocks)})


def _openai_text(content: Any, field: str) -> str:
    """Text of a system/tool message: a string or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for i, p in enumerate(arr(content, field)):
        part = obj(p, f"{field}[{i}]")
        if part.get("type") != "text":
            raise UnsupportedFeature(f"{field}[{i}].type={part.get('type')}", _ANTHROPIC)
        parts.append(string(part.get("text"), f"{field}[{i}].text"))
    return "".join(parts)


def _openai_user_blocks(content: Any, field: str) -> list[Obj]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks: list[Obj] = []
    for i, p in enumerate(arr(content, field)):
        pf = f"{field}[{i}]"
        part = obj(p, pf)
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": string(part.get("text"), f"{pf}.text")})
        elif kind == "image_url":
            url = string(obj(part.get("image_url"), f"{pf}.image_url").get("url"), f"{pf}.url")
            blocks.append(_image_block(url, pf))
        else:
            raise UnsupportedFeature(f"{field}[].type={kind}", _ANTHROPIC)
    return blocks


def _image_block(url: str, field: str) -> Obj:
    if url.startswith("data:"):
        head, sep, data = url[5:].partition(",")
        media_type, _, enc = head.partition(";")
        if not sep or enc != "base64":
            raise TranslationError(f"{field}: image data URL must be base64", field=field)
        if media_type not in _IMAGE_TYPES:
            raise UnsupportedFeature(f"image type {media_type}", _ANTHROPIC)
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise TranslationError(f"{field}: image URL must be http(s) or a data URL", field=field)


def _openai_assistant_blocks(msg: Obj, field: str) -> list[Obj]:
    if msg.get("audio") is not None:
        raise UnsupportedFeature(f"{field}.audio", _ANTHROPIC)
    if msg.get("function_call") is not None:
        raise UnsupportedFeature(f"{field}.function_call", _ANTHROPIC, "use tool_calls")
    blocks: list[Obj] = []
    content = msg.get("content")
    if isinstance(content, list):
        texts = []
        for i, p in enumerate(content):
            pf = f"{field}.content[{i}]"
            part = obj(p, pf)
            kind = part.get("type")
            if kind not in ("text", "refusal"):
                raise UnsupportedFeature(f"{field}.content[].type={kind}", _ANTHROPIC)
            texts.append(string(part.get(kind), f"{pf}.{kind}"))
        text = "".join(texts)
    else:
        text = opt_string(content, f"{field}.content") or ""
    if text:
        blocks.append({"type": "text", "text": text})
    calls = msg.get("tool_calls")
    if calls is not None:
        for i, c in enumerate(arr(calls, f"{field}.tool_calls")):
            cf = f"{field}.tool_calls[{i}]"
            call = obj(c, cf)
            if call.get("type", "function") != "function":
                raise UnsupportedFeature(f"{cf}.type={call.get('type')}", _ANTHROPIC)
            fn = obj(call.get("function"), f"{cf}.function")
            args = string(fn.get("arguments", ""), f"{cf}.function.arguments")
            blocks.append(
                {
                    "type": "tool_use",
                    "id": string(call.get("id"), f"{cf}.id"),
                    "name": string(fn.get("name"), f"{cf}.function.name"),
                    "input": loads_args(args, f"{cf}.function.arguments"),
                }
            )
    return blocks


def _openai_tool(raw: Any, field: str) -> Obj:
    tool = obj(raw, field)
    if tool.get("type") != "function":
        raise UnsupportedFeature(f"{field}.type={tool.get('type')}", _ANTHROPIC)
    fn = obj(tool.get("function"), f"{field}.function")
    out: Obj = {"name": string(fn.get("name"), f"{field}.function.name")}
    if fn.get("description") is not None:
        out["description"] = string(fn["description"], f"{field}.function.description")
    params = fn.get("parameters")
    out["input_schema"] = (
        obj(params, f"{field}.function.parameters")
        if params is not None
        else {"type": "object", "properties": {}}
    )
    return out


def _openai_tool_choice(choice: Any, parallel: Any) -> Obj | None:
    out: Obj | None
    if choice is None or choice == "auto":
        out = {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = string(obj(choice.get("function"), "tool_choice.function").get("name"), "name")
        out = {"type": "tool", "name": name}
    else:
        raise TranslationError("tool_choice is not valid", field="tool_choice")
    if parallel is not None and not boolean(parallel, "parallel_tool_calls"):
        out["disable_parallel_tool_use"] = True
    elif choice is None:
        return None
    return out


# ---------------------------------------------------------------- Anthropic -> OpenAI


def anthropic_to_openai_request(
    body: Any, target_model: str, *, max_tokens_field: str = "max_completion_tokens"
) -> Obj:
    """Translate an Anthropic messages request into an OpenAI chat-completions request."""
    body = obj(body, "body")
    for key in body:
        if key not in _ANTHROPIC_HANDLED and key not in _ANTHROPIC_DROPPED:
            raise UnsupportedFeature(key, _OPENAI)
    if body.get("top_k") is not None:
        raise UnsupportedFeature("top_k", _OPENAI)
    thinking = body.get("thinking")
    if thinking is not None and obj(thinking, "thinking").get("type") != "disabled":
        raise UnsupportedFeature("thinking", _OPENAI)

    messages: list[Obj] = []
    system = body.get("system")
    if system is not None:
        text = (
            system
            if isinstance(system, str)
            else "\n\n".join(_text_blocks(system, "system", drop_other=False))
        )
        messages.append({"role": "system", "content": text})
    turns = arr(body.get("messages"), "messages")
    if not turns:
        raise TranslationError("messages must not be empty", field="messages")
    for i, raw in enumerate(turns):
        field = f"messages[{i}]"
        msg = obj(raw, field)
        role = msg.get("role")
        content = msg.get("content")
        if role == "user":
            messages.extend(_anthropic_user(content, f"{field}.content"))
        elif role == "assistant":
            messages.append(_anthropic_assistant(content, f"{field}.content"))
        else:
            raise TranslationError(f"{field}.role {role!r} is not valid", field=f"{field}.role")

    if body.get("max_tokens") is None:
        raise TranslationError("max_tokens is required", field="max_tokens")
    max_tokens = integer(body["max_tokens"], "max_tokens")
    out: Obj = {"model": target_model, "messages": messages, max_tokens_field: max_tokens}
    if body.get("stream") is not None and boolean(body["stream"], "stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    if body.get("temperature") is not None:
        out["temperature"] = number(body["temperature"], "temperature")
    if body.get("top_p") is not None:
        out["top_p"] = number(body["top_p"], "top_p")
    if body.get("stop_sequences") is not None:
        stops = [string(s, "stop_sequences[]") for s in arr(body["stop_sequences"], "stop")]
        if stops:
            out["stop"] = stops
    metadata = body.get("metadata")
    if metadata is not None:
        user = obj(metadata, "metadata").get("user_id")
        if user is not None:
            out["user"] = string(user, "metadata.user_id")
    tools = body.get("tools")
    if tools is not None:
        converted = [_anthropic_tool(t, f"tools[{i}]") for i, t in enumerate(arr(tools, "tools"))]
        if converted:
            out["tools"] = converted
            _anthropic_tool_choice(body.get("tool_choice"), out)
    elif body.get("tool_choice") is not None:
        kind = obj(body["tool_choice"], "tool_choice").get("type")
        if kind not in ("auto", "none"):
            raise TranslationError("tool_choice requires tools", field="tool_choice")
    return out


def _text_blocks(content: Any, field: str, *, drop_other: bool) -> list[str]:
    texts = []
    for i, b in enumerate(arr(content, field)):
        block = obj(b, f"{field}[{i}]")
        if block.get("type") == "text":
            texts.append(string(block.get("text"), f"{field}[{i}].text"))
        elif not drop_other:
            raise UnsupportedFeature(f"{field}[].type={block.get('type')}", _OPENAI)
    return texts


def _anthropic_user(content: Any, field: str) -> list[Obj]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tool_msgs: list[Obj] = []
    parts: list[Obj] = []
    for i, b in enumerate(arr(content, field)):
        bf = f"{field}[{i}]"
        block = obj(b, bf)
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": string(block.get("text"), f"{bf}.text")})
        elif kind == "image":
            parts.append(_anthropic_image(block.get("source"), f"{bf}.source"))
        elif kind == "tool_result":
            tool_msgs.append(_anthropic_tool_result(block, bf))
        else:
            raise UnsupportedFeature(f"{field}[].type={kind}", _OPENAI)
    out = list(tool_msgs)
    if parts:
        if all(p["type"] == "text" for p in parts) and len(parts) == 1:
            out.append({"role": "user", "content": parts[0]["text"]})
        else:
            out.append({"role": "user", "content": parts})
    return out


def _anthropic_image(raw: Any, field: str) -> Obj:
    source = obj(raw, field)
    kind = source.get("type")
    if kind == "base64":
        media = string(source.get("media_type"), f"{field}.media_type")
        data = string(source.get("data"), f"{field}.data")
        url = f"data:{media};base64,{data}"
    elif kind == "url":
        url = string(source.get("url"), f"{field}.url")
    else:
        raise UnsupportedFeature(f"{field}.type={kind}", _OPENAI)
    return {"type": "image_url", "image_url": {"url": url}}


def _anthropic_tool_result(block: Obj, field: str) -> Obj:
    tool_id = string(block.get("tool_use_id"), f"{field}.tool_use_id")
    content = block.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        text = "".join(_text_blocks(content, f"{field}.content", drop_other=False))
    if block.get("is_error") is True:
        # OpenAI has no error flag on tool messages; say it in the content.
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": tool_id, "content": text}


def _anthropic_assistant(content: Any, field: str) -> Obj:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[Obj] = []
    for i, b in enumerate(arr(content, field)):
        bf = f"{field}[{i}]"
        block = obj(b, bf)
        kind = block.get("type")
        if kind == "text":
            texts.append(string(block.get("text"), f"{bf}.text"))
        elif kind == "tool_use":
            calls.append(
                {
                    "id": string(block.get("id"), f"{bf}.id"),
                    "type": "function",
                    "function": {
                        "name": string(block.get("name"), f"{bf}.name"),
                        "arguments": dumps_str(obj(block.get("input", {}), f"{bf}.input")),
                    },
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue  # the model's private reasoning; OpenAI has no place for it
        else:
            raise UnsupportedFeature(f"{field}[].type={kind}", _OPENAI)
    msg: Obj = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        msg["tool_calls"] = calls
    elif msg["content"] is None:
        msg["content"] = ""
    return msg


def _anthropic_tool(raw: Any, field: str) -> Obj:
    tool = obj(raw, field)
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise UnsupportedFeature(f"{field}.type={kind}", _OPENAI, "only custom tools")
    fn: Obj = {"name": string(tool.get("name"), f"{field}.name")}
    if tool.get("description") is not None:
        fn["description"] = string(tool["description"], f"{field}.description")
    fn["parameters"] = obj(tool.get("input_schema"), f"{field}.input_schema")
    return {"type": "function", "function": fn}


def _anthropic_tool_choice(raw: Any, out: Obj) -> None:
    if raw is None:
        return
    choice = obj(raw, "tool_choice")
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "tool":
        name = string(choice.get("name"), "tool_choice.name")
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    elif kind == "none":
        out["tool_choice"] = "none"
        return
    else:
        raise TranslationError(f"tool_choice.type {kind!r} is not valid", field="tool_choice")
    disable = choice.get("disable_parallel_tool_use")
    if disable is not None and boolean(disable, "tool_choice.disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False
