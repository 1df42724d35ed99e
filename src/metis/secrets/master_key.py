"""The master key that encrypts provider credentials.

Taken from ``METIS_MASTER_KEY`` (base64 of 32 bytes) when set, otherwise from
``$METIS_HOME/master.key``, which `ensure_master_key` creates with mode 0600.
The key id is a short hash of the key, so ciphertexts name the key that made
them and rotation can tell old from new.
"""

import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from metis.config import Settings
from metis.errors import ConfigError

KEY_BYTES = 32


@dataclass(frozen=True)
class MasterKey:
    """A 256-bit key and its id. The repr never shows the key."""

    key: bytes
    key_id: str

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r})"


def key_id_for(key: bytes) -> str:
    """A non-secret identifier of a key (first 16 hex chars of a domain-separated hash)."""
    return hashlib.sha256(b"metis-master-key-id:" + key).hexdigest()[:16]


def decode_key(text: str, *, origin: str) -> MasterKey:
    """Decode base64 key text; ``origin`` names where it came from in errors."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{origin} is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise ConfigError(f"{origin} must decode to {KEY_BYTES} bytes, got {len(raw)}")
    return MasterKey(raw, key_id_for(raw))


def generate_key_text() -> str:
    """A fresh random key, base64-encoded."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def master_key_path(settings: Settings) -> Path:
    return settings.home / "master.key"


def write_key_file(path: Path, text: str) -> None:
    """Write key text to ``path`` atomically with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a stale temp file from a crashed run keeps its old mode otherwise
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


def ensure_master_key(settings: Settings) -> bool:
    """Create ``master.key`` (0600) unless a key is configured; True if created."""
    if settings.master_key is not None:
        return False
    path = master_key_path(settings)
    if path.exists():
        return False
    write_key_file(path, generate_key_text())
    return True


def load_master_key(settings: Settings) -> MasterKey:
    """The configured master key; `ConfigError` when there is none or it is malformed."""
    if settings.master_key is not None:
        return decode_key(settings.master_key.get_secret_value(), origin="METIS_MASTER_KEY")
    path = master_key_path(settings)
    if not path.exists():
        raise ConfigError(
            f"no master key: set METIS_MASTER_KEY or run `metis init` to create {path}"
        )
    return decode_key(path.read_text(), origin=str(path))
