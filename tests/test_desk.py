"""The invite desk without a bot: invites, requests and decisions against the sandbox.

Each scenario builds a ``Desk`` from the real library parts (settings, RSC client,
invite queue, approvals, audit trail, hourly limit) on a plain dict, with a notebook
standing in for chat: it records every direct message and says who is guarded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chat import shown, wait_for
from conftest import INVITER, MEMBER, polaris_env

from polarisbot.approvals import Approvals
from polarisbot.audit import AuditTrail
from polarisbot.desk import NO_ACCESS_CONTROL, Desk
from polarisbot.invites import InviteQueue
from polarisbot.limits import HourlyLimit
from polarisbot.rsc import RscClient
from polarisbot.settings import load_settings
from polarisbot.storage import Storage

SECOND = "U0SECOND"
MEMBER_EMAIL = "member.one@example.com"


class Notebook:
    """The chat side of a desk: messages sent by id, and answers that arrive later."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.later: list[str] = []
        self.guarded = True
        self.unreachable: set[str] = set()
        self._lock = threading.Lock()

    def tell(self, target: str, text: str) -> bool:
        if target in self.unreachable:
            return False
        with self._lock:
            self.sent.append((target, shown(text)))
        return True

    def respond(self, text: str) -> None:
        with self._lock:
            self.later.append(shown(text))

    def to(self, target: str) -> list[str]:
        with self._lock:
            return [text for to, text in self.sent if to == target]


def build_desk(sandbox: Any, notes: Notebook, store: dict[str, Any], **env: str) -> Desk:
    settings = load_settings(polaris_env(sandbox, **env))
    assert settings.credentials is not None
    client = RscClient(settings.credentials, read_timeout=5, retry_budget=3)
    queue = InviteQueue(client, settings.roles, 2)
    lock = threading.RLock()
    storage = Storage(store, lock)
    return Desk(
        settings,
        client,
        queue,
        Approvals(store, lock, timedelta(hours=settings.request_ttl_hours)),
        AuditTrail(storage),
        HourlyLimit(storage, settings.max_invites_per_hour),
        tell=notes.tell,
        guarded=lambda _: notes.guarded,
        approvers=lambda: [INVITER, SECOND, "U0*"],
    )


@pytest.fixture
def notes() -> Notebook:
    return Notebook()


@pytest.fixture
def desk(sandbox: Any, notes: Notebook) -> Iterator[Desk]:
    desk = build_desk(sandbox, notes, {})
    yield desk
    assert desk.queue is not None
    desk.queue.close()


def open_request(desk: Desk, requester: str = MEMBER, email: str = MEMBER_EMAIL) -> str:
    answer = desk.request_for(requester, email, where="direct", respond=lambda _: None)
    assert answer.startswith("Request "), answer
    return answer.split()[1]


def test_an_invite_is_acknowledged_then_reported_and_audited(desk, notes, sandbox):
    answer = desk.invite_for(
        INVITER, "new.person@example.com", where="C0OPS", respond=notes.respond
    )

    assert answer == "Inviting 1 address to Polaris…"
    assert wait_for(lambda: notes.later == ["new.person@example.com: invited"])
    assert [c["email"] for c in sandbox.calls("createUser")] == ["new.person@example.com"]
    entry = desk.audit.newest(1)[0]
    assert (entry.action, entry.who, entry.email, entry.outcome, entry.where) == (
        "invite",
        INVITER,
        "new.person@example.com",
        "INVITED",
        "C0OPS",
    )


def test_a_request_tells_each_named_approver_but_not_globs_or_the_requester(desk, notes):
    request_id = open_request(desk, requester=SECOND, email="second@example.com")

    assert [to for to, _ in notes.sent] == [INVITER]
    assert f"!polaris approve {request_id}" in notes.to(INVITER)[0]
    entry = desk.audit.newest(1)[0]
    assert (entry.action, entry.outcome, entry.request) == ("request", "PENDING", request_id)


def test_a_request_nobody_could_be_told_about_says_whom_to_ask(desk, notes):
    notes.unreachable = {INVITER, SECOND}

    answer = desk.request_for(MEMBER, MEMBER_EMAIL, where="direct", respond=lambda _: None)

    assert answer.endswith("ask one to run !polaris approve " + answer.split()[1] + ".")


def test_a_self_approval_is_refused_audited_and_never_reaches_polaris(desk, sandbox):
    request_id = open_request(desk, requester=INVITER, email="inviter@example.com")

    answer = desk.approve_for(INVITER, request_id, where="direct", respond=lambda _: None)

    assert answer == f"Request {request_id} is your own: another inviter has to approve it."
    entry = desk.audit.newest(1)[0]
    assert (entry.action, entry.outcome, entry.approver) == ("approve", "OWN_REQUEST", INVITER)
    assert [r.id for r in desk.approvals.pending()] == [request_id]
    assert sandbox.calls("createUser") == []


def test_an_approval_invites_the_requester_and_tells_them(desk, notes, sandbox):
    request_id = open_request(desk)

    answer = desk.approve_for(SECOND, request_id.lower(), where="direct", respond=notes.respond)

    assert answer == f"Approved request {request_id} from {MEMBER}. Inviting 1 address to Polaris…"
    assert wait_for(lambda: any("approved by" in text for text in notes.to(MEMBER)))
    told = next(text for text in notes.to(MEMBER) if "approved by" in text)
    assert f"approved by {SECOND}" in told and f"{MEMBER_EMAIL}: invited" in told
    assert [c["email"] for c in sandbox.calls("createUser")] == [MEMBER_EMAIL]
    assert wait_for(lambda: desk.approvals.unfinished() == [])


