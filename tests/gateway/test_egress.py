"""Egress settings: which proxy serves an origin (standard-library rules) and the CA bundle."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest

from metis.errors import ConfigError
from metis.gateway.egress import ProxyRules, check_environment, parse_proxy, ssl_context
from tests.gateway.tls_certs import ca_and_server_cert

VARS = ("https_proxy", "http_proxy", "all_proxy", "no_proxy")


def rules(monkeypatch: pytest.MonkeyPatch, **env: str) -> ProxyRules | None:
    for k in VARS:
        monkeypatch.delenv(k, raising=False)
        monkeypatch.delenv(k.upper(), raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return ProxyRules.from_environ()


def shown(r: ProxyRules | None, url: str) -> str | None:
    from urllib.parse import urlsplit

    assert r is not None
    u = urlsplit(url)
    assert u.hostname is not None
    p = r.for_origin(u.scheme, u.hostname, u.port or (443 if u.scheme == "https" else 80))
    return None if p is None else p.shown


def test_no_proxy_variables_means_no_rules_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    assert rules(monkeypatch) is None
    assert rules(monkeypatch, NO_PROXY="example.com") is None
    assert rules(monkeypatch, HTTPS_PROXY="") is None


def test_each_scheme_has_its_variable_lower_case_wins_and_all_proxy_is_the_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = rules(monkeypatch, HTTPS_PROXY="http://upper:1", https_proxy="http://lower:2")
    assert shown(r, "https://api.openai.com/v1") == "http://lower:2"
    assert shown(r, "http://vllm.internal/v1") is None  # no HTTP_PROXY, no ALL_PROXY
    r = rules(monkeypatch, HTTP_PROXY="plain:3128", ALL_PROXY="http://all:8080")
    assert shown(r, "http://vllm.internal/v1") == "http://plain:3128"  # no scheme: http://
    assert shown(r, "https://api.openai.com") == "http://all:8080"


@pytest.mark.parametrize(
    ("no_proxy", "url", "bypassed"),
    [
        ("*", "https://api.openai.com", True),
        ("openai.com", "https://api.openai.com", True),
        (".openai.com", "https://api.openai.com", True),
        ("openai.com", "https://openai.com", True),
        ("openai.com", "https://notopenai.com", False),
        ("api.anthropic.com, OPENAI.com", "https://API.openai.com", True),
        ("api.openai.com:443", "https://api.openai.com", True),
        ("api.openai.com:8443", "https://api.openai.com", False),
        ("10.0.0.5", "http://10.0.0.5:8000/v1", True),
        ("10.0.0.0/8", "http://10.0.0.5:8000/v1", False),  # no CIDR, as the standard library
        ("localhost", "http://127.0.0.1:8000", False),  # names are not resolved
    ],
)
def test_no_proxy_follows_the_standard_library(
    monkeypatch: pytest.MonkeyPatch, no_proxy: str, url: str, bypassed: bool
) -> None:
    r = rules(monkeypatch, ALL_PROXY="http://proxy.corp:3128", NO_PROXY=no_proxy)
    assert shown(r, url) == (None if bypassed else "http://proxy.corp:3128")


def test_proxy_credentials_become_a_basic_header_and_are_never_shown() -> None:
    p = parse_proxy("http://us%40er:p%3Ass@proxy.corp:3128", "HTTPS_PROXY")
    assert p.authorization == b"Basic " + base64.b64encode(b"us@er:p:ss")
    assert p.shown == "http://proxy.corp:3128"
    assert "p:ss" not in repr(p) and "p%3Ass" not in repr(p) and "us" not in p.shown
    assert parse_proxy("http://[::1]:9", "X").shown == "http://[::1]:9"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("socks5://u:secret-pw@proxy:1080", "HTTPS_PROXY: a socks5:// proxy is not supported"),
        ("https://proxy:443", "HTTPS_PROXY: a https:// proxy is not supported"),
        ("http://proxy:notaport", "HTTPS_PROXY is not a valid proxy URL"),
        ("http://:3128", "HTTPS_PROXY has no proxy host"),
    ],
)
def test_an_unusable_proxy_url_is_a_config_error_without_its_credentials(
    monkeypatch: pytest.MonkeyPatch, url: str, message: str
) -> None:
    rules(monkeypatch, HTTPS_PROXY=url)
    with pytest.raises(ConfigError) as e:
        check_environment()
    assert str(e.value).startswith(message)
    assert "secret-pw" not in str(e.value)


def test_the_ca_bundle_setting_then_requests_then_openssl_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca, _, _ = ca_and_server_cert(tmp_path, ["upstream.test"])
    default = ssl_context()
    assert default.verify_mode == ssl.CERT_REQUIRED and default.check_hostname
    # CA certificates loaded: ours only, when a bundle is named
    assert [c["subject"] for c in ssl_context(ca).get_ca_certs()] == [
        ((("commonName", "metis test CA"),),)
    ]
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    assert len(ssl_context().get_ca_certs()) == 1
    with pytest.raises(ConfigError, match="METIS_UPSTREAM_CA_BUNDLE: cannot load CA bundle"):
        ssl_context(tmp_path / "missing.pem")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="REQUESTS_CA_BUNDLE: cannot load CA bundle"):
        check_environment()
