"""Prometheus metrics of the gateway (default registry, served on ``/metrics``)."""

from prometheus_client import Counter

REQUESTS = Counter(
    "metis_gateway_requests", "Inference requests received by the gateway", ["shape"]
)
UNPRICED_CALLS = Counter(
    "metis_gateway_unpriced_calls",
    "Calls recorded with cost_source=none (model without a known price)",
    ["provider"],
)
QUOTA_REJECTIONS = Counter(
    "metis_gateway_quota_rejections", "Requests refused by a hard spend cap (429)", ["scope"]
)
UPSTREAM_ERRORS = Counter(
    "metis_gateway_upstream_errors",
    "Calls that ended in an upstream error, timeout or connection failure",
    ["provider"],
)
DB_UNAVAILABLE = Counter(
    "metis_gateway_db_unavailable",
    "Requests that met an unavailable database: refused by caps (fail-closed), "
    "admitted (fail-open) or refused because the write buffer is full",
    ["outcome"],
)
AUTH_THROTTLED = Counter(
    "metis_gateway_auth_throttled",
    "Requests answered 429 by the failed-auth throttle (metis.security.throttle)",
    ["shape"],
)
UNBILLED = Counter(
    "metis_gateway_unbilled_requests",
    "Requests forwarded without a usage record (they cost nothing at the provider): "
    "count_tokens, stored-response lookups, model lookups",
    ["endpoint"],
)
STATED_COST_MISMATCH = Counter(
    "metis_gateway_stated_cost_mismatch",
    "Calls whose provider-stated cost (e.g. OpenRouter's usage.cost) differs from the price "
    "Metis computed for the same usage",
    ["provider"],
)
