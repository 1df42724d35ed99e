"""The most a request can make the provider bill: token bounds and their cost.

DESIGN.md "Worst case is computed per shape": each inbound API
(`metis.gateway.inbound`) reads its request into a `WorstCase` (what the
request *asks for*: choices, output budget, images, references to content
the body does not carry, server-side tools), and this module turns that,
for one target model, into token bounds (`bounds`) and a cost at the model's
top prices (`cost`, `metis.pricing.top_prices`). The cap reservation is
that cost (`metis.gateway.caps`); a call whose usage the gateway could not
read is recorded at these bounds (`metis.gateway.lifecycle`).

Input tokens
    A text token is at least one byte of the request body (a token is a
    sequence of one or more bytes of text, and the JSON around a message is
    longer than the few tokens a provider adds per message), so text input is
    bounded by the body's length plus `OVERHEAD_TOKENS` (what a provider adds
    itself: Anthropic's tool-use system prompt is at most a few hundred
    tokens) and `TOOL_OVERHEAD_TOKENS` per tool definition. Not everything
    is text:

    - an image costs a fixed number of tokens whatever its bytes (a 1x1 PNG
      in base64 is about 90 bytes and costs OpenAI 85-255 tokens), so each
      image part adds `IMAGE_TOKENS` of its provider (the largest per-image
      count the provider documents);
    - audio input is under one token per byte (OpenAI counts about 10 audio
      tokens per second; no accepted encoding is under 1 KB per second), so
      it stays within the body bound;
    - a document or file (PDF pages are billed as text plus an image per
      page, and a compressed PDF holds more tokens than bytes), a file id or
      URL, ``previous_response_id``, a stored conversation or prompt, or
      anything the gateway cannot classify makes the input **context
      bound**: at most the model's context window
      (`metis.gateway.model_limits.context_window`), the most one model
      invocation can read;
    - server-side tools (web search, file search, code execution, MCP …) run
      the model several times within one request, each time over its whole
      context: their input is bounded by `rounds` times the context window.
      Anthropic documents a server-side sampling loop of at most
      `SERVER_TOOL_ROUNDS` (10) iterations; OpenAI documents no limit except
      the request's own ``max_tool_calls`` (then ``max_tool_calls + 1``
      rounds), so without it 10 is an *assumption* (docs/gateway.md).

Output tokens
    Every choice (``n``) times the per-choice budget the request names
    (``max_tokens``, ``max_completion_tokens``, ``max_output_tokens``;
    reasoning and thinking tokens are part of it), or the model's maximum
    output when it names none (`metis.gateway.model_limits.max_output_tokens`),
    times the rounds of server-side tools whose budget is per sampling step.
    Predicted outputs (OpenAI ``prediction``) bill rejected prediction tokens
    as output on top of the budget: at most the body's length more.

Cost
    Input bound times the model's top input price, output bound times its
    top output price, plus a per-request fee per round (`metis.pricing.top_prices`):
    no tier, cache kind, modality or date can price a token higher. Rounded
    up to the nano-USD and clamped to `metis.pricing.MAX_COST_NANOUSD`.
"""

from __future__ import annotations

from dataclasses import dataclass

from metis.gateway.model_limits import context_window, max_output_tokens
from metis.pricing import MAX_COST_NANOUSD, top_prices

OVERHEAD_TOKENS = 2_048
"""Tokens a provider may add to a request of its own (system prompts for tool use,
per-message framing); Anthropic documents at most a few hundred."""
TOOL_OVERHEAD_TOKENS = 64
"""Tokens a provider may add around each tool definition beyond its JSON."""
TYPED_TOOL_TOKENS = 2_048
"""A provider-defined tool named by type only (Anthropic ``bash_…``, ``text_editor_…``,
``computer_…``): its definition is the provider's, not in the body (Anthropic
documents up to 735 tokens for one)."""
IMAGE_TOKENS = {"openai": 50_000, "anthropic": 5_000}
"""Largest documented per-image token count: OpenAI ``gpt-4o-mini`` at high detail
(2,833 + 8 tiles x 5,667 = 48,169); Anthropic about 1,600 at the standard size and
under 5,000 at the largest size any model accepts."""
IMAGE_TOKENS_DEFAULT = 50_000
SERVER_TOOL_ROUNDS = 10
"""Model invocations one request with server-side tools may run (Anthropic's documented
loop limit; assumed for OpenAI when ``max_tool_calls`` is absent)."""
MAX_COUNT = 10**9
"""Larger counts from a request (``n``, budgets, ``max_tool_calls``) read as this."""


