"""OpenAI chat completions ⇄ Anthropic messages translation (requests, responses, streams).

Pure functions and small state machines over decoded JSON; no I/O. The
gateway uses them when a routing decision sends a request to a provider of
the other shape. `UnsupportedFeature`/`TranslationError` on a client request
become a 400 naming the field; on an upstream payload, a 502.
"""

from metis.gateway.translate.errors import TranslationError, UnsupportedFeature
from metis.gateway.translate.requests import (
    DEFAULT_MAX_TOKENS,
    anthropic_to_openai_request,
    openai_to_anthropic_request,
)
from metis.gateway.translate.responses import (
    anthropic_to_openai_response,
    openai_to_anthropic_response,
)
from metis.gateway.translate.stream import AnthropicToOpenAIStream, OpenAIToAnthropicStream
from metis.gateway.translate.usage import anthropic_usage_to_openai, openai_usage_to_anthropic

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "AnthropicToOpenAIStream",
    "OpenAIToAnthropicStream",
    "TranslationError",
    "UnsupportedFeature",
    "anthropic_to_openai_request",
    "anthropic_to_openai_response",
    "anthropic_usage_to_openai",
    "openai_to_anthropic_request",
    "openai_to_anthropic_response",
    "openai_usage_to_anthropic",
]
