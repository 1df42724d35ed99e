"""Provider credentials of a workspace: encrypted API keys or references to them.

A credential is a provider API key with purposes: ``inference`` (the gateway
forwards with it) and/or ``usage_admin`` (the sync reads the provider's usage
and cost reports with it; OpenAI and Anthropic only), and a mode: ``admin``
(an organization admin key) or ``standard`` (an ordinary key).

Its ``provider`` is the upstream's *name* (what usage records and model
addresses say: ``openai``, ``groq``, ``azure``, ``my-vllm`` …) and its
``family`` the API the gateway speaks to it (`metis.gateway.upstreams.catalog`:
openai, openai-compatible, azure-openai, anthropic, gemini, bedrock), with a
genai-prices ``price_provider`` and the family's non-secret ``options``
(Azure ``api_version``, Bedrock ``region`` and ``access_key_id`` …).

The secret is either sealed with AES-256-GCM (`metis.secrets.envelope`) or a
reference (``env:NAME`` / ``file:/path``, `metis.secrets.refs`) resolved when
used. Plaintext lives only in memory, in `reveal_secret`'s return value; only
the last four characters are ever stored in clear, for display.

``base_url`` is the upstream's base URL as its family reads it
(`metis.gateway.upstreams.catalog.normalize_base_url`: OpenAI and Anthropic
without ``/v1``; an OpenAI-compatible provider's with its own prefix, e.g.
``https://api.groq.com/openai/v1``). ``None`` means the family's or preset's
public URL; `api_root` gives the effective one.
"""

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal

import msgspec
from sqlalchemy import Connection, select, update

from metis.config import Settings
from metis.db.tables import provider_credentials
from metis.errors import NotFoundError, ValidationError
from metis.gateway.upstreams import catalog
from metis.ids import new_id
from metis.ledger import versions
from metis.secrets.envelope import Sealed, open_secret, seal
from metis.secrets.keyring import load_keyring
from metis.secrets.master_key import load_master_key
from metis.secrets.refs import SecretRefError, SecretRefRefused, parse_ref, resolve_ref
from metis.timeutil import utcnow

Purpose = Literal["inference", "usage_admin"]
Mode = Literal["admin", "standard"]

PURPOSES: tuple[str, ...] = ("inference", "usage_admin")
MODES: tuple[str, ...] = ("admin", "standard")
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")

STANDARD_USAGE_REFUSAL = (
    "--mode standard cannot have --purpose usage_admin: {provider} has no per-key usage "
    "endpoint for standard API keys, only the organization usage/cost API, which needs an "
    "admin key ({hint}); add the key with --mode admin, or use --purpose inference"
)
_ADMIN_HINTS = {"openai": "sk-admin-…", "anthropic": "sk-ant-admin…"}


class Credential(msgspec.Struct, frozen=True, kw_only=True):
    """A stored credential, without its secret."""

    id: str
    workspace_id: str
    provider: str
    mode: str
    org_id: str | None
    project_id: str | None
    base_url: str | None
    family: str
    price_provider: str | None
    options: dict[str, object]
    purposes: tuple[str, ...]
    last4: str | None
    secret_ref: str | None
    master_key_id: str | None
    created_at: datetime
    removed_at: datetime | None = None

    @property
    def api_root(self) -> str:
        """The effective base URL (the configured one or the family's / preset's public one)."""
        root = self.base_url or catalog.default_base_url(self.provider, self.family, self.options)
        return root or ""

    @property
    def effective_price_provider(self) -> str | None:
        """The genai-prices provider id pricing this upstream (None: prices file only)."""
        p = self.price_provider or catalog.default_price_provider(self.provider, self.family)
        return None if p == "none" else p


def normalize_base_url(url: str, family: str = catalog.OPENAI) -> str:
    """Check and normalize a base URL for ``family`` (`catalog.normalize_base_url`)."""
    return catalog.normalize_base_url(family, url)


def _last4(secret: str) -> str:
    return secret[-4:] if len(secret) >= 8 else "…"


def _row_to_credential(r: dict[str, object]) -> Credential:
    purposes = tuple(
        p
        for p, flag in (
            ("inference", r["purpose_inference"]),
            ("usage_admin", r["purpose_usage_admin"]),
        )
        if flag
    )
    return Credential(
        id=str(r["id"]),
        workspace_id=str(r["workspace_id"]),
        provider=str(r["provider"]),
        mode=str(r["mode"]),
        org_id=r["org_id"],  # type: ignore[arg-type]
        project_id=r["project_id"],  # type: ignore[arg-type]
        base_url=r["base_url"],  # type: ignore[arg-type]
        family=str(r["family"] or r["provider"]),
        price_provider=r["price_provider"],  # type: ignore[arg-type]
        options=dict(r["options"] or {}),  # type: ignore[call-overload]
        purposes=purposes,
        last4=r["last4"],  # type: ignore[arg-type]
        secret_ref=r["secret_ref"],  # type: ignore[arg-type]
        master_key_id=r["master_key_id"],  # type: ignore[arg-type]
        created_at=r["created_at"],  # type: ignore[arg-type]
        removed_at=r["removed_at"],  # type: ignore[arg-type]
    )


