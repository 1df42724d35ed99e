"""Fixtures for servers tests (shared by other areas)."""
