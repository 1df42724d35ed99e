"""The AWS Bedrock family: Claude through InvokeModel, every model through Converse, SigV4.

Bedrock's wire, for the gateway, is Anthropic's Messages API: requests arrive
as Messages bodies (a Messages client's own, or an OpenAI chat request
translated by `metis.gateway.translate`) and leave as one of:

- **InvokeModel** (``POST /model/{id}/invoke``, streamed
  ``/invoke-with-response-stream``) with an Anthropic body, for Claude
  models (the credential's ``api`` option ``auto``, the default, picks it for
  ``anthropic.`` model ids; ``invoke`` forces it): the body without
  ``model`` and ``stream``, with ``anthropic_version: bedrock-2023-05-31``
  and the client's ``anthropic-beta`` header as ``anthropic_beta``. Its
  answer is an Anthropic message; a stream is an AWS event stream of
  ``chunk`` events whose base64 ``bytes`` are Anthropic's SSE events.
- **Converse** (``/converse``, ``/converse-stream``) for every other model
  (``converse`` forces it for Claude too): the body translated by
  `metis.gateway.upstreams.bedrock_converse`, the answer translated back.

Requests are signed with Signature Version 4 by botocore
(`botocore.auth.SigV4Auth`, service ``bedrock``, the credential's
``region``): the credential's ``access_key_id`` option and its secret (the
secret access key, stored encrypted like every provider key). Answers reach
the gateway as Anthropic JSON and SSE (`BedrockAdapter`), so the usage tap,
the translation to OpenAI and the accounting are the Anthropic ones; the
answer's ``model`` is the Bedrock model id called (what genai-prices prices
under ``aws``; regional and cross-region ids differ in price). The
correlation id is the message id (InvokeModel: Bedrock's ``msg_bdrk_…``;
Converse, which has none: ``msg_bdrk_`` + ``x-amzn-requestid``). AWS errors
(``{"message"}`` + ``x-amzn-ErrorType``) are mapped to Anthropic's envelope
with the status kept (`error_body`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import quote

import msgspec

from metis.gateway.translate.errors import TranslationError
from metis.gateway.upstreams import bedrock_converse as cv
from metis.gateway.upstreams.base import CallView, Outgoing, Upstream, with_query
from metis.jsonutil import DECODE_ERRORS

BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"
_ERROR_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
}
_SSE = b"event: %s\ndata: %s\n\n"
_DECODE_OR_SHAPE: tuple[type[Exception], ...] = (*DECODE_ERRORS, AttributeError)
_DECODE_OR_BASE64: tuple[type[Exception], ...] = (*DECODE_ERRORS, binascii.Error, ValueError)


def _sse(obj: dict[str, Any]) -> bytes:
    return _SSE % (str(obj.get("type", "")).encode(), msgspec.json.encode(obj))


def uses_invoke(up: Upstream, model: str) -> bool:
    """InvokeModel (Anthropic body) or Converse for ``model``."""
    api = up.options.get("api", "auto")
    if api in ("invoke", "converse"):
        return bool(api == "invoke")
    return model.startswith("anthropic.") or ".anthropic." in model


class BedrockFamily:
    name = "bedrock"
    wire = "anthropic"
    apis = frozenset({"messages"})

    def url(self, up: Upstream, rel: str, query: bytes = b"") -> str:
        return with_query(up.api_root + rel, query)

    def headers(self, up: Upstream, client: Mapping[bytes, bytes]) -> dict[str, str]:
        return {"content-type": "application/json"}

    def request(self, up: Upstream, call: CallView, api: str, model: str, body: bytes) -> Outgoing:
        try:
            doc: Any = msgspec.json.decode(body)
        except DECODE_ERRORS:
            raise TranslationError("body must be a JSON object", field="body") from None
        if not isinstance(doc, dict):
            raise TranslationError("body must be a JSON object", field="body")
        stream = call.stream
        invoke = uses_invoke(up, model)
        if invoke:
            out = {k: v for k, v in doc.items() if k not in ("model", "stream")}
            out["anthropic_version"] = BEDROCK_ANTHROPIC_VERSION
            beta = call.headers.get(b"anthropic-beta")
            if beta:
                out["anthropic_beta"] = [
                    b.strip() for b in beta.decode("latin-1").split(",") if b.strip()
                ]
            action = "invoke-with-response-stream" if stream else "invoke"
        else:
            out = cv.to_converse(doc)
            action = "converse-stream" if stream else "converse"
        data = msgspec.json.encode(out)
        url = self.url(up, f"/model/{quote(model, safe='')}/{action}")
        accept = "application/vnd.amazon.eventstream" if stream else "application/json"
        headers = sign(up, url, data, {"content-type": "application/json", "accept": accept})
        return Outgoing(url, headers, data, adapter=BedrockAdapter(model, invoke))

    def error_body(self, status: int, headers: Mapping[str, str], body: bytes) -> bytes:
        """An AWS error as Anthropic's envelope (its type from the status, the message kept)."""
        kind = headers.get("x-amzn-errortype", "").split(":", 1)[0]
        try:
            doc: Any = msgspec.json.decode(body)
            message = doc.get("message") or doc.get("Message") if isinstance(doc, dict) else None
        except DECODE_ERRORS:
            message = None
        text = (
            f"{kind}: {message}" if kind and message else str(message or kind or "upstream error")
        )
        err = {"type": _ERROR_TYPE.get(status, "api_error"), "message": f"bedrock: {text}"}
        return msgspec.json.encode({"type": "error", "error": err})


