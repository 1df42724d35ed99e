"""Anthropic model lookup: ids and aliases resolve like the real API; others are 404."""

import anthropic
import pytest

from metis.simulator import catalog
from metis.simulator.anthropic_models import resolve
from tests.plugins.simulator import Simulator


def test_retrieve_by_id_and_alias(simulator: Simulator) -> None:
    c = anthropic.Anthropic(
        base_url=simulator.anthropic_base_url, api_key=simulator.anthropic_key, max_retries=0
    )
    m = c.models.retrieve("claude-haiku-4-5")
    assert m.id == "claude-haiku-4-5-20251001" and m.display_name == "Claude Haiku 4.5"
    assert c.models.retrieve("claude-sonnet-4-6").id == "claude-sonnet-4-6"
    with pytest.raises(anthropic.NotFoundError):
        c.models.retrieve("gpt-4o-mini")
    assert [x.id for x in c.models.list()] == list(catalog.ANTHROPIC_MODELS)
    c.close()


def test_resolve() -> None:
    assert resolve("claude-opus-4-5") == "claude-opus-4-5-20251101"
    assert resolve("claude-opus") is None  # not an exact alias
    assert resolve("claude-opus-4-5-2025") is None