@dataclass(frozen=True, slots=True)
class WorstCase:
    """What one request asks for, before a target model is known (see the module doc)."""

    output_budget: int | None = None
    """Output tokens per choice the request allows; None: the model's maximum."""
    choices: int = 1
    images: int = 0
    context_bound: bool = False
    """Input not bounded by the body: a file, URL, stored item or unknown part."""
    rounds: int = 1
    """Model invocations within the request (server-side tools)."""
    budget_per_round: bool = True
    """The output budget applies to each round (else to the whole request)."""
    tools: int = 0
    typed_tools: int = 0
    extra_output: int = 0
    """Output tokens billed beyond the budget (rejected predictions)."""
    billed: bool = True
    """False for requests that cost nothing (embeddings output is 0 but they are billed)."""
    output: bool = True
    """False when the API produces no output tokens (embeddings)."""
    alternatives: tuple[str, ...] = ()
    """Other models the provider may bill instead of the target (OpenRouter's ``models``
    fallback list): the reservation prices the costliest."""


TEXT_ONLY = WorstCase()


@dataclass(frozen=True, slots=True)
class Bounds:
    """Token bounds of a request for one target model."""

    input_tokens: int
    output_tokens: int
    rounds: int


def clamp(v: int) -> int:
    return min(max(v, 0), MAX_COUNT)


def bounds(provider: str | None, model: str, body_len: int, wc: WorstCase) -> Bounds:
    """Input and output token bounds of a request with body ``body_len`` bytes."""
    rounds = max(1, min(wc.rounds, MAX_COUNT))
    per_image = IMAGE_TOKENS.get(provider or "", IMAGE_TOKENS_DEFAULT)
    inp = (
        body_len
        + OVERHEAD_TOKENS
        + wc.tools * TOOL_OVERHEAD_TOKENS
        + wc.typed_tools * TYPED_TOOL_TOKENS
        + wc.images * per_image
    )
    if wc.context_bound or rounds > 1:
        inp = max(inp, context_window(provider, model)) * rounds
    out = 0
    if wc.output:
        budget = wc.output_budget
        per_choice = max_output_tokens(provider, model) if budget is None else clamp(budget)
        per_request = max(1, wc.choices) * per_choice
        if wc.budget_per_round:
            per_request *= rounds
        out = per_request + clamp(wc.extra_output)
    return Bounds(inp, out, rounds)


_MTOK = 1_000_000


def cost(
    provider: str | None, model: str, body_len: int, wc: WorstCase, *, name: str | None = None
) -> int | None:
    """The request's worst-case cost in nano-USD at ``model``'s top prices (None: unpriced).

    ``provider`` is the genai-prices id (None for a provider it does not know),
    ``name`` the Metis provider name the prices file is keyed by."""
    return cost_of(provider, model, bounds(provider, model, body_len, wc), name=name)


def cost_of(provider: str | None, model: str, b: Bounds, *, name: str | None = None) -> int | None:
    """``b``'s cost in nano-USD at ``model``'s top prices (None: unpriced), rounded up.

    `cost` of a request's bounds; also the estimate of a call whose usage the
    gateway could not read (`metis.gateway.estimate`), whose input may be known."""
    top = top_prices(provider, model, name)
    if top is None:
        return None
    # tokens x USD/MTok is 1e-6 USD, i.e. 1e3 nano-USD; a fee in USD is 1e9 nano-USD.
    n = (
        b.input_tokens * top.input_per_mtok
        + b.output_tokens * top.output_per_mtok
        + b.rounds * top.per_request * _MTOK
    ) * 1000
    whole = int(n)
    return min(whole + (1 if n > whole else 0), MAX_COST_NANOUSD)
