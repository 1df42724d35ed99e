"""What an upstream is, as configuration: provider families, presets, and their settings.

An upstream (DESIGN.md "Provider families, not providers") is a **family**
plus a **name**, a base URL, auth and a genai-prices provider id. The family
is the API the gateway speaks to it; the name is what Metis records as the
usage record's ``provider`` and what a client or a routing rule addresses
(``groq/llama-3.3-70b-versatile``, ``groq:llama-3.3-70b-versatile``). Named
OpenAI-compatible providers are configuration, not code: `PRESETS` holds the
base URL and genai-prices id of the common ones, and any other name works with
``--family openai-compatible --base-url …``.

This module is pure data and validation (no I/O, no heavy imports): the CLI
and `metis.credentials` use it when a credential is added, the gateway
(`metis.gateway.upstreams`) when it builds requests.

Families:

==================  =====================================  ============  =========
family              base URL (default)                     genai-prices  wire
==================  =====================================  ============  =========
openai              https://api.openai.com                 openai        openai
openai-compatible   (the provider's, incl. its /v1 part)   per preset    openai
azure-openai        https://<resource>.openai.azure.com    azure         openai
anthropic           https://api.anthropic.com              anthropic     anthropic
gemini              https://generativelanguage.googleapis.com google     gemini
bedrock             https://bedrock-runtime.<region>.amazonaws.com aws   anthropic
==================  =====================================  ============  =========

The *wire* is the request and answer shape the gateway exchanges with the
family: a Bedrock upstream takes Anthropic Messages bodies (the family turns
them into InvokeModel or Converse calls and the answers back), so every
inbound shape that reaches Anthropic reaches Bedrock the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from metis.errors import ValidationError

OPENAI = "openai"
OPENAI_COMPATIBLE = "openai-compatible"
AZURE_OPENAI = "azure-openai"
ANTHROPIC = "anthropic"
GEMINI = "gemini"
BEDROCK = "bedrock"
FAMILIES: tuple[str, ...] = (OPENAI, OPENAI_COMPATIBLE, AZURE_OPENAI, ANTHROPIC, GEMINI, BEDROCK)

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
"""A provider name: lower-case letters, digits, ``_`` and ``-`` (no ``/`` or ``:``, which
address a model as ``provider/model`` or ``provider:model``)."""

USAGE_API_PROVIDERS = ("openai", "anthropic")
"""Provider names whose usage and cost Metis can read back (`metis.ingest.providers`);
every other provider reconciles on the gateway + plugin basis."""


@dataclass(frozen=True, slots=True)
class FamilyInfo:
    name: str
    wire: str  # openai | anthropic | gemini
    price_provider: str | None  # genai-prices provider id, None: none by default
    default_base_url: str | None
    default_name: str  # the provider name `--provider` infers this family from


_GOOGLE = "https://generativelanguage.googleapis.com"
_ANTHROPIC = "https://api.anthropic.com"
INFO: dict[str, FamilyInfo] = {
    OPENAI: FamilyInfo(OPENAI, "openai", "openai", "https://api.openai.com", "openai"),
    OPENAI_COMPATIBLE: FamilyInfo(OPENAI_COMPATIBLE, "openai", None, None, ""),
    AZURE_OPENAI: FamilyInfo(AZURE_OPENAI, "openai", "azure", None, "azure"),
    ANTHROPIC: FamilyInfo(ANTHROPIC, "anthropic", "anthropic", _ANTHROPIC, "anthropic"),
    GEMINI: FamilyInfo(GEMINI, "gemini", "google", _GOOGLE, "gemini"),
    BEDROCK: FamilyInfo(BEDROCK, "anthropic", "aws", None, "bedrock"),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Preset:
    """A named OpenAI-compatible provider: its public base URL and genai-prices id."""

    base_url: str
    price_provider: str | None


PRESETS: dict[str, Preset] = {
    "groq": Preset("https://api.groq.com/openai/v1", "groq"),
    "mistral": Preset("https://api.mistral.ai/v1", "mistral"),
    "deepseek": Preset("https://api.deepseek.com/v1", "deepseek"),
    "xai": Preset("https://api.x.ai/v1", "x-ai"),
    "openrouter": Preset("https://openrouter.ai/api/v1", "openrouter"),
    "together": Preset("https://api.together.xyz/v1", "together"),
    "fireworks": Preset("https://api.fireworks.ai/inference/v1", "fireworks"),
    "cerebras": Preset("https://api.cerebras.ai/v1", "cerebras"),
    "gemini-openai": Preset("https://generativelanguage.googleapis.com/v1beta/openai", "google"),
    "ollama": Preset("http://localhost:11434/v1", None),
    "vllm": Preset("http://localhost:8000/v1", None),
    "lmstudio": Preset("http://localhost:1234/v1", None),
}
"""OpenAI-compatible providers known by name (``--provider groq`` needs no ``--family`` or
``--base-url``). Self-hosted servers have no genai-prices id: price them in the prices
file (docs/providers.md)."""

AZURE_API_VERSION = "2024-10-21"
"""The Azure OpenAI data-plane API version used when a credential names none (GA)."""
AZURE_PATH_STYLES = ("deployments", "v1")
BEDROCK_APIS = ("auto", "converse", "invoke")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_AKID_RE = re.compile(r"^[A-Z0-9]{16,128}$")
_API_VERSION_RE = re.compile(r"^[A-Za-z0-9._-]{1,40}$")
_PRICE_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def infer_family(name: str, family: str | None) -> str:
    """The family of provider ``name``: ``family`` when given, else from the name."""
    if family is not None:
        if family not in FAMILIES:
            raise ValidationError(f"unknown --family {family!r}: use one of {', '.join(FAMILIES)}")
        if name in PRESETS and family != OPENAI_COMPATIBLE:
            raise ValidationError(
                f"--provider {name} is the OpenAI-compatible preset; pick another name "
                f"for a {family} credential"
            )
        for fam, info in INFO.items():
            if info.default_name == name and fam != family:
                raise ValidationError(
                    f"--provider {name} is reserved for the {fam} family; pick another name "
                    f"for a {family} credential"
                )
        return family
    if name in PRESETS:
        return OPENAI_COMPATIBLE
    for fam, info in INFO.items():
        if info.default_name and info.default_name == name:
            return fam
    raise ValidationError(
        f"provider {name!r} is not one Metis knows by name: give --family "
        f"({', '.join(FAMILIES)}), e.g. --family openai-compatible --base-url "
        "https://host/v1 for any OpenAI-compatible API"
    )


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValidationError(
            f"invalid --provider {name!r}: 1-40 lower-case letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def default_price_provider(name: str, family: str) -> str | None:
    """The genai-prices provider id of a credential that names none."""
    if family == OPENAI_COMPATIBLE:
        preset = PRESETS.get(name)
        return preset.price_provider if preset else None
    return INFO[family].price_provider


def check_price_provider(value: str | None) -> str | None:
    """``--price-provider``: a genai-prices provider id, or ``none`` (prices file only)."""
    if value is None:
        return None
    v = value.strip()
    if not _PRICE_ID_RE.match(v):
        raise ValidationError(f"invalid --price-provider {value!r}: a genai-prices provider id")
    if v == "none":
        return v
    from genai_prices import data_snapshot

    ids = sorted(p.id for p in data_snapshot.get_snapshot().providers)
    if v not in ids:
        raise ValidationError(
            f"unknown --price-provider {v!r}: genai-prices knows {', '.join(ids)} "
            "(or 'none' to price from the prices file only)"
        )
    return v


def normalize_base_url(family: str, url: str) -> str:
    """Check a base URL and normalize it for ``family`` (see the module table).

    openai / anthropic: the API root without ``/v1`` (a trailing ``/v1`` is removed);
    gemini: without its ``/v1beta`` or ``/v1``; azure-openai: without ``/openai`` (or
    ``/openai/v1``); openai-compatible: kept as given (the provider's own prefix, e.g.
    ``https://api.groq.com/openai/v1``); every one without a trailing slash.
    """
    u = url.strip()
    parts = urlsplit(u)
    if parts.scheme not in ("http", "https") or not parts.netloc or not parts.hostname:
        raise ValidationError(f"invalid --base-url {url!r}: use http(s)://host[:port][/path]")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValidationError(
            f"invalid --base-url {url!r}: no query, fragment or credentials allowed"
        )
    path = parts.path.rstrip("/")
    strip: tuple[str, ...] = ()
    if family in (OPENAI, ANTHROPIC):
        strip = ("/v1",)
    elif family == GEMINI:
        strip = ("/v1beta", "/v1")
    elif family == AZURE_OPENAI:
        strip = ("/openai/v1", "/openai")
    for s in strip:
        if path.endswith(s):
            path = path[: -len(s)]
            break
    return f"{parts.scheme}://{parts.netloc}{path}"


def default_base_url(name: str, family: str, options: dict[str, Any]) -> str | None:
    """The base URL of a credential that names none (None: it must give one)."""
    if family == OPENAI_COMPATIBLE:
        preset = PRESETS.get(name)
        return preset.base_url if preset else None
    if family == BEDROCK:
        region = options.get("region")
        return f"https://bedrock-runtime.{region}.amazonaws.com" if region else None
    return INFO[family].default_base_url


def check_options(
    family: str,
    *,
    api_version: str | None = None,
    path_style: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    bedrock_api: str | None = None,
) -> dict[str, Any]:
    """The family's options as stored (``provider_credentials.options``); errors name the flag."""
    given = {
        "--api-version": api_version,
        "--azure-path-style": path_style,
        "--region": region,
        "--aws-access-key-id": access_key_id,
        "--bedrock-api": bedrock_api,
    }
    allowed = {
        AZURE_OPENAI: {"--api-version", "--azure-path-style"},
        BEDROCK: {"--region", "--aws-access-key-id", "--bedrock-api"},
    }.get(family, set())
    for flag, v in given.items():
        if v is not None and flag not in allowed:
            raise ValidationError(f"{flag} does not apply to a {family} credential")
    out: dict[str, Any] = {}
    if family == AZURE_OPENAI:
        v = api_version or AZURE_API_VERSION
        if not _API_VERSION_RE.match(v):
            raise ValidationError(f"invalid --api-version {v!r}: e.g. {AZURE_API_VERSION}")
        style = path_style or "deployments"
        if style not in AZURE_PATH_STYLES:
            raise ValidationError(
                f"invalid --azure-path-style {style!r}: use deployments "
                "(/openai/deployments/<deployment>/…?api-version=…) or v1 (/openai/v1/…)"
            )
        out = {"api_version": v, "path_style": style}
    elif family == BEDROCK:
        if region is None or not _REGION_RE.match(region):
            raise ValidationError(
                "a bedrock credential needs --region (an AWS region such as us-east-1)"
                if region is None
                else f"invalid --region {region!r}: an AWS region such as us-east-1"
            )
        if access_key_id is None or not _AKID_RE.match(access_key_id):
            raise ValidationError(
                "a bedrock credential needs --aws-access-key-id (AKIA…/ASIA…); the secret "
                "access key is read from the prompt or stdin like any secret"
                if access_key_id is None
                else f"invalid --aws-access-key-id {access_key_id!r}: 16-128 upper-case "
                "letters and digits (AKIA…)"
            )
        api = bedrock_api or "auto"
        if api not in BEDROCK_APIS:
            raise ValidationError(
                f"invalid --bedrock-api {api!r}: auto (InvokeModel for Claude, Converse for "
                "the rest), converse or invoke"
            )
        out = {"region": region, "access_key_id": access_key_id, "api": api}
    return out


def split_address(model: str) -> tuple[str, str] | None:
    """``provider/model`` -> (provider, model) when the part before the first ``/`` is a
    valid provider name and the rest is not empty; else None (whether that provider is
    configured is for the caller to say)."""
    head, sep, rest = model.partition("/")
    if not sep or not rest or not NAME_RE.match(head):
        return None
    return head, rest
