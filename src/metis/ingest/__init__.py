"""Usage ingestion: provider pull sync (providers/, sync, backfill, scheduler) and push."""
