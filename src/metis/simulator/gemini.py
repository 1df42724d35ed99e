"""Google's Gemini API (native): ``/v1beta/models/{model}:{action}`` (and ``/v1/…``).

- ``POST …:generateContent``: a ``GenerateContentResponse`` (``candidates``
  with ``content.parts``, ``finishReason``, ``index``; ``usageMetadata``;
  ``modelVersion``; ``responseId``).
- ``POST …:streamGenerateContent``: with ``?alt=sse`` server-sent events
  (``data: {…}\\r\\n\\r\\n``, no end marker), else one JSON array whose
  elements arrive as they are made (``[{…}`` then ``,\\r\\n{…}`` … ``]``).
  Every chunk carries ``usageMetadata`` so far; the last one (with
  ``finishReason``) the totals.
- ``POST …:countTokens``: ``{"totalTokens", "promptTokensDetails"}`` for
  ``contents`` or a whole ``generateContentRequest``; free.
- ``GET …/models`` and ``…/models/{model}``: the models served.

Auth: ``x-goog-api-key`` (or ``?key=``), a key starting ``AIza`` (20+
characters); errors in Google's envelope ``{"error": {"code", "message",
"status"}}``. Models: every ``gemini-…`` model genai-prices prices for
``google``; calls are in the ledger under provider ``google``.

Counting (deterministic, documented for tests): a text part is
``ceil(len / 4)`` tokens, an ``inlineData`` / ``fileData`` part 258, a
``functionCall`` / ``functionResponse`` part its compact JSON as text; the
prompt is every part of ``contents`` and ``systemInstruction`` plus the
JSON of ``tools``. Implicit caching (stateless): Gemini 2.5 and later models
report ``cachedContentTokenCount = floor(prompt / 2 / 256) * 256`` for
prompts of at least 1,024 tokens (4,096 for Pro models), a part of
``promptTokenCount``. Thinking: Gemini 2.5 and later models think
(``thoughtsTokenCount`` = 16-112 tokens, at most ``thinkingBudget``; a budget
of 0 turns it off on Flash models); thoughts are billed as output but are not
part of ``candidatesTokenCount``. The visible answer has ``8 + h % 57``
tokens (capped by ``maxOutputTokens``: ``finishReason: MAX_TOKENS``) per
candidate (``candidateCount``). Tools: a ``functionCall`` of the first (or
named) declared function when the last user text says "use tool" or
``toolConfig`` forces one (``mode: ANY``).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from metis.pricing import has_price
from metis.simulator import catalog, tokens
from metis.simulator.http import JSONResponse, SSEResponse, stream_interval
from metis.simulator.keys import KeyIdentity
from metis.simulator.ledger import Call
from metis.simulator.openai_inference import forced_output, request_time
from metis.simulator.state import SimState

MEDIA_TOKENS = 258
CACHE_STEP = 256
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
ACTIONS = ("generateContent", "streamGenerateContent", "countTokens")
MODELS = (
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "gemini-2.5-flash-lite",
    "gemini-2.0-flash",
    "gemini-3-pro-preview",
)


def gemini_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Google's error envelope."""
    body = {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}
    return JSONResponse(body, status_code=status, headers=headers)


def authenticate(request: Request) -> KeyIdentity | Response:
    key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    if not key:
        return gemini_error(
            403,
            "Method doesn't allow unregistered callers (callers without established identity)."
            " Please use API Key or other form of API consumer identity to call this API.",
        )
    if not key.startswith("AIza") or len(key) < 20:
        return gemini_error(400, "API key not valid. Please pass a valid API key.")
    h = hashlib.sha256(b"gemini:" + key.encode()).hexdigest()
    return KeyIdentity(provider="google", api_key_id=f"key_{h[:16]}", project_id=f"proj_{h[16:28]}")


def new_key() -> str:
    """A fresh Gemini-style API key (random; for tests and demos)."""
    return "AIza" + secrets.token_urlsafe(26)[:35]


def serves(model: str) -> bool:
    return model.startswith("gemini-") and has_price("google", model)


def _thinks(model: str) -> bool:
    return model.startswith(("gemini-2.5", "gemini-3"))


def _cache_min(model: str) -> int:
    return 4096 if "-pro" in model else 1024


