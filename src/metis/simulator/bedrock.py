"""AWS Bedrock runtime: Converse, ConverseStream, InvokeModel (Claude), with SigV4 checked.

Paths (the simulator's root plays ``https://bedrock-runtime.<region>.amazonaws.com``;
the model id is URL-encoded in the path, ``anthropic.claude-…-v1%3A0``):

- ``POST /model/{modelId}/converse`` and ``/converse-stream``: Bedrock's
  Converse API for every model genai-prices prices under ``aws`` (Claude,
  Nova, Llama …): ``messages`` of content blocks (``text``, ``image``,
  ``toolUse``, ``toolResult``, ``cachePoint``), ``system``,
  ``inferenceConfig.maxTokens``, ``toolConfig``; the answer's ``output``,
  ``stopReason``, ``usage`` (``inputTokens`` *excludes* cache reads and
  writes, reported as ``cacheReadInputTokens`` / ``cacheWriteInputTokens``;
  ``totalTokens`` is all four), ``metrics``. The stream is an AWS event
  stream (`metis.simulator.eventstream`): ``messageStart``,
  ``contentBlockStart`` (tool use), ``contentBlockDelta``…,
  ``contentBlockStop``, ``messageStop``, ``metadata`` (usage, last).
- ``POST /model/{modelId}/invoke`` and ``/invoke-with-response-stream`` for
  Claude models: Anthropic's Messages body with ``anthropic_version:
  bedrock-2023-05-31`` (required) and without ``model`` or ``stream``
  (refused as extraneous keys, as Bedrock does); the answer is Anthropic's
  message (``id`` ``msg_bdrk_…``); the stream is ``chunk`` events whose
  ``bytes`` are Anthropic's stream events, base64-encoded, the last
  (``message_stop``) with ``amazon-bedrock-invocationMetrics``.

Both run the Anthropic simulator's logic (`metis.simulator.anthropic_inference`:
token counts, the stateful prompt cache, whose breakpoints are ``cachePoint``
blocks in Converse, tool calls) and are in the ledger under provider
``aws`` with the model id called, priced by genai-prices' AWS prices.

Auth is Signature Version 4, verified: ``Authorization: AWS4-HMAC-SHA256
Credential=<key id>/<date>/<region>/bedrock/aws4_request, SignedHeaders=…,
Signature=…`` and ``X-Amz-Date`` within 5 minutes; the signature is
recomputed with botocore's signer over the request as received (method, raw
path, query, the signed headers, the body's SHA-256) with the key id's
secret. Simulator keys are ``AKIA`` + 16 characters; each one's secret is
derived from it (`new_keypair`, `secret_for`), as if AWS held it. Errors are
AWS's: JSON ``{"message"}`` with ``x-amzn-ErrorType`` (403
``MissingAuthenticationTokenException``, ``UnrecognizedClientException``,
``InvalidSignatureException``; 400 ``ValidationException``; 429
``ThrottlingException``; 500 ``InternalServerException``; 503
``ServiceUnavailableException``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from metis.pricing import has_price
from metis.simulator import anthropic_inference, eventstream, tokens
from metis.simulator.faults import Fault
from metis.simulator.http import JSONResponse, SSEResponse, stream_interval
from metis.simulator.state import SimState

_encode = msgspec.json.Encoder(decimal_format="number").encode
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<akid>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[^, ]+), ?"
    r"Signature=(?P<sig>[0-9a-f]{64})$"
)
_AKID = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{16}$")
_REGION_PREFIX = re.compile(r"^(?:us|eu|apac|ap|jp|au|ca|global|us-gov)\.")
_VERSION_SUFFIX = re.compile(r"-v\d+(?::\d+)?$")
MAX_SKEW = timedelta(minutes=5)
BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"
_SECRET_SALT = b"metis-simulator-aws-secret"


def secret_for(access_key_id: str) -> str:
    """The secret access key the simulator holds for ``access_key_id``."""
    mac = hmac.new(_SECRET_SALT, access_key_id.encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()[:40]


def new_keypair() -> tuple[str, str]:
    """(access key id, secret access key) the simulator accepts (random; for tests)."""
    akid = "AKIA" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
    return akid, secret_for(akid)


def aws_error(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    h = {
        "x-amzn-errortype": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/",
        "x-amzn-requestid": _request_id(),
        **(headers or {}),
    }
    return JSONResponse({"message": message}, status_code=status, headers=h)


def fault_error(fault: Fault, headers: dict[str, str] | None) -> JSONResponse:
    """A rejecting fault as Bedrock answers it (529, not an AWS status, answers 503)."""
    if fault.kind == "429":
        return aws_error(
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
            headers,
        )
    if fault.kind == "500":
        return aws_error(
            500, "InternalServerException", "An internal server error occurred. (simulated)"
        )
    return aws_error(
        503, "ServiceUnavailableException", "Bedrock is unable to process your request."
    )


def _request_id() -> str:
    h = secrets.token_hex(16)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def anthropic_model(model_id: str) -> str | None:
    """``claude-haiku-4-5-20251001`` for ``us.anthropic.claude-haiku-4-5-20251001-v1:0``."""
    base = _REGION_PREFIX.sub("", model_id)
    if not base.startswith("anthropic."):
        return None
    return _VERSION_SUFFIX.sub("", base[len("anthropic.") :])


def verify(request: Request, body: bytes) -> str | Response:
    """The access key id of a correctly signed request, or AWS's 403."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    auth = request.headers.get("authorization")
    amz_date = request.headers.get("x-amz-date")
    if not auth or not amz_date:
        return aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    m = _AUTH.match(auth)
    if m is None:
        return aws_error(
            403, "IncompleteSignatureException", "Authorization header requires 'Credential', "
            "'SignedHeaders' and 'Signature' parameters."
        )  # fmt: skip
    akid = m["akid"]
    if not _AKID.match(akid):
        return aws_error(
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    try:
        when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return aws_error(403, "InvalidSignatureException", f"Invalid X-Amz-Date: {amz_date}")
    now = datetime.now(UTC)
    if abs(now - when) > MAX_SKEW:
        return aws_error(
            403,
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than "
            f"{(now - MAX_SKEW).strftime('%Y%m%dT%H%M%SZ')}",
        )
    if m["service"] != "bedrock" or m["date"] != amz_date[:8]:
        return aws_error(403, "InvalidSignatureException", "Credential should be scoped to a valid "
                         "region and the bedrock service, on the request's date.")  # fmt: skip
    content_sha = request.headers.get("x-amz-content-sha256")
    if content_sha is not None and content_sha != hashlib.sha256(body).hexdigest():
        return aws_error(400, "ValidationException", "The provided 'x-amz-content-sha256' header "
                         "does not match what was computed.")  # fmt: skip
    signed = m["signed"].split(";")
    headers = {}
    for name in signed:
        value = request.headers.get(name)
        if value is None:
            return _mismatch()
        headers[name] = value
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    url = f"http://{headers.get('host', 'localhost')}{raw_path.decode('latin-1')}"
    if query:
        url += "?" + query.decode("latin-1")
    aws_req = AWSRequest(method=request.method, url=url, data=body, headers=headers)
    aws_req.context["timestamp"] = amz_date
    token = request.headers.get("x-amz-security-token")
    signer = SigV4Auth(Credentials(akid, secret_for(akid), token), "bedrock", m["region"])
    canonical = signer.canonical_request(aws_req)
    expected = signer.signature(signer.string_to_sign(aws_req, canonical), aws_req)
    if not hmac.compare_digest(expected, m["sig"]):
        return _mismatch()
    return akid


def _mismatch() -> Response:
    return aws_error(
        403,
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check "
        "your AWS Secret Access Key and signing method. Consult the service documentation for "
        "details.",
    )


def _key_id(akid: str) -> str:
    return "key_" + hashlib.sha256(b"aws:" + akid.encode()).hexdigest()[:16]


def _invalid_model() -> Response:
    return aws_error(400, "ValidationException", "The provided model identifier is invalid.")


async def model_action(request: Request, state: SimState, body: Any) -> Response:
    """``POST /model/{modelId}/{converse|converse-stream|invoke|invoke-with-response-stream}``."""
    raw: bytes = request.state.raw_body
    akid = verify(request, raw)
    if isinstance(akid, Response):
        return akid
    model_id = request.path_params["model_id"]
    action = request.path_params["action"]
    if action not in ("converse", "converse-stream", "invoke", "invoke-with-response-stream"):
        return aws_error(404, "UnknownOperationException", "Unknown operation")
    if not has_price("aws", model_id):
        return _invalid_model()
    if not isinstance(body, dict):
        return aws_error(
            400,
            "ValidationException",
            "Malformed input request, please reformat your input and try again.",
        )
    if action.startswith("invoke"):
        return _invoke(request, state, body, model_id, akid, action.endswith("stream"))
    return _converse(request, state, body, model_id, akid, action == "converse-stream")


# -- InvokeModel (Anthropic body) ------------------------------------------------------------


def _invoke(
    request: Request, state: SimState, body: dict[str, Any], model_id: str, akid: str, stream: bool
) -> Response:
    name = anthropic_model(model_id)
    if name is None:
        return aws_error(
            400,
            "ValidationException",
            f"Malformed input request: InvokeModel here serves Anthropic models only, not "
            f"{model_id}",
        )
    for extra in ("model", "stream"):
        if extra in body:
            return aws_error(
                400,
                "ValidationException",
                f"Malformed input request: #: extraneous key [{extra}] is not permitted, please "
                "reformat your input and try again.",
            )
    if body.get("anthropic_version") != BEDROCK_ANTHROPIC_VERSION:
        return aws_error(400, "ValidationException", "Malformed input request: #: required key "
                         "[anthropic_version] not found or not bedrock-2023-05-31")  # fmt: skip
    check = {k: v for k, v in body.items() if k not in ("anthropic_version", "anthropic_beta")}
    err = anthropic_inference._validate({**check, "model": name})
    if err is not None:
        return _as_validation(err)
    out = anthropic_inference.answer(
        request, state, check, model=name, ledger_provider="aws", api_key_id=_key_id(akid),
        workspace_id=None, ledger_model=model_id, id_prefix="msg_bdrk_01",
    )  # fmt: skip
    if isinstance(out, Response):
        return _as_validation(out)
    rid = _request_id()
    u = out.usage
    total_in = u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
    headers = {
        "x-amzn-requestid": rid,
        "x-amzn-bedrock-input-token-count": str(total_in),
        "x-amzn-bedrock-output-token-count": str(u["output_tokens"]),
        "x-amzn-bedrock-invocation-latency": "321",
    }
    if not stream:
        msg = {k: v for k, v in out.message.items()}
        msg["usage"] = {k: v for k, v in u.items() if k not in ("service_tier", "cache_creation")}
        return JSONResponse(msg, headers=headers)
    frames = []
    for _, obj in out.events:
        if obj["type"] == "message_stop":
            obj = {
                **obj,
                "amazon-bedrock-invocationMetrics": {
                    "inputTokenCount": total_in,
                    "outputTokenCount": u["output_tokens"],
                    "invocationLatency": 321,
                    "firstByteLatency": 123,
                },
            }
        payload = {"bytes": base64.b64encode(_encode(obj)).decode(), "p": "abcdefghijklm"}
        frames.append(eventstream.event("chunk", _encode(payload)))
    usage_index = next(i for i, (n, _) in enumerate(out.events) if n == "message_delta")
    return _stream_response(request, frames, headers, usage_index)


def _as_validation(resp: Response) -> Response:
    """An Anthropic-shaped 400/404 of the shared logic, in Bedrock's envelope."""
    try:
        msg = msgspec.json.decode(resp.body)["error"]["message"]
    except (msgspec.DecodeError, KeyError, TypeError):
        msg = "Malformed input request, please reformat your input and try again."
    return aws_error(400, "ValidationException", f"Malformed input request: {msg}")


def _stream_response(
    request: Request, frames: list[bytes], headers: dict[str, str], usage_index: int
) -> Response:
    resp = SSEResponse(frames, headers=headers)
    resp.raw_headers = [(k, v) for k, v in resp.raw_headers if k != b"content-type"] + [
        (b"content-type", b"application/vnd.amazon.eventstream")
    ]
    resp.usage_index = usage_index
    resp.interval = stream_interval(request.headers)
    return resp


# -- Converse -------------------------------------------------------------------------------


def _to_anthropic(body: dict[str, Any]) -> dict[str, Any] | str:
    """A Converse request as the Anthropic simulator reads one (cachePoint -> cache_control on
    the block before it), or why it is malformed."""

    def blocks(content: Any, where: str) -> list[dict[str, Any]] | str:
        if not isinstance(content, list) or not content:
            return f"{where}: content must be a non-empty list of content blocks"
        out: list[dict[str, Any]] = []
        for b in content:
            if not isinstance(b, dict) or len(b) != 1:
                return f"{where}: each content block has exactly one member"
            ((kind, v),) = b.items()
            if kind == "cachePoint":
                if not out:
                    return f"{where}: a cachePoint must follow a block"
                out[-1]["cache_control"] = {"type": "ephemeral"}
            elif kind == "text" and isinstance(v, str):
                out.append({"type": "text", "text": v})
            elif kind == "image" and isinstance(v, dict):
                out.append({"type": "image", "source": {"type": "base64", "data": ""}})
            elif kind == "toolUse" and isinstance(v, dict):
                out.append(
                    {
                        "type": "tool_use",
                        "id": v.get("toolUseId"),
                        "name": v.get("name"),
                        "input": v.get("input"),
                    }
                )
            elif kind == "toolResult" and isinstance(v, dict):
                parts = v.get("content") or []
                text = " ".join(
                    p["text"]
                    if isinstance(p, dict) and isinstance(p.get("text"), str)
                    else tokens.canonical(p).decode()
                    for p in parts
                )
                out.append(
                    {"type": "tool_result", "tool_use_id": v.get("toolUseId"), "content": text}
                )
            elif kind in ("reasoningContent", "document", "video"):
                out.append({"type": "text", "text": tokens.canonical(v).decode()})
            else:
                return f"{where}: unknown content block member {kind!r}"
        return out

    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return "messages: a non-empty list is required"
    messages = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: must be user or assistant"
        content = blocks(m.get("content"), f"messages.{i}")
        if isinstance(content, str):
            return content
        messages.append({"role": m["role"], "content": content})
    out: dict[str, Any] = {"messages": messages}
    if body.get("system") is not None:
        system = blocks(body["system"], "system")
        if isinstance(system, str):
            return system
        out["system"] = system
    ic = body.get("inferenceConfig") or {}
    if not isinstance(ic, dict):
        return "inferenceConfig: must be an object"
    mt = ic.get("maxTokens")
    if mt is not None and (not isinstance(mt, int) or isinstance(mt, bool) or mt < 1):
        return "inferenceConfig.maxTokens: must be an integer >= 1"
    out["max_tokens"] = mt
    tc = body.get("toolConfig")
    if isinstance(tc, dict):
        tools = []
        for t in tc.get("tools") or []:
            spec = t.get("toolSpec") if isinstance(t, dict) else None
            if isinstance(spec, dict):
                schema = (spec.get("inputSchema") or {}).get("json") or {}
                tools.append(
                    {
                        "name": spec.get("name"),
                        "description": spec.get("description", ""),
                        "input_schema": schema,
                    }
                )
            elif isinstance(t, dict) and "cachePoint" in t and tools:
                tools[-1]["cache_control"] = {"type": "ephemeral"}
        out["tools"] = tools
        choice = tc.get("toolChoice") or {}
        if "any" in choice:
            out["tool_choice"] = {"type": "any"}
        elif "tool" in choice:
            out["tool_choice"] = {"type": "tool", "name": choice["tool"].get("name")}
    return out


_STOP = {"end_turn": "end_turn", "tool_use": "tool_use", "max_tokens": "max_tokens"}


def _converse(
    request: Request, state: SimState, body: dict[str, Any], model_id: str, akid: str, stream: bool
) -> Response:
    converted = _to_anthropic(body)
    if isinstance(converted, str):
        return aws_error(400, "ValidationException", converted)
    rules_model = anthropic_model(model_id) or model_id
    out = anthropic_inference.answer(
        request, state, converted, model=rules_model, ledger_provider="aws",
        api_key_id=_key_id(akid), workspace_id=None, ledger_model=model_id,
        id_prefix="msg_bdrk_01",
    )  # fmt: skip
    if isinstance(out, Response):
        return _as_validation(out)
    rid = _request_id()
    u = out.usage
    usage = {
        "inputTokens": u["input_tokens"],
        "outputTokens": u["output_tokens"],
        "totalTokens": u["input_tokens"]
        + u["output_tokens"]
        + u["cache_read_input_tokens"]
        + u["cache_creation_input_tokens"],
        "cacheReadInputTokens": u["cache_read_input_tokens"],
        "cacheWriteInputTokens": u["cache_creation_input_tokens"],
    }
    content = []
    for b in out.message["content"]:
        if b["type"] == "text":
            content.append({"text": b["text"]})
        else:
            content.append(
                {"toolUse": {"toolUseId": b["id"], "name": b["name"], "input": b["input"]}}
            )
    stop = _STOP.get(out.message["stop_reason"], "end_turn")
    headers = {"x-amzn-requestid": rid}
    if not stream:
        return JSONResponse(
            {
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop,
                "usage": usage,
                "metrics": {"latencyMs": 321},
            },
            headers=headers,
        )
    frames = [eventstream.event("messageStart", _encode({"role": "assistant", "p": "abcd"}))]
    for i, b in enumerate(content):
        if "toolUse" in b:
            tu = b["toolUse"]
            start = {"toolUse": {"toolUseId": tu["toolUseId"], "name": tu["name"]}}
            frames.append(
                eventstream.event(
                    "contentBlockStart", _encode({"start": start, "contentBlockIndex": i})
                )
            )
            args = tokens.canonical(tu["input"]).decode()
            for j in range(0, len(args), 16):
                frames.append(eventstream.event("contentBlockDelta", _encode(
                    {"delta": {"toolUse": {"input": args[j : j + 16]}}, "contentBlockIndex": i}
                )))  # fmt: skip
        else:
            for j, w in enumerate(b["text"].split(" ")):
                frames.append(eventstream.event("contentBlockDelta", _encode(
                    {"delta": {"text": w if j == 0 else " " + w}, "contentBlockIndex": i, "p": "ab"}
                )))  # fmt: skip
        frames.append(eventstream.event("contentBlockStop", _encode({"contentBlockIndex": i})))
    frames.append(eventstream.event("messageStop", _encode({"stopReason": stop})))
    frames.append(
        eventstream.event("metadata", _encode({"usage": usage, "metrics": {"latencyMs": 321}}))
    )
    return _stream_response(request, frames, headers, len(frames) - 1)
