"""In-memory gateway-key cache: resolving a known key costs no database round trip.

The cache holds every key's `KeySnapshot` (from
`metis.identity.auth.load_key_snapshots`, keyed by the secret's SHA-256) and
is replaced wholesale when the ``identity`` configuration version moves.
`KeyCache.run` polls that version every `POLL_INTERVAL_S` (0.5 s), so a
revoke, a disable or a cap change reaches every gateway process within about
half a second plus one reload (tested to be under one second).

A key issued since the last reload is not in the cache yet: `authenticate`
looks an unknown well-formed ``gw_`` token up in the database once (one
indexed read, in a worker thread) and caches what it finds, so a new key
works on its very first request. Tokens found nowhere go to a bounded
negative cache (`NEGATIVE_MAX` digests, each for `NEGATIVE_TTL_S`, emptied at
every reload because a reload is when a new key can appear), and at most
`MISS_CONCURRENCY` lookups run at once, so a flood of bad keys costs a
dictionary lookup each once seen, and never more than a few concurrent
database reads. `invalidate_user` drops a user's keys at once in this
process (``POST /analytics/user/{id}/forget``); other processes follow at
their next poll.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from metis.ledger import versions

POLL_INTERVAL_S = 0.5
NEGATIVE_TTL_S = 30.0
"""How long a digest found nowhere is answered from memory (a reload empties the cache)."""
NEGATIVE_MAX = 10_000
"""Most digests the negative cache holds (least recently seen dropped first)."""
MISS_CONCURRENCY = 2
"""Most database lookups of unknown tokens at once, per process."""
MAX_TOKEN_LEN = 512
log = logging.getLogger("metis.gateway.auth")

SnapshotLoader = Callable[[Connection], dict[str, Any]]
SnapshotLookup = Callable[[Connection, str], Any | None]

_caches: weakref.WeakSet[KeyCache] = weakref.WeakSet()


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


def _default_lookup(conn: Connection, digest: str) -> Any | None:
    from metis.identity.auth import load_key_snapshot

    return load_key_snapshot(conn, digest)


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


def invalidate_user(user_id: str) -> int:
    """Drop every cached key of ``user_id`` in every key cache of this process.

    Their next request misses the cache and is looked up in the database,
    where the caller has just revoked them. Returns how many entries went.
    """
    return sum(c.drop_user(user_id) for c in list(_caches))


@dataclass(eq=False)
class KeyCache:
    """Every gateway key of the installation, by secret hash."""

    engine: Engine
    loader: SnapshotLoader = _default_loader
    poll_interval_s: float = POLL_INTERVAL_S
    watch: tuple[str, ...] = ("identity",)
    on_change: list[Callable[[], None]] = field(default_factory=list)
    companions: list[Companion] = field(default_factory=list)
    lookup: SnapshotLookup | None = None
    """One key by digest on a cache miss (default: `load_key_snapshot`, or ``loader``'s
    answer when a custom loader is given)."""
    _by_hash: dict[str, Resolved] = field(default_factory=dict)
    _versions: tuple[int, ...] = ()
    _negative: OrderedDict[str, float] = field(default_factory=OrderedDict)
    _misses: asyncio.Semaphore | None = None
    reloads: int = 0
    miss_lookups: int = 0

    def __post_init__(self) -> None:
        _caches.add(self)

    def resolve(self, token: str) -> Resolved:
        """The cached key's snapshot and principal; raises `AuthFailure` (no I/O)."""
        r = self._by_hash.get(hashlib.sha256(token.encode()).hexdigest())
        if r is None:
            raise AuthFailure("invalid API key")
        return self._check(r)

    def cached(self, token: str) -> Resolved | None:
        """The key when this process has it cached (revoked/disabled: `AuthFailure`), else
        None: the hot path, one hash and one dict lookup, no database and no throttle."""
        r = self._by_hash.get(hashlib.sha256(token.encode()).hexdigest())
        return None if r is None else self._check(r)

    async def authenticate(self, token: str) -> Resolved:
        """`resolve`, looking a key not cached yet up in the database (see module doc)."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        r = self._by_hash.get(digest)
        if r is None:
            r = await self._miss(token, digest)
        return self._check(r)

    @staticmethod
    def _check(r: Resolved) -> Resolved:
        s = r.snapshot
        if s.revoked:
            raise AuthFailure("API key revoked")
        if s.user_disabled:
            raise AuthFailure("user disabled")
        if s.team_disabled:
            raise AuthFailure("team disabled")
        return r

    async def _miss(self, token: str, digest: str) -> Resolved:
        if not token.startswith("gw_") or len(token) > MAX_TOKEN_LEN:
            raise AuthFailure("invalid API key")
        now = time.monotonic()
        seen = self._negative.get(digest)
        if seen is not None:
            if now - seen < NEGATIVE_TTL_S:
                self._negative.move_to_end(digest)
                raise AuthFailure("invalid API key")
            del self._negative[digest]
        if self._misses is None:
            self._misses = asyncio.Semaphore(MISS_CONCURRENCY)
        async with self._misses:
            cached = self._by_hash.get(digest)  # a reload or another lookup found it meanwhile
            if cached is not None:
                return cached
            generation = self.reloads
            self.miss_lookups += 1
            try:
                snap = await asyncio.to_thread(self._lookup_one, digest)
            except DBAPIError:
                # Known keys keep working from memory; one issued during the outage
                # cannot be checked (docs/gateway.md "When the database is unavailable").
                log.warning("key lookup failed: database unavailable")
                raise AuthFailure(
                    "API key not known to this gateway yet and the database is unavailable"
                ) from None
        if snap is None:
            if self.reloads == generation:
                self._negative[digest] = now
                while len(self._negative) > NEGATIVE_MAX:
                    self._negative.popitem(last=False)
            raise AuthFailure("invalid API key")
        r = Resolved(snap, _principal(snap))
        if self.reloads == generation:  # never put a pre-reload read into a newer map
            self._by_hash[digest] = r
        return r

    def _lookup_one(self, digest: str) -> Any | None:
        with self.engine.connect() as conn:
            if self.lookup is not None:
                return self.lookup(conn, digest)
            if self.loader is _default_loader:
                return _default_lookup(conn, digest)
            return self.loader(conn).get(digest)

    def drop_user(self, user_id: str) -> int:
        """Forget this cache's keys of ``user_id`` (see `invalidate_user`)."""
        gone = [h for h, r in self._by_hash.items() if r.snapshot.user_id == user_id]
        for h in gone:
            self._by_hash.pop(h, None)
        return len(gone)

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
        self._negative.clear()  # a reload is when a key unknown so far can appear
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
