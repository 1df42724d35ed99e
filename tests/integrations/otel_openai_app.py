"""An app instrumented with the official OpenTelemetry OpenAI instrumentation.

Run as a subprocess by tests/integrations/test_genai_otel.py (its own process:
the instrumentation patches the ``openai`` module globally):

    python otel_openai_app.py OTLP_TRACES_URL INGEST_TOKEN BASE_URL API_KEY N

It makes N chat completions, N streamed chat completions (usage requested)
and one embeddings call with the official ``openai`` SDK against BASE_URL,
exports the spans with the OTLP/HTTP protobuf exporter, flushes, and prints
the response ids as JSON.
"""

from __future__ import annotations

import json
import sys

import openai
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def main() -> None:
    endpoint, token, base_url, api_key, n = sys.argv[1:6]
    provider = TracerProvider(resource=Resource.create({"service.name": "billing-app"}))
    exporter = OTLPSpanExporter(endpoint=endpoint, headers={"Authorization": f"Bearer {token}"})
    provider.add_span_processor(BatchSpanProcessor(exporter))
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
    ids: list[str] = []
    for i in range(int(n)):
        r = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"hello {i}"}]
        )
        ids.append(r.id)
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"stream {i}"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in stream:
            if chunk.id and chunk.id not in ids:
                ids.append(chunk.id)
    client.embeddings.create(model="text-embedding-3-small", input=["a", "b c"])
    assert provider.force_flush(30_000), "span export did not finish"
    provider.shutdown()
    print(json.dumps({"response_ids": ids}))


if __name__ == "__main__":
    main()
