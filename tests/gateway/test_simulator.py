"""SDK round trips through the gateway to the provider simulator (both shapes, both modes)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from metis.db.tables import usage_records


def _recs(g: Any) -> dict[str, dict[str, Any]]:
    g.flush()
    with g.engine.connect() as c:
        return {r["correlation_id"]: dict(r) for r in c.execute(select(usage_records)).mappings()}


def test_sdk_round_trips_against_the_simulator(gateway_factory: Any, simulator: Any) -> None:
    g = gateway_factory(
        simulator.url,
        secrets={"openai": simulator.openai_key, "anthropic": simulator.anthropic_key},
    )
    _, secret = g.issue_key(user="alice", team="eng")
    oa = g.openai(secret)
    r1 = oa.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello simulator"}]
    )
    chunks = list(
        oa.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "stream to me"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    su = chunks[-1].usage
    an = g.anthropic(secret)
    m1 = an.messages.create(
        model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    with an.messages.stream(
        model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "go"}]
    ) as st:
        "".join(st.text_stream)
        m2 = st.get_final_message()
    recs = _recs(g)
    assert len(recs) == 4
    a = recs[r1.id]
    assert (a["input_tokens"], a["output_tokens"]) == (
        r1.usage.prompt_tokens,
        r1.usage.completion_tokens,
    )
    b = recs[chunks[0].id]
    assert su is not None
    assert (b["input_tokens"], b["output_tokens"]) == (su.prompt_tokens, su.completion_tokens)
    for m in (m1, m2):
        r = recs[m.id]
        u = m.usage
        canonical = (
            u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0)
        )
        assert (r["input_tokens"], r["output_tokens"]) == (canonical, u.output_tokens)
        assert r["inbound_shape"] == "anthropic" and r["cost_source"] == "computed"
    # The simulator saw exactly these four calls.
    assert len(simulator.calls()) == 4
