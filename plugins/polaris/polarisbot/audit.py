"""The audit trail: who asked, who granted what, when, where, and what came of it.

Every attempt (invite, request, approve, deny, expire) becomes one ``Entry``. It is
appended to the plugin's storage and written as one structured INFO line on the
``polarisbot.audit`` logger, ``key=value`` pairs that log tools can parse. Entries
hold Slack ids, addresses, role names and outcomes: never a token or a secret.

Storage layout: entries go into blocks of ``BLOCK`` under ``audit.<n>``, and
``audit.blocks`` says which blocks exist. Appending rewrites only the newest block,
so the cost of a write does not grow with the trail. The oldest block is dropped
once the blocks after it hold at least ``keep`` entries: the trail keeps the newest
``keep`` entries, and fewer than one block more.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

from polarisbot.safe_text import neutralize

log = logging.getLogger("polarisbot.audit")

KEEP = 10_000
BLOCK = 250
MAX_SHOWN = 100

_BARE = re.compile(r"^[A-Za-z0-9@._:+,/-]+$")


def utc_stamp() -> str:
    """The current time as UTC ISO 8601 to the second: ``2024-05-01T14:02:03Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
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
        details = [f"by {self.who}"]
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
        return f"{text}  ({', '.join(details)})"


_FIELDS = {f.name for f in fields(Entry)}


class AuditTrail:
    """Append-only entries in ``store``, bounded to the newest ``keep``; writes under ``lock``."""

    def __init__(
        self,
        store: MutableMapping[str, Any],
        lock: threading.RLock,
        *,
        keep: int = KEEP,
        block: int = BLOCK,
        prefix: str = "audit",
        clock: Callable[[], str] = utc_stamp,
    ) -> None:
        self._store = store
        self._lock = lock
        self._keep = keep
        self._block = block
        self._prefix = prefix
        self.clock = clock

    def record(self, action: str, *, who: str, email: str, outcome: str, **extra: Any) -> Entry:
        """Append one entry and write its log line; returns the entry."""
        entry = Entry(self.clock(), action, who, email, outcome, **extra)
        with self._lock:
            first, last = self._bounds()
            block = list(self._block_at(last))
            if len(block) >= self._block:
                last, block = last + 1, []
            block.append(asdict(entry))
            self._store[self._block_key(last)] = block
            first = self._drop_old_blocks(first, last, len(block))
            self._store[f"{self._prefix}.blocks"] = {"first": first, "last": last}
        log.info(entry.log_line())
        return entry

    def newest(self, count: int = 20, email: str | None = None) -> list[Entry]:
        """The newest ``count`` entries (at most ``MAX_SHOWN``), newest first.

        With ``email``, only entries for that address (case-insensitive).
        """
        count = max(1, min(count, MAX_SHOWN))
        wanted = email.lower() if email else None
        found: list[Entry] = []
        for entry in self._newest_first():
            if wanted is None or entry.email.lower() == wanted:
                found.append(entry)
                if len(found) >= count:
                    break
        return found

    def __len__(self) -> int:
        with self._lock:
            first, last = self._bounds()
            return sum(len(self._block_at(n)) for n in range(first, last + 1))

    def _newest_first(self) -> Iterator[Entry]:
        with self._lock:
            first, last = self._bounds()
        for number in range(last, first - 1, -1):
            with self._lock:
                block = list(self._block_at(number))
            for record in reversed(block):
                yield Entry(**{k: v for k, v in record.items() if k in _FIELDS})

    def _drop_old_blocks(self, first: int, last: int, newest_size: int) -> int:
        """Drop the oldest block while the blocks after it still hold ``keep`` entries."""
        while first < last and (last - first - 1) * self._block + newest_size >= self._keep:
            key = self._block_key(first)
            if key in self._store:
                del self._store[key]
            first += 1
        return first

    def _bounds(self) -> tuple[int, int]:
        bounds = self._store.get(f"{self._prefix}.blocks")
        if isinstance(bounds, dict):
            return int(bounds["first"]), int(bounds["last"])
        return 0, 0

    def _block_at(self, number: int) -> list[dict[str, Any]]:
        block = self._store.get(self._block_key(number))
        return block if isinstance(block, list) else []

    def _block_key(self, number: int) -> str:
        return f"{self._prefix}.{number}"
