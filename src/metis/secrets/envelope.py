"""AES-256-GCM envelope for provider credentials.

Each secret is sealed with the master key under a fresh random 12-byte nonce.
The associated data binds the ciphertext to its credential id and workspace
id, so a ciphertext copied onto another row (or another workspace) does not
decrypt. The id of the master key that sealed it is stored next to it, which
lets rotation tell old ciphertexts from new ones and lets `open_secret` pick
the right key from a keyring.

Any failure to open (wrong key, tampered ciphertext, nonce or binding) raises
`DecryptionError`, a `MetisError` whose message names the credential and never
contains key material or plaintext.
"""

import os
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from metis.errors import MetisError
from metis.secrets.master_key import MasterKey

NONCE_BYTES = 12
_AAD_PREFIX = b"metis-provider-credential-v1"


class DecryptionError(MetisError):
    """A stored secret could not be decrypted (wrong master key or tampered data)."""


@dataclass(frozen=True)
class Sealed:
    """A sealed secret as stored: ciphertext (with GCM tag), nonce, sealing key id."""

    ciphertext: bytes
    nonce: bytes
    key_id: str

    def __repr__(self) -> str:
        return f"Sealed(key_id={self.key_id!r}, {len(self.ciphertext)} bytes)"


def associated_data(credential_id: str, workspace_id: str) -> bytes:
    """The AAD binding a ciphertext to its credential and workspace."""
    return b"\x00".join((_AAD_PREFIX, credential_id.encode("utf-8"), workspace_id.encode("utf-8")))


def seal(key: MasterKey, plaintext: str, *, credential_id: str, workspace_id: str) -> Sealed:
    """Encrypt ``plaintext`` for the given credential with a fresh nonce."""
    nonce = os.urandom(NONCE_BYTES)
    ct = AESGCM(key.key).encrypt(
        nonce, plaintext.encode("utf-8"), associated_data(credential_id, workspace_id)
    )
    return Sealed(ct, nonce, key.key_id)


def open_secret(
    keys: MasterKey | Iterable[MasterKey],
    sealed: Sealed,
    *,
    credential_id: str,
    workspace_id: str,
) -> str:
    """Decrypt ``sealed`` with the key whose id it names (from ``keys``).

    Raises `DecryptionError` when no configured key has that id, or when the
    ciphertext, nonce or binding were altered.
    """
    ring = [keys] if isinstance(keys, MasterKey) else list(keys)
    key = next((k for k in ring if k.key_id == sealed.key_id), None)
    if key is None:
        have = ", ".join(k.key_id for k in ring) or "none"
        raise DecryptionError(
            f"credential {credential_id} was encrypted with master key id {sealed.key_id}, "
            f"but the configured master key id is {have}: restore that master key "
            "(METIS_MASTER_KEY or $METIS_HOME/master.key)"
        )
    if len(sealed.nonce) != NONCE_BYTES:
        raise DecryptionError(
            f"credential {credential_id}: stored nonce is corrupt; re-add the credential"
        )
    try:
        pt = AESGCM(key.key).decrypt(
            sealed.nonce, sealed.ciphertext, associated_data(credential_id, workspace_id)
        )
    except InvalidTag:
        raise DecryptionError(
            f"credential {credential_id}: decryption failed, the stored ciphertext was "
            "tampered with or does not belong to this credential/workspace; re-add the credential"
        ) from None
    return pt.decode("utf-8")
