"""Incremental Server-Sent Events framing (decode bytes → events, encode back).

Upstream bytes arrive in arbitrary chunks (a line may be split anywhere);
`SSEDecoder.feed` buffers the partial tail and returns only complete events.
Comments (``:`` lines, e.g. keep-alives) are skipped. A line longer than
`MAX_LINE` without a newline raises `TranslationError` instead of growing
without bound.
"""

from typing import Any

import msgspec

from metis.gateway.translate.errors import TranslationError
from metis.jsonutil import DECODE_ERRORS

MAX_LINE = 8 * 1024 * 1024

_enc = msgspec.json.Encoder()


class SSEEvent(msgspec.Struct, frozen=True):
    """One dispatched event: its ``event:`` name (None when absent) and data text."""

    event: str | None
    data: str


class SSEDecoder:
    """Feed raw bytes, get complete `SSEEvent`s."""

    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk if self._buf else chunk
        out: list[SSEEvent] = []
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = buf[start:nl]
            start = nl + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            self._line(line, out)
        self._buf = buf[start:]
        if len(self._buf) > MAX_LINE:
            raise TranslationError("upstream stream line too long", field="stream")
        return out

    def close(self) -> list[SSEEvent]:
        """Flush a final event not followed by a blank line."""
        out: list[SSEEvent] = []
        if self._buf:
            line, self._buf = self._buf.rstrip(b"\r"), b""
            self._line(line, out)
        self._line(b"", out)
        return out

    def _line(self, line: bytes, out: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                out.append(SSEEvent(self._event, "\n".join(self._data)))
            self._event, self._data = None, []
            return
        if line[:1] == b":":
            return
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        text = value.decode("utf-8", "replace")
        if name == b"data":
            self._data.append(text)
        elif name == b"event":
            self._event = text


def decode_data(ev: SSEEvent) -> Any:
    """The JSON payload of an event; `TranslationError` when it is not JSON."""
    try:
        return msgspec.json.decode(ev.data)
    except DECODE_ERRORS:
        raise TranslationError("upstream stream event is not valid JSON", field="stream") from None


def encode_data(payload: Any) -> bytes:
    """An OpenAI-style ``data: {...}`` frame."""
    return b"data: " + _enc.encode(payload) + b"\n\n"


def encode_event(name: str, payload: Any) -> bytes:
    """An Anthropic-style ``event: name`` + ``data: {...}`` frame."""
    return b"event: " + name.encode() + b"\ndata: " + _enc.encode(payload) + b"\n\n"


DONE = b"data: [DONE]\n\n"
