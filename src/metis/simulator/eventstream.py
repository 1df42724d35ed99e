"""AWS event stream framing (``application/vnd.amazon.eventstream``), the encoding side.

What Bedrock's ConverseStream and InvokeModelWithResponseStream answer with:
a sequence of binary messages, each

    total length (uint32) | headers length (uint32) | prelude CRC32 (uint32)
    headers | payload | message CRC32 (uint32)

(big-endian; the message CRC covers everything before it). A header is
``name length (uint8) | name | type (uint8, 7 = string) | value length
(uint16) | value``. Events carry ``:message-type: event``, ``:event-type``
and ``:content-type``; errors ``:message-type: exception`` and
``:exception-type``. The decoding side is botocore's
(`botocore.eventstream.EventStreamBuffer`), which the gateway and the tests
use: a frame this module writes wrongly fails its CRC checks there.
"""

from __future__ import annotations

import struct
import zlib

_STRING = 7


def _header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return struct.pack(">B", len(n)) + n + struct.pack(">BH", _STRING, len(v)) + v


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event stream message."""
    hbytes = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(hbytes) + len(payload) + 4
    prelude = struct.pack(">II", total, len(hbytes))
    prelude += struct.pack(">I", zlib.crc32(prelude) & 0xFFFFFFFF)
    body = prelude + hbytes + payload
    return body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def event(event_type: str, payload: bytes) -> bytes:
    return frame(
        {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        },
        payload,
    )


def exception(exception_type: str, payload: bytes) -> bytes:
    return frame(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        payload,
    )
