"""When RSC is slow, failing or rate-limiting, the bot answers every command in time and
tells the truth: the real bot, the sandbox RSC over HTTP, faults switched on per case.

Most scenarios share one bot and one sandbox (module scope) with short timeouts; each
case clears the faults and the request log first. Replies are checked for what they
say, for when they came, and against the requests the sandbox received.
"""

from __future__ import annotations

import queue
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from chat import Chat, bot_config, visible
from conftest import ADMIN, INVITER, MEMBER, polaris_env
from errbot.backends.base import Message
from errbot.backends.test import TestPerson

from polaris_sandbox import Sandbox
from polarisbot.rsc import BACKOFF_BASE, STATUS_TIMEOUT

SECOND_INVITER = "U0INVITER2"

# The module's bot: short timeouts keep the suite fast; the bounds below follow from them.
CONNECT = 0.5
READ = 0.5
BUDGET = 1.5
# One RSC call, login included: its retries end within the budget, then at most one
# login attempt and one call attempt (see docs/faults.md).
CALL = BUDGET + 2 * (CONNECT + READ)
# The longest backoff before a second attempt.
BACKOFF = BACKOFF_BASE
# What "at once" means for a test on a busy machine.
AT_ONCE = 2.0
SLACK = 2.0
BOUND = {
    "ack": AT_ONCE,
    # createUser, then the confirmation that may follow (role ids are already known).
    "invite": 2 * CALL + SLACK,
    "list": CALL + SLACK,
    "status": STATUS_TIMEOUT + SLACK,
}

# Text that means a library's words or a traceback reached chat.
LEAKS = (
    "Traceback",
    "Exception",
    "HTTPConnectionPool",
    "Errno",
    "requests.",
    "urllib3",
    "Computer says",
    "<html",
    "JWT",
    "NoneType",
)
# An exception's class name: ours (LoginFailed, OutcomeUnknown...) or a library's.
CLASS_NAME = re.compile(
    r"\b[A-Z]\w*(?:Error|Exception|Timeout|Failed|Unavailable|Busy|Rejected|Unknown|Exists)\b"
)


def assert_plain(reply: str) -> None:
    """A reply holds no traceback, exception text or class name."""
    for leak in LEAKS:
        assert leak not in reply, f"{leak!r} reached chat: {reply!r}"
    found = CLASS_NAME.search(reply)
    assert found is None, f"class name {found.group()!r} reached chat: {reply!r}"


# --- driving the bot ----------------------------------------------------------------


@dataclass
class Reply:
    text: str
    seconds: float  # since the commands were sent


@dataclass
class Conversation:
    """Commands sent by several people at the same moment, and every reply."""

    chat: Chat
    sent_at: float = 0.0
    replies: list[Reply] = field(default_factory=list)

    def send(self, commands: list[tuple[str, str, str | None]]) -> None:
        """Send each (member id, text, profile email) as a direct message, all at once."""
        self.sent_at = time.monotonic()
        for member, text, email in commands:
            msg = Message(text, extras={})
            msg.frm = TestPerson(member, email=email)
            msg.to = self.chat.bot.bot_identifier
            self.chat.bot.callback_message(msg)

    def collect(self, count: int, timeout: float) -> list[Reply]:
        """Wait for `count` replies; fails when they do not all come within `timeout`."""
        deadline = self.sent_at + timeout
        while len(self.replies) < count:
            left = deadline - time.monotonic()
            try:
                message = self.chat.bot.pop_message(timeout=max(0.01, left))
            except queue.Empty:
                said = [r.text for r in self.replies]
                raise AssertionError(f"only {len(said)} of {count} replies came: {said}") from None
            self.replies.append(Reply(visible(str(message)), time.monotonic() - self.sent_at))
        return self.replies


def drain(chat: Chat) -> None:
    """Drop replies left over from an earlier case."""
    while True:
        try:
            chat.bot.pop_message(timeout=0.05)
        except queue.Empty:
            return


