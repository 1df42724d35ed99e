"""Base-URL normalization shared by push ingestion and reconciliation."""

import re

VIA_GATEWAY_BASE_URL = "metis:gateway"
"""The ``base_url`` stored for pushed calls an ingest token declares as sent through
this Metis gateway (``via_gateway``): reconciliation counts them as the gateway's
own traffic whatever ``METIS_GATEWAY_URLS`` says (`metis.ledger.reconcile`)."""

_URL_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/]*)(.*)$")


def normalize_base_url(url: str | None) -> str | None:
    """Lower-case scheme and host, no trailing slash: the form stored and compared.

    Reconciliation matches a plugin row's ``base_url`` against this gateway's
    URLs in this form, so both sides must normalize the same way.
    """
    if not url:
        return None
    url = url.strip()
    m = _URL_RE.match(url)
    if m:
        url = m.group(1).lower() + m.group(2).lower() + m.group(3)
    return url.rstrip("/") or None
