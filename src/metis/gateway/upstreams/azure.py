"""The Azure OpenAI family: ``https://<resource>.openai.azure.com``.

Two path styles (the credential's ``path_style`` option):

- ``deployments`` (default): ``/openai/deployments/<deployment>/chat/completions
  ?api-version=<api_version>`` (and ``/embeddings``); the target model is the
  deployment's name (the answer's ``model`` is the deployed model's, which is
  what gets priced);
- ``v1``: ``/openai/v1/chat/completions`` (``/embeddings``, ``/responses``),
  no ``api-version``, the deployment in the body's ``model``.

Auth is the ``api-key`` header. Answers are OpenAI's with Azure's extra
fields (``prompt_filter_results``, ``content_filter_results``; a stream's
first chunk has an empty ``id`` and ``model`` and no choices), which
`metis.gateway.streaming` skips when it looks for the response id.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from metis.gateway.upstreams.base import REL_PATH, CallView, Outgoing, Upstream, with_query
from metis.gateway.upstreams.catalog import AZURE_API_VERSION


class AzureOpenAIFamily:
    name = "azure-openai"
    wire = "openai"
    apis = frozenset({"chat", "embeddings", "responses"})

    def _v1(self, up: Upstream) -> bool:
        return up.options.get("path_style") == "v1"

    def url(self, up: Upstream, rel: str, query: bytes = b"") -> str:
        if self._v1(up):
            return with_query(up.api_root + "/openai/v1" + rel, query)
        version = str(up.options.get("api_version") or AZURE_API_VERSION)
        q = b"api-version=" + quote(version, safe="").encode()
        return with_query(up.api_root + "/openai" + rel, q + (b"&" + query if query else b""))

    def headers(self, up: Upstream, client: Mapping[bytes, bytes]) -> dict[str, str]:
        return {"api-key": up.secret, "content-type": "application/json"}

    def request(self, up: Upstream, call: CallView, api: str, model: str, body: bytes) -> Outgoing:
        rel = REL_PATH[api]
        if not self._v1(up):
            if api == "responses":
                rel = "/responses"  # not a deployment route in Azure's API
            else:
                rel = "/deployments/" + quote(model, safe="") + rel
        return Outgoing(self.url(up, rel), self.headers(up, call.headers), body)

    def error_body(self, status: int, headers: Mapping[str, str], body: bytes) -> bytes:
        return body


FAMILY = AzureOpenAIFamily()