def bot_env(sandbox: Sandbox, **overrides: str) -> dict[str, str]:
    return polaris_env(
        sandbox,
        POLARIS_INVITERS=f"{INVITER},{SECOND_INVITER}",
        POLARIS_APPROVAL="auto",
        POLARIS_MAX_INVITES_PER_HOUR="100000",
        POLARIS_LIST_LIMIT="1000",  # the whole list in one reply, never a file
        **overrides,
    )


@pytest.fixture(scope="module")
def rsc() -> Iterator[Sandbox]:
    with Sandbox(users=40) as server:
        yield server


@pytest.fixture(scope="module")
def module_bot(rsc: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chat]:
    env = bot_env(
        rsc,
        POLARIS_CONNECT_TIMEOUT=str(CONNECT),
        POLARIS_READ_TIMEOUT=str(READ),
        POLARIS_RETRY_BUDGET=str(BUDGET),
    )
    chat = Chat(bot_config({"BOT_DATA_DIR": str(tmp_path_factory.mktemp("faults")), **env}))
    chat.as_user(INVITER)
    # Role ids are looked up by the first invite and then kept.
    chat.send("!polaris invite warm.up@example.com")
    assert chat.replies(2)[1] == "warm.up@example.com: invited"
    yield chat
    chat.stop()


@pytest.fixture
def bot(module_bot: Chat, rsc: Sandbox) -> Chat:
    """The module's bot with no faults, a valid token and an empty request log."""
    rsc.clear_faults()
    rsc.latency = 0.0
    drain(module_bot)
    module_bot.as_user(INVITER)
    assert "login works" in module_bot.ask("!polaris status")
    rsc.reset_log()
    return module_bot


_counter = iter(range(1_000_000))


def fresh(name: str) -> str:
    """An address nobody has used yet in this module."""
    return f"{name}.{next(_counter)}@example.com"


def create_calls(sandbox: Sandbox, email: str) -> list[Any]:
    return [
        r
        for r in sandbox.requests
        if "createUser" in r.fields and r.variables and r.variables.get("email") == email
    ]


def reached_rsc(sandbox: Sandbox, email: str) -> list[Any]:
    """createUser requests that got past the gateway: not refused for a token or a rate."""
    return [r for r in create_calls(sandbox, email) if r.status not in (401, 429)]


# --- the fault matrix ---------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One fault, how to switch it on, and what each command must say under it."""

    name: str
    arm: Callable[[Sandbox], None]
    invite: str  # what an invite's line says after the address
    listing: str  # a part of the !polaris list reply
    status: str  # a part of the !polaris status reply
    logins: tuple[int, int] | None = None  # fewest and most logins while it is on


def graphql(kind: str, **params: Any) -> Callable[[Sandbox], None]:
    return lambda sandbox: sandbox.set_fault("graphql", kind, **params)


def login_down(sandbox: Sandbox) -> None:
    sandbox.expire_tokens()
    sandbox.set_fault("client_token", "down")


LISTED = "Polaris users:"
CANNOT_LIST = "I couldn't list users: "
UNCONFIRMED = "could not confirm, check with !polaris list {email}"
NOT_ANSWERING = "Polaris is not answering right now"
BUSY = "Polaris is busy (rate limited)"
SLOW = "Polaris: reachable, but slow: no answer within"
FAILING = "Polaris: reachable, but failing: "

