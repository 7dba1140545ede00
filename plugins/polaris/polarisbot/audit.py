"""The audit trail: who asked, who granted what, when, where, and what came of it.

Every attempt (invite, request, approve, deny, expire) becomes one ``Entry``. It is
kept in memory, stored in the plugin's storage, and written as one structured INFO
line on the ``polarisbot.audit`` logger, ``key=value`` pairs that log tools can parse.
Entries hold Slack ids, addresses, role names and outcomes: never a token or a secret.

Storage layout: entry number ``n`` (counting from the first entry ever recorded) is
stored alone under ``audit:<n % keep>``, with its number beside its fields. The keys
form a ring: once ``keep`` entries exist, each new entry overwrites the oldest one,
so the trail holds exactly the newest ``keep`` entries, nothing is ever deleted, and
a write is one value of a few hundred bytes whatever the length of the trail. That
matters for Errbot's Shelf storage: with ``dbm.dumb`` (Python's fallback dbm) a
deleted value's space is never reused and every deletion rewrites the whole key
index, while a value that fits its old (512-byte padded) slot is rewritten in place.
Entries are handed to the background writer (``polarisbot.storage``), so recording
one never waits for storage. When the plugin starts, the stored entries are read back
and ordered by their numbers; ``!polaris audit`` then reads memory only.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

from polarisbot.safe_text import neutralize
from polarisbot.storage import Storage

log = logging.getLogger("polarisbot.audit")

KEEP = 10_000
MAX_SHOWN = 100
PREFIX = "audit:"

_BARE = re.compile(r"^[A-Za-z0-9@._:+,/-]+$")


def utc_stamp() -> str:
    """The current time as UTC ISO 8601 to the second: ``2024-05-01T14:02:03Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Entry:
    """One attempt and its outcome."""

    at: str
    action: str  # invite, request, approve, deny, expire
    who: str  # the inviter, or the requester of a request
    email: str
    outcome: str  # INVITED, EXISTS, DOMAIN, LIMITED, PENDING, DENIED, EXPIRED, ...
    approver: str = ""  # who approved or denied a request
    roles: str = ""  # comma-separated role names, for attempts that create accounts
    where: str = ""  # channel id, or "direct"
    request: str = ""  # request id
    reason: str = ""
    duration_ms: int | None = None

    def log_line(self) -> str:
        """``key=value`` pairs, values quoted as JSON strings when they need it."""
        parts = []
        for name, value in asdict(self).items():
            if name == "at" or value in ("", None):
                continue
            text = str(value)
            parts.append(f"{name}={text if _BARE.match(text) else json.dumps(text)}")
        return " ".join(parts)

    def chat_line(self) -> str:
        """The entry for ``!polaris audit``, with typed text made safe to echo."""
        text = f"{self.at}  {self.action}  {neutralize(self.email) or '-'}  {self.outcome}"
        details = [f"by {self.who}"] if self.who else []
        if self.approver:
            details.append(f"decided by {self.approver}")
        if self.request:
            details.append(f"request {self.request}")
        if self.where:
            details.append(f"in {self.where}")
        if self.roles:
            details.append(f"roles {self.roles}")
        if self.reason:
            details.append(f"reason: {neutralize(self.reason, 120)}")
        return f"{text}  ({', '.join(details)})" if details else text


_FIELDS = {f.name for f in fields(Entry)}


class AuditTrail:
    """The newest ``keep`` entries, in memory and in storage (one key per entry)."""

    def __init__(
        self,
        storage: Storage,
        *,
        keep: int = KEEP,
        prefix: str = PREFIX,
        clock: Callable[[], str] = utc_stamp,
    ) -> None:
        self._storage = storage
        self._keep = keep
        self._prefix = prefix
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: deque[Entry] = deque(maxlen=keep)
        self._next = 0  # the number of the next entry
        self._load()

    def record(self, action: str, *, who: str, email: str, outcome: str, **extra: Any) -> Entry:
        """Keep and store one entry and write its log line; returns the entry."""
        entry = Entry(self.clock(), action, who, email, outcome, **extra)
        with self._lock:
            number = self._next
            self._next += 1
            self._entries.append(entry)
            # Handed over under the lock: entries ``keep`` apart share a key, and the
            # newer one must be written last.
            self._storage.write(self._key(number), {"n": number, **asdict(entry)})
        log.info(entry.log_line())
        return entry

    def newest(self, count: int = 20, email: str | None = None) -> list[Entry]:
        """The newest ``count`` entries (at most ``MAX_SHOWN``), newest first.

        With ``email``, only entries for that address (case-insensitive).
        """
        count = max(1, min(count, MAX_SHOWN))
        wanted = email.lower() if email else None
        with self._lock:
            entries = list(self._entries)
        found: list[Entry] = []
        for entry in reversed(entries):
            if wanted is None or entry.email.lower() == wanted:
                found.append(entry)
                if len(found) >= count:
                    break
        return found

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _key(self, number: int) -> str:
        return f"{self._prefix}{number % self._keep}"

    def _load(self) -> None:
        """Read the stored entries back, oldest first, and continue their numbering.

        Entries are ordered by their numbers, not their keys, so a trail written with
        another ``keep`` still reads back as its newest entries.
        """
        numbered: list[tuple[int, Entry]] = []
        for key, record in self._storage.read(self._prefix).items():
            try:
                entry = Entry(**{k: v for k, v in record.items() if k in _FIELDS})
                numbered.append((int(record["n"]), entry))
            except (AttributeError, KeyError, TypeError, ValueError):
                log.warning("ignored an audit entry this version cannot read, under %s", key)
        numbered.sort(key=lambda pair: pair[0])
        with self._lock:
            self._entries.extend(entry for _, entry in numbered[-self._keep :])
            self._next = numbered[-1][0] + 1 if numbered else 0
