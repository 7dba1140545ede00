"""The invite queue: bounded, concurrent, and never inviting one address twice at once.

Commands hand addresses to an ``InviteQueue`` and return at once; the queue's own
worker threads (``concurrency`` of them) call Polaris. Addresses beyond that wait
in the queue, not in Errbot's thread pool, so the bot keeps answering other
commands during a burst. Two requests for the same address while the first is
still running share one ``createUser`` call and its outcome.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from polarisbot.addresses import Candidate
from polarisbot.errors import (
    AlreadyExists,
    ConfigurationError,
    InvalidArgument,
    OutcomeUnknown,
    PolarisBotError,
    PolarisRejected,
)
from polarisbot.outcomes import Kind, Outcome
from polarisbot.policy import domain_allowed
from polarisbot.rsc import RscClient

log = logging.getLogger("polarisbot.invites")


@dataclass(frozen=True)
class LastError:
    at: datetime
    email: str
    reason: str


class InviteQueue:
    """Runs invites on its own bounded pool of worker threads."""

    def __init__(
        self,
        client: RscClient,
        role_names: Sequence[str],
        concurrency: int,
        on_outcome: Callable[[Outcome, float], None] | None = None,
    ) -> None:
        self._client = client
        self._role_names = tuple(role_names)
        self._role_ids: list[str] | None = None
        self._roles_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="polaris-rsc")
        # The executor starts a thread per submission until it has them all; starting
        # them now keeps that cost out of the first burst's acknowledgements.
        # Each task waits for the others, so no thread is idle to take the next one.
        everyone = threading.Barrier(concurrency)
        for _ in range(concurrency):
            self._pool.submit(_meet, everyone)
        self._in_flight: dict[str, Future[Outcome]] = {}
        self._lock = threading.Lock()
        self._stats: Counter[Kind] = Counter()
        self._last_error: LastError | None = None
        self._on_outcome = on_outcome
        self.roles_problem: str | None = None

    def submit(self, email: str) -> Future[Outcome]:
        """Queue an invite for ``email`` (already validated and allowed); never raises."""
        email = email.lower()
        with self._lock:
            running = self._in_flight.get(email)
            if running is not None:
                log.debug("joining the invite already running for an address")
                return running
            future = self._pool.submit(self._invite, email)
            self._in_flight[email] = future
        future.add_done_callback(lambda _: self._forget(email, future))
        return future

    def close(self, wait: float = 10.0) -> bool:
        """Stop taking work and give running invites up to ``wait`` seconds to finish.

        Returns False when some were still running; they go on in the background, but
        whatever they would record after the plugin's storage closes is lost.
        """
        # Joining the workers, not just waiting for the futures: each worker also runs the
        # callbacks that reply and record the outcome before it is free again.
        finisher = threading.Thread(
            target=self._pool.shutdown, kwargs={"wait": True}, name="polaris-rsc-drain"
        )
        finisher.start()
        finisher.join(wait)
        if finisher.is_alive():
            with self._lock:
                running = len(self._in_flight)
            log.warning("%d invites were still running when the bot stopped", running)
            return False
        return True

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {kind.value: self._stats[kind] for kind in Kind if self._stats[kind]}

    def last_error(self) -> LastError | None:
        return self._last_error

    def role_ids(self) -> list[str]:
        """The configured role names as ids, looked up once and then kept.

        A name the account lacks raises ConfigurationError and is remembered as
        ``roles_problem`` (for !polaris status) until a later look-up succeeds.
        """
        with self._roles_lock:
            if self._role_ids is None:
                try:
                    self._role_ids = self._client.resolve_roles(self._role_names)
                except ConfigurationError as error:
                    self.roles_problem = str(error)
                    raise
                self.roles_problem = None
            return self._role_ids

    def _forget(self, email: str, future: Future[Outcome]) -> None:
        with self._lock:
            if self._in_flight.get(email) is future:
                del self._in_flight[email]

    def _invite(self, email: str) -> Outcome:
        started = time.monotonic()
        try:
            outcome = self._create(email)
        except Exception:  # the worker must always produce an outcome
            log.exception("invite failed unexpectedly")
            outcome = Outcome(email, Kind.ERROR, "the bot hit an unexpected problem; see its log")

        with self._lock:
            self._stats[outcome.kind] += 1
            if outcome.kind in (Kind.ERROR, Kind.UNCONFIRMED):
                reason = outcome.detail or outcome.kind.value
                self._last_error = LastError(datetime.now(UTC), email, reason)
        if self._on_outcome:
            self._on_outcome(outcome, time.monotonic() - started)
        return outcome

    def _create(self, email: str) -> Outcome:
        try:
            role_ids = self.role_ids()
            self._client.create_user(email, role_ids)
            return Outcome(email, Kind.INVITED)
        except AlreadyExists:
            return Outcome(email, Kind.EXISTS)
        except InvalidArgument as error:
            if "email" in error.reason.lower():
                return Outcome(email, Kind.INVALID, "Polaris refused it")
            return Outcome(email, Kind.ERROR, error.reason)
        except OutcomeUnknown:
            return self._confirm(email)
        except ConfigurationError as error:
            # The bot's settings are at fault, not Polaris: say so, and what to fix.
            return Outcome(email, Kind.REFUSED, f"not invited: {error.reason}")
        except PolarisRejected as error:
            if error.code == "PERMISSION_DENIED":
                # The bot's service account may not create users or give these roles.
                return Outcome(email, Kind.NOT_ALLOWED, error.reason)
            return Outcome(email, Kind.ERROR, error.reason)
        except PolarisBotError as error:
            return Outcome(email, Kind.ERROR, error.reason)

    def _confirm(self, email: str) -> Outcome:
        """After a lost answer, ask Polaris what is true instead of sending createUser again."""
        log.info("createUser answer lost; asking Polaris whether the account exists")
        try:
            exists = self._client.user_exists(email)
        except PolarisBotError:
            return Outcome(email, Kind.UNCONFIRMED)
        return Outcome(email, Kind.EXISTS_NOW if exists else Kind.UNCONFIRMED)


@dataclass
class Batch:
    """The addresses of one command: outcomes known at once, and invites still running."""

    planned: list[tuple[str, Outcome | Future[Outcome]]] = field(default_factory=list)

    @property
    def pending(self) -> list[Future[Outcome]]:
        return [item for _, item in self.planned if isinstance(item, Future)]

    def results(self) -> list[tuple[str, Outcome]]:
        """Every line's outcome, waiting for running invites (call once they are done)."""
        return [(shown, _outcome(item)) for shown, item in self.planned]

    def when_done(self, callback: Callable[[list[tuple[str, Outcome]]], None]) -> None:
        """Call ``callback(results)`` once, on the thread that finishes the last invite."""
        pending = self.pending
        if not pending:
            callback(self.results())
            return
        remaining = [len(pending)]
        lock = threading.Lock()

        def one_done(_: Future[Outcome]) -> None:
            with lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                try:
                    callback(self.results())
                except Exception:  # a failed reply must not vanish silently
                    log.exception("could not deliver the outcome of an invite")

        for future in pending:
            future.add_done_callback(one_done)


