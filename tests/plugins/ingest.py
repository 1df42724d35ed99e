"""Fixtures for ingest tests (shared by other areas)."""

# Provider pull sync (issue 5): `provisioned` (a fake admin API per provider with a
# usage_admin credential on it) and `fast_ingest` (no rate limit / short backoff in tests).
from tests.ingest.pull_fixtures import fast_ingest, provisioned  # noqa: F401
