"""The plugin's storage as the audit trail and the limits use it: read once, written behind.

Errbot's Shelf storage does file I/O on every access, and every blocking call gives up
the interpreter lock, which a busy bot takes milliseconds to hand back. Done on the
thread that acknowledges a command, while holding the lock that every storage access
shares, that turned each write into a queue of waiting commands. So the audit trail
and the limits keep their state in memory, read from storage once when the plugin
starts, and hand each change to ``Storage.write``; one background thread writes the
changes in the order they were handed over, each under the shared lock. ``close``
writes what is left (the plugin calls it on deactivation); a crash loses only what was
still waiting, normally the last few milliseconds of changes.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import MutableMapping
from typing import Any

log = logging.getLogger("polarisbot.storage")

# Changes written under one hold of the storage lock, at most.
BATCH = 100


class Storage:
    """Reads from ``store`` and writes to it on one background thread, under ``lock``.

    ``lock`` is the lock everything that touches ``store`` shares: Errbot's storage and
    the shelf under it do not lock.
    """

    def __init__(
        self,
        store: MutableMapping[str, Any],
        lock: threading.RLock,
        *,
        name: str = "polaris-storage",
    ) -> None:
        self.store = store
        self.lock = lock
        self._changes: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._progress = threading.Condition()
        self._handed = 0  # changes handed over, and changes written (or failed), so far
        self._done = 0
        self._closed = False
        self._thread = threading.Thread(target=self._write_changes, name=name, daemon=True)
        self._thread.start()

    def read(self, prefix: str) -> dict[str, Any]:
        """Every stored value whose key starts with ``prefix``; unreadable ones are skipped."""
        found: dict[str, Any] = {}
        with self.lock:
            for key in [k for k in list(self.store.keys()) if k.startswith(prefix)]:
                try:
                    found[key] = self.store[key]
                except Exception:
                    log.warning("ignored an unreadable stored value under %s", key, exc_info=True)
        return found

    def write(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` soon, after every change handed over before it.

        Never blocks. Callers that need changes to one key in a given order hand them
        over in that order (under their own lock). After ``close``, writes at once.
        """
        with self._progress:
            if not self._closed:
                self._handed += 1
                self._changes.put((key, value))
                return
        self._write({key: value})

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every change handed over so far is written; False on timeout."""
        with self._progress:
            wanted = self._handed
            return self._progress.wait_for(lambda: self._done >= wanted, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write every waiting change and stop the writer thread."""
        with self._progress:
            if self._closed:
                return
            self._closed = True
        self._changes.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("storage writes still waiting after %.0f s; some may be lost", timeout)

    def _write_changes(self) -> None:
        while True:
            change = self._changes.get()
            batch: dict[str, Any] = {}
            count = 0
            # Take what else is waiting, so one hold of the lock covers a burst; a later
            # change to the same key replaces the earlier one, which is never needed.
            while change is not None:
                batch[change[0]] = change[1]
                count += 1
                if count >= BATCH:
                    break
                try:
                    change = self._changes.get_nowait()
                except queue.Empty:
                    break
            self._write(batch)
            with self._progress:
                self._done += count
                self._progress.notify_all()
            if change is None:
                return

    def _write(self, batch: dict[str, Any]) -> None:
        with self.lock:
            for key, value in batch.items():
                try:
                    self.store[key] = value
                except Exception:
                    log.exception("could not store %s", key)