_COLS = [c for c in provider_credentials.c if c.name not in ("ciphertext", "nonce")]


def validate_request(
    provider: str, purposes: Sequence[str], mode: str | None, family: str | None = None
) -> tuple[str, str, tuple[str, ...], str]:
    """Check provider/family/purposes/mode; returns (provider, family, purposes, mode)
    normalized (family inferred from the name, mode defaulted)."""
    catalog.check_name(provider)
    fam = catalog.infer_family(provider, family)
    if not purposes:
        raise ValidationError("give at least one --purpose (inference or usage_admin)")
    for p in purposes:
        if p not in PURPOSES:
            raise ValidationError(f"unknown purpose {p!r}: use inference or usage_admin")
    ps = tuple(p for p in PURPOSES if p in purposes)
    m = mode or ("admin" if "usage_admin" in ps else "standard")
    if m not in MODES:
        raise ValidationError(f"unknown mode {m!r}: use admin or standard")
    if "usage_admin" in ps and (
        provider not in catalog.USAGE_API_PROVIDERS or fam != catalog.INFO[provider].name
    ):
        raise ValidationError(
            f"--purpose usage_admin: Metis reads usage and cost reports from OpenAI and "
            f"Anthropic only (providers 'openai' and 'anthropic'); {provider} ({fam}) calls "
            "are reconciled on what the gateway and plugins record: add it with "
            "--purpose inference"
        )
    if m == "standard" and "usage_admin" in ps:
        raise ValidationError(
            STANDARD_USAGE_REFUSAL.format(provider=provider, hint=_ADMIN_HINTS[provider])
        )
    return provider, fam, ps, m


def add_credential(
    conn: Connection,
    settings: Settings,
    *,
    workspace_id: str,
    provider: str,
    purposes: Sequence[str],
    mode: str | None = None,
    secret: str | None = None,
    secret_ref: str | None = None,
    org_id: str | None = None,
    project_id: str | None = None,
    base_url: str | None = None,
    family: str | None = None,
    price_provider: str | None = None,
    options: dict[str, object] | None = None,
) -> Credential:
    """Store a credential: exactly one of ``secret`` (sealed) or ``secret_ref``.

    ``options`` are the family's settings as `catalog.check_options` returns them
    (checked again here); ``price_provider`` a genai-prices id or ``none``."""
    provider, fam, ps, m = validate_request(provider, purposes, mode, family)
    opts = catalog.check_options(fam, **_option_kwargs(options or {}))
    pp = catalog.check_price_provider(price_provider)
    if (secret is None) == (secret_ref is None):
        raise ValidationError("give either a secret (prompt/stdin) or --secret-ref, not both")
    for name, v in (("--org-id", org_id), ("--project-id", project_id)):
        if v is not None and not _ID_RE.match(v):
            raise ValidationError(f"invalid {name} {v!r}: letters, digits, '_' and '-' only")
    root = normalize_base_url(base_url, fam) if base_url else None
    if root is None and catalog.default_base_url(provider, fam, opts) is None:
        raise ValidationError(
            f"a {fam} credential named {provider!r} needs --base-url"
            + (
                " (https://<resource>.openai.azure.com)"
                if fam == catalog.AZURE_OPENAI
                else " (the provider's OpenAI-compatible base URL, e.g. https://host/v1)"
            )
        )
    cid = new_id("cred")
    values: dict[str, object] = {
        "id": cid,
        "workspace_id": workspace_id,
        "provider": provider,
        "purpose_inference": "inference" in ps,
        "purpose_usage_admin": "usage_admin" in ps,
        "mode": m,
        "org_id": org_id,
        "project_id": project_id,
        "base_url": root,
        "family": fam,
        "price_provider": pp,
        "options": opts or None,
        "created_at": utcnow(),
    }
    if secret is not None:
        secret = secret.strip()
        if not secret:
            raise ValidationError("the secret is empty")
        if any(ch.isspace() for ch in secret):
            raise ValidationError("the secret contains whitespace; paste the key alone")
        sealed = seal(
            load_master_key(settings), secret, credential_id=cid, workspace_id=workspace_id
        )
        values.update(
            ciphertext=sealed.ciphertext,
            nonce=sealed.nonce,
            master_key_id=sealed.key_id,
            last4=_last4(secret),
        )
    else:
        assert secret_ref is not None
        ref = parse_ref(secret_ref)
        try:
            last4: str | None = _last4(resolve_ref(ref))
        except SecretRefRefused:
            raise  # the file exists but breaks the policy: refuse it now, not at first use
        except SecretRefError:
            # The reference may only resolve in the server's environment.
            last4 = None
        values.update(secret_ref=str(ref), last4=last4)
    conn.execute(provider_credentials.insert().values(**values))
    versions.bump(conn, "credentials")  # gateways drop their cached secrets
    return get_credential(conn, cid)


