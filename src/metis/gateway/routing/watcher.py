"""Hot reload of the rules file, keeping the last good rules on a bad edit.

`RulesWatcher.current()` is called on the request path; at most once per
`POLL_INTERVAL_S` it stats the file (a few microseconds) and, when the file's
size, mtime or inode changed, reads it and re-parses if the bytes differ. So
an edit takes effect within about a second, without a restart, in every
gateway process.

* A missing file means no rules (every request goes to its own model); a
  deleted file drops the rules it had.
* A malformed file keeps the last good rules and is reported: an ERROR log
  line naming the rule and field, ``metis_routing_config_ok 0``, the
  ``metis_routing_config_errors_total`` counter, and `last_error` (``metis
  routing check FILE`` shows the same message before you deploy a file).
"""

import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import Counter, Gauge

from metis.gateway.routing.rules import EMPTY, RoutingConfigError, RuleSet, parse_rules

log = logging.getLogger("metis.gateway.routing")

POLL_INTERVAL_S = 1.0

RULES_LOADED = Gauge("metis_routing_rules", "Routing rules currently in effect.")
CONFIG_OK = Gauge("metis_routing_config_ok", "1 if the routing file last read was valid, else 0.")
CONFIG_ERRORS = Counter(
    "metis_routing_config_errors", "Times a changed routing file was rejected as malformed."
)
RELOADS = Counter("metis_routing_reloads", "Times a changed routing file was loaded.")


class RulesWatcher:
    """The rules in effect for one process, reloaded when the file changes."""

    def __init__(
        self,
        path: Path,
        *,
        interval: float = POLL_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.interval = interval
        self._clock = clock
        self._rules: RuleSet = EMPTY
        self._sig: tuple[int, int, int] | None = None
        self._digest: bytes | None = None
        self._next = 0.0
        self.last_error: str | None = None
        self.poll()

    @property
    def rules(self) -> RuleSet:
        """The rules in effect, without checking the file (a background task polls)."""
        return self._rules

    def current(self) -> RuleSet:
        """The rules in effect, re-checking the file at most once per interval."""
        now = self._clock()
        if now >= self._next:
            self.poll()
        return self._rules

    def poll(self) -> bool:
        """Check the file now; returns True when the rules in effect changed."""
        self._next = self._clock() + self.interval
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self._set_missing()
        except OSError as exc:
            return self._reject(f"{self.path}: cannot read: {exc.strerror}")
        sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        if sig == self._sig:
            return False
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            return self._reject(f"{self.path}: cannot read: {exc.strerror}")
        self._sig = sig
        digest = hashlib.sha256(data).digest()
        if digest == self._digest:
            return False
        self._digest = digest
        try:
            rules = parse_rules(data.decode("utf-8", "replace"), str(self.path))
        except RoutingConfigError as exc:
            return self._reject(exc.message)
        self._rules = rules
        self.last_error = None
        CONFIG_OK.set(1)
        RULES_LOADED.set(len(rules.rules))
        RELOADS.inc()
        log.info("routing rules loaded from %s: %d rules", self.path, len(rules.rules))
        return True

    def _set_missing(self) -> bool:
        changed = self._sig is not None or self._rules is not EMPTY
        self._sig = self._digest = None
        self._rules = EMPTY
        self.last_error = None
        CONFIG_OK.set(1)
        RULES_LOADED.set(0)
        if changed:
            log.info("routing file %s is gone: no routing rules in effect", self.path)
        return changed

    def _reject(self, message: str) -> bool:
        CONFIG_OK.set(0)
        if message == self.last_error:
            return False  # the same problem, already reported: no log line every second
        self.last_error = message
        CONFIG_ERRORS.inc()
        log.error("routing file rejected, keeping the last good rules: %s", message)
        return False