def sign(up: Upstream, url: str, data: bytes, headers: dict[str, str]) -> dict[str, str]:
    """``headers`` plus SigV4's ``Authorization`` and ``X-Amz-Date`` for this request."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(method="POST", url=url, data=data, headers=headers)
    creds = Credentials(str(up.options.get("access_key_id", "")), up.secret)
    SigV4Auth(creds, "bedrock", str(up.options.get("region", ""))).add_auth(req)
    return {k.lower(): v for k, v in req.headers.items()}


class BedrockAdapter:
    """Bedrock's answers as Anthropic's (`metis.gateway.upstreams.base.Adapter`)."""

    def __init__(self, model: str, invoke: bool) -> None:
        self.model = model
        self.invoke = invoke

    def _message_id(self, headers: Mapping[str, str]) -> str:
        return "msg_bdrk_" + headers.get("x-amzn-requestid", "")

    def plain(self, data: bytes, headers: Mapping[str, str]) -> bytes:
        try:
            doc: Any = msgspec.json.decode(data)
        except DECODE_ERRORS:
            return data  # malformed: the reader records no usage, as for any provider
        if not isinstance(doc, dict):
            return data
        if self.invoke:
            doc["model"] = self.model
            return msgspec.json.encode(doc)
        try:
            return msgspec.json.encode(cv.from_converse(doc, self._message_id(headers), self.model))
        except TranslationError:
            return data

    def stream(self, headers: Mapping[str, str]) -> EventStreamToSSE:
        return EventStreamToSSE(self.model, self.invoke, self._message_id(headers))


class EventStreamToSSE:
    """An AWS event stream in, Anthropic SSE out (`metis.gateway.upstreams.base.StreamAdapter`).

    Frames are decoded by botocore (`botocore.eventstream.EventStreamBuffer`, CRCs
    checked). InvokeModel ``chunk`` events carry Anthropic events (base64); Converse
    events go through `metis.gateway.upstreams.bedrock_converse.ConverseStreamToAnthropic`.
    An ``exception`` frame (throttling, a model error mid-stream) becomes Anthropic's
    ``error`` event; a frame that does not decode ends the translation the same way.
    """

    def __init__(self, model: str, invoke: bool, message_id: str) -> None:
        from botocore.eventstream import EventStreamBuffer

        self.model = model
        self.invoke = invoke
        self._buf = EventStreamBuffer()
        self._converse = cv.ConverseStreamToAnthropic(message_id, model)
        self._broken = False

    def feed(self, data: bytes) -> bytes:
        if self._broken:
            return b""
        from botocore.eventstream import ParserError

        self._buf.add_data(data)
        out: list[bytes] = []
        try:
            for msg in self._buf:
                # botocore-stubs types .headers as int; it is the decoded header dict
                out.append(self._message(cast(Mapping[str, Any], msg.headers), msg.payload))
        except ParserError as e:
            self._broken = True
            out.append(
                _error("api_error", f"bedrock: unreadable event stream ({type(e).__name__})")
            )
        return b"".join(out)

    def _message(self, headers: Mapping[str, Any], payload: bytes) -> bytes:
        kind = headers.get(":message-type")
        if kind == "exception" or kind == "error":
            etype = str(headers.get(":exception-type") or headers.get(":error-code") or "error")
            try:
                message = msgspec.json.decode(payload).get("message", "")
            except _DECODE_OR_SHAPE:
                message = ""
            status = 429 if etype.lower().startswith("throttling") else 500
            return _error(_ERROR_TYPE[status], f"bedrock: {etype}: {message}")
        event = str(headers.get(":event-type", ""))
        try:
            p: Any = msgspec.json.decode(payload)
        except DECODE_ERRORS:
            return b""
        if self.invoke:
            if event != "chunk" or not isinstance(p, dict):
                return b""
            try:
                obj = msgspec.json.decode(base64.b64decode(p.get("bytes") or ""))
            except _DECODE_OR_BASE64:
                return b""
            if not isinstance(obj, dict):
                return b""
            if obj.get("type") == "message_start" and isinstance(obj.get("message"), dict):
                obj["message"]["model"] = self.model
            return _sse(obj)
        return b"".join(_sse(o) for o in self._converse.event(event, p))

    def close(self) -> bytes:
        if self.invoke or self._broken:
            return b""
        return b"".join(_sse(o) for o in self._converse.close())


def _error(kind: str, message: str) -> bytes:
    return _sse({"type": "error", "error": {"type": kind, "message": message}})


FAMILY = BedrockFamily()