_OPTION_FLAGS = {
    "api_version": "api_version",
    "path_style": "path_style",
    "region": "region",
    "access_key_id": "access_key_id",
    "api": "bedrock_api",
}


def _option_kwargs(options: dict[str, object]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for k, v in options.items():
        if k not in _OPTION_FLAGS:
            raise ValidationError(f"unknown credential option {k!r}")
        out[_OPTION_FLAGS[k]] = None if v is None else str(v)
    return out


def get_credential(
    conn: Connection, credential_id: str, *, include_removed: bool = False
) -> Credential:
    """One credential by id; `NotFoundError` if unknown (or removed)."""
    row = (
        conn.execute(select(*_COLS).where(provider_credentials.c.id == credential_id))
        .mappings()
        .first()
    )
    if row is None or (row["removed_at"] is not None and not include_removed):
        raise NotFoundError(f"unknown credential {credential_id!r} (see `metis provider-key list`)")
    return _row_to_credential(dict(row))


def list_credentials(
    conn: Connection,
    *,
    workspace_id: str | None = None,
    provider: str | None = None,
    purpose: str | None = None,
    include_removed: bool = False,
) -> list[Credential]:
    """Credentials, oldest first, filtered as asked."""
    q = select(*_COLS).order_by(provider_credentials.c.created_at, provider_credentials.c.id)
    if workspace_id is not None:
        q = q.where(provider_credentials.c.workspace_id == workspace_id)
    if provider is not None:
        q = q.where(provider_credentials.c.provider == provider)
    if purpose == "inference":
        q = q.where(provider_credentials.c.purpose_inference.is_(True))
    elif purpose == "usage_admin":
        q = q.where(provider_credentials.c.purpose_usage_admin.is_(True))
    elif purpose is not None:
        raise ValidationError(f"unknown purpose {purpose!r}")
    if not include_removed:
        q = q.where(provider_credentials.c.removed_at.is_(None))
    return [_row_to_credential(dict(r)) for r in conn.execute(q).mappings()]


def find_credential(
    conn: Connection, workspace_id: str, provider: str, purpose: str
) -> Credential | None:
    """The newest active credential of a workspace for ``provider`` and ``purpose``."""
    found = list_credentials(conn, workspace_id=workspace_id, provider=provider, purpose=purpose)
    return found[-1] if found else None


def remove_credential(conn: Connection, credential_id: str) -> Credential:
    """Remove a credential: the ciphertext is wiped, the row kept (runs refer to it)."""
    cred = get_credential(conn, credential_id)
    conn.execute(
        update(provider_credentials)
        .where(provider_credentials.c.id == credential_id)
        .values(removed_at=utcnow(), ciphertext=None, nonce=None, secret_ref=None)
    )
    versions.bump(conn, "credentials")  # gateways drop their cached secrets
    return get_credential(conn, cred.id, include_removed=True)


def reveal_secret(conn: Connection, settings: Settings, credential_id: str) -> str:
    """The plaintext secret of an active credential; keep it in memory only.

    Raises `NotFoundError`, `metis.secrets.envelope.DecryptionError` (wrong key,
    tampering) or `metis.secrets.refs.SecretRefError`.
    """
    row = (
        conn.execute(select(provider_credentials).where(provider_credentials.c.id == credential_id))
        .mappings()
        .first()
    )
    if row is None or row["removed_at"] is not None:
        raise NotFoundError(f"unknown credential {credential_id!r}")
    if row["secret_ref"]:
        return resolve_ref(row["secret_ref"])
    if row["ciphertext"] is None or row["nonce"] is None or row["master_key_id"] is None:
        raise NotFoundError(f"credential {credential_id} has no stored secret")
    return open_secret(
        load_keyring(settings),
        Sealed(bytes(row["ciphertext"]), bytes(row["nonce"]), row["master_key_id"]),
        credential_id=row["id"],
        workspace_id=row["workspace_id"],
    )


def purposes_of(values: Iterable[str]) -> tuple[str, ...]:
    """Normalize repeated ``--purpose`` values (order, duplicates)."""
    vs = set(values)
    return tuple(p for p in PURPOSES if p in vs) + tuple(sorted(vs - set(PURPOSES)))
