"""Fault injection: make chosen endpoints fail the way real providers do.

A fault is ``{"endpoint": E, "kind": K, "count": N}``:

- ``endpoint``: a request path (``/v1/chat/completions``, ``/v1/messages``,
  ``/v1/organization/costs`` …) or ``*`` for every provider endpoint (the
  ``/_sim/*`` control endpoints are never faulted).
- ``kind``:
  - ``429``: 429 in the provider's error envelope with ``Retry-After: <retry_after>``
    (seconds, default 1);
  - ``500`` / ``503`` / ``529``: that status in the provider's error envelope
    (Anthropic: 500 ``api_error``, 503/529 ``overloaded_error``);
  - ``slow``: wait ``delay`` seconds (default 1.0), then answer normally;
  - ``drop``: send the status line, headers and about half of the body, then
    close the connection (a dropped connection mid-body);
  - ``truncated``: a complete 200 response whose JSON body is cut in half;
  - ``malformed``: a complete 200 response whose body is not valid JSON;
  - ``stream_cut``: streaming requests only: every event before the final
    usage (OpenAI's usage chunk / Anthropic's ``message_delta``) is sent,
    then the connection closes (no usage, no ``[DONE]`` / ``message_stop``).
    Non-streaming requests pass through without using up the fault. (Without
    ``stream_options.include_usage`` the OpenAI stream is cut before ``[DONE]``.)
  On a streaming response, ``drop``, ``truncated`` and ``malformed`` all send
  the first half of the events and then close the connection.
- ``count``: apply to the next N matching requests, then clear itself
  (omitted/null: until removed by ``POST /_sim/reset`` or ``DELETE /_sim/faults``).

Billing: 429/5xx faults reject the call before the model runs, so nothing is
recorded. ``slow``, ``drop``, ``truncated``, ``malformed`` and ``stream_cut``
happen after the call ran, so the call IS in the ledger (the provider bills
it even though the client never saw its usage).

The first matching fault in insertion order applies.
"""

from typing import Literal

import msgspec

FaultKind = Literal[
    "429", "500", "503", "529", "slow", "drop", "truncated", "malformed", "stream_cut"
]
REJECTING = frozenset({"429", "500", "503", "529"})


class Fault(msgspec.Struct, forbid_unknown_fields=True):
    endpoint: str
    kind: FaultKind
    count: int | None = None
    retry_after: int = 1
    delay: float = 1.0


class FaultError(ValueError):
    """A fault spec that cannot be parsed."""


def parse_spec(spec: str) -> Fault:
    """Parse a CLI ``--fault`` value: ``ENDPOINT=KIND[,count=N][,delay=S][,retry_after=S]``.

    Example: ``/v1/chat/completions=429,count=2`` or ``*=slow,delay=0.5``.
    """
    endpoint, sep, rest = spec.partition("=")
    if not sep or not endpoint or not rest:
        raise FaultError(f"bad fault {spec!r}: expected ENDPOINT=KIND[,count=N]")
    kind, *opts = rest.split(",")
    data: dict[str, object] = {"endpoint": endpoint.strip(), "kind": kind.strip()}
    for opt in opts:
        k, eq, v = opt.partition("=")
        k = k.strip()
        if not eq or k not in ("count", "delay", "retry_after"):
            raise FaultError(f"bad fault option {opt!r} (count=, delay=, retry_after=)")
        try:
            data[k] = float(v) if k == "delay" else int(v)
        except ValueError as exc:
            raise FaultError(f"bad fault option {opt!r}: not a number") from exc
    return validate(data)


def validate(data: object) -> Fault:
    """A `Fault` from decoded JSON, or `FaultError` with a one-line reason."""
    try:
        fault = msgspec.convert(data, Fault)
    except msgspec.ValidationError as exc:
        raise FaultError(f"bad fault: {exc}") from exc
    if fault.endpoint != "*" and not fault.endpoint.startswith("/"):
        raise FaultError("bad fault: endpoint must be a path like /v1/messages or '*'")
    if fault.endpoint.startswith("/_sim"):
        raise FaultError("bad fault: the /_sim control endpoints cannot be faulted")
    if fault.count is not None and fault.count < 1:
        raise FaultError("bad fault: count must be >= 1 (or null for 'until reset')")
    if fault.delay < 0 or fault.retry_after < 0:
        raise FaultError("bad fault: delay and retry_after must be >= 0")
    return fault


class Faults:
    """The active faults, consumed as they apply."""

    def __init__(self, initial: list[Fault] | None = None) -> None:
        self._initial = list(initial or [])
        self.active: list[Fault] = [msgspec.structs.replace(f) for f in self._initial]

    def add(self, fault: Fault) -> None:
        self.active.append(fault)

    def clear(self) -> None:
        self.active.clear()

    def reset(self) -> None:
        """Back to the faults given at startup (CLI ``--fault``)."""
        self.active = [msgspec.structs.replace(f) for f in self._initial]

    def take(self, path: str, *, streaming: bool) -> Fault | None:
        """The fault to apply to this request (consuming one use), or None."""
        if not self.active:
            return None
        for i, f in enumerate(self.active):
            if f.endpoint != "*" and f.endpoint != path:
                continue
            if f.kind == "stream_cut" and not streaming:
                continue
            if f.count is not None:
                f.count -= 1
                if f.count <= 0:
                    del self.active[i]
            return f
        return None

    def to_list(self) -> list[Fault]:
        return list(self.active)
