"""Deterministic token counting (`metis.simulator.tokens`)."""

from hypothesis import given
from hypothesis import strategies as st

from metis.simulator import tokens


def test_text_and_prompt_counts() -> None:
    assert [tokens.text_tokens(s) for s in ("", "a", "abcd", "abcde")] == [0, 1, 1, 2]
    body = {
        "messages": [
            {"role": "system", "content": "abcdefgh"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "abcd"},
                    {"type": "image_url", "image_url": {}},
                ],
            },
        ]
    }
    # 3 + (4 + 2) + (4 + 1 + 85)
    assert tokens.openai_prompt_tokens(body) == 99
    assert tokens.embedding_input_tokens(["abcd", "abcdefgh"]) == [1, 2]
    assert tokens.embedding_input_tokens([1, 2, 3]) == [3]
    assert tokens.embedding_input_tokens([[1, 2], [3]]) == [2, 1]


def test_request_hash_ignores_key_order_and_depends_on_seed() -> None:
    a = tokens.request_hash(1, "m", [{"role": "user", "content": "x"}])
    b = tokens.request_hash(1, "m", [{"content": "x", "role": "user"}])
    assert a == b != tokens.request_hash(2, "m", [{"role": "user", "content": "x"}])


@given(
    h=st.integers(0, 2**64 - 1),
    cap=st.none() | st.integers(1, 100),
    forced=st.none() | st.integers(1, 1000),
)
def test_output_tokens_respect_cap(h: int, cap: int | None, forced: int | None) -> None:
    n, truncated = tokens.output_tokens(h, cap, forced)
    base = forced if forced is not None else 8 + h % 57
    assert n == (min(base, cap) if cap is not None else base)
    assert truncated == (cap is not None and base > cap)
    assert len(tokens.words(h, n)) == n


@given(h=st.integers(0, 2**64 - 1), out=st.integers(0, 5000))
def test_reasoning_is_a_part_of_output(h: int, out: int) -> None:
    r = tokens.reasoning_split(h, "o4-mini-2025-04-16", out)
    assert 0 <= r < max(out, 1)
    assert (r > 0) == (out >= 2)
    assert tokens.reasoning_split(h, "gpt-4o-mini", out) == 0
