"""Streaming translation, event by event, as the upstream's bytes arrive.

`AnthropicToOpenAIStream` turns an Anthropic messages event stream into
OpenAI ``chat.completion.chunk`` frames (text deltas, tool-call deltas with
their ``index``/``id``/``name`` first and argument fragments after, the
``finish_reason`` chunk, then — when the client asked for
``stream_options.include_usage`` — the usage chunk with empty ``choices``,
then ``data: [DONE]``).

`OpenAIToAnthropicStream` turns OpenAI chunks into ``message_start``,
``content_block_start``/``delta``/``stop`` per text or tool block,
``message_delta`` (stop reason and usage) and ``message_stop``. The OpenAI
upstream request must carry ``stream_options.include_usage`` (the request
translator adds it) so the final ``message_delta`` has real usage; OpenAI sends
usage only at the end, so ``message_start`` carries zeros and ``message_delta``
the cumulative totals, which the Anthropic SDK applies.

Both expose byte-level ``feed``/``close`` for the proxy loop and the
event-level methods they are built on, plus what the gateway needs for
accounting: ``usage`` (in the *upstream's* shape, as reported so far),
``model`` and ``response_id``. A truncated upstream (no terminal event) is not
completed with a made-up ending, except that an OpenAI stream that already
sent its ``finish_reason`` is closed properly when ``[DONE]`` is missing.
"""

import time
from typing import Any

from metis.gateway.translate._check import Obj
from metis.gateway.translate.errors import TranslationError
from metis.gateway.translate.responses import finish_reason, stop_reason
from metis.gateway.translate.sse import (
    DONE,
    SSEDecoder,
    SSEEvent,
    decode_data,
    encode_data,
    encode_event,
)
from metis.gateway.translate.usage import anthropic_usage_to_openai, openai_usage_to_anthropic


