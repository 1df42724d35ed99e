"""Fixtures for ingest tests (shared by other areas)."""
