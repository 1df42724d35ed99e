"""Provider-side identities the simulator derives from API keys.

Key formats (what the simulator accepts):

- OpenAI inference: any ``sk-…`` key that is not an admin key (``sk-proj-…`` is typical).
- OpenAI admin: ``sk-admin-…``.
- Anthropic inference: ``sk-ant-…`` that is not an admin key (``sk-ant-api03-…`` is typical).
- Anthropic admin: ``sk-ant-admin…`` (``sk-ant-admin01-…`` is typical).

Every inference key maps to stable provider-side ids derived from a SHA-256 of
the key, so the same key always shows up under the same ids in the admin
reports: OpenAI ``api_key_id = "key_" + 16 hex``, ``project_id = "proj_" + 12
hex``, ``user_id = "user-" + 12 hex``; Anthropic ``api_key_id = "apikey_01" +
22 hex``, ``workspace_id = "wrkspc_01" + 22 hex``. The key itself is never
stored or returned.
"""

import functools
import hashlib
import secrets

import msgspec


class KeyIdentity(msgspec.Struct, frozen=True):
    """Who a key is on the provider side (no secret inside)."""

    provider: str
    api_key_id: str
    project_id: str | None = None
    user_id: str | None = None
    workspace_id: str | None = None


def is_openai_admin(key: str) -> bool:
    return key.startswith("sk-admin-")


def is_anthropic_admin(key: str) -> bool:
    return key.startswith("sk-ant-admin")


def is_anthropic_key(key: str) -> bool:
    return key.startswith("sk-ant-") and not is_anthropic_admin(key)


def is_openai_key(key: str) -> bool:
    return (
        key.startswith("sk-")
        and not key.startswith("sk-ant-")
        and not is_openai_admin(key)
        and len(key) >= 8
    )


@functools.lru_cache(maxsize=65536)
def openai_identity(key: str) -> KeyIdentity:
    """Stable OpenAI ids of an inference key."""
    h = hashlib.sha256(b"openai:" + key.encode()).hexdigest()
    return KeyIdentity(
        provider="openai",
        api_key_id=f"key_{h[:16]}",
        project_id=f"proj_{h[16:28]}",
        user_id=f"user-{h[28:40]}",
    )


@functools.lru_cache(maxsize=65536)
def anthropic_identity(key: str) -> KeyIdentity:
    """Stable Anthropic ids of an inference key."""
    h = hashlib.sha256(b"anthropic:" + key.encode()).hexdigest()
    return KeyIdentity(
        provider="anthropic",
        api_key_id=f"apikey_01{h[:22]}",
        workspace_id=f"wrkspc_01{h[22:44]}",
    )


def new_openai_key() -> str:
    """A fresh OpenAI-style inference key (random; for tests and demos)."""
    return f"sk-proj-{secrets.token_urlsafe(32)}"


def new_openai_admin_key() -> str:
    return f"sk-admin-{secrets.token_urlsafe(32)}"


def new_anthropic_key() -> str:
    return f"sk-ant-api03-{secrets.token_urlsafe(32)}"


def new_anthropic_admin_key() -> str:
    return f"sk-ant-admin01-{secrets.token_urlsafe(32)}"
