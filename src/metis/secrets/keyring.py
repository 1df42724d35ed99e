"""The master keys a process can decrypt with, and master-key rotation.

Encryption always uses the configured master key (`load_master_key`).
Decryption picks the key by the id stored with each ciphertext from the
*keyring*: the configured key plus, when present, ``$METIS_HOME/master.key.next``.
That file exists only during/after a rotation (see `rotate_master_key`), so a
crash between committing the re-encrypted rows and installing the new key, or
a deployment that has not yet switched ``METIS_MASTER_KEY``, still decrypts.

Rotation design (``metis secrets rotate-master-key``):

1. A new key is generated and written to ``master.key.next`` (0600) *before*
   anything in the database changes.
2. Every stored ciphertext is re-encrypted with the new key in ONE
   transaction (all or nothing).
3. File mode (no ``METIS_MASTER_KEY``): ``master.key.next`` atomically
   replaces ``master.key``; the old key is gone.
   Env mode (``METIS_MASTER_KEY`` set): Metis cannot change the environment,
   so ``master.key.next`` is kept and the operator is told to set
   ``METIS_MASTER_KEY`` to its contents and then delete the file. Until then
   the keyring keeps decrypting through the file.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, select, update

from metis.config import Settings
from metis.db.tables import provider_credentials
from metis.errors import ConfigError
from metis.secrets.envelope import Sealed, open_secret, seal
from metis.secrets.master_key import (
    MasterKey,
    decode_key,
    generate_key_text,
    load_master_key,
    master_key_path,
    write_key_file,
)


def next_key_path(settings: Settings) -> Path:
    """Where a rotation puts the new key before it is installed."""
    return settings.home / "master.key.next"


def load_keyring(settings: Settings) -> list[MasterKey]:
    """The configured key first, then ``master.key.next`` if it exists."""
    ring = [load_master_key(settings)]
    nxt = next_key_path(settings)
    if nxt.exists():
        k = decode_key(nxt.read_text(), origin=str(nxt))
        if k.key_id != ring[0].key_id:
            ring.append(k)
    return ring


@dataclass(frozen=True)
class RotationReport:
    old_key_ids: tuple[str, ...]
    new_key_id: str
    reencrypted: int
    env_mode: bool
    new_key_file: Path


def _key_from_next_or_new(settings: Settings, ring: list[MasterKey]) -> MasterKey:
    """Reuse a pending ``master.key.next`` (an unfinished rotation) or make a new key."""
    nxt = next_key_path(settings)
    if nxt.exists():
        pending = decode_key(nxt.read_text(), origin=str(nxt))
        if pending.key_id != ring[0].key_id:
            return pending
    text = generate_key_text()
    write_key_file(nxt, text)
    return decode_key(text, origin=str(nxt))


def rotate_master_key(conn: Connection, settings: Settings) -> RotationReport:
    """Re-encrypt every stored credential with a new master key (see module doc).

    ``conn`` must be in a transaction the caller commits; call `finish_rotation`
    after the commit.
    """
    ring = load_keyring(settings)
    new = _key_from_next_or_new(settings, ring)
    ring_all = [*ring, new]
    rows = conn.execute(
        select(
            provider_credentials.c.id,
            provider_credentials.c.workspace_id,
            provider_credentials.c.ciphertext,
            provider_credentials.c.nonce,
            provider_credentials.c.master_key_id,
        ).where(provider_credentials.c.ciphertext.is_not(None))
    ).all()
    old_ids: set[str] = set()
    n = 0
    for cid, ws, ct, nonce, kid in rows:
        if kid == new.key_id:
            continue
        old_ids.add(kid)
        plaintext = open_secret(
            ring_all, Sealed(bytes(ct), bytes(nonce), kid), credential_id=cid, workspace_id=ws
        )
        s = seal(new, plaintext, credential_id=cid, workspace_id=ws)
        del plaintext
        conn.execute(
            update(provider_credentials)
            .where(provider_credentials.c.id == cid)
            .values(ciphertext=s.ciphertext, nonce=s.nonce, master_key_id=s.key_id)
        )
        n += 1
    return RotationReport(
        old_key_ids=tuple(sorted(old_ids)) or (ring[0].key_id,),
        new_key_id=new.key_id,
        reencrypted=n,
        env_mode=settings.master_key is not None,
        new_key_file=next_key_path(settings),
    )


def finish_rotation(settings: Settings, report: RotationReport) -> None:
    """After the commit: install the new key file (file mode), keep it (env mode)."""
    if report.env_mode:
        return
    nxt = next_key_path(settings)
    if not nxt.exists():  # pragma: no cover - written by rotate_master_key
        raise ConfigError(
            f"{nxt} vanished during rotation; the database uses key {report.new_key_id}"
        )
    os.replace(nxt, master_key_path(settings))
