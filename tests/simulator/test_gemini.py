"""The simulator's Gemini API against Google's own client (the ``google-genai`` SDK).

The SDK builds every request and parses every answer (plain, SSE stream,
countTokens, errors) from Google's contract, so these tests hold the
simulator's Gemini profile to it; the usage the SDK parses must equal the
simulator's ground truth, which the gateway tests compare the ledger with.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from google import genai
from google.genai import errors, types

from metis.simulator.gemini import new_key
from tests.plugins.simulator import Simulator


@pytest.fixture
def client(simulator: Simulator) -> Iterator[genai.Client]:
    opts = types.HttpOptions(base_url=simulator.url, api_version="v1beta")
    with genai.Client(api_key=new_key(), http_options=opts) as c:  # closes its connections
        yield c


def test_generate_content_usage_is_the_ground_truth(
    client: genai.Client, simulator: Simulator
) -> None:
    out = client.models.generate_content(model="gemini-2.5-flash", contents="Hello, Gemini.")
    u = out.usage_metadata
    assert out.text and u is not None and u.prompt_token_count is not None
    (call,) = simulator.calls()
    assert out.response_id == call["response_id"]
    thoughts = u.thoughts_token_count or 0
    assert (u.prompt_token_count, (u.candidates_token_count or 0) + thoughts, thoughts) == (
        call["input_tokens"],
        call["output_tokens"],
        call["reasoning_tokens"],
    )
    assert (call["provider"], call["model"]) == ("google", "gemini-2.5-flash")
    assert call["cost_nanousd"] > 0


def test_a_stream_ends_with_the_totals(client: genai.Client, simulator: Simulator) -> None:
    chunks = list(
        client.models.generate_content_stream(model="gemini-2.5-flash", contents="Stream, please.")
    )
    assert "".join(c.text or "" for c in chunks)
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP
    u = last.usage_metadata
    assert u is not None
    (call,) = simulator.calls()
    assert (
        u.prompt_token_count,
        (u.candidates_token_count or 0) + (u.thoughts_token_count or 0),
    ) == (
        call["input_tokens"],
        call["output_tokens"],
    )


def test_count_tokens_is_free_and_counts_text(client: genai.Client, simulator: Simulator) -> None:
    text = "Count these tokens, please."
    n = client.models.count_tokens(model="gemini-2.5-flash", contents=text)
    assert n.total_tokens == math.ceil(len(text) / 4)
    assert simulator.calls() == []


def test_a_bad_key_and_an_unknown_model_are_googles_errors(simulator: Simulator) -> None:
    opts = types.HttpOptions(base_url=simulator.url, api_version="v1beta")
    with (
        genai.Client(api_key="not-a-google-key", http_options=opts) as bad,
        genai.Client(api_key=new_key(), http_options=opts) as good,
    ):
        with pytest.raises(errors.ClientError) as refused:
            bad.models.generate_content(model="gemini-2.5-flash", contents="x")
        with pytest.raises(errors.ClientError) as unknown:
            good.models.generate_content(model="gemini-9-ultra", contents="x")
    assert (refused.value.code, refused.value.status) == (400, "INVALID_ARGUMENT")
    assert (unknown.value.code, unknown.value.status) == (404, "NOT_FOUND")
    assert simulator.calls() == []