MATRIX = [
    Case("latency", graphql("latency", seconds=0.2), "invited", LISTED, "login works", (0, 0)),
    Case("hang", graphql("hang"), UNCONFIRMED, NOT_ANSWERING, SLOW),
    *[
        Case(
            f"http-{code}",
            graphql("status", code=code),
            UNCONFIRMED,
            NOT_ANSWERING,
            f"{FAILING}it answered with a server error (HTTP {code})",
        )
        for code in (500, 502, 503, 504)
    ],
    Case(
        "429-seconds", graphql("rate_limit", retry_after=30), f"Polaris error: {BUSY}", BUSY, BUSY
    ),
    Case(
        "429-http-date",
        graphql("rate_limit", retry_after=30, http_date=True),
        f"Polaris error: {BUSY}",
        BUSY,
        BUSY,
    ),
    Case(
        "reset",
        graphql("reset"),
        UNCONFIRMED,
        NOT_ANSWERING,
        f"{FAILING}it closed the connection without a whole answer",
    ),
    Case(
        "not-json",
        graphql("not_json"),
        UNCONFIRMED,
        "not an API response",
        f"{FAILING}it answered with something that is not an API response",
    ),
    Case(
        "graphql-error",
        graphql("graphql_error", message="INTERNAL: storage is on fire"),
        "Polaris error: Polaris said: storage is on fire",
        "Polaris said: storage is on fire",
        "Polaris said: storage is on fire",
    ),
    Case(
        "graphql-error-partial-data",
        graphql("graphql_error", message="INTERNAL: half the shards", partial=True),
        "Polaris error: Polaris said: half the shards",
        "Polaris said: half the shards",
        "Polaris said: half the shards",
    ),
    Case(
        "token-expired-mid-run",
        lambda sandbox: sandbox.expire_tokens(),
        "invited",
        LISTED,
        "login works",
        (1, 1),
    ),
    Case(
        "token-always-refused",
        graphql("unauthorized"),
        "Polaris error: Polaris refused the bot's token even right after a new login",
        "refused the bot's token",
        "login fails",
        (1, 4),
    ),
    Case(
        "login-endpoint-down",
        login_down,
        "Polaris error: Polaris is not answering the bot's login right now",
        "not answering the bot's login",
        f"{FAILING}it answered the bot's login with a server error (HTTP 503)",
        (0, 0),
    ),
]


@pytest.mark.parametrize("case", MATRIX, ids=[case.name for case in MATRIX])
def test_every_command_answers_in_time_and_truthfully_under_each_fault(
    case: Case, bot: Chat, rsc: Sandbox
) -> None:
    invited, requester = fresh("invitee"), fresh("requester")
    case.arm(rsc)

    talk = Conversation(bot)
    talk.send(
        [
            (INVITER, f"!polaris invite {invited}", None),
            (MEMBER, "!polaris request", requester),
            (INVITER, "!polaris list", None),
            (ADMIN, "!polaris status", None),
        ]
    )
    replies = talk.collect(6, timeout=max(BOUND.values()))

    seen: dict[str, list[Reply]] = {}
    for reply in replies:
        assert_plain(reply.text)
        if reply.text == "Inviting 1 address to Polaris…":
            kind = "ack"
        elif reply.text.startswith((f"{invited}:", f"{requester}:")):
            kind = "invite"
        elif reply.text.startswith("Polaris:"):
            kind = "status"
        else:
            kind = "list"
        seen.setdefault(kind, []).append(reply)
        assert reply.seconds <= BOUND[kind], f"{kind} took {reply.seconds:.1f} s: {reply.text!r}"
    assert {kind: len(got) for kind, got in seen.items()} == {
        "ack": 2,
        "invite": 2,
        "list": 1,
        "status": 1,
    }

    for email in (invited, requester):
        line = next(r.text for r in seen["invite"] if r.text.startswith(f"{email}:"))
        assert line.startswith(f"{email}: {case.invite.format(email=email)}")
        # Never two createUser calls for one address, whatever happened to the first.
        assert len(reached_rsc(rsc, email)) <= 1
        assert sum(r.applied for r in create_calls(rsc, email)) <= 1
        # An invite reported as done is done; one reported as not done is not.
        if case.invite == "invited":
            assert email in rsc.users
        if case.invite.startswith("Polaris error"):
            assert email not in rsc.users
    listing = seen["list"][0].text
    assert case.listing in listing
    if case.listing != LISTED:
        assert listing.startswith(CANNOT_LIST)
        assert "@example.com" not in listing  # no partial list passed off as the whole
    assert case.status in seen["status"][0].text
    if case.logins is not None:
        fewest, most = case.logins
        assert fewest <= rsc.logins <= most


