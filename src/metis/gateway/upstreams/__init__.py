"""Provider families: one module per family (DESIGN.md "Provider families, not providers").

`catalog` is the configuration side (families, presets, options; no I/O);
`base` the interface every family module implements for the gateway (URL and
header building, the answer's adaptation to the family's wire shape, error
envelope mapping); `family_of` returns a family's implementation; `directory`
keeps each workspace's provider names in memory for admission and routing.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "openai": "openai",
    "openai-compatible": "openai_compatible",
    "azure-openai": "azure",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "bedrock": "bedrock",
}
_loaded: dict[str, Any] = {}


def family_of(name: str) -> Any:
    """The `metis.gateway.upstreams.base.Family` of ``name`` (KeyError if unknown)."""
    fam = _loaded.get(name)
    if fam is None:
        mod = importlib.import_module(f"metis.gateway.upstreams.{_MODULES[name]}")
        fam = _loaded[name] = mod.FAMILY
    return fam
