"""Self-service requests that wait for an inviter: approve, deny, expire, decided once."""

from __future__ import annotations

import shelve
import threading
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from chat import shown
from conftest import INVITER, MEMBER, polaris_env

from polarisbot.approvals import (
    ALPHABET,
    APPROVED,
    AlreadyDecided,
    Approvals,
    OwnRequest,
    UnknownRequest,
)

SECOND = "U0SECOND"  # another inviter
MEMBER_EMAIL = "member.one@example.com"


class Mailbox:
    """Everything the bot sends, with its recipient (the test backend keeps only the text).

    Replies to a command go to the bot's own identifier on the test backend; direct
    messages and channel posts made with ``send`` go to the id they were sent to.
    """

    def __init__(self, chat) -> None:
        self.sent: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._chat = chat
        original = chat.bot.send_message

        def record(msg) -> None:
            with self._lock:
                # As Slack shows it: no invisible breaks, no code-span backticks.
                self.sent.append((str(msg.to), shown(str(msg.body))))
            original(msg)

        chat.bot.send_message = record

    def to(self, recipient: str) -> list[str]:
        with self._lock:
            return [text for to, text in self.sent if to == recipient]

    def wait_for(self, recipient: str, fragment: str, timeout: float = 10) -> str:
        """The first message to ``recipient`` containing ``fragment``; fails if none comes."""
        from chat import wait_for

        def found() -> str | None:
            return next((t for t in self.to(recipient) if fragment in t), None)

        if not wait_for(lambda: found() is not None, timeout):
            raise AssertionError(f"nothing containing {fragment!r} reached {recipient}")
        return found() or ""

    def reply_to_command(self, text: str, timeout: float = 10) -> str:
        """Send ``text`` as the current sender and return the bot's first answer to it."""
        before = len(self.to("Err"))
        self._chat.send(text)
        from chat import wait_for

        if not wait_for(lambda: len(self.to("Err")) > before, timeout):
            raise AssertionError(f"the bot did not answer {text!r}")
        return self.to("Err")[before]


@pytest.fixture
def bot(sandbox, start_bot):
    """A bot with approval required (the default) and two inviters."""
    chat = start_bot(polaris_env(sandbox, POLARIS_INVITERS=f"{INVITER},{SECOND}"))
    chat.mail = Mailbox(chat)
    return chat


def request_as_member(bot, email: str = MEMBER_EMAIL) -> str:
    """MEMBER asks for an account; returns the request id."""
    bot.as_user(MEMBER, email=email)
    answer = bot.mail.reply_to_command("!polaris request")
    assert "is waiting for an inviter's approval" in answer
    request_id = answer.split()[1]
    assert len(request_id) == 6 and set(request_id) <= set(ALPHABET)
    return request_id


# --- the bot ------------------------------------------------------------------------


def test_a_request_waits_and_every_inviter_is_told(bot, sandbox):
    request_id = request_as_member(bot)

    for inviter in (INVITER, SECOND):
        note = bot.mail.wait_for(inviter, request_id)
        assert MEMBER in note and MEMBER_EMAIL in note
        assert f"!polaris approve {request_id}" in note
    assert sandbox.calls("createUser") == []


def test_an_approved_request_creates_one_account_and_the_requester_hears_it(bot, sandbox):
    request_id = request_as_member(bot)
    bot.as_user(INVITER)

    answer = bot.mail.reply_to_command(f"!polaris approve {request_id.lower()}")

    assert answer.startswith(f"Approved request {request_id} from {MEMBER}.")
    told = bot.mail.wait_for(MEMBER, "approved")
    assert f"approved by {INVITER}" in told
    assert f"{MEMBER_EMAIL}: invited" in told
    bot.mail.wait_for("Err", f"{MEMBER_EMAIL}: invited")
    assert [c["email"] for c in sandbox.calls("createUser")] == [MEMBER_EMAIL]
    assert "No requests are waiting" in bot.mail.reply_to_command("!polaris pending")


def test_nobody_approves_their_own_request(bot, sandbox):
    bot.as_user(INVITER, email="inviter@example.com")
    request_id = bot.mail.reply_to_command("!polaris request").split()[1]

    answer = bot.mail.reply_to_command(f"!polaris approve {request_id}")

    assert answer == f"Request {request_id} is your own: another inviter has to approve it."
    assert sandbox.calls("createUser") == []
    refused = bot.plugin.audit.newest(1)[0]
    assert (refused.action, refused.outcome, refused.approver) == (
        "approve",
        "OWN_REQUEST",
        INVITER,
    )
    # Its requester is not asked to approve it either; the other inviter is.
    assert not any(request_id in text for text in bot.mail.to(INVITER))
    bot.mail.wait_for(SECOND, request_id)


