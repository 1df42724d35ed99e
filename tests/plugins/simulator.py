"""Fixtures for simulator tests (shared by other areas)."""
