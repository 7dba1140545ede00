"""Request, status, list and roles from chat, and the three ways to log in to RSC."""

from __future__ import annotations

import pytest
from conftest import INVITER, MEMBER, polaris_env

from polaris_sandbox import PASSWORD, USERNAME

# --- !polaris request -------------------------------------------------------------
# Requests with approval required are tested in test_approvals.py.


@pytest.fixture
def auto_chat(sandbox, start_bot):
    """A bot whose self-service requests need no approval (POLARIS_APPROVAL=auto)."""
    return start_bot(polaris_env(sandbox, POLARIS_APPROVAL="auto"))


def test_anyone_can_request_an_account_for_their_own_profile_email(auto_chat, sandbox):
    chat = auto_chat
    chat.as_user(MEMBER, email="Member.One@Example.com")

    chat.send("!polaris request")

    assert chat.reply() == "Inviting 1 address to Polaris…"
    assert chat.reply() == "member.one@example.com: invited"
    assert [c["email"] for c in sandbox.calls("createUser")] == ["member.one@example.com"]


def test_request_ignores_any_address_typed_after_it(auto_chat, sandbox):
    chat = auto_chat
    chat.as_user(MEMBER, email="member.two@example.com")

    chat.send("!polaris request boss@example.com")

    assert chat.reply() == "Inviting 1 address to Polaris…"
    assert chat.reply() == "member.two@example.com: invited"
    assert [c["email"] for c in sandbox.calls("createUser")] == ["member.two@example.com"]


def test_request_without_a_profile_email_says_what_the_slack_admin_must_grant(chat, sandbox):
    chat.as_user(MEMBER)

    reply = chat.ask("!polaris request")

    assert "users:read.email" in reply
    assert sandbox.calls("createUser") == []


def test_request_follows_the_domain_policy(chat, sandbox):
    chat.as_user(MEMBER, email="someone@gmail.com")

    assert chat.ask("!polaris request") == (
        "someone@gmail.com: domain not allowed (this bot invites only example.com addresses)"
    )
    assert sandbox.calls("createUser") == []


# --- !polaris status --------------------------------------------------------------


def test_status_reports_reachability_account_version_and_activity(chat, sandbox):
    chat.send("!polaris invite fresh@example.com")
    chat.replies(2)
    chat.as_user(MEMBER)

    reply = chat.ask("!polaris status")

    assert "reachable, login works, round trip" in reply
    assert "version" in reply
    assert "1 invited" in reply
    assert "Settings: all good." in reply
    assert sandbox.calls("deploymentVersion")


def test_status_says_plainly_when_polaris_is_down(chat, sandbox):
    sandbox.stop()

    reply = chat.ask("!polaris status", timeout=20)

    assert "Polaris: not reachable" in reply
    assert "Traceback" not in reply and "Errno" not in reply and "HTTPConnection" not in reply


def test_status_lists_setting_problems(sandbox, start_bot):
    chat = start_bot(polaris_env(sandbox, POLARIS_READ_TIMEOUT="soon"))

    reply = chat.ask("!polaris status")

    assert "POLARIS_READ_TIMEOUT must be a number" in reply


# --- !polaris list ----------------------------------------------------------------


def test_list_pages_through_every_user_and_cuts_long_results(sandbox, start_bot):
    sandbox.add_user("zz.last@example.com")
    chat = start_bot(polaris_env(sandbox, POLARIS_LIST_LIMIT="5"))
    chat.as_user(INVITER)
    total = len(sandbox.users)

    chat.send("!polaris list")

    attached = chat.bot.pop_message(timeout=10)  # the test backend delivers files as bytes
    lines = chat.reply().splitlines()
    assert lines[0] == f"{total} Polaris users:"
    assert len(lines) == 1 + 5 + 1
    assert lines[-1] == (
        f"… and {total - 5} more not shown here; "
        "the full list is in the file polaris-users.txt I'm sending you."
    )
    listed = attached.decode().splitlines()
    assert len(listed) == total
    assert listed[:5] == lines[1:6]
    assert any(line.startswith("zz.last@example.com  ") for line in listed)
    pages = sandbox.calls("usersInCurrentAndDescendantOrganization")
    assert len(pages) >= 1
    assert all(page.get("first", 0) <= 1000 for page in pages)


def test_list_pages_with_cursors_past_one_page(start_bot):
    from polaris_sandbox import Sandbox

    with Sandbox(users=2300) as big:
        chat = start_bot(polaris_env(big))
        chat.as_user(INVITER)

        chat.send("!polaris list")
        attached = chat.bot.pop_message(timeout=30)
        reply = chat.reply()

        assert len(attached.decode().splitlines()) == len(big.users)
        assert reply.splitlines()[0] == f"{len(big.users)} Polaris users:"
        pages = big.calls("usersInCurrentAndDescendantOrganization")
        assert len(pages) == 3
        assert pages[0].get("after") is None
        assert pages[1]["after"] and pages[2]["after"] != pages[1]["after"]


def test_list_filters_by_part_of_the_email_whatever_its_case(chat, sandbox):
    sandbox.add_user("Needle.Person@example.com", last_login=None)

    reply = chat.ask("!polaris list NEEDLE")

    lines = reply.splitlines()
    assert lines[0] == "1 Polaris user matching NEEDLE:"
    assert lines[1].startswith("needle.person@example.com  active  last sign-in never")


def test_list_is_for_direct_messages_only(chat, sandbox):
    chat.send_in_channel("!polaris list")

    reply = chat.reply()
    assert "direct message" in reply or "chatroom" in reply
    assert sandbox.calls("usersInCurrentAndDescendantOrganization") == []


def test_list_is_for_inviters_only(chat, sandbox):
    chat.as_user(MEMBER)

    assert "not allowed" in chat.ask("!polaris list")
    assert sandbox.calls("usersInCurrentAndDescendantOrganization") == []


# --- !polaris roles ---------------------------------------------------------------


def test_roles_lists_the_account_roles_and_marks_the_configured_one(chat):
    reply = chat.ask("!polaris roles")

    assert "Administrator" in reply
    assert "ReadOnlyAdmin (given to invited people)" in reply


# --- the three credential forms ---------------------------------------------------


@pytest.mark.parametrize("form", ["service account file", "client id", "username"])
def test_the_bot_logs_in_with_each_credential_form(form, sandbox, start_bot, tmp_path):
    base = polaris_env(sandbox)
    if form == "service account file":
        path = sandbox.write_service_account_file(tmp_path / "sa.json")
        env = {**base, "POLARIS_URL": "", "POLARIS_CLIENT_ID": "", "POLARIS_CLIENT_SECRET": ""}
        env["POLARIS_SERVICE_ACCOUNT_FILE"] = str(path)
    elif form == "client id":
        env = base
    else:
        env = {**base, "POLARIS_CLIENT_ID": "", "POLARIS_CLIENT_SECRET": ""}
        env.update(POLARIS_USERNAME=USERNAME, POLARIS_PASSWORD=PASSWORD)
    chat = start_bot(env)
    chat.as_user(INVITER)

    chat.send("!polaris invite cred.check@example.com")
    assert chat.replies(2)[1] == "cred.check@example.com: invited"
    assert "login works" in chat.ask("!polaris status")
    assert "cred.check@example.com" in chat.ask("!polaris list cred.check")
    logins = [r for r in sandbox.requests if r.path in ("/api/client_token", "/api/session")]
    expected = "/api/session" if form == "username" else "/api/client_token"
    assert {r.path for r in logins} == {expected}
    assert sandbox.logins == 1