def cached_tokens(model: str, prompt: int) -> int:
    if not _thinks(model) or prompt < _cache_min(model):
        return 0
    return (prompt // 2) // CACHE_STEP * CACHE_STEP


def part_tokens(part: Any) -> int:
    if not isinstance(part, dict):
        return tokens.content_tokens(part)
    if isinstance(part.get("text"), str):
        return tokens.text_tokens(part["text"])
    if "inlineData" in part or "fileData" in part:
        return MEDIA_TOKENS
    return tokens.text_tokens(tokens.canonical(part).decode())


def _parts(content: Any) -> list[Any]:
    if isinstance(content, dict) and isinstance(content.get("parts"), list):
        return list(content["parts"])
    return []


def prompt_tokens(body: dict[str, Any]) -> int:
    n = sum(part_tokens(p) for c in body.get("contents") or () for p in _parts(c))
    n += sum(part_tokens(p) for p in _parts(body.get("systemInstruction")))
    if body.get("tools"):
        n += tokens.text_tokens(tokens.canonical(body["tools"]).decode())
    return n


def _bad(message: str) -> Response:
    return gemini_error(400, message)


def _validate(body: Any) -> Response | None:
    if not isinstance(body, dict):
        return _bad("Invalid JSON payload received. Expected an object.")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return _bad("* GenerateContentRequest.contents: contents is not specified")
    for i, c in enumerate(contents):
        if not isinstance(c, dict) or not isinstance(c.get("parts"), list) or not c["parts"]:
            return _bad(
                f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
            )
        if c.get("role") not in (None, "user", "model", "function"):
            return _bad(
                f"Please use a valid role: user, model. (contents[{i}].role: {c.get('role')!r})"
            )
    gc = body.get("generationConfig")
    if gc is not None and not isinstance(gc, dict):
        return _bad('Invalid JSON payload received. Unknown name "generationConfig".')
    gc = gc or {}
    n = gc.get("candidateCount", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 8:
        return _bad("* GenerateContentRequest.generation_config.candidate_count: must be 1-8")
    mot = gc.get("maxOutputTokens")
    if mot is not None and (not isinstance(mot, int) or isinstance(mot, bool) or mot < 1):
        return _bad("* GenerateContentRequest.generation_config.max_output_tokens: must be >= 1")
    return None


def _not_found(model: str, version: str, action: str) -> Response:
    return gemini_error(
        404,
        f"models/{model} is not found for API version {version}, or is not supported for "
        f"{action}. Call ListModels to see the list of available models and their supported "
        "methods.",
    )


def _split(request: Request) -> tuple[str, str, str] | None:
    """(version, model, action) of ``/{version}/models/{model}:{action}``."""
    path = request.url.path
    version, _, rest = path.lstrip("/").partition("/models/")
    model, sep, action = rest.rpartition(":")
    if not sep or action not in ACTIONS or not model:
        return None
    return version, model, action


def _function_call(body: dict[str, Any]) -> dict[str, Any] | None:
    decls = [
        d
        for t in body.get("tools") or ()
        if isinstance(t, dict)
        for d in t.get("functionDeclarations") or ()
        if isinstance(d, dict) and isinstance(d.get("name"), str)
    ]
    if not decls:
        return None
    fcc = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    mode = fcc.get("mode")
    if mode == "NONE":
        return None
    last = body["contents"][-1]
    parts = _parts(last)
    if last.get("role") == "function" or any(
        "functionResponse" in p for p in parts if isinstance(p, dict)
    ):
        return None
    text = " ".join(
        p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)
    )
    allowed = fcc.get("allowedFunctionNames") or []
    if mode == "ANY" or catalog.asks_for_tool(text):
        for d in decls:
            if d["name"] in allowed or d["name"] in text:
                return d
        return decls[0]
    return None


async def models_action(request: Request, state: SimState, body: Any) -> Response:
    """``POST /{version}/models/{model}:{action}``."""
    ident = authenticate(request)
    if isinstance(ident, Response):
        return ident
    split = _split(request)
    if split is None:
        return gemini_error(404, f"Method not found: {request.url.path}")
    version, model, action = split
    if not serves(model):
        return _not_found(model, version, action)
    if action == "countTokens":
        return _count_tokens(body)
    err = _validate(body)
    if err is not None:
        return err
    return _generate(request, state, body, ident, model, action == "streamGenerateContent")


def _count_tokens(body: Any) -> Response:
    if not isinstance(body, dict):
        return _bad("Invalid JSON payload received. Expected an object.")
    req = body.get("generateContentRequest")
    req = req if isinstance(req, dict) else {"contents": body.get("contents") or []}
    n = prompt_tokens(req)
    return JSONResponse(
        {"totalTokens": n, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": n}]}
    )


def _generate(
    request: Request,
    state: SimState,
    body: dict[str, Any],
    ident: KeyIdentity,
    model: str,
    stream: bool,
) -> Response:
    gc = body.get("generationConfig") or {}
    n = gc.get("candidateCount", 1)
    cap = gc.get("maxOutputTokens")
    budget = (gc.get("thinkingConfig") or {}).get("thinkingBudget")
    include_thoughts = (gc.get("thinkingConfig") or {}).get("includeThoughts") is True
    prompt = prompt_tokens(body)
    cached = cached_tokens(model, prompt)
    h = tokens.request_hash(
        state.seed, model, body["contents"], body.get("systemInstruction"), body.get("tools")
    )
    fn = _function_call(body)
    cands: list[dict[str, Any]] = []
    visible_total = thoughts_total = 0
    for i in range(n):
        hi = h if i == 0 else tokens.request_hash(state.seed, h, i)
        thinks = _thinks(model) and not (budget == 0 and "-pro" not in model)
        thoughts = 16 + hi % 97 if thinks else 0
        if thinks and isinstance(budget, int) and budget > 0:
            thoughts = min(thoughts, budget)
        parts: list[dict[str, Any]] = []
        if include_thoughts and thoughts:
            parts.append({"text": "thinking about it", "thought": True})
        if fn is not None:
            args = catalog.args_from_schema(fn.get("parameters") or fn.get("parametersJsonSchema"))
            call = {"name": fn["name"], "args": args}
            visible = tokens.text_tokens(tokens.canonical(call).decode())
            parts.append({"functionCall": call})
            finish = "STOP"
        else:
            visible, truncated = tokens.output_tokens(hi, cap, forced_output(request))
            parts.append({"text": " ".join(tokens.words(hi, visible))})
            finish = "MAX_TOKENS" if truncated else "STOP"
        cands.append(
            {"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": i}
        )
        visible_total += visible
        thoughts_total += thoughts
    rid = secrets.token_urlsafe(16)
    ts = request_time(request, state)
    state.ledger.add(
        Call(
            provider="google",
            kind="generate",
            ts=ts,
            api_key_id=ident.api_key_id,
            model=model,
            input_tokens=prompt,
            cached_input_tokens=cached,
            output_tokens=visible_total + thoughts_total,
            reasoning_tokens=thoughts_total,
            project_id=ident.project_id,
            response_id=rid,
        )
    )
    usage = _usage(prompt, cached, visible_total, thoughts_total)
    doc = {"candidates": cands, "usageMetadata": usage, "modelVersion": model, "responseId": rid}
    if not stream:
        return JSONResponse(doc)
    return _stream(request, cands, usage, model, rid)


def _usage(prompt: int, cached: int, visible: int, thoughts: int) -> dict[str, Any]:
    u: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": visible,
        "totalTokenCount": prompt + visible + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if cached:
        u["cachedContentTokenCount"] = cached
        u["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    if thoughts:
        u["thoughtsTokenCount"] = thoughts
    return u


def _stream(
    request: Request, cands: list[dict[str, Any]], usage: dict[str, Any], model: str, rid: str
) -> Response:
    """One chunk per text word of each candidate (other parts whole), the last with the
    finish reason and the totals; earlier chunks carry the prompt's usage so far."""
    chunks: list[dict[str, Any]] = []
    so_far = {
        k: v for k, v in usage.items() if k not in ("candidatesTokenCount", "thoughtsTokenCount")
    }
    so_far["totalTokenCount"] = usage["promptTokenCount"]
    for c in cands:
        for p in c["content"]["parts"]:
            if isinstance(p.get("text"), str) and not p.get("thought"):
                words = p["text"].split(" ")
                for j, w in enumerate(words):
                    piece = {"text": w if j == 0 else " " + w}
                    chunks.append(
                        {"content": {"parts": [piece], "role": "model"}, "index": c["index"]}
                    )
            else:
                chunks.append({"content": {"parts": [p], "role": "model"}, "index": c["index"]})
    docs = [
        {"candidates": [ch], "usageMetadata": so_far, "modelVersion": model, "responseId": rid}
        for ch in chunks
    ]
    final = [
        {
            "content": {"parts": [{"text": ""}], "role": "model"},
            "finishReason": c["finishReason"],
            "index": c["index"],
        }
        for c in cands
    ]
    docs.append(
        {"candidates": final, "usageMetadata": usage, "modelVersion": model, "responseId": rid}
    )
    from metis.simulator.http import _encode

    if request.query_params.get("alt") == "sse":
        events = [b"data: " + _encode(d) + b"\r\n\r\n" for d in docs]
        resp = SSEResponse(events)
    else:  # a JSON array, element by element
        events = [(b"[" if i == 0 else b",\r\n") + _encode(d) for i, d in enumerate(docs)]
        events[-1] += b"]"
        resp = SSEResponse(events)
        resp.media_type = "application/json"
        resp.raw_headers = [(k, v) for k, v in resp.raw_headers if k != b"content-type"] + [
            (b"content-type", b"application/json; charset=UTF-8")
        ]
    resp.interval = stream_interval(request.headers)
    return resp


def _model_obj(model: str) -> dict[str, Any]:
    return {
        "name": f"models/{model}",
        "version": "001",
        "displayName": model.replace("-", " ").title(),
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
        "thinking": _thinks(model),
    }


async def list_models(request: Request, state: SimState, body: Any) -> Response:
    ident = authenticate(request)
    if isinstance(ident, Response):
        return ident
    return JSONResponse({"models": [_model_obj(m) for m in MODELS if serves(m)]})


async def get_model(request: Request, state: SimState, body: Any) -> Response:
    ident = authenticate(request)
    if isinstance(ident, Response):
        return ident
    model = request.path_params["model"]
    if not serves(model):
        return gemini_error(404, f"models/{model} is not found for API version v1beta.")
    return JSONResponse(_model_obj(model))
