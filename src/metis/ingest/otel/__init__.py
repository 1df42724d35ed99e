"""Agent telemetry as a usage source: the OTLP/HTTP receiver and one mapper per source.

- `receiver`: ``POST /otel/v1/{logs,traces,metrics}`` in ``metis serve``.
- `codec`: OTLP/HTTP bodies (protobuf, JSON, gzip) and answers.
- `records`: flat views of decoded log records and spans.
- `claude_code`, `codex`, `genai`: pure mappers from one record to one usage
  item (sources ``claude_code``, ``codex``, ``otel_genai``).
- `identity`: email / account id → Metis user (emails are never stored).

User docs: docs/ingest-otel.md.
"""
