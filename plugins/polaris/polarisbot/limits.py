"""How many addresses one person may send to Polaris in any sliding hour.

A mistake (a pasted list) or a compromised chat account must not be able to invite a
hundred people. Every address about to be sent to Polaris is reserved against the
person who caused it (the inviter, the approver, or the requester when requests need
no approval) before it is queued, check and reservation under one lock, so commands
running at the same moment cannot both take the last place.

The times live in memory, read from the plugin's storage once when the plugin starts,
and the decision is made there, before the acknowledgement and without waiting for
storage. Each person's times are then handed to the background writer
(``polarisbot.storage``) for their own key, ``limit:<member id>``: a write of a few
hundred bytes that never touches anyone else's hour. A restart does not reset anyone's
hour; a crash forgets only the reservations not yet written, those of the last moment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from polarisbot.storage import Storage

WINDOW = 3600.0  # seconds
PREFIX = "limit:"


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
    """Sliding-hour counts per person, decided in memory and stored one key per person."""

    def __init__(
        self,
        storage: Storage,
        per_hour: int,
        *,
        prefix: str = PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._storage = storage
        self._prefix = prefix
        self.per_hour = per_hour
        self.clock = clock
        self._lock = threading.Lock()
        self._times: dict[str, tuple[float, ...]] = self._load()

    def reserve(self, who: str, wanted: int) -> Allowance:
        """Take up to ``wanted`` places for ``who`` in the current hour, as many as are free."""
        with self._lock:
            now = self.clock()
            times = self._recent(who, now)
            granted = max(0, min(wanted, self.per_hour - len(times)))
            if granted:
                times = times + (now,) * granted
                # Handed over under the lock, so one person's writes keep their order.
                self._storage.write(self._prefix + who, list(times))
            if times:
                self._times[who] = times
            else:
                self._times.pop(who, None)
            frees_at = None
            if granted < wanted:
                frees_at = min(times) + WINDOW if times else now
        return Allowance(wanted, granted, self.per_hour, frees_at, now)

    def used(self, who: str) -> int:
        """How many places ``who`` has taken in the last hour."""
        with self._lock:
            return len(self._recent(who, self.clock()))

    def _recent(self, who: str, now: float) -> tuple[float, ...]:
        return tuple(t for t in self._times.get(who, ()) if t > now - WINDOW)

    def _load(self) -> dict[str, tuple[float, ...]]:
        """Everyone's stored times, without those already out of the hour."""
        loaded: dict[str, tuple[float, ...]] = {}
        oldest = self.clock() - WINDOW
        for key, stored in self._storage.read(self._prefix).items():
            try:
                times = tuple(t for t in (float(t) for t in stored) if t > oldest)
            except (TypeError, ValueError):
                continue  # not a list of times: nothing this version wrote
            if times:
                loaded[key[len(self._prefix) :]] = times
        return loaded