class AnthropicToOpenAIStream:
    """Anthropic SSE in, OpenAI SSE out."""

    def __init__(self, *, include_usage: bool, created: int | None = None) -> None:
        self.include_usage = include_usage
        self.created = created if created is not None else int(time.time())
        self.response_id = ""
        self.model = ""
        self.usage: Obj = {}
        self.done = False
        self._tool_index: dict[int, int] = {}  # anthropic block index -> openai tool index
        self._decoder = SSEDecoder()

    # byte level ---------------------------------------------------------
    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        for ev in self._decoder.feed(data):
            out += self._frames(ev.event, decode_data(ev))
        return bytes(out)

    def close(self) -> bytes:
        out = bytearray()
        for ev in self._decoder.close():
            out += self._frames(ev.event, decode_data(ev))
        return bytes(out)

    def _frames(self, name: str | None, data: Any) -> bytes:
        chunks = self.event(name, data)
        out = b"".join(encode_data(c) for c in chunks)
        if self.done and name == "message_stop":
            out += DONE
        return out

    # event level --------------------------------------------------------
    def event(self, name: str | None, data: Any) -> list[Obj]:
        """Translate one Anthropic event; returns zero or more OpenAI chunks."""
        if not isinstance(data, dict):
            raise TranslationError("upstream stream event is not an object", field="stream")
        kind = data.get("type", name)
        if kind == "message_start":
            msg = data.get("message")
            msg = msg if isinstance(msg, dict) else {}
            self.response_id = str(msg.get("id") or "")
            self.model = str(msg.get("model") or "")
            if isinstance(msg.get("usage"), dict):
                self.usage = dict(msg["usage"])
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = data.get("content_block")
            if isinstance(block, dict) and block.get("type") == "tool_use":
                idx = len(self._tool_index)
                self._tool_index[_index(data)] = idx
                call = {
                    "index": idx,
                    "id": str(block.get("id") or ""),
                    "type": "function",
                    "function": {"name": str(block.get("name") or ""), "arguments": ""},
                }
                return [self._chunk({"tool_calls": [call]})]
            return []
        if kind == "content_block_delta":
            delta = data.get("delta")
            delta = delta if isinstance(delta, dict) else {}
            dkind = delta.get("type")
            if dkind == "text_delta":
                return [self._chunk({"content": str(delta.get("text") or "")})]
            if dkind == "input_json_delta":
                tidx = self._tool_index.get(_index(data))
                if tidx is None:
                    return []
                args = str(delta.get("partial_json") or "")
                call = {"index": tidx, "function": {"arguments": args}}
                return [self._chunk({"tool_calls": [call]})]
            return []  # thinking / signature / citations deltas have no OpenAI form
        if kind == "message_delta":
            usage = data.get("usage")
            if isinstance(usage, dict):
                # message_delta usage is cumulative: overwrite what it names
                self.usage.update({k: v for k, v in usage.items() if v is not None})
            delta = data.get("delta")
            reason = delta.get("stop_reason") if isinstance(delta, dict) else None
            return [self._chunk({}, finish=finish_reason(reason) or "stop")]
        if kind == "message_stop":
            self.done = True
            if not self.include_usage:
                return []
            return [
                {
                    "id": self.response_id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": anthropic_usage_to_openai(self.usage),
                }
            ]
        if kind == "error":
            err = data.get("error")
            err = err if isinstance(err, dict) else {}
            return [
                {
                    "error": {
                        "message": str(err.get("message") or "upstream error"),
                        "type": str(err.get("type") or "api_error"),
                        "code": None,
                        "param": None,
                    }
                }
            ]
        return []  # ping, content_block_stop, unknown future events

    def _chunk(self, delta: Obj, finish: str | None = None) -> Obj:
        chunk: Obj = {
            "id": self.response_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk


def _index(data: Obj) -> int:
    idx = data.get("index")
    return idx if isinstance(idx, int) and not isinstance(idx, bool) else -1


class OpenAIToAnthropicStream:
    """OpenAI SSE in, Anthropic SSE out."""

    def __init__(self) -> None:
        self.response_id = ""
        self.model = ""
        self.usage: Obj = {}
        self.done = False
        self._started = False
        self._finish: str | None = None
        self._block = -1  # index of the open content block, -1 when none
        self._block_kind: str | int | None = None  # "text" or the OpenAI tool index
        self._next_block = 0
        self._tool_blocks: dict[int, int] = {}  # openai tool index -> anthropic block index
        self._decoder = SSEDecoder()

    # byte level ---------------------------------------------------------
    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        for ev in self._decoder.feed(data):
            out += self._frames(ev.data)
        return bytes(out)

    def close(self) -> bytes:
        out = bytearray()
        for ev in self._decoder.close():
            out += self._frames(ev.data)
        if not self.done and self._finish is not None:
            out += b"".join(encode_event(n, p) for n, p in self.finish())
        return bytes(out)

    def _frames(self, text: str) -> bytes:
        if text.strip() == "[DONE]":
            events = self.finish()
        else:
            events = self.chunk(decode_data(SSEEvent(None, text)))
        return b"".join(encode_event(n, p) for n, p in events)

    # event level --------------------------------------------------------
    def chunk(self, data: Any) -> list[tuple[str, Obj]]:
        """Translate one OpenAI chunk; returns (event name, payload) pairs."""
        if not isinstance(data, dict):
            raise TranslationError("upstream stream chunk is not an object", field="stream")
        if "error" in data and "choices" not in data:
            err = data["error"] if isinstance(data["error"], dict) else {}
            self.done = True
            return [
                (
                    "error",
                    {
                        "type": "error",
                        "error": {
                            "type": "api_error",
                            "message": str(err.get("message") or "upstream error"),
                        },
                    },
                )
            ]
        out: list[tuple[str, Obj]] = []
        if not self._started:
            self._started = True
            self.response_id = str(data.get("id") or "")
            self.model = str(data.get("model") or "")
            out.append(("message_start", self._message_start()))
        if isinstance(data.get("usage"), dict):
            self.usage = data["usage"]
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return out
        choice = choices[0]
        delta = choice.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        text = delta.get("content") or delta.get("refusal")
        if isinstance(text, str) and text:
            if self._block_kind != "text":
                out += self._open({"type": "text", "text": ""}, "text")
            out.append(self._delta({"type": "text_delta", "text": text}))
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                if isinstance(call, dict):
                    out += self._tool_delta(call)
        if choice.get("finish_reason") is not None:
            self._finish = str(choice["finish_reason"])
            out += self._close_block()
        return out

    def finish(self) -> list[tuple[str, Obj]]:
        """The closing events (on ``[DONE]``): message_delta with usage, message_stop."""
        if self.done:
            return []
        self.done = True
        out: list[tuple[str, Obj]] = []
        if not self._started:
            self._started = True
            out.append(("message_start", self._message_start()))
        out += self._close_block()
        usage = openai_usage_to_anthropic(self.usage)
        out.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": stop_reason(self._finish) or "end_turn",
                        "stop_sequence": None,
                    },
                    "usage": usage,
                },
            )
        )
        out.append(("message_stop", {"type": "message_stop"}))
        return out

    def _message_start(self) -> Obj:
        return {
            "type": "message_start",
            "message": {
                "id": self.response_id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        }

    def _tool_delta(self, call: Obj) -> list[tuple[str, Obj]]:
        out: list[tuple[str, Obj]] = []
        oi = call.get("index")
        oi = oi if isinstance(oi, int) and not isinstance(oi, bool) else len(self._tool_blocks)
        fn = call.get("function")
        fn = fn if isinstance(fn, dict) else {}
        if oi not in self._tool_blocks:
            block = {
                "type": "tool_use",
                "id": str(call.get("id") or ""),
                "name": str(fn.get("name") or ""),
                "input": {},
            }
            out += self._open(block, oi)
            self._tool_blocks[oi] = self._block
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            delta = {"type": "input_json_delta", "partial_json": args}
            out.append(self._delta(delta, self._tool_blocks[oi]))
        return out

    def _open(self, block: Obj, kind: str | int) -> list[tuple[str, Obj]]:
        out = self._close_block()
        self._block, self._block_kind = self._next_block, kind
        self._next_block += 1
        start = {"type": "content_block_start", "index": self._block, "content_block": block}
        out.append(("content_block_start", start))
        return out

    def _close_block(self) -> list[tuple[str, Obj]]:
        if self._block < 0:
            return []
        ev = {"type": "content_block_stop", "index": self._block}
        self._block, self._block_kind = -1, None
        return [("content_block_stop", ev)]

    def _delta(self, delta: Obj, index: int | None = None) -> tuple[str, Obj]:
        idx = self._block if index is None else index
        payload = {"type": "content_block_delta", "index": idx, "delta": delta}
        return ("content_block_delta", payload)
