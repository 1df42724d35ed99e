"""How the gateway reaches upstreams: the egress proxy per origin and the CA bundle.

Read once, when the upstream client is made (gateway startup); a change to
the environment needs a restart, as with any setting.

Proxy selection follows the Python standard library, the reference users
know from ``requests`` and ``urllib``: `urllib.request.getproxies_environment`
reads ``https_proxy``/``HTTPS_PROXY``, ``http_proxy``/``HTTP_PROXY``,
``all_proxy``/``ALL_PROXY`` and ``no_proxy``/``NO_PROXY`` (lower case wins;
an empty value unsets; ``HTTP_PROXY`` in upper case is ignored under CGI,
CVE-2016-1000110), and `urllib.request.proxy_bypass_environment` decides
``NO_PROXY``: ``*`` bypasses every host; each comma-separated entry matches
the host itself or any name under it (``example.com`` and ``.example.com``
both match ``api.example.com``), or ``host:port`` for one port only. Like
the standard library (and unlike curl), a CIDR range is not understood: list
IP addresses one by one. ``ALL_PROXY`` applies when the scheme's own
variable is unset.

Only ``http://`` proxy URLs are supported (the proxy itself is reached in
plain TCP; ``https://`` and ``socks*`` proxies are refused, by `metis serve`
at startup and per call with a 502). ``user:password@`` in the proxy URL is
sent as ``Proxy-Authorization: Basic``; the credentials are never logged
nor put in an error (`Proxy.shown` has them removed).

CA bundle: ``METIS_UPSTREAM_CA_BUNDLE`` (a PEM file), else
``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``, else OpenSSL's defaults, which
honour ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``. A bundle replaces the system
trust store (as in ``requests`` and ``httpx``): to add a corporate CA,
concatenate it with the system bundle.
"""

from __future__ import annotations

import base64
import os
import ssl
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from metis.errors import ConfigError

CA_BUNDLE_VARS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
"""Where a CA bundle for upstream TLS is looked for after METIS_UPSTREAM_CA_BUNDLE."""


@dataclass(frozen=True, slots=True)
class Proxy:
    """One ``http://`` egress proxy: where it listens and how to authenticate."""

    host: str
    port: int
    shown: str
    """``http://host:port`` (what errors name: never the credentials)."""
    authorization: bytes | None = field(default=None, repr=False, compare=True)
    """``Basic …`` for ``Proxy-Authorization``, from ``user:password@`` in the URL."""


def parse_proxy(url: str, variable: str) -> Proxy:
    """The `Proxy` for ``url`` (from environment variable ``variable``), or `ConfigError`.

    A URL without a scheme is taken as ``http://`` (as curl and the standard
    library do); the port defaults to 80."""
    raw = url.strip()
    if "://" not in raw:
        raw = "http://" + raw
    try:
        u = urlsplit(raw)
        port = u.port or 80
    except ValueError:
        raise ConfigError(f"{variable} is not a valid proxy URL") from None
    if u.scheme.lower() != "http":
        raise ConfigError(
            f"{variable}: a {u.scheme}:// proxy is not supported (use an http:// proxy; "
            "the tunnel to an https upstream is still TLS end to end)"
        )
    if not u.hostname:
        raise ConfigError(f"{variable} has no proxy host")
    shown_host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    auth = None
    if u.username is not None:
        pair = f"{unquote(u.username)}:{unquote(u.password or '')}"
        auth = b"Basic " + base64.b64encode(pair.encode("utf-8"))
    return Proxy(u.hostname, port, f"http://{shown_host}:{port}", auth)


@dataclass(frozen=True, slots=True)
class ProxyRules:
    """The proxy environment, read once: which proxy (if any) serves an origin."""

    proxies: Mapping[str, str]
    """`urllib.request.getproxies_environment` as read (scheme → URL, ``no`` → NO_PROXY)."""

    @classmethod
    def from_environ(cls) -> ProxyRules | None:
        """The rules from the process environment, or None when no proxy is set.

        None keeps the upstream client's path free of any proxy check."""
        found = urllib.request.getproxies_environment()
        if not any(found.get(s) for s in ("http", "https", "all")):
            return None
        return cls(found)

    def for_origin(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy for ``scheme://host:port``, or None to connect directly.

        Raises `ConfigError` when the chosen proxy URL is unusable."""
        url = self.proxies.get(scheme) or self.proxies.get("all")
        if not url:
            return None
        shown = f"[{host}]" if ":" in host else host
        if urllib.request.proxy_bypass_environment(f"{shown}:{port}", self.proxies):  # type: ignore[attr-defined]
            return None
        variable = f"{scheme}_proxy" if self.proxies.get(scheme) else "all_proxy"
        return parse_proxy(url, variable.upper())

    def check(self) -> None:
        """Raise `ConfigError` when a proxy variable that would be used is unusable."""
        for scheme in ("http", "https", "all"):
            url = self.proxies.get(scheme)
            if url:
                parse_proxy(url, f"{scheme.upper()}_PROXY")


def ca_bundle(configured: Path | None = None) -> tuple[str, Path] | None:
    """The CA bundle's variable and path, or None for OpenSSL's defaults.

    ``configured`` is ``Settings.upstream_ca_bundle`` (METIS_UPSTREAM_CA_BUNDLE)."""
    if configured is not None:
        return "METIS_UPSTREAM_CA_BUNDLE", configured.expanduser()
    for name in CA_BUNDLE_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return name, Path(value).expanduser()
    return None


def ssl_context(configured: Path | None = None) -> ssl.SSLContext:
    """The context that verifies upstream TLS (see the module doc for the CA bundle).

    Raises `ConfigError` naming the variable when its bundle cannot be loaded."""
    chosen = ca_bundle(configured)
    if chosen is None:
        return ssl.create_default_context()
    name, path = chosen
    try:
        if path.is_dir():
            return ssl.create_default_context(capath=str(path))
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"{name}: cannot load CA bundle {path}: {type(e).__name__}") from None


def check_environment(configured: Path | None = None) -> None:
    """Refuse (`ConfigError`) an unusable proxy URL or CA bundle before serving."""
    rules = ProxyRules.from_environ()
    if rules is not None:
        rules.check()
    ssl_context(configured)
