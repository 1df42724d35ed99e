"""Buffered, batched, retrying delivery of usage items to Metis, with a disk spool.

Guarantees:

- `Sender.submit` never blocks on the network and never raises: it appends to
  an in-memory queue (bounded; overflow goes to the spool file).
- A daemon thread sends batches of at most ``batch_size`` items to
  ``POST {url}/v1/ingest/usage``. A batch that cannot be delivered (Metis
  down, 5xx, 429, timeout, 401 while the token is fixed) is written to the
  spool directory as one JSON file (atomic rename) and resent, oldest first,
  with exponential backoff until Metis takes it. Items carry idempotency keys,
  so a batch that was stored but whose answer was lost is a no-op when resent:
  every item is stored exactly once.
- Answers 200 and 422 settle a batch (422 lists rejected items; bad data does
  not get better by resending, so those are logged and dropped); 400/413 too
  (logged). Everything else is retried.
- `Sender.close` (also at interpreter exit) flushes what it can within a
  short timeout and spools the rest. A hard kill of the agent process loses
  at most the items queued since the last send (one flush interval).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from pathlib import Path
from typing import Any

log = logging.getLogger("metis_hermes")

SETTLED = {200, 400, 413, 422}
MAX_SPOOL_FILES = 10_000


class Sender:
    def __init__(
        self,
        url: str,
        token: str,
        spool_dir: Path,
        *,
        batch_size: int = 100,
        flush_interval: float = 2.0,
        timeout: float = 5.0,
        max_backoff: float = 60.0,
        max_queue: int = 10_000,
    ) -> None:
        self.url = url.rstrip("/") + "/v1/ingest/usage"
        self._token = token
        self.spool_dir = spool_dir
        self.batch_size = max(1, min(batch_size, 1000))
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.max_backoff = max_backoff
        self.max_queue = max_queue
        self._queue: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._backoff = 0.0
        self._next_try = 0.0
        self.sent_batches = 0
        self.rejected: list[dict[str, Any]] = []
        self.spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._thread = threading.Thread(target=self._run, name="metis-sender", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- producer side (the agent's thread) ---------------------------------

    def submit(self, item: dict[str, Any]) -> None:
        """Queue one item; never blocks, never raises."""
        try:
            with self._lock:
                if len(self._queue) >= self.max_queue:
                    self._spool([item])
                    return
                self._queue.append(item)
                full = len(self._queue) >= self.batch_size
            if full:
                self._wake.set()
        except Exception:  # pragma: no cover - last line of defence for the agent
            log.debug("metis: could not queue a usage item", exc_info=True)

    def pending(self) -> int:
        """Items queued in memory plus spooled batches (not items) on disk."""
        with self._lock:
            return len(self._queue) + len(self._spooled())

    # -- delivery ------------------------------------------------------------

    def _post(self, items: list[dict[str, Any]]) -> int | None:
        """POST one batch; the HTTP status, or None when Metis could not be reached."""
        body = json.dumps({"items": items}).encode()
        req = urllib.request.Request(  # noqa: S310 - the URL is the operator's Metis
            self.url,
            data=body,
            method="POST",
            headers={
                "Authorization": f"Bearer {self._token}",
                "Content-Type": "application/json",
                "User-Agent": "metis-hermes/0.1",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                status = int(resp.status)
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            payload = exc.read()
        except (OSError, ValueError):
            return None
        if status == 422:
            try:
                rejected = json.loads(payload).get("rejected", [])
            except ValueError:
                rejected = []
            self.rejected = (self.rejected + rejected)[-100:]  # the latest, for diagnostics
            for r in rejected:
                log.warning(
                    "metis rejected usage item %s: %s", r.get("idempotency_key"), r.get("reasons")
                )
        elif status in (400, 413):
            log.warning("metis refused a usage batch (%s): %s", status, payload[:300])
        return status

    def _deliver(self, items: list[dict[str, Any]]) -> bool:
        status = self._post(items)
        if status in SETTLED:
            self.sent_batches += 1
            self._backoff = 0.0
            return True
        self._backoff = min(self.max_backoff, max(0.5, self._backoff * 2))
        self._next_try = time.monotonic() + self._backoff
        log.info("metis unreachable (status %s); spooling, retry in %.1fs", status, self._backoff)
        return False

    def _spooled(self) -> list[Path]:
        try:
            return sorted(self.spool_dir.glob("batch-*.json"))
        except OSError:
            return []

    def _spool(self, items: list[dict[str, Any]]) -> None:
        if not items:
            return
        files = self._spooled()
        if len(files) >= MAX_SPOOL_FILES:  # bounded disk use: drop the oldest batch
            log.warning("metis spool full; dropping %s", files[0].name)
            files[0].unlink(missing_ok=True)
        name = f"batch-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
        tmp = self.spool_dir / f".{name}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"items": items}, f)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.spool_dir / name)
        except OSError:
            log.warning("metis: could not spool %d usage items", len(items), exc_info=True)

    def _drain_spool(self) -> bool:
        """Resend spooled batches, oldest first; False when Metis is still down."""
        for path in self._spooled():
            try:
                items = json.loads(path.read_text())["items"]
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("metis: unreadable spool file %s, dropped", path.name)
                path.unlink(missing_ok=True)
                continue
            if not self._deliver(items):
                return False
            path.unlink(missing_ok=True)
        return True

    def flush_once(self) -> None:
        """One delivery round: spooled batches first, then the queue (tests call it too)."""
        if time.monotonic() < self._next_try:
            return
        if not self._drain_spool():
            self._spool_queue()
            return
        while True:
            with self._lock:
                batch = [
                    self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))
                ]
            if not batch:
                return
            if not self._deliver(batch):
                with self._lock:
                    self._spool(batch)
                self._spool_queue()
                return

    def _spool_queue(self) -> None:
        with self._lock:
            rest = list(self._queue)
            self._queue.clear()
            for i in range(0, len(rest), self.batch_size):
                self._spool(rest[i : i + self.batch_size])

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self.flush_once()
            except Exception:  # pragma: no cover - never let the thread die
                log.debug("metis sender round failed", exc_info=True)

    def close(self, timeout: float = 3.0) -> None:
        """Stop the thread, try one last delivery, spool whatever is left."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        old_timeout, self.timeout = self.timeout, min(self.timeout, timeout)
        try:
            self._next_try = 0.0
            self.flush_once()
        except Exception:  # pragma: no cover
            log.debug("metis final flush failed", exc_info=True)
        finally:
            self.timeout = old_timeout
            self._spool_queue()