def refusal(candidate: Candidate) -> Outcome:
    """The outcome for an entry the address parser refused, keeping its reason."""
    reason = candidate.reason or Kind.INVALID.value
    if reason.startswith(Kind.INVALID.value):
        detail = reason[len(Kind.INVALID.value) :].strip(" ()") or None
        return Outcome(candidate.shown, Kind.INVALID, detail)
    return Outcome(candidate.shown, Kind.REFUSED, reason)


def refused_by_policy(candidate: Candidate, allowed_domains: Sequence[str]) -> Outcome | None:
    """The outcome for an entry policy refuses before Polaris, or None when it may go.

    The outcome's ``email`` is what its reply line shows: the entry as typed when it
    is not an address.
    """
    if candidate.email is None:
        return refusal(candidate)
    if not domain_allowed(candidate.email, allowed_domains):
        detail = f"this bot invites only {', '.join(allowed_domains)} addresses"
        return Outcome(candidate.email, Kind.DOMAIN, detail)
    return None


def start_invites(
    candidates: Iterable[Candidate], allowed_domains: Sequence[str], queue: InviteQueue
) -> Batch:
    """Refuse what policy refuses, queue the rest; keeps the order the addresses came in."""
    batch = Batch()
    for candidate in candidates:
        refused = refused_by_policy(candidate, allowed_domains)
        if refused is not None:
            batch.planned.append((refused.email, refused))
        elif candidate.email is not None:
            batch.planned.append((candidate.email, queue.submit(candidate.email)))
    return batch


def _meet(everyone: threading.Barrier) -> None:
    """Keep a worker busy until every worker has started (or a few seconds have passed)."""
    with contextlib.suppress(threading.BrokenBarrierError):
        everyone.wait(timeout=5)


def _outcome(item: Outcome | Future[Outcome]) -> Outcome:
    return item if isinstance(item, Outcome) else item.result()
