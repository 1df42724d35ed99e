"""Fixtures for identity tests (shared by other areas)."""
