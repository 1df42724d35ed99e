"""Prometheus metrics of provider sync (default registry, served on ``/metrics``)."""

from prometheus_client import Counter, Histogram

RUNS = Counter(
    "metis_ingest_runs_total", "Provider sync runs by outcome.", ["provider", "kind", "status"]
)
RECORDS = Counter(
    "metis_ingest_records_total",
    "Usage records written by provider sync, by outcome (stored/updated/unchanged/removed).",
    ["provider", "outcome"],
)
PAGES = Counter("metis_ingest_pages_total", "Provider report pages fetched.", ["provider"])
REQUESTS = Counter(
    "metis_ingest_provider_requests_total",
    "HTTP requests made to provider admin APIs.",
    ["provider"],
)
RETRIES = Counter("metis_ingest_retries_total", "Provider request retries.", ["provider"])
UNPRICED = Counter(
    "metis_ingest_unpriced_rows_total",
    "Usage rows with no provider cost and no known price (cost_source none).",
    ["provider"],
)
DURATION = Histogram(
    "metis_ingest_run_duration_seconds",
    "Duration of provider sync runs.",
    ["provider", "kind"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)
