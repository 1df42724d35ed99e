"""OpenAI Responses API: ``POST /v1/responses`` and the stored-response endpoints.

Shapes follow the OpenAI API reference (the response object, output items
``message`` / ``function_call`` / ``reasoning``, the streaming events),
checked against the official SDK's types (``openai.types.responses``).

Usage, like chat (billed and reported under ``/v1/organization/usage/completions``):
``input_tokens`` INCLUDES ``input_tokens_details.cached_tokens`` (same cache
rule as chat: a prompt of at least 1024 tokens reports ``floor(input / 2 /
128) * 128``; ``cache_write_tokens`` is 0); ``output_tokens`` includes
``output_tokens_details.reasoning_tokens``.

Input tokens (deterministic, `metis.simulator.tokens` counting): 3, plus
``instructions`` (4 + its text), plus per input item 4 + its content
(a message's text or parts, a ``function_call``'s name and arguments, a
``function_call_output``'s output, other items as compact JSON; a
``reasoning`` item counts 0), plus the tools' and ``text.format``'s JSON.
With ``previous_response_id`` the earlier response's ``input_tokens +
output_tokens`` are added (its conversation is the context); an unknown or
unstored id is a 400.

Output: text of ``8 + h % 57`` tokens as for chat (``h`` hashes the seed,
model, instructions, input, tools and text format), capped by
``max_output_tokens`` (then ``status: "incomplete"``, ``incomplete_details:
{"reason": "max_output_tokens"}``); reasoning models (``o1``/``o3``/``o4``/
``gpt-5`` families) spend 25-74 % of it as reasoning tokens and put a
``reasoning`` item first (with ``encrypted_content`` when ``include`` asks for
``reasoning.encrypted_content``). ``text.format`` ``json_schema`` (or
``json_object``): the text is a JSON value that validates against the schema
(`metis.simulator.schema_values`), its tokens are its text's.

Tool calls: with function tools, a ``function_call`` item when
``tool_choice`` is ``"required"`` or names a function, or the last user
message says "use tool" / "use a tool" (and ``tool_choice`` is not
``"none"`` and the last input item is not a ``function_call_output``); the
named tool, else one named in that message, else the first; arguments
validate against its ``parameters``. Other tool types are accepted, never
called.

Stored responses (``store`` defaults to true): ``GET /v1/responses/{id}``
(``?stream=true`` replays the events), ``DELETE``, ``POST …/cancel`` (a
finished response is returned as is), ``GET …/input_items``. ``background:
true`` answers ``status: "queued"`` without output or usage; the response is
complete (and billed) at once, as ``GET`` then shows.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from metis.pricing import has_price
from metis.simulator import catalog, tokens
from metis.simulator.http import JSONResponse, SSEResponse, openai_error, stream_interval
from metis.simulator.ledger import Call
from metis.simulator.openai_inference import (
    authenticate,
    cached_tokens,
    forced_output,
    request_time,
)
from metis.simulator.schema_values import value_for
from metis.simulator.state import SimState

MIN_OUTPUT_TOKENS = 16
_encode = msgspec.json.Encoder(decimal_format="number").encode


@dataclass
class Stored:
    """A stored response: its object and the input items it was given."""

    obj: dict[str, Any]
    input_items: list[dict[str, Any]]
    events: list[bytes] = field(default_factory=list)


def store_of(state: SimState) -> dict[str, Stored]:
    """The simulator's stored responses (emptied by ``POST /_sim/reset``)."""
    return state.responses


def _bad(message: str, param: str | None = None, code: str | None = None) -> Response:
    return openai_error(400, message, param=param, code=code)


def _input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    inp = body.get("input")
    if isinstance(inp, str):
        return [{"type": "message", "role": "user", "content": inp}]
    if isinstance(inp, list):
        return [i for i in inp if isinstance(i, dict)]
    return []


def _part_tokens(part: Any) -> int:
    if isinstance(part, dict):
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text", "summary_text", "refusal"):
            text = part.get("text", part.get("refusal"))
            return tokens.text_tokens(text) if isinstance(text, str) else 0
        if kind in ("input_image", "input_file"):
            return tokens.IMAGE_TOKENS
        if kind == "input_audio":
            return tokens.AUDIO_TOKENS
    return tokens.block_tokens(part)


