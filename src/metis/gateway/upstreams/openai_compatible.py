"""The OpenAI-compatible family: any provider speaking OpenAI's API under its own base URL.

Groq, Mistral, DeepSeek, xAI, OpenRouter, Together, Fireworks, Cerebras,
Gemini's OpenAI-compatible endpoint, vLLM, Ollama, LM Studio … are
configuration (`metis.gateway.upstreams.catalog.PRESETS`, or any name with
``--family openai-compatible --base-url``), not code. The base URL includes
the provider's own version prefix (``https://api.groq.com/openai/v1``), so
URLs are the base URL plus the API path (``/chat/completions``). Auth is
``Authorization: Bearer <key>``; no client header passes (``OpenAI-Beta`` is
OpenAI's own).

Their usage variants are read by `metis.gateway.usage.from_openai` (the one
OpenAI-shape reader): DeepSeek's ``prompt_cache_hit_tokens``, OpenRouter's
``usage.cost`` (recorded as the provider-stated cost and compared with the
computed price), Groq's streamed ``x_groq.usage``.
"""

from __future__ import annotations

from collections.abc import Mapping

from metis.gateway.upstreams.base import Upstream
from metis.gateway.upstreams.openai import OpenAIFamily


class OpenAICompatibleFamily(OpenAIFamily):
    name = "openai-compatible"
    prefix = ""

    def headers(self, up: Upstream, client: Mapping[bytes, bytes]) -> dict[str, str]:
        return {"authorization": "Bearer " + up.secret, "content-type": "application/json"}


FAMILY = OpenAICompatibleFamily()
