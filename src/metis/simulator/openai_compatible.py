"""OpenAI-compatible providers, each with its own usage quirks: ``/compat/{variant}/v1/…``.

One simulator plays every named OpenAI-compatible provider of
`metis.gateway.upstreams.catalog.PRESETS` under ``/compat/<variant>/v1`` (a
credential's base URL, e.g. ``http://127.0.0.1:8090/compat/groq/v1``):
``POST …/chat/completions`` (plain and streamed, tools, ``n``, structured
output: the OpenAI chat endpoint of `metis.simulator.openai_inference` with
the variant's profile) and ``GET …/models``. Auth: ``Authorization: Bearer
<any key of 8+ characters>``; errors in OpenAI's envelope.

Ground truth: every call is in the ledger under the variant's genai-prices
provider id (``groq``, ``deepseek``, ``openrouter``, ``mistral``, ``x-ai``,
``together``, ``fireworks``, ``cerebras``, ``google``), priced by
genai-prices; the self-hosted variants (``ollama``, ``vllm``, ``lmstudio``)
accept any model and record tokens under their own name with no price (their
operators price them in Metis's prices file).

The quirks, as the providers document them:

==============  ==========================================================
groq            the stream's finishing chunk carries ``x_groq.usage`` (with
                timing fields), besides the ``include_usage`` chunk
deepseek        cache hits as ``prompt_cache_hit_tokens`` /
                ``prompt_cache_miss_tokens`` (no ``prompt_tokens_details``);
                a prompt of 64+ tokens hits ``floor(prompt / 2 / 64) * 64``;
                ``deepseek-reasoner`` reasons (``completion_tokens_details``)
openrouter      ``usage.cost`` states the price in USD (exact; genai-prices'
                OpenRouter price of the call), ``is_byok``, ``cost_details``;
                usage ends every stream whether asked or not
mistral         usage ends every stream whether asked or not; no details
x-ai            OpenAI's details (cached tokens as OpenAI caches, reasoning
                for ``grok-3-mini``), ``num_sources_used``
others          OpenAI's usage object without extra fields
==============  ==========================================================
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from metis.pricing import has_price
from metis.simulator import catalog
from metis.simulator.http import JSONResponse, bearer, openai_error
from metis.simulator.keys import KeyIdentity
from metis.simulator.ledger import usd_json_number
from metis.simulator.openai_inference import ChatProfile, cached_tokens, chat, openai_usage
from metis.simulator.state import SimState

PREFIX = "/compat/{variant}/v1"


@dataclass(frozen=True)
class Variant:
    price_provider: str | None  # None: self-hosted (any model, unpriced)
    models: tuple[str, ...]
    quirk: str = ""  # groq | deepseek | openrouter | mistral | xai | ""
    reasoning_models: tuple[str, ...] = ()


VARIANTS: dict[str, Variant] = {
    "groq": Variant("groq", ("llama-3.3-70b-versatile", "llama-3.1-8b-instant"), "groq"),
    "deepseek": Variant(
        "deepseek", ("deepseek-chat", "deepseek-reasoner"), "deepseek", ("deepseek-reasoner",)
    ),
    "openrouter": Variant(
        "openrouter",
        ("openai/gpt-4o-mini", "anthropic/claude-3.5-haiku", "meta-llama/llama-3.3-70b-instruct"),
        "openrouter",
    ),
    "mistral": Variant("mistral", ("mistral-small-latest", "mistral-large-2512"), "mistral"),
    "xai": Variant("x-ai", ("grok-3", "grok-3-mini"), "xai", ("grok-3-mini",)),
    "together": Variant("together", ("meta-llama/Llama-3.3-70B-Instruct-Turbo",)),
    "fireworks": Variant("fireworks", ("accounts/fireworks/models/llama-v3p1-8b-instruct",)),
    "cerebras": Variant("cerebras", ("llama3.1-8b",)),
    "gemini-openai": Variant("google", ("gemini-2.5-flash", "gemini-2.0-flash")),
    "ollama": Variant(None, ()),
    "vllm": Variant(None, ()),
    "lmstudio": Variant(None, ()),
}

DEEPSEEK_CACHE_UNIT = 64


def deepseek_cached(prompt: int) -> int:
    return (prompt // 2) // DEEPSEEK_CACHE_UNIT * DEEPSEEK_CACHE_UNIT


def _no_cache(prompt: int) -> int:
    return 0


def _identity(variant: str, request: Request) -> KeyIdentity | Response:
    key = bearer(request.headers)
    if key is None or len(key) < 8:
        return openai_error(
            401,
            "Invalid API Key" if key else "Missing API key: send Authorization: Bearer <key>",
            type="invalid_request_error",
            code="invalid_api_key",
        )
    h = hashlib.sha256(f"{variant}:{key}".encode()).hexdigest()
    return KeyIdentity(provider=variant, api_key_id=f"key_{h[:16]}", project_id=None)


def _usage_for(quirk: str) -> Any:
    def usage(
        prompt: int, cached: int, completion: int, reasoning: int, stated: int | None
    ) -> dict[str, Any]:
        base: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if quirk == "deepseek":
            base.update(
                prompt_cache_hit_tokens=cached,
                prompt_cache_miss_tokens=prompt - cached,
                completion_tokens_details={"reasoning_tokens": reasoning},
            )
        elif quirk == "openrouter":
            base.update(
                cost=usd_json_number(stated or 0),
                is_byok=False,
                prompt_tokens_details={"cached_tokens": cached, "cache_write_tokens": 0},
                completion_tokens_details={"reasoning_tokens": reasoning},
                cost_details={"upstream_inference_cost": None},
            )
        elif quirk == "groq":
            base.update(
                queue_time=Decimal("0.01"),
                prompt_time=Decimal("0.002"),
                completion_time=Decimal("0.02"),
                total_time=Decimal("0.022"),
            )
        elif quirk == "xai":
            base = openai_usage(prompt, cached, completion, reasoning)
            base["num_sources_used"] = 0
        elif quirk != "mistral":
            base = openai_usage(prompt, cached, completion, reasoning)
        return base

    return usage


@functools.cache
def profile(variant: str) -> ChatProfile:
    v = VARIANTS[variant]
    provider = v.price_provider or variant

    def accepts(model: str) -> bool:
        if v.price_provider is None:
            return True  # a self-hosted server serves whatever it was started with
        return model in v.models and has_price(v.price_provider, model)

    cached = {
        "deepseek": deepseek_cached,
        "xai": cached_tokens,
        "openrouter": cached_tokens,
    }.get(v.quirk, _no_cache)
    return ChatProfile(
        provider=provider,
        authenticate=functools.partial(_identity, variant),
        accepts=accepts,
        served=lambda m: m,
        cached=cached,
        usage=_usage_for(v.quirk),
        stream_usage_always=v.quirk in ("openrouter", "mistral"),
        x_groq=v.quirk == "groq",
        stated_cost=v.quirk == "openrouter",
        fingerprint=v.quirk in ("xai", ""),
        reasoning=lambda m: m in v.reasoning_models,
    )


def _unknown_variant(variant: str) -> Response:
    return openai_error(
        404, f"Invalid URL: no OpenAI-compatible provider {variant!r} here", code="not_found"
    )


async def chat_completions(request: Request, state: SimState, body: Any) -> Response:
    variant = request.path_params["variant"]
    if variant not in VARIANTS:
        return _unknown_variant(variant)
    return await chat(request, state, body, profile(variant))


async def list_models(request: Request, state: SimState, body: Any) -> Response:
    variant = request.path_params["variant"]
    if variant not in VARIANTS:
        return _unknown_variant(variant)
    ident = profile(variant).authenticate(request)
    if isinstance(ident, Response):
        return ident
    v = VARIANTS[variant]
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {
                    "id": m,
                    "object": "model",
                    "created": catalog.MODEL_CREATED,
                    "owned_by": v.price_provider or variant,
                }
                for m in v.models
            ],
        }
    )