def _item_tokens(item: dict[str, Any]) -> int:
    kind = item.get("type", "message")
    if kind == "message" or ("role" in item and "type" not in item):
        c = item.get("content")
        if isinstance(c, list):
            return 4 + sum(_part_tokens(p) for p in c)
        return 4 + tokens.content_tokens(c)
    if kind == "function_call":
        args = item.get("arguments")
        return (
            4
            + tokens.text_tokens(str(item.get("name", "")))
            + (tokens.text_tokens(args) if isinstance(args, str) else 0)
        )
    if kind in ("function_call_output", "custom_tool_call_output"):
        out = item.get("output")
        return 4 + (tokens.text_tokens(out) if isinstance(out, str) else tokens.content_tokens(out))
    if kind == "reasoning":
        return 0
    return 4 + tokens.content_tokens(msgspec.json.encode(item).decode())


def input_tokens(body: dict[str, Any]) -> int:
    """The request's own input tokens (without a previous response's context)."""
    n = 3
    instr = body.get("instructions")
    if isinstance(instr, str):
        n += 4 + tokens.text_tokens(instr)
    n += sum(_item_tokens(i) for i in _input_items(body))
    if body.get("tools"):
        n += tokens.content_tokens(msgspec.json.encode(body["tools"]).decode())
    fmt = _format(body)
    if fmt is not None and fmt.get("type") == "json_schema":
        n += tokens.content_tokens(msgspec.json.encode(fmt).decode())
    return n


def _format(body: dict[str, Any]) -> dict[str, Any] | None:
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    return fmt if isinstance(fmt, dict) else None


def _validate(body: Any, store: dict[str, Stored]) -> Response | None:
    if not isinstance(body, dict):
        return _bad("Invalid request body: expected a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return _bad("Missing required parameter: 'model'.", "model")
    inp = body.get("input")
    if inp is not None and not isinstance(inp, str | list):
        return _bad("Invalid type for 'input': expected a string or an array.", "input")
    if isinstance(inp, list):
        for i, item in enumerate(inp):
            if not isinstance(item, dict):
                return _bad(f"Invalid type for 'input[{i}]': expected an object.", f"input[{i}]")
    mot = body.get("max_output_tokens")
    if mot is not None and (not isinstance(mot, int) or isinstance(mot, bool)):
        return _bad(
            "Invalid type for 'max_output_tokens': expected an integer.", "max_output_tokens"
        )
    if isinstance(mot, int) and mot < MIN_OUTPUT_TOKENS:
        return _bad(
            "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
            f"{MIN_OUTPUT_TOKENS}, but got {mot} instead.",
            "max_output_tokens",
            "integer_below_min_value",
        )
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return _bad("Invalid type for 'tools': expected an array.", "tools")
        for i, t in enumerate(tools):
            if not isinstance(t, dict) or not isinstance(t.get("type"), str):
                return _bad(f"Missing required parameter: 'tools[{i}].type'.", f"tools[{i}].type")
            if t["type"] == "function" and not isinstance(t.get("name"), str):
                return _bad(f"Missing required parameter: 'tools[{i}].name'.", f"tools[{i}].name")
    fmt = _format(body)
    if fmt is not None and fmt.get("type") == "json_schema":
        if not isinstance(fmt.get("name"), str):
            return _bad("Missing required parameter: 'text.format.name'.", "text.format.name")
        if not isinstance(fmt.get("schema"), dict):
            return _bad("Missing required parameter: 'text.format.schema'.", "text.format.schema")
    prev = body.get("previous_response_id")
    if prev is not None and (not isinstance(prev, str) or prev not in store):
        return _bad(
            f"Previous response with id '{prev}' not found.",
            "previous_response_id",
            "previous_response_not_found",
        )
    if body.get("stream_options") is not None and body.get("stream") is not True:
        return _bad(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )
    if not has_price("openai", model) or model.startswith("text-embedding"):
        return openai_error(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    return None


def _pick_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = [
        t
        for t in body.get("tools") or ()
        if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("name"), str)
    ]
    if not tools:
        return None
    choice = body.get("tool_choice")
    if choice == "none":
        return None
    items = _input_items(body)
    if items and items[-1].get("type") in ("function_call_output", "custom_tool_call_output"):
        return None
    if isinstance(choice, dict) and choice.get("type") == "function":
        for t in tools:
            if t["name"] == choice.get("name"):
                return t
    users = [i for i in items if i.get("role") == "user"]
    text = _text_of(users[-1].get("content")) if users else ""
    if choice == "required" or isinstance(choice, dict) or catalog.asks_for_tool(text):
        for t in tools:
            if t["name"] in text:
                return t
        return tools[0]
    return None


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p.get("text", "")
            for p in content
            if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _ids() -> tuple[str, str]:
    h = secrets.token_hex(24)
    return "resp_" + h, h


async def create(request: Request, state: SimState, body: Any) -> Response:
    """``POST /v1/responses``."""
    ident = authenticate(request)
    if isinstance(ident, Response):
        return ident
    store = store_of(state)
    err = _validate(body, store)
    if err is not None:
        return err
    model = catalog.openai_served_model(body["model"])
    ts = request_time(request, state)
    prev_id = body.get("previous_response_id")
    prompt = input_tokens(body)
    if isinstance(prev_id, str):
        u = store[prev_id].obj.get("usage") or {}
        prompt += int(u.get("input_tokens", 0)) + int(u.get("output_tokens", 0))
    cached = cached_tokens(prompt)
    fmt = _format(body)
    h = tokens.request_hash(
        state.seed,
        body["model"],
        body.get("instructions"),
        body.get("input"),
        body.get("tools"),
        fmt,
    )
    rid, hexid = _ids()
    cap = body.get("max_output_tokens") if isinstance(body.get("max_output_tokens"), int) else None
    output, completion, reasoning, truncated = _output(request, body, model, h, hexid, cap)
    state.ledger.add(
        Call(
            provider="openai",
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
            response_id=rid,
        )
    )
    usage = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }
    done = _response(body, rid, ts, model, output, usage, truncated)
    events = _events(done)
    if body.get("store") is not False:
        store[rid] = Stored(done, _stored_items(body, hexid), events)
    headers = {"x-request-id": "req_" + hexid[:32], "openai-processing-ms": "1"}
    if body.get("stream") is True:
        resp = SSEResponse(events, headers=headers)
        resp.interval = stream_interval(request.headers)
        return resp
    if body.get("background") is True:
        queued = {
            **done,
            "status": "queued",
            "output": [],
            "usage": None,
            "incomplete_details": None,
        }
        return JSONResponse(queued, headers=headers)
    return JSONResponse(done, headers=headers)


