"""Requests, the audit trail and the hourly limit survive a restart on Errbot's Shelf storage.

The test backend normally stores in memory, which hands back live objects and so hides
changes made in place that Shelf would never save. These bots use Shelf in one data
directory, the second bot starting where the first stopped.
"""

from __future__ import annotations

import pytest
from chat import Chat, bot_config, shown, wait_for
from conftest import INVITER, MEMBER, polaris_env
from errbot.core import ErrBot
from test_approvals import Mailbox

MEMBER_EMAIL = "member.one@example.com"
OTHER = "U0OTHER"
OTHER_EMAIL = "other@example.com"


@pytest.fixture
def start_on_shelf(sandbox, tmp_path):
    """Start bots on Shelf storage in one data directory, as one bot restarted."""
    running: list[Chat] = []

    def start(**overrides: str) -> Chat:
        env = {"BOT_DATA_DIR": str(tmp_path), **polaris_env(sandbox, **overrides)}
        config = bot_config(env)
        config.update(STORAGE="Shelf", BOT_DATA_DIR=str(tmp_path))
        chat = Chat(config)
        running.append(chat)
        chat.mail = Mailbox(chat)
        return chat

    yield start
    for chat in running:
        if chat.testbot.bot_thread is not None:
            chat.stop()


def test_a_request_made_before_a_restart_is_approved_after_it(start_on_shelf, sandbox, tmp_path):
    first = start_on_shelf(POLARIS_MAX_INVITES_PER_HOUR="2")
    first.as_user(MEMBER, email=MEMBER_EMAIL)
    request_id = first.mail.reply_to_command("!polaris request").split()[1]
    first.as_user(OTHER, email=OTHER_EMAIL)
    other_id = first.mail.reply_to_command("!polaris request").split()[1]
    first.as_user(INVITER)
    assert "Denied" in first.mail.reply_to_command(f"!polaris deny {other_id} duplicate")
    first.mail.reply_to_command("!polaris invite early@example.com")
    first.mail.wait_for("Err", "early@example.com: invited")
    first.stop()
    assert list(tmp_path.glob("Polaris.db*")), "the plugin did not store on Shelf"

    second = start_on_shelf(POLARIS_MAX_INVITES_PER_HOUR="2")
    second.as_user(INVITER)

    pending = second.mail.reply_to_command("!polaris pending")
    assert pending.startswith("1 request waiting")
    assert f"{request_id}  {MEMBER_EMAIL}  asked by {MEMBER}" in pending
    audit = second.mail.reply_to_command("!polaris audit").splitlines()
    assert audit[0] == "Newest 4 audit entries:"
    assert "invite  early@example.com  INVITED" in audit[1]
    assert f"deny  {OTHER_EMAIL}  DENIED" in audit[2] and "reason: duplicate" in audit[2]
    assert f"request  {OTHER_EMAIL}  PENDING" in audit[3]
    assert f"request  {MEMBER_EMAIL}  PENDING" in audit[4] and f"request {request_id}" in audit[4]

    answer = second.mail.reply_to_command(f"!polaris approve {request_id}")

    assert answer.startswith(f"Approved request {request_id}")
    assert f"{MEMBER_EMAIL}: invited" in second.mail.wait_for(MEMBER, "approved")
    assert [c["email"] for c in sandbox.calls("createUser")] == [
        "early@example.com",
        MEMBER_EMAIL,
    ]
    # The hour did not restart with the bot: two sent, the limit is two.
    assert "not sent" in second.mail.reply_to_command("!polaris invite late@example.com")


def test_an_invite_approved_just_before_a_stop_is_sent_after_the_restart(
    start_on_shelf, sandbox, monkeypatch
):
    first = start_on_shelf()
    first.as_user(MEMBER, email=MEMBER_EMAIL)
    request_id = first.mail.reply_to_command("!polaris request").split()[1]
    # The approval is recorded, but the bot stops before Polaris is asked.
    first.plugin.approvals.decide(request_id, INVITER, approve=True)
    first.stop()
    assert sandbox.calls("createUser") == []
    # The invite resumes while the bot starts, before a Mailbox could be attached to it,
    # so listen where every backend's send_message ends (Errbot loads its own TestBackend).
    sent: list[tuple[str, str]] = []
    original = ErrBot.send_message

    def record(backend, msg):
        sent.append((str(msg.to), shown(str(msg.body))))
        original(backend, msg)

    monkeypatch.setattr(ErrBot, "send_message", record)

    second = start_on_shelf()

    assert wait_for(lambda: any(to == MEMBER and "approved" in text for to, text in sent))
    told = next(text for to, text in sent if to == MEMBER and "approved" in text)
    assert f"approved by {INVITER}" in told and f"{MEMBER_EMAIL}: invited" in told
    assert [c["email"] for c in sandbox.calls("createUser")] == [MEMBER_EMAIL]
    assert second.plugin.approvals.unfinished() == []


def test_limits_and_thousands_of_audit_entries_survive_a_restart_in_little_space(
    start_on_shelf, sandbox, tmp_path
):
    first = start_on_shelf(POLARIS_MAX_INVITES_PER_HOUR="3")
    first.as_user(INVITER)
    first.mail.reply_to_command("!polaris invite one@example.com two@example.com")
    first.mail.wait_for("Err", "two@example.com: invited")
    for n in range(3000):
        first.plugin.audit.record(
            "invite", who=OTHER, email=f"p{n}@example.com", outcome="INVITED", where="C0OPS"
        )
    first.stop()
    # 3,002 entries of one 512-byte dbm.dumb block each, plus the key index; the first
    # design, rewriting a growing block of entries, took about 50 MB here.
    assert sum(f.stat().st_size for f in tmp_path.glob("Polaris.db*")) < 2_500_000

    second = start_on_shelf(POLARIS_MAX_INVITES_PER_HOUR="3")
    second.as_user(INVITER)

    assert second.plugin.limits.used(INVITER) == 2
    assert len(second.plugin.audit) == 3002
    audit = second.mail.reply_to_command("!polaris audit two@example.com").splitlines()
    assert audit[0] == "Newest 1 audit entry for two@example.com:"
    assert "invite  two@example.com  INVITED" in audit[1] and f"by {INVITER}" in audit[1]
    assert "p2999@example.com" in second.mail.reply_to_command("!polaris audit 1")

    second.mail.reply_to_command("!polaris invite three@example.com four@example.com")
    outcome = second.mail.wait_for("Err", "three@example.com: invited")
    assert "four@example.com: not sent: the limit of 3 invites an hour" in outcome
    assert sorted(c["email"] for c in sandbox.calls("createUser")) == [
        "one@example.com",
        "three@example.com",
        "two@example.com",
    ]
