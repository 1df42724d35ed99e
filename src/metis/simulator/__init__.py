"""A local OpenAI and Anthropic: inference, admin usage/cost reports, faults.

`create_app(seed=..., history_days=..., faults=...)` builds the ASGI app;
``metis simulator serve`` runs it. See `app` for the routes and the
``/_sim`` control endpoints, `keys` for key formats and provider ids,
`tokens` for token counting, `faults` for fault injection.
"""

from metis.simulator.app import create_app

__all__ = ["create_app"]
