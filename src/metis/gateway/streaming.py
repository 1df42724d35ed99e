"""SSE pass-through that captures usage on the way.

Upstream bytes are forwarded as they arrive, unchanged, while a copy is split
into complete SSE events and only events that can carry usage are decoded.
The one exception is below: when a chunk must be withheld, events are
forwarded as they complete (so the usage chunk can be dropped whole).

OpenAI: the gateway always asks for ``stream_options.include_usage``; when
the client did not ask for it, the extra final chunk (``choices: []`` with
``usage``) is withheld, so the client sees exactly the stream it would have
seen without Metis. OpenAI-compatible variants: Groq's finishing chunk
carries ``x_groq.usage`` (read when no ``usage`` chunk came); Azure's first
chunk has an empty ``id`` and ``model`` (the response id is the first
non-empty one). Usage numbers are decoded exactly (OpenRouter's stated
``usage.cost`` is a decimal). Anthropic: usage arrives in ``message_start`` (input and
cache tokens) and ``message_delta`` (cumulative output); everything is
forwarded unchanged. OpenAI Responses API (flavour ``responses``): the id and
model come from ``response.created``, the usage from the final
``response.completed`` (or ``response.incomplete`` / ``response.failed``)
event's ``response.usage``; everything is forwarded unchanged. Gemini (flavour
``gemini``): every chunk of ``streamGenerateContent`` carries ``usageMetadata``
so far and the last one the totals; chunks are SSE events (``?alt=sse``) or
the elements of one JSON array streamed as it grows (found by a scanner that
follows strings and nesting, so element boundaries are exact); forwarded
unchanged.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import msgspec

from metis.gateway.usage import Tokens, from_anthropic, from_gemini, from_openai, from_responses
from metis.jsonutil import DECODE_ERRORS

_decode = msgspec.json.Decoder(float_hook=Decimal).decode

MAX_EVENT = 8 * 1024 * 1024
"""An unfinished event larger than this is not a usage event: its bytes are forwarded
(or, when only parsing a copy, dropped) unparsed, so a stream that never sends a blank
line cannot grow the buffer without bound."""


def _data(ev: bytes) -> bytes | None:
    """The concatenated ``data:`` payload of one event (None when absent)."""
    out: list[bytes] = []
    for line in ev.split(b"\n"):
        if line.startswith(b"data:"):
            v = line[5:]
            if v.startswith(b" "):
                v = v[1:]
            out.append(v.rstrip(b"\r"))
    return b"\n".join(out) if out else None


class SSEUsageTap:
    """Feed upstream chunks; get the bytes to forward; read `tokens` at the end."""

    __slots__ = (
        "_array",
        "_buf",
        "_usage_chunk",
        "final",
        "model",
        "response_id",
        "shape",
        "tokens",
        "withhold_usage_chunk",
    )

    def __init__(self, shape: str, *, withhold_usage_chunk: bool = False) -> None:
        self.shape = shape
        self.withhold_usage_chunk = withhold_usage_chunk
        self.tokens = Tokens()
        self.response_id: str | None = None
        self.model: str | None = None
        self._buf = b""
        self._usage_chunk = False  # a top-level usage object was seen (it wins over x_groq)
        self.final = False
        """The stream's final usage was read (OpenAI's usage chunk or Groq's ``x_groq``,
        Anthropic's ``message_delta``, a Responses final event, any Gemini
        ``usageMetadata``): a stream cut before it is recorded at its worst case
        (`metis.gateway.estimate`). Gemini's chunks each carry the usage so far, so a
        cut Gemini stream keeps the last usage it sent (not estimated)."""
        self._array: _ArrayScanner | None = None  # Gemini's JSON-array stream

    def feed(self, chunk: bytes) -> bytes:
        if self.shape == "gemini" and (self._array is not None or self._starts_array(chunk)):
            assert self._array is not None
            for element in self._array.feed(chunk):
                self._gemini_event(element)
            return chunk
        if not self.withhold_usage_chunk:
            # Nothing to withhold: forward the upstream's bytes as they arrive
            # and parse a copy (events split across chunks are reassembled).
            self._parse(chunk)
            return chunk
        buf = self._buf + chunk if self._buf else chunk
        if b"\r\n" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        end = buf.rfind(b"\n\n")
        if end < 0:
            if len(buf) > MAX_EVENT:
                self._buf = b""
                return buf
            self._buf = buf
            return b""
        complete, self._buf = buf[: end + 2], buf[end + 2 :]
        out = self._openai(complete)
        if len(self._buf) > MAX_EVENT:
            out, self._buf = out + self._buf, b""
        return out

    def flush(self) -> bytes:
        """Whatever is left at end of stream (an unterminated last event)."""
        rest, self._buf = self._buf, b""
        if not rest:
            return b""
        if not self.withhold_usage_chunk:
            self._parse_events(rest)
            return b""  # already forwarded
        return self._openai(rest)

    def _parse(self, chunk: bytes) -> None:
        buf = self._buf + chunk if self._buf else chunk
        if b"\r\n" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        end = buf.rfind(b"\n\n")
        if end < 0:
            self._buf = buf if len(buf) <= MAX_EVENT else b""
            return
        self._buf = buf[end + 2 :]
        if len(self._buf) > MAX_EVENT:
            self._buf = b""
        self._parse_events(buf[: end + 2])

    def _parse_events(self, complete: bytes) -> None:
        if self.shape == "openai":
            self._openai(complete)
        elif self.shape == "responses":
            self._responses(complete)
        elif self.shape == "gemini":
            for ev in complete.split(b"\n\n"):
                if b"usageMetadata" in ev:
                    data = _data(ev)
                    if data:
                        self._gemini_event(data)
        else:
            self._anthropic(complete)

    def _starts_array(self, chunk: bytes) -> bool:
        """Whether a Gemini stream is a JSON array (its first non-blank byte is ``[``)."""
        if self._buf or self.response_id is not None:
            return False  # already reading SSE
        head = chunk.lstrip()
        if head.startswith(b"["):
            self._array = _ArrayScanner()
            return True
        return False

    def _gemini_event(self, data: bytes) -> None:
        if b"usageMetadata" not in data and self.response_id is not None:
            return
        try:
            obj: Any = _decode(data)
        except DECODE_ERRORS:
            return
        if not isinstance(obj, dict):
            return
        if self.response_id is None and isinstance(obj.get("responseId"), str):
            self.response_id = obj["responseId"] or None
        if isinstance(obj.get("modelVersion"), str) and obj["modelVersion"]:
            self.model = obj["modelVersion"]
        if isinstance(obj.get("usageMetadata"), dict):
            from_gemini(obj["usageMetadata"], self.tokens)
            self.final = True

    # OpenAI: decode only events that may carry an id we lack or a usage object.
    def _openai(self, complete: bytes) -> bytes:
        if self.response_id is not None and b'"usage"' not in complete:
            return complete
        keep: list[bytes] = []
        dropped = False
        for ev in complete.split(b"\n\n"):
            if not ev:
                continue
            drop = False
            if self.response_id is None or b'"usage"' in ev:
                data = _data(ev)
                if data and data != b"[DONE]":
                    try:
                        obj: Any = _decode(data)
                    except DECODE_ERRORS:
                        obj = None
                    if isinstance(obj, dict):
                        rid = obj.get("id")
                        if self.response_id is None and isinstance(rid, str) and rid:
                            self.response_id = rid
                            if isinstance(obj.get("model"), str) and obj["model"]:
                                self.model = obj["model"]
                        u = obj.get("usage")
                        if isinstance(u, dict):
                            from_openai(u, self.tokens)
                            self._usage_chunk = self.final = True
                            if self.withhold_usage_chunk and not obj.get("choices"):
                                drop = True
                        elif not self._usage_chunk:
                            xg = obj.get("x_groq")  # Groq: usage in the finishing chunk
                            if isinstance(xg, dict) and isinstance(xg.get("usage"), dict):
                                from_openai(xg["usage"], self.tokens)
                                self.final = True
            if drop:
                dropped = True
            else:
                keep.append(ev)
        if not dropped:
            return complete
        return b"".join(e + b"\n\n" for e in keep)

    def _anthropic(self, complete: bytes) -> None:
        if b"message_start" not in complete and b"message_delta" not in complete:
            return
        for ev in complete.split(b"\n\n"):
            if b"message_start" not in ev and b"message_delta" not in ev:
                continue
            data = _data(ev)
            if not data:
                continue
            try:
                obj: Any = _decode(data)
            except DECODE_ERRORS:
                continue
            if not isinstance(obj, dict):
                continue
            if obj.get("type") == "message_start" and isinstance(obj.get("message"), dict):
                msg = obj["message"]
                if isinstance(msg.get("id"), str):
                    self.response_id = msg["id"]
                if isinstance(msg.get("model"), str):
                    self.model = msg["model"]
                from_anthropic(msg.get("usage"), self.tokens)
            elif obj.get("type") == "message_delta":
                from_anthropic(obj.get("usage"), self.tokens)
                if isinstance(obj.get("usage"), dict):
                    self.final = True

    _FINAL = (b"response.completed", b"response.incomplete", b"response.failed")

    def _responses(self, complete: bytes) -> None:
        """Decode only ``response.created`` (id, model) and a final event (usage)."""
        for ev in complete.split(b"\n\n"):
            first = self.response_id is None and b"response.created" in ev
            final = b'"usage"' in ev and any(k in ev for k in self._FINAL)
            if not (first or final):
                continue
            data = _data(ev)
            if not data:
                continue
            try:
                obj: Any = _decode(data)
            except DECODE_ERRORS:
                continue
            if not isinstance(obj, dict) or not isinstance(obj.get("response"), dict):
                continue
            r = obj["response"]
            kind = obj.get("type")
            if kind == "response.created" or self.response_id is None:
                if isinstance(r.get("id"), str):
                    self.response_id = r["id"]
                if isinstance(r.get("model"), str):
                    self.model = r["model"]
            if kind in ("response.completed", "response.incomplete", "response.failed"):
                if isinstance(r.get("model"), str):
                    self.model = r["model"]
                from_responses(r.get("usage"), self.tokens)
                self.final = True


_SPECIAL = re.compile(rb'[\\"{}\[\]]')


class _ArrayScanner:
    """The top-level elements of a JSON array that arrives in pieces (Gemini's streamed
    ``[{…},\r\n{…}]``): follows strings (and their escapes) and nesting, so an element is
    complete exactly when its closing brace arrives. It jumps from one structural byte to
    the next (a regular expression), so long text costs little. An element over
    `MAX_EVENT` bytes is skipped (not buffered)."""

    __slots__ = ("_buf", "_depth", "_esc", "_skip", "_str")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._depth = 0  # 1 = inside the array, 2+ = inside an element
        self._str = False
        self._esc = False  # the chunk ended on a backslash inside a string
        self._skip = False

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        start = 0 if self._depth >= 2 else -1  # where this chunk's element bytes begin
        ignore_before = 1 if self._esc else 0  # an escaped byte is no structure
        self._esc = False
        for m in _SPECIAL.finditer(data):
            i = m.start()
            if i < ignore_before:
                continue
            b = data[i]
            if self._str:
                if b == 0x5C:  # backslash: the next byte is escaped
                    if i + 1 >= len(data):
                        self._esc = True
                    ignore_before = i + 2
                elif b == 0x22:
                    self._str = False
                continue
            if b == 0x22:
                self._str = True
            elif b in (0x7B, 0x5B):  # { [
                self._depth += 1
                if self._depth == 2:
                    self._buf.clear()
                    self._skip = False
                    start = i
            elif b in (0x7D, 0x5D):  # } ]
                self._depth -= 1
                if self._depth == 1 and start >= 0:
                    if not self._skip:
                        self._buf += data[start : i + 1]
                        out.append(bytes(self._buf))
                    self._buf.clear()
                    start = -1
        if start >= 0 and not self._skip:
            self._buf += data[start:]
            if len(self._buf) > MAX_EVENT:
                self._buf.clear()
                self._skip = True
        return out