def test_a_request_is_decided_only_once(bot, sandbox):
    request_id = request_as_member(bot)
    bot.as_user(INVITER)
    bot.mail.reply_to_command(f"!polaris approve {request_id}")
    bot.mail.wait_for(MEMBER, "invited")
    bot.as_user(SECOND)

    again = bot.mail.reply_to_command(f"!polaris approve {request_id}")
    deny = bot.mail.reply_to_command(f"!polaris deny {request_id} too late")

    assert again.startswith(f"Request {request_id} was already approved by {INVITER}")
    assert deny.startswith(f"Request {request_id} was already approved by {INVITER}")
    assert len(sandbox.calls("createUser")) == 1
    assert not any("denied" in text for text in bot.mail.to(MEMBER))


def test_two_approvers_at_the_same_moment_create_one_account(bot, sandbox):
    request_id = request_as_member(bot)
    start = threading.Barrier(8)
    answers: list[str] = []

    def approve(approver: str) -> None:
        start.wait()
        answers.append(
            bot.plugin.desk.approve_for(
                approver, request_id, where="direct", respond=lambda _: None
            )
        )

    threads = [threading.Thread(target=approve, args=(who,)) for who in [INVITER, SECOND] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert sum(a.startswith("Approved request") for a in answers) == 1
    assert sum("was already approved" in a for a in answers) == 7
    bot.mail.wait_for(MEMBER, "invited")
    assert len(sandbox.calls("createUser")) == 1


def test_a_denial_tells_the_requester_who_denied_it_and_why(bot, sandbox):
    request_id = request_as_member(bot)
    bot.as_user(SECOND)

    answer = bot.mail.reply_to_command(f"!polaris deny {request_id} not on the backup team")

    assert answer == f"Denied request {request_id} from {MEMBER}. I told them."
    told = bot.mail.wait_for(MEMBER, "denied")
    assert f"denied by {SECOND}: not on the backup team" in told
    assert sandbox.calls("createUser") == []
    assert "No requests are waiting" in bot.mail.reply_to_command("!polaris pending")


def test_a_second_request_while_one_waits_says_so(bot, sandbox):
    request_id = request_as_member(bot)

    again = bot.mail.reply_to_command("!polaris request")

    assert again.startswith(f"You already have request {request_id} waiting")
    bot.as_user(INVITER)
    assert bot.mail.reply_to_command("!polaris pending").startswith("1 request waiting")


def test_an_expired_request_tells_the_requester_and_cannot_be_approved(bot, sandbox):
    request_id = request_as_member(bot)
    later = datetime.now(UTC) + timedelta(hours=72, minutes=1)
    bot.plugin.approvals.clock = lambda: later
    bot.as_user(INVITER)

    assert "No requests are waiting" in bot.mail.reply_to_command("!polaris pending")
    told = bot.mail.wait_for(MEMBER, "expired")
    assert f"Your request {request_id}" in told and "within 72 hours" in told
    assert "expired" in bot.mail.reply_to_command(f"!polaris approve {request_id}")
    assert sandbox.calls("createUser") == []
    # The poller tells people too, without anyone reading the list.
    assert any(method == bot.plugin._every_minute for method, _, _ in bot.plugin.current_pollers)


def test_pending_lists_waiting_requests_for_inviters_only(bot):
    request_id = request_as_member(bot)

    assert "not allowed" in bot.mail.reply_to_command("!polaris pending")
    assert "not allowed" in bot.mail.reply_to_command(f"!polaris approve {request_id}")
    assert "not allowed" in bot.mail.reply_to_command(f"!polaris deny {request_id}")
    bot.as_user(INVITER)
    listing = bot.mail.reply_to_command("!polaris pending").splitlines()
    assert listing[0] == "1 request waiting for approval:"
    assert listing[1].startswith(f"{request_id}  {MEMBER_EMAIL}  asked by {MEMBER} at ")


def test_an_unknown_request_id_is_named(bot):
    bot.as_user(INVITER)

    answer = bot.mail.reply_to_command("!polaris approve ZZZZZZ")

    assert answer == "There is no request ZZZZZZ; !polaris pending lists the open ones."


def test_the_approvers_channel_is_told_instead_of_each_inviter(sandbox, start_bot):
    chat = start_bot(polaris_env(sandbox, POLARIS_APPROVERS_CHANNEL="C0APPROVERS"))
    chat.mail = Mailbox(chat)

    request_id = request_as_member(chat)

    assert request_id in chat.mail.wait_for("C0APPROVERS", "asks for an account")
    assert chat.mail.to(INVITER) == []


def test_a_request_for_a_domain_not_allowed_is_refused_without_waiting(bot, sandbox):
    bot.as_user(MEMBER, email="someone@gmail.com")

    answer = bot.mail.reply_to_command("!polaris request")

    assert answer.startswith("someone@gmail.com: domain not allowed")
    assert bot.plugin.approvals.pending() == []
    assert bot.mail.to(INVITER) == []


def test_approval_commands_refuse_when_access_control_is_not_in_force(sandbox, start_bot):
    chat = start_bot(polaris_env(sandbox), ACCESS_CONTROLS={"Polaris:*": {"allowusers": ("*",)}})
    chat.as_user(MEMBER)

    for command in ("approve ABCDEF", "deny ABCDEF", "pending", "audit"):
        assert "access control is not in force" in chat.ask(f"!polaris {command}")


def test_slack_ids_are_written_the_way_slackv3_builds_identifiers():
    from polaris import Polaris

    plugin = SimpleNamespace(_bot=SimpleNamespace(mode="slackv3"))

    assert Polaris._address(plugin, "U0123ABC") == "<@U0123ABC>"
    assert Polaris._address(plugin, "C0123ABC") == "<#C0123ABC>"
    assert Polaris._address(plugin, "#approvers") == "#approvers"


# --- the library, on a real shelf (it returns copies, as Errbot's Shelf storage does) -----


@pytest.fixture
def approvals(tmp_path):
    with shelve.open(str(tmp_path / "store")) as store:
        yield Approvals(store, threading.RLock(), timedelta(hours=1))


def test_library_a_request_is_approved_once_and_not_by_its_requester(approvals):
    request, opened = approvals.open("U1", "a@example.com", "direct")
    assert opened and approvals.open("U1", "a@example.com", "C1") == (request, False)

    with pytest.raises(OwnRequest):
        approvals.decide(request.id, "U1", approve=True)
    decided = approvals.decide(request.id, "U2", approve=True)
    with pytest.raises(AlreadyDecided):
        approvals.decide(request.id, "U3", approve=False)
    with pytest.raises(UnknownRequest):
        approvals.decide("NOPE22", "U2", approve=True)

    assert decided.state == APPROVED and approvals.get(request.id) == decided
    assert approvals.pending() == [] and approvals.unfinished() == [decided]


def test_library_an_admit_check_that_refuses_leaves_the_request_pending(approvals):
    request, _ = approvals.open("U1", "a@example.com", "direct")

    def refuse(_):
        raise RuntimeError("limit")

    with pytest.raises(RuntimeError):
        approvals.decide(request.id, "U2", approve=True, admit=refuse)

    assert approvals.pending() == [request]


def test_library_expiry_reports_each_request_once(approvals):
    request, _ = approvals.open("U1", "a@example.com", "direct")
    approvals.clock = lambda: request.expires + timedelta(seconds=1)

    first, second = approvals.expire(), approvals.expire()

    assert [r.id for r in first] == [request.id] and second == []
    with pytest.raises(AlreadyDecided, match="expired"):
        approvals.decide(request.id, "U2", approve=True)


def test_library_two_deciders_at_the_same_moment_decide_once(approvals):
    request, _ = approvals.open("U1", "a@example.com", "direct")
    start = threading.Barrier(6)
    results: list[str] = []

    def slow_admit(_) -> None:
        time.sleep(0.05)  # widens the window between the check and the write

    def decide(decider: str, approve: bool) -> None:
        start.wait()
        try:
            approvals.decide(request.id, decider, approve=approve, admit=slow_admit)
            results.append("decided")
        except AlreadyDecided:
            results.append("refused")

    threads = [threading.Thread(target=decide, args=(f"U{n}", n % 2 == 0)) for n in range(2, 8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert sorted(results) == ["decided"] + ["refused"] * 5
