"""Deterministic token counts and generated text.

The simulator does not run a tokenizer; it counts like one, deterministically:

- Text: ``ceil(len(text) / 4)`` tokens (the usual ~4 characters per token).
- An image part: 85 tokens; an audio part: 100 tokens; anything else
  (tool calls, tool results, JSON schemas): its compact JSON, counted as text.
- OpenAI chat prompt: 3 + per message (4 + content + name + tool calls) + tool
  definitions (+ a JSON-schema response format). Embeddings: the text of
  each input (a token-id array counts its length).
- Anthropic prompt: per tool, system block and message block its tokens, plus
  3 per message.
- Output: ``8 + h % 57`` tokens (8..64), where ``h`` is a hash of the seed and
  the request's model and conversation (canonical JSON, so key order and
  ``stream`` do not matter: a streamed and a non-streamed call of the same
  conversation report the same usage). Capped by ``max_tokens`` /
  ``max_completion_tokens`` (then the finish reason is ``length`` /
  ``max_tokens``). A request header ``x-sim-output-tokens: N`` (simulator
  only) forces N output tokens, for tests that need large or exact counts.
- Reasoning models (OpenAI ``o1``/``o3``/``o4``/``gpt-5`` families): 25-74 %
  of the output tokens are reasoning tokens (part of ``completion_tokens``).

The generated text has exactly one word per visible output token.
"""

import hashlib
import random
from typing import Any

import msgspec

IMAGE_TOKENS = 85
AUDIO_TOKENS = 100
MIN_OUTPUT = 8
OUTPUT_SPREAD = 57

_WORDS = (
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "while",
    "seven",
    "wise",
    "owls",
    "watch",
    "quiet",
    "rivers",
    "carry",
    "bright",
    "stones",
    "toward",
    "distant",
    "green",
    "hills",
    "under",
    "a",
    "silver",
    "moon",
    "and",
    "small",
    "boats",
    "drift",
    "past",
    "old",
    "stone",
    "bridges",
    "near",
    "warm",
    "harbors",
    "where",
    "sailors",
    "mend",
    "their",
    "nets",
    "before",
    "dawn",
    "breaks",
    "again",
)

_encoder = msgspec.json.Encoder(order="sorted")


def canonical(obj: Any) -> bytes:
    """Compact JSON with sorted keys (stable across clients and re-serialization)."""
    return _encoder.encode(obj)


def text_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def _json_tokens(obj: Any) -> int:
    return text_tokens(msgspec.json.encode(obj).decode())


def content_tokens(content: Any) -> int:
    """Tokens of a message ``content`` in either provider's shape."""
    if content is None:
        return 0
    if isinstance(content, str):
        return text_tokens(content)
    if isinstance(content, list):
        return sum(block_tokens(b) for b in content)
    return _json_tokens(content)


def block_tokens(block: Any) -> int:
    """Tokens of one content block / part."""
    if isinstance(block, str):
        return text_tokens(block)
    if not isinstance(block, dict):
        return _json_tokens(block)
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        return text_tokens(text) if isinstance(text, str) else 0
    if kind in ("image_url", "image", "document", "file"):
        return IMAGE_TOKENS
    if kind in ("input_audio", "audio"):
        return AUDIO_TOKENS
    if kind == "tool_use":
        return text_tokens(str(block.get("name", ""))) + _json_tokens(block.get("input", {}))
    if kind == "tool_result":
        return content_tokens(block.get("content"))
    return _json_tokens(block)


def openai_prompt_tokens(body: dict[str, Any]) -> int:
    """Prompt tokens of an OpenAI chat completion request."""
    n = 3
    for m in body.get("messages") or ():
        if not isinstance(m, dict):
            continue
        n += 4 + content_tokens(m.get("content"))
        name = m.get("name")
        if isinstance(name, str):
            n += text_tokens(name)
        if m.get("tool_calls"):
            n += _json_tokens(m["tool_calls"])
    if body.get("tools"):
        n += _json_tokens(body["tools"])
    rf = body.get("response_format")
    if isinstance(rf, dict) and rf.get("type") == "json_schema":
        n += _json_tokens(rf)
    return n


def embedding_input_tokens(inp: Any) -> list[int]:
    """Tokens per input of an embeddings request (a string, strings, or token arrays)."""
    if isinstance(inp, str):
        return [text_tokens(inp)]
    if isinstance(inp, list):
        if inp and all(isinstance(x, int) for x in inp):
            return [len(inp)]
        out: list[int] = []
        for x in inp:
            if isinstance(x, str):
                out.append(text_tokens(x))
            elif isinstance(x, list):
                out.append(len(x))
            else:
                out.append(0)
        return out
    return [0]


def request_hash(seed: int, *parts: Any) -> int:
    """A 64-bit hash of the seed and the canonical JSON of ``parts``."""
    h = hashlib.blake2b(canonical(parts), digest_size=8, key=str(seed).encode())
    return int.from_bytes(h.digest(), "big")


def output_tokens(h: int, cap: int | None, forced: int | None = None) -> tuple[int, bool]:
    """(output tokens, truncated) for request hash ``h`` under a max-tokens ``cap``."""
    n = forced if forced is not None else MIN_OUTPUT + h % OUTPUT_SPREAD
    if cap is not None and cap >= 1 and n > cap:
        return cap, True
    return n, False


def is_reasoning_model(model: str) -> bool:
    m = model.lower()
    return m.startswith(("o1", "o3", "o4", "gpt-5"))


def reasoning_split(h: int, model: str, out: int, reasoning: bool | None = None) -> int:
    """Reasoning tokens within ``out`` output tokens (0 for non-reasoning models; ``reasoning``
    says whether the model reasons when its provider's names differ from OpenAI's)."""
    if out < 2 or not (is_reasoning_model(model) if reasoning is None else reasoning):
        return 0
    pct = 25 + (h >> 20) % 50
    return min(out - 1, max(1, out * pct // 100))


def words(h: int, n: int) -> list[str]:
    """``n`` deterministic words (the visible output text, one word per token)."""
    rnd = random.Random(h)  # noqa: S311 - deterministic filler text, not security
    return rnd.choices(_WORDS, k=n)
