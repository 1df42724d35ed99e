"""Usage objects mapped between the shapes, cached tokens included.

The two providers count input differently:

* OpenAI ``prompt_tokens`` counts *every* input token; the cache reads are a
  part of it (``prompt_tokens_details.cached_tokens``).
* Anthropic ``input_tokens`` *excludes* cache reads and cache writes, which
  are reported beside it (``cache_read_input_tokens``,
  ``cache_creation_input_tokens``).

So ``prompt_tokens = input + cache_read + cache_creation`` and
``input_tokens = prompt_tokens - cached_tokens``. OpenAI reports no cache
writes, so the Anthropic side gets ``cache_creation_input_tokens = 0``. Token
totals are preserved both ways; missing or malformed counts read as 0.
"""

from typing import Any

from metis.gateway.translate._check import Obj
from metis.gateway.usage import count


def anthropic_usage_to_openai(usage: Any) -> Obj:
    """An Anthropic ``usage`` object as an OpenAI chat-completions ``usage``."""
    u = usage if isinstance(usage, dict) else {}
    cache_read = count(u.get("cache_read_input_tokens"))
    prompt = count(u.get("input_tokens")) + cache_read + count(u.get("cache_creation_input_tokens"))
    completion = count(u.get("output_tokens"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }


def openai_usage_to_anthropic(usage: Any) -> Obj:
    """An OpenAI ``usage`` object as an Anthropic ``usage``."""
    u = usage if isinstance(usage, dict) else {}
    details = u.get("prompt_tokens_details")
    prompt = count(u.get("prompt_tokens"))
    cached = min(count(details.get("cached_tokens")) if isinstance(details, dict) else 0, prompt)
    return {
        "input_tokens": prompt - cached,
        "output_tokens": count(u.get("completion_tokens")),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    }
