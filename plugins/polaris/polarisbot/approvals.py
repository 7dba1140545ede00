"""Self-service requests waiting for an inviter: opened once, decided once, expired in time.

Requests live in a mapping-like store (the plugin's Errbot storage) under one key, as
plain dicts of strings. Every change builds new dicts and assigns the result: Errbot's
Shelf storage saves only on assignment, and its Memory storage hands out the live object,
so changing a stored dict in place would look right in tests and be lost in production.
Each read-modify-write holds the lock the caller shares with everything else that writes
to the same store (Errbot runs commands on several threads at once).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, MutableMapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

#: Request ids: short, and without characters people confuse (0/O, 1/I/L).
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
ID_LENGTH = 6

PENDING = "pending"
APPROVED = "approved"
DENIED = "denied"
EXPIRED = "expired"

#: Decided requests are kept this long, so a late second answer is told who decided.
KEEP_DECIDED = timedelta(days=30)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Request:
    """One person's request for an account for their own address."""

    id: str
    requester: str
    email: str
    where: str
    created: datetime
    expires: datetime
    state: str = PENDING
    decider: str = ""
    reason: str = ""
    decided: datetime | None = None
    # The invite's outcome after an approval ("" while Polaris has not answered yet).
    result: str = ""

    def to_record(self) -> dict[str, str]:
        record = asdict(self)
        for name in ("created", "expires", "decided"):
            record[name] = record[name].isoformat() if record[name] else ""
        return record

    @classmethod
    def from_record(cls, record: dict[str, str]) -> Request:
        def moment(name: str) -> datetime | None:
            text = record.get(name) or ""
            return datetime.fromisoformat(text) if text else None

        created, expires = moment("created"), moment("expires")
        assert created is not None and expires is not None
        return cls(
            id=record["id"],
            requester=record["requester"],
            email=record["email"],
            where=record.get("where", ""),
            created=created,
            expires=expires,
            state=record.get("state", PENDING),
            decider=record.get("decider", ""),
            reason=record.get("reason", ""),
            decided=moment("decided"),
            result=record.get("result", ""),
        )


class RequestError(Exception):
    """A decision that cannot be made; ``str()`` is a plain sentence."""


class UnknownRequest(RequestError):
    def __init__(self, request_id: str) -> None:
        super().__init__(f"There is no request {request_id}; !polaris pending lists the open ones.")


class AlreadyDecided(RequestError):
    def __init__(self, request: Request) -> None:
        self.request = request
        if request.state == EXPIRED or request.state == PENDING:
            when = request.expires.strftime("%Y-%m-%d %H:%M UTC")
            text = f"Request {request.id} expired at {when}; they can ask again."
        else:
            when = request.decided.strftime("%Y-%m-%d %H:%M UTC") if request.decided else ""
            text = f"Request {request.id} was already {request.state} by {request.decider}"
            text += f" at {when}." if when else "."
        super().__init__(text)


class OwnRequest(RequestError):
    def __init__(self, request: Request) -> None:
        self.request = request
        super().__init__(f"Request {request.id} is your own: another inviter has to approve it.")


def canonical_id(text: str) -> str:
    """A request id as people may type it (lower case, with #) in its stored form."""
    return text.strip().lstrip("#").upper()


class Approvals:
    """Pending requests in ``store[key]``, changed only under ``lock``."""

    def __init__(
        self,
        store: MutableMapping[str, Any],
        lock: threading.RLock,
        ttl: timedelta,
        *,
        key: str = "requests",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._lock = lock
        self._key = key
        self.ttl = ttl
        self.clock = clock

    def open(self, requester: str, email: str, where: str) -> tuple[Request, bool]:
        """Open a request, or return the one ``requester`` already has waiting.

        The flag is True when a new request was opened.
        """
        with self._lock:
            now = self.clock()
            records = self._records()
            for record in records.values():
                request = Request.from_record(record)
                if request.requester == requester and self._waiting(request, now):
                    return request, False
            request_id = self._new_id(records)
            request = Request(request_id, requester, email, where, now, now + self.ttl)
            self._save({**records, request_id: request.to_record()}, now)
            return request, True

    def get(self, request_id: str) -> Request | None:
        with self._lock:
            record = self._records().get(canonical_id(request_id))
        return Request.from_record(record) if record else None

    def pending(self) -> list[Request]:
        """Requests still waiting for an answer, oldest first."""
        with self._lock:
            now = self.clock()
            requests = [Request.from_record(r) for r in self._records().values()]
        waiting = [r for r in requests if self._waiting(r, now)]
        return sorted(waiting, key=lambda r: r.created)

    def expire(self) -> list[Request]:
        """Mark requests past their time as expired; returns the ones that just expired."""
        with self._lock:
            now = self.clock()
            records = self._records()
            expired = []
            for record in records.values():
                request = Request.from_record(record)
                if request.state == PENDING and request.expires <= now:
                    expired.append(replace(request, state=EXPIRED, decided=now))
            if expired:
                changed = {r.id: r.to_record() for r in expired}
                self._save({**records, **changed}, now)
        return expired

    def decide(
        self,
        request_id: str,
        decider: str,
        *,
        approve: bool,
        reason: str = "",
        admit: Callable[[Request], None] | None = None,
    ) -> Request:
        """Approve or deny a waiting request, exactly once.

        ``admit(request)`` runs under the lock just before an approval is recorded (the
        caller reserves its rate limit there); if it raises, the request stays pending.
        Raises ``UnknownRequest``, ``AlreadyDecided`` or ``OwnRequest``.
        """
        request_id = canonical_id(request_id)
        with self._lock:
            now = self.clock()
            records = self._records()
            record = records.get(request_id)
            if record is None:
                raise UnknownRequest(request_id)
            request = Request.from_record(record)
            if not self._waiting(request, now):
                raise AlreadyDecided(request)
            if approve and request.requester == decider:
                raise OwnRequest(request)
            if approve and admit is not None:
                admit(request)
            decided = replace(
                request,
                state=APPROVED if approve else DENIED,
                decider=decider,
                reason=reason,
                decided=now,
            )
            self._save({**records, request_id: decided.to_record()}, now)
        return decided

    def record_result(self, request_id: str, result: str) -> None:
        """Remember what Polaris answered for an approved request."""
        with self._lock:
            records = self._records()
            record = records.get(request_id)
            if record is None:
                return
            self._save({**records, request_id: {**record, "result": result}}, self.clock())

    def unfinished(self) -> list[Request]:
        """Approved requests whose invite never reported back (the bot stopped meanwhile)."""
        with self._lock:
            requests = [Request.from_record(r) for r in self._records().values()]
        return [r for r in requests if r.state == APPROVED and not r.result]

    # --- storage --------------------------------------------------------------------

    def _records(self) -> dict[str, dict[str, str]]:
        stored = self._store.get(self._key)
        return dict(stored) if isinstance(stored, dict) else {}

    def _save(self, records: dict[str, dict[str, str]], now: datetime) -> None:
        keep = {}
        for request_id, record in records.items():
            decided = record.get("decided") or ""
            if decided and datetime.fromisoformat(decided) < now - KEEP_DECIDED:
                continue
            keep[request_id] = record
        self._store[self._key] = keep

    @staticmethod
    def _waiting(request: Request, now: datetime) -> bool:
        return request.state == PENDING and request.expires > now

    @staticmethod
    def _new_id(taken: dict[str, Any]) -> str:
        while True:
            request_id = "".join(secrets.choice(ALPHABET) for _ in range(ID_LENGTH))
            if request_id not in taken:
                return request_id