# --- a lost answer to createUser ------------------------------------------------------


@pytest.mark.parametrize(
    "kind, params",
    [("hang", {}), ("reset", {}), ("status", {"code": 502}), ("not_json", {})],
    ids=["hang", "reset", "502", "not-json"],
)
def test_an_invite_whose_answer_is_lost_is_confirmed_not_repeated(
    kind: str, params: dict[str, Any], bot: Chat, rsc: Sandbox
) -> None:
    email = fresh("lost.answer")
    # RSC makes the account, then the answer never arrives in one piece.
    rsc.set_fault("graphql:createUser", kind, apply_first=True, **params)

    bot.send(f"!polaris invite {email}")

    assert bot.reply(AT_ONCE) == "Inviting 1 address to Polaris…"
    line = bot.reply(BOUND["invite"])
    assert line == (
        f"{email}: has an account now; Polaris's answer to the invite was lost, "
        "so it may have existed already"
    )
    assert len(create_calls(rsc, email)) == 1
    assert rsc.calls("userAlreadyExists") == [{"email": email}]
    assert email in rsc.users


def test_a_lost_invite_that_polaris_says_did_not_happen_is_not_reported_as_done(
    bot: Chat, rsc: Sandbox
) -> None:
    email = fresh("not.made")
    rsc.set_fault("graphql:createUser", "reset")

    bot.send(f"!polaris invite {email}")

    assert bot.reply(AT_ONCE) == "Inviting 1 address to Polaris…"
    # RSC says there is no such account, but a slow createUser could still land later.
    assert bot.reply(BOUND["invite"]) == (
        f"{email}: could not confirm, check with !polaris list {email}"
    )
    assert len(create_calls(rsc, email)) == 1
    assert email not in rsc.users


# --- rate limiting --------------------------------------------------------------------


@pytest.mark.parametrize("http_date", [False, True], ids=["seconds", "http-date"])
def test_a_rate_limited_invite_waits_as_told_and_is_sent_once_more(
    http_date: bool, bot: Chat, rsc: Sandbox
) -> None:
    email = fresh("rate.limited")
    rsc.set_fault("graphql:createUser", "rate_limit", times=1, retry_after=1, http_date=http_date)

    bot.send(f"!polaris invite {email}")

    assert bot.reply(AT_ONCE) == "Inviting 1 address to Polaris…"
    assert bot.reply(BOUND["invite"]) == f"{email}: invited"
    first, second = create_calls(rsc, email)
    assert (first.status, first.applied) == (429, False)
    assert (second.status, second.applied) == (200, True)
    if not http_date:  # an HTTP date has whole seconds, so its wait can be shorter
        assert second.started - first.started >= 0.9


def test_a_rate_limited_list_waits_as_told_then_answers(bot: Chat, rsc: Sandbox) -> None:
    rsc.set_fault("graphql", "rate_limit", times=1, retry_after=1)

    reply = bot.ask("!polaris list", timeout=BOUND["list"])

    assert LISTED in reply
    statuses = [r.status for r in rsc.requests if r.path == "/api/graphql"]
    assert statuses == [429, 200]


# --- the bot stays responsive with its usual timeouts --------------------------------


@pytest.fixture(scope="module")
def slow_rsc() -> Iterator[Sandbox]:
    with Sandbox(users=10) as server:
        yield server


@pytest.fixture(scope="module")
def patient_bot(slow_rsc: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chat]:
    """A bot with the default connect, read and retry settings (5 s, 20 s, 30 s)."""
    env = bot_env(
        slow_rsc, POLARIS_CONNECT_TIMEOUT="", POLARIS_READ_TIMEOUT="", POLARIS_RETRY_BUDGET=""
    )
    env = {k: v for k, v in env.items() if v}
    chat = Chat(bot_config({"BOT_DATA_DIR": str(tmp_path_factory.mktemp("patient")), **env}))
    chat.as_user(INVITER)
    assert chat.plugin.client.timeout == (5.0, 20.0)
    yield chat
    chat.stop()