def _output(
    request: Request, body: dict[str, Any], model: str, h: int, hexid: str, cap: int | None
) -> tuple[list[dict[str, Any]], int, int, bool]:
    """(output items, output tokens, reasoning tokens, truncated)."""
    tool = _pick_tool(body)
    if tool is not None:
        params = tool.get("parameters")
        args = tokens.canonical(value_for(params if isinstance(params, dict) else {})).decode()
        completion = tokens.text_tokens(tool["name"]) + tokens.text_tokens(args) + 3
        call = {
            "type": "function_call",
            "id": "fc_" + hexid,
            "call_id": "call_" + hexid[:24],
            "name": tool["name"],
            "arguments": args,
            "status": "completed",
        }
        return [call], completion, 0, False
    completion, truncated = tokens.output_tokens(h, cap, forced_output(request))
    reasoning = tokens.reasoning_split(h, model, completion)
    fmt = _format(body)
    if fmt is not None and fmt.get("type") in ("json_schema", "json_object"):
        schema = fmt.get("schema") if fmt.get("type") == "json_schema" else {"type": "object"}
        text = msgspec.json.encode(value_for(schema)).decode()
        completion = reasoning + tokens.text_tokens(text)
        truncated = cap is not None and completion > cap
        if truncated:
            assert cap is not None
            text = text[: max(0, cap - reasoning) * 4]
            completion = reasoning + tokens.text_tokens(text)
    else:
        text = " ".join(tokens.words(h, completion - reasoning))
    out: list[dict[str, Any]] = []
    if tokens.is_reasoning_model(model):
        rs: dict[str, Any] = {"type": "reasoning", "id": "rs_" + hexid, "summary": []}
        include = body.get("include")
        if isinstance(include, list) and "reasoning.encrypted_content" in include:
            rs["encrypted_content"] = "gAAAA" + hexid  # opaque, like the real one
        out.append(rs)
    out.append(
        {
            "type": "message",
            "id": "msg_" + hexid,
            "status": "incomplete" if truncated else "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        }
    )
    return out, completion, reasoning, truncated


def _response(
    body: dict[str, Any],
    rid: str,
    ts: int,
    model: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any],
    truncated: bool,
) -> dict[str, Any]:
    fmt = _format(body) or {"type": "text"}
    r = body.get("reasoning")
    reasoning: dict[str, Any] = r if isinstance(r, dict) else {}
    return {
        "id": rid,
        "object": "response",
        "created_at": ts,
        "status": "incomplete" if truncated else "completed",
        "background": body.get("background") is True,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if truncated else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": None,
        "service_tier": "default",
        "store": body.get("store") is not False,
        "temperature": body.get("temperature", 1.0),
        "text": {"format": fmt, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_logprobs": 0,
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": usage,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def _stored_items(body: dict[str, Any], hexid: str) -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(_input_items(body)):
        it = dict(item)
        it.setdefault("type", "message")
        it.setdefault("id", f"msg_{hexid[:40]}{i:08d}")
        if it["type"] == "message" and isinstance(it.get("content"), str):
            it["content"] = [{"type": "input_text", "text": it["content"]}]
        out.append(it)
    return out


def _events(done: dict[str, Any]) -> list[bytes]:
    """The SSE events of ``done`` in the order the API streams them."""
    seq = 0

    def ev(kind: str, **data: Any) -> bytes:
        nonlocal seq
        payload = {"type": kind, "sequence_number": seq, **data}
        seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + _encode(payload) + b"\n\n"

    started = {**done, "status": "in_progress", "output": [], "usage": None}
    started["incomplete_details"] = None
    out = [ev("response.created", response=started), ev("response.in_progress", response=started)]
    for idx, item in enumerate(done["output"]):
        kind = item["type"]
        if kind == "message":
            text = item["content"][0]["text"]
            out.append(
                ev(
                    "response.output_item.added",
                    output_index=idx,
                    item={**item, "status": "in_progress", "content": []},
                )
            )
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            common = {"item_id": item["id"], "output_index": idx, "content_index": 0}
            out.append(ev("response.content_part.added", **common, part=part))
            words = text.split(" ") if text else []
            for i, w in enumerate(words):
                out.append(
                    ev(
                        "response.output_text.delta",
                        **common,
                        delta=w if i == 0 else " " + w,
                        logprobs=[],
                    )
                )
            out.append(ev("response.output_text.done", **common, text=text, logprobs=[]))
            out.append(ev("response.content_part.done", **common, part={**part, "text": text}))
        elif kind == "function_call":
            out.append(
                ev(
                    "response.output_item.added",
                    output_index=idx,
                    item={**item, "status": "in_progress", "arguments": ""},
                )
            )
            args = item["arguments"]
            for i in range(0, len(args), 16):
                out.append(
                    ev(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=idx,
                        delta=args[i : i + 16],
                    )
                )
            out.append(
                ev(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=idx,
                    name=item["name"],
                    arguments=args,
                )
            )
        else:
            out.append(ev("response.output_item.added", output_index=idx, item=item))
        out.append(ev("response.output_item.done", output_index=idx, item=item))
    final = "response.incomplete" if done["status"] == "incomplete" else "response.completed"
    out.append(ev(final, response=done))
    return out


def _stored_or_404(request: Request, state: SimState) -> Stored | Response:
    rid = request.path_params["response_id"]
    st = store_of(state).get(rid)
    if st is None:
        return openai_error(
            404, f"Response with id '{rid}' not found.", param="response_id", code=None
        )
    return st


async def retrieve(request: Request, state: SimState, body: Any) -> Response:
    """``GET /v1/responses/{id}`` (``?stream=true`` replays its events)."""
    ident = authenticate(request)
    if isinstance(ident, Response):
        return ident
    st = _stored_or_404(request, state)
    if isinstance(st, Response):
        return st
    if request.query_params.get("stream") == "true":
        return SSEResponse(st.events)
    return JSONResponse(st.obj)


async def delete(request: Request, state: SimState, body: Any) -> Response:
    """``DELETE /v1/responses/{id}``."""
    ident = authenticate(request)
    if isinstance(ident, Response):
        return ident
    st = _stored_or_404(request, state)
    if isinstance(st, Response):
        return st
    rid = st.obj["id"]
    del store_of(state)[rid]
    return JSONResponse({"id": rid, "object": "response.deleted", "deleted": True})


async def cancel(request: Request, state: SimState, body: Any) -> Response:
    """``POST /v1/responses/{id}/cancel``: only background responses; a finished one as is."""
    ident = authenticate(request)
    if isinstance(ident, Response):
        return ident
    st = _stored_or_404(request, state)
    if isinstance(st, Response):
        return st
    if st.obj.get("background") is not True:
        return _bad("Only responses created with background=true can be cancelled.")
    return JSONResponse(st.obj)


async def input_items(request: Request, state: SimState, body: Any) -> Response:
    """``GET /v1/responses/{id}/input_items`` (one page, newest first unless ``order=asc``)."""
    ident = authenticate(request)
    if isinstance(ident, Response):
        return ident
    st = _stored_or_404(request, state)
    if isinstance(st, Response):
        return st
    items = list(st.input_items)
    if request.query_params.get("order", "desc") != "asc":
        items.reverse()
    return JSONResponse(
        {
            "object": "list",
            "data": items,
            "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None,
            "has_more": False,
        }
    )
