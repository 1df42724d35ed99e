"""Which upstream failures move a request on to its next candidate.

Retryable on another target: 429 (rate limited or out of quota there), any
5xx, and no response at all (timeout, connection refused/reset: pass
``status=None``). Not retryable: other 4xx — the request itself is wrong, and
another provider would reject it too (or, worse, accept a different meaning).
"""


def should_fall_back(status: int | None) -> bool:
    """True when a failure with this upstream HTTP status (None = no response) may fall back."""
    return status is None or status == 429 or status >= 500
