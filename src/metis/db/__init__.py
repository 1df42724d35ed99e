"""The one Metis database: engine, tables and migrations (SQLite or PostgreSQL)."""
