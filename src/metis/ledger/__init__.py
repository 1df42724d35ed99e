"""The ledger: canonical usage records, their idempotent write path, counters, reconciliation."""