def test_a_denial_tells_the_requester_the_reason_and_is_audited(desk, notes, sandbox):
    request_id = open_request(desk)

    answer = desk.deny_for(SECOND, f"{request_id} not on the backup team", where="C0OPS")

    assert answer == f"Denied request {request_id} from {MEMBER}. I told them."
    assert notes.to(MEMBER) == [
        f"Your request {request_id} for a Polaris account ({MEMBER_EMAIL}) was denied by "
        f"{SECOND}: not on the backup team"
    ]
    entry = desk.audit.newest(1)[0]
    assert (entry.action, entry.outcome, entry.approver, entry.reason) == (
        "deny",
        "DENIED",
        SECOND,
        "not on the backup team",
    )
    assert sandbox.calls("createUser") == []


def test_a_denial_the_requester_cannot_be_told_of_asks_the_denier_to_tell_them(desk, notes):
    request_id = open_request(desk)
    notes.unreachable = {MEMBER}

    answer = desk.deny_for(SECOND, request_id, where="direct")

    assert answer.endswith("I could not send them a message: please tell them.")


def test_the_hourly_limit_refuses_addresses_beyond_it(sandbox, notes):
    desk = build_desk(sandbox, notes, {}, POLARIS_MAX_INVITES_PER_HOUR="2")
    addresses = "a@example.com b@example.com c@example.com"

    answer = desk.invite_for(INVITER, addresses, where="direct", respond=notes.respond)

    assert answer == "Inviting 2 addresses to Polaris…"
    assert wait_for(lambda: len(notes.later) == 1)
    lines = notes.later[0].splitlines()
    assert lines[:2] == ["a@example.com: invited", "b@example.com: invited"]
    assert lines[2].startswith("c@example.com: not sent: the limit of 2 invites an hour")
    assert sorted(c["email"] for c in sandbox.calls("createUser")) == [
        "a@example.com",
        "b@example.com",
    ]
    outcomes = {e.email: e.outcome for e in desk.audit.newest(3)}
    assert outcomes == {
        "a@example.com": "INVITED",
        "b@example.com": "INVITED",
        "c@example.com": "LIMITED",
    }
    assert desk.queue is not None
    desk.queue.close()


def test_an_expired_request_tells_its_requester_once_and_is_audited(desk, notes):
    request_id = open_request(desk)
    later = datetime.now(UTC) + timedelta(hours=72, minutes=1)
    desk.approvals.clock = lambda: later

    desk.expire_requests()
    desk.expire_requests()

    told = notes.to(MEMBER)
    assert len(told) == 1 and f"Your request {request_id}" in told[0]
    assert "within 72 hours" in told[0]
    assert desk.audit.newest(1)[0].outcome == "EXPIRED"
    assert "expired" in desk.approve_for(SECOND, request_id, where="direct", respond=notes.respond)


def test_an_approved_invite_left_unsent_is_resumed_by_a_new_desk(sandbox, notes):
    store: dict[str, Any] = {}
    first = build_desk(sandbox, notes, store)
    request_id = open_request(first)
    # The decision is stored, but the process stops before Polaris is asked.
    first.approvals.decide(request_id, SECOND, approve=True)
    assert sandbox.calls("createUser") == []

    second = build_desk(sandbox, notes, store)
    second.resume_approved_invites()

    assert wait_for(lambda: any("approved by" in text for text in notes.to(MEMBER)))
    assert [c["email"] for c in sandbox.calls("createUser")] == [MEMBER_EMAIL]
    assert wait_for(lambda: second.approvals.unfinished() == [])
    for desk in (first, second):
        assert desk.queue is not None
        desk.queue.close()


def test_a_request_for_a_domain_not_allowed_opens_nothing(desk, notes):
    answer = desk.request_for(MEMBER, "someone@gmail.com", where="direct", respond=notes.respond)

    assert "someone@gmail.com" in answer and "domain not allowed" in answer
    assert "this bot invites only example.com addresses" in answer
    assert desk.approvals.pending() == [] and notes.sent == []
    assert desk.audit.newest(1)[0].outcome == "DOMAIN"


def test_privileged_commands_refuse_while_access_control_is_not_in_force(desk, notes):
    notes.guarded = False

    assert desk.invite_for(INVITER, "a@example.com", where="direct", respond=notes.respond) == (
        NO_ACCESS_CONTROL
    )
    assert (
        desk.approve_for(INVITER, "ABCDEF", where="direct", respond=notes.respond)
        == NO_ACCESS_CONTROL
    )
    assert desk.deny_for(INVITER, "ABCDEF", where="direct") == NO_ACCESS_CONTROL
    assert desk.pending_report() == NO_ACCESS_CONTROL
    assert desk.audit_report("", private=True) == NO_ACCESS_CONTROL
    # Anyone may ask for their own account.
    assert open_request(desk)


def test_the_status_says_how_requests_are_handled(desk):
    open_request(desk)

    lines = desk.status_report().splitlines()

    assert lines[0].startswith("Polaris: reachable")
    assert "Requests: need an inviter's approval, 1 waiting; at most 30 invites" in lines[-2]
    assert lines[-1] == "Settings: all good."
