"""Hypothesis settings for the fuzz tests: bounded, derandomized, no example database.

``derandomize=True`` makes every run try the same examples (reproducible CI,
no flaky first-time finds); ``database=None`` keeps no ``.hypothesis``
directory. ``METIS_FUZZ_EXAMPLES`` scales the example counts for a deeper
local run (e.g. ``METIS_FUZZ_EXAMPLES=2000``); CI uses the defaults.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SCALE = os.environ.get("METIS_FUZZ_EXAMPLES")


def fuzz_settings(max_examples: int = 200, deadline_ms: int | None = 2000) -> settings:
    """Settings for one fuzz test; ``deadline_ms`` bounds each example (no hang)."""
    return settings(
        max_examples=int(_SCALE) if _SCALE else max_examples,
        derandomize=True,
        database=None,
        deadline=deadline_ms,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        print_blob=False,
    )
