"""How many addresses one person may send to Polaris in any sliding hour.

A mistake (a pasted list) or a compromised chat account must not be able to invite a
hundred people. Every address about to be sent to Polaris is reserved against the
person who caused it (the inviter, the approver, or the requester when requests need
no approval) before it is queued, check and reservation under one lock, so commands
running at the same moment cannot both take the last place. The times are kept in the
plugin's storage, so a restart does not reset anyone's hour.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

WINDOW = 3600.0  # seconds


@dataclass(frozen=True)
class Allowance:
    """The answer to a reservation: how many of the wanted addresses may go."""

    wanted: int
    granted: int
    limit: int
    # When the next place frees up (epoch seconds), known when something was refused.
    frees_at: float | None = None
    now: float = 0.0

    @property
    def refused(self) -> int:
        return self.wanted - self.granted

    def sentence(self) -> str:
        """Why addresses were not sent, and when the person can send again."""
        text = f"the limit of {self.limit} invites an hour per person is reached"
        if self.frees_at is not None:
            at = datetime.fromtimestamp(self.frees_at, UTC).strftime("%H:%M UTC")
            minutes = max(1, round((self.frees_at - self.now) / 60))
            text += f"; the next place frees up at {at} (in about {minutes} min)"
        return text


class LimitReached(Exception):
    """Raised by callers that need all or nothing when no place is free."""

    def __init__(self, allowance: Allowance) -> None:
        self.allowance = allowance
        super().__init__(allowance.sentence())


class HourlyLimit:
    """Sliding-hour counts per person in ``store[key]``, changed only under ``lock``."""

    def __init__(
        self,
        store: MutableMapping[str, Any],
        lock: threading.RLock,
        per_hour: int,
        *,
        key: str = "sent",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._lock = lock
        self._key = key
        self.per_hour = per_hour
        self.clock = clock

    def reserve(self, who: str, wanted: int) -> Allowance:
        """Take up to ``wanted`` places for ``who`` in the current hour, as many as are free."""
        with self._lock:
            now = self.clock()
            sent = self._recent(now)
            times = sent.get(who, [])
            granted = max(0, min(wanted, self.per_hour - len(times)))
            if granted:
                sent[who] = times + [now] * granted
                self._store[self._key] = sent
            frees_at = None
            if granted < wanted:
                taken = sent.get(who, [])
                frees_at = min(taken) + WINDOW if taken else now
        return Allowance(wanted, granted, self.per_hour, frees_at, now)

    def used(self, who: str) -> int:
        """How many places ``who`` has taken in the last hour."""
        with self._lock:
            return len(self._recent(self.clock()).get(who, []))

    def _recent(self, now: float) -> dict[str, list[float]]:
        """A fresh copy of the stored times, without those older than an hour."""
        stored = self._store.get(self._key)
        stored = stored if isinstance(stored, dict) else {}
        recent = {}
        for who, times in stored.items():
            kept = [t for t in times if t > now - WINDOW]
            if kept:
                recent[who] = kept
        return recent
