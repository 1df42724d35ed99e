"""Alerts: budget thresholds, ingestion health, reconciliation drift, unpriced models.

`engine` decides when an alert fires (once per crossing and period, deduplicated
in ``alert_state``), `sinks` formats and signs deliveries, `delivery` sends the
outbox in the background, `rules` holds thresholds and sink configuration, and
`service` wires the worker and the periodic evaluator into ``metis serve``.
"""
