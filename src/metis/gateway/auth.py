"""In-memory gateway-key cache: resolving a key costs no database round trip.

The cache holds every key's `KeySnapshot` (from
`metis.identity.auth.load_key_snapshots`, keyed by the secret's SHA-256) and
is replaced wholesale when the ``identity`` configuration version moves.
`KeyCache.run` polls that version every `POLL_INTERVAL_S` (0.5 s), so a
revoke, a disable or a cap change reaches every gateway process within about
half a second plus one reload (tested to be under one second).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Connection, Engine

from metis.ledger import versions

POLL_INTERVAL_S = 0.5
log = logging.getLogger("metis.gateway.auth")

SnapshotLoader = Callable[[Connection], dict[str, Any]]


class Companion(Protocol):
    """Other configuration the gateway keeps in memory and reloads with the keys (same
    versions, same transaction), e.g. `metis.gateway.upstreams.directory.ProviderDirectory`."""

    def read(self, conn: Connection) -> Any:
        """Read it (in a worker thread)."""
        ...

    def install(self, data: Any) -> None:
        """Replace the in-memory copy (on the event loop, before the keys' callbacks run)."""
        ...


def _default_loader(conn: Connection) -> dict[str, Any]:
    from metis.identity.auth import load_key_snapshots

    return load_key_snapshots(conn)


class AuthFailure(Exception):
    """The key is unknown, revoked, or belongs to a disabled user/team (401)."""


@dataclass
class Resolved:
    """A resolved key: its snapshot and the request-scoped principal."""

    snapshot: Any
    principal: Any


def _principal(snap: Any) -> Any:
    try:
        from metis.identity.auth import Principal
    except ImportError:  # pragma: no cover - identity always present in the product
        return snap
    return Principal(
        user_id=snap.user_id,
        team_id=snap.team_id,
        workspace_id=snap.workspace_id,
        workspace_path=snap.workspace_path,
        gateway_key_id=snap.key_id,
    )


@dataclass
class KeyCache:
    """Every gateway key of the installation, by secret hash."""

    engine: Engine
    loader: SnapshotLoader = _default_loader
    poll_interval_s: float = POLL_INTERVAL_S
    watch: tuple[str, ...] = ("identity",)
    on_change: list[Callable[[], None]] = field(default_factory=list)
    companions: list[Companion] = field(default_factory=list)
    _by_hash: dict[str, Resolved] = field(default_factory=dict)
    _versions: tuple[int, ...] = ()
    reloads: int = 0

    def resolve(self, token: str) -> Resolved:
        """The key's snapshot and principal; raises `AuthFailure` (no I/O)."""
        r = self._by_hash.get(hashlib.sha256(token.encode()).hexdigest())
        if r is None:
            raise AuthFailure("invalid API key")
        s = r.snapshot
        if s.revoked:
            raise AuthFailure("API key revoked")
        if s.user_disabled:
            raise AuthFailure("user disabled")
        if s.team_disabled:
            raise AuthFailure("team disabled")
        return r

    def _load(self) -> tuple[tuple[int, ...], dict[str, Any], list[Any]]:
        with self.engine.connect() as conn:
            vs = tuple(versions.read(conn, n) for n in self.watch)
            snaps = self.loader(conn)
            extra = [c.read(conn) for c in self.companions]
        return vs, snaps, extra

    def _read_versions(self) -> tuple[int, ...]:
        with self.engine.connect() as conn:
            return tuple(versions.read(conn, n) for n in self.watch)

    def _install(
        self, vs: tuple[int, ...], snaps: dict[str, Any], extra: list[Any] | None = None
    ) -> None:
        self._by_hash = {h: Resolved(s, _principal(s)) for h, s in snaps.items()}
        for c, data in zip(self.companions, extra or [], strict=False):
            c.install(data)
        self._versions = vs
        self.reloads += 1
        for cb in self.on_change:
            cb()

    async def load(self) -> None:
        """Load all keys now (startup)."""
        self._install(*await asyncio.to_thread(self._load))

    async def poll_once(self) -> bool:
        """Reload if a watched version moved; True when it reloaded."""
        vs = await asyncio.to_thread(self._read_versions)
        if vs == self._versions:
            return False
        self._install(*await asyncio.to_thread(self._load))
        return True

    async def run(self) -> None:
        """Poll forever (a background task of the server)."""
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.poll_once()
            except Exception:
                log.warning(
                    "key cache refresh failed; serving the previous snapshot", exc_info=True
                )