# --- the same address from different people at the same moment ------------------------


def test_people_asking_for_one_address_at_the_same_moment_share_one_create_user(
    patient_bot: Chat, slow_rsc: Sandbox
) -> None:
    email = "wanted.by.all@example.com"
    # Slow enough for every command to arrive while the first createUser is running.
    slow_rsc.set_fault("graphql:createUser", "latency", seconds=1.0)

    talk = Conversation(patient_bot)
    talk.send(
        [
            (INVITER, f"!polaris invite {email}", None),
            (SECOND_INVITER, f"!polaris invite {email.upper()}", None),
            (MEMBER, "!polaris request", email),
        ]
    )
    replies = [r.text for r in talk.collect(6, timeout=10)]

    assert replies.count("Inviting 1 address to Polaris…") == 3
    assert replies.count(f"{email}: invited") == 3
    assert len(create_calls(slow_rsc, email)) == 1
    slow_rsc.clear_faults()


def test_while_polaris_hangs_status_help_and_usage_answer_at_once(
    patient_bot: Chat, slow_rsc: Sandbox
) -> None:
    assert "login works" in patient_bot.ask("!polaris status")
    slow_rsc.set_fault("graphql", "hang")

    patient_bot.send("!polaris invite hangs.forever@example.com")
    assert patient_bot.reply(AT_ONCE) == "Inviting 1 address to Polaris…"

    started = time.monotonic()
    status = patient_bot.ask("!polaris status", timeout=STATUS_TIMEOUT + SLACK)
    assert time.monotonic() - started <= STATUS_TIMEOUT + SLACK
    # RSC took the connection and never answered: slow, not unreachable.
    assert status.startswith(SLOW)
    assert_plain(status)

    for command in ("!help", "!polaris"):
        started = time.monotonic()
        reply = patient_bot.ask(command, timeout=AT_ONCE)
        assert time.monotonic() - started <= AT_ONCE
        assert "!polaris invite" in reply

    # Clearing the faults ends the hung createUser without an answer; RSC has no such
    # account, and a createUser lost on the way could still land: no claim either way.
    slow_rsc.clear_faults()
    email = "hangs.forever@example.com"
    assert (
        patient_bot.reply(SLACK) == f"{email}: could not confirm, check with !polaris list {email}"
    )
    assert len(create_calls(slow_rsc, email)) == 1


def test_status_does_not_wait_for_a_login_that_hangs(patient_bot: Chat, slow_rsc: Sandbox) -> None:
    slow_rsc.clear_faults()
    slow_rsc.expire_tokens()
    slow_rsc.set_fault("client_token", "hang")
    # The invite logs in first, and waits for the login's answer while holding the lock.
    patient_bot.send("!polaris invite waits.for.login@example.com")
    assert patient_bot.reply(AT_ONCE) == "Inviting 1 address to Polaris…"
    assert_wait(lambda: any(r.path == "/api/client_token" for r in slow_rsc.requests))

    started = time.monotonic()
    status = patient_bot.ask("!polaris status", timeout=STATUS_TIMEOUT + SLACK)

    assert time.monotonic() - started <= STATUS_TIMEOUT + SLACK
    # The other thread's login holds the connection: whether RSC took it is not known here.
    assert status.startswith("Polaris: no answer yet: the bot's login has waited more than")
    assert_plain(status)

    # The login was never answered, so trying it again is safe; then the invite goes out.
    slow_rsc.clear_faults()
    assert patient_bot.reply(SLACK + BACKOFF) == "waits.for.login@example.com: invited"
    assert len(reached_rsc(slow_rsc, "waits.for.login@example.com")) == 1


def assert_wait(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.02)
