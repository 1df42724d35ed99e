"""Failed-authentication throttling, per client address and per credential prefix.

Wrong guesses are counted; valid credentials never are. Before checking a
credential, a surface asks `FailureThrottle.retry_after` for the request's
keys (`FailureThrottle.keys`: the client address, and the credential's first
`PREFIX_CHARS` characters); when one of them is over its limit it answers
**429 with Retry-After without checking the credential at all**, so a guesser
learns nothing while throttled, not even whether a guess was right. After a
failed check it calls `FailureThrottle.failed`.

What that means for a valid credential: it is never slowed by its own use,
nor by failures from other addresses, unless those failures used its own
first `PREFIX_CHARS` characters (someone who knows its display prefix is
guessing the rest: the prefix limit then holds it for everyone, up to the
window after the guessing stops). A valid credential sent from an address
that is itself throttled waits too.

The limit is a GCRA token bucket per key (`Policy`): ``limit`` failures may
come at once, then one per ``window_s / limit`` seconds; Retry-After says
when the next attempt will be looked at. State is one float per key in a
`cachetools.TTLCache` of at most ``max_keys`` keys (least recently used
evicted first), so a flood of distinct addresses takes bounded memory; keys
idle for two windows expire.

The state is per process (in memory, not in the database): with N server
processes a guesser gets at most N × ``limit`` failures per window and key.
The surfaces: the dashboard login, the admin/analytics/export API, the push
API (``mit_`` tokens) and the cron trigger (`metis.analytics.deps`); the
gateway's auth failure path uses the same `FailureThrottle` (one per process,
``Components.throttle``).
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TTLCache

PREFIX_CHARS = 8
"""Characters of a presented credential that key the prefix limit (``mta_`` + 4, ``gw_`` + 5)."""


@dataclass(frozen=True)
class Policy:
    """``limit`` failures per ``window_s`` per key; ``limit == 0`` turns the throttle off."""

    limit: int = 20
    prefix_limit: int = 50
    window_s: float = 60.0
    max_keys: int = 100_000


def address_key(host: str | None) -> str:
    """The throttle key of a client address: IPv4 as is, IPv6 by its /64 (one subscriber)."""
    if not host:
        return "addr:?"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "addr:" + host[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"addr:{ip.ipv4_mapped}"
        return f"addr:{ipaddress.IPv6Network((ip, 64), strict=False)}"
    return f"addr:{ip}"


class FailureThrottle:
    """Per-key failure counters (thread-safe); see the module docstring."""

    def __init__(self, policy: Policy | None = None, clock: Callable[[], float] | None = None):
        self.policy = policy or Policy()
        self._clock = clock or time.monotonic
        self._tat: TTLCache[str, float] = TTLCache(
            maxsize=self.policy.max_keys,
            ttl=2 * self.policy.window_s,
            timer=self._clock,
        )
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.policy.limit > 0

    def keys(self, address: str | None, credential: str | None) -> tuple[str, ...]:
        """The keys of a request: its address and, when given, the credential's prefix."""
        out = [address_key(address)]
        if credential:
            out.append("prefix:" + credential.strip()[:PREFIX_CHARS])
        return tuple(out)

    def _limit(self, key: str) -> int:
        return self.policy.prefix_limit if key.startswith("prefix:") else self.policy.limit

    def retry_after(self, *keys: str) -> float | None:
        """Seconds until a request with ``keys`` will be looked at, or None if it may go now."""
        if not self.enabled:
            return None
        now = self._clock()
        wait = 0.0
        with self._lock:
            for k in keys:
                tat = self._tat.get(k)
                if tat is None:
                    continue
                limit = self._limit(k)
                step = self.policy.window_s / limit
                # k rapid failures put tat at now + k*step; the limit-th one blocks.
                over = tat - now - (self.policy.window_s - step)
                if over > 0:
                    wait = max(wait, over)
        return wait if wait > 0 else None

    def failed(self, *keys: str) -> None:
        """Count one failed authentication against each of ``keys``."""
        if not self.enabled:
            return
        now = self._clock()
        with self._lock:
            for k in keys:
                step = self.policy.window_s / self._limit(k)
                tat = self._tat.get(k)
                self._tat[k] = max(tat if tat is not None else now, now) + step

    def retry_after_header(self, wait: float) -> str:
        """``Retry-After`` for a wait (whole seconds, at least 1)."""
        return str(max(1, math.ceil(wait)))
