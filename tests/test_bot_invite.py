"""Inviting people from chat, end to end: the real bot, the sandbox RSC over HTTP."""

from __future__ import annotations

from conftest import ADMIN, INVITER, MEMBER, ROLE, polaris_env


def role_id(sandbox, name=ROLE):
    return next(r.id for r in sandbox.roles.values() if r.name == name)


def test_an_inviter_invites_an_allowed_address(chat, sandbox):
    chat.send("!polaris invite alice.new@example.com")

    assert chat.reply() == "Inviting 1 address to Polaris…"
    assert chat.reply() == "alice.new@example.com: invited"
    assert sandbox.calls("createUser") == [
        {"email": "alice.new@example.com", "roleIds": [role_id(sandbox)]}
    ]
    assert "alice.new@example.com" in sandbox.users


def test_each_address_gets_its_own_line_in_the_order_given(chat, sandbox):
    sandbox.add_user("taken@example.com")

    chat.send(
        "!polaris invite New.Person@Example.com, taken@example.com not-an-address bob@other.org"
    )

    assert chat.reply() == "Inviting 2 addresses to Polaris…"
    lines = chat.reply().splitlines()
    assert lines[0] == "new.person@example.com: invited"
    assert lines[1] == "taken@example.com: already has an account"
    assert lines[2].startswith("not-an-address: not a valid email address")
    assert lines[3] == (
        "bob@other.org: domain not allowed (this bot invites only example.com addresses)"
    )
    assert len(lines) == 4
    sent = [call["email"] for call in sandbox.calls("createUser")]
    assert sorted(sent) == ["new.person@example.com", "taken@example.com"]


def test_only_refusals_are_answered_at_once_without_calling_polaris(chat, sandbox):
    chat.send("!polaris invite eve@evil.example")

    assert chat.reply() == (
        "eve@evil.example: domain not allowed (this bot invites only example.com addresses)"
    )
    assert sandbox.calls("createUser") == []


def test_the_same_address_twice_in_one_command_is_invited_once(chat, sandbox):
    chat.send("!polaris invite dup@example.com DUP@example.com")

    assert chat.reply() == "Inviting 1 address to Polaris…"
    assert chat.reply() == "dup@example.com: invited"
    assert len(sandbox.calls("createUser")) == 1


def test_a_non_inviter_asking_to_invite_someone_is_refused(chat, sandbox):
    chat.as_user(MEMBER)

    reply = chat.ask("!polaris invite alice@example.com")

    assert "not allowed" in reply
    assert sandbox.calls("createUser") == []


def test_a_bot_admin_who_is_not_an_inviter_is_refused_too(chat, sandbox):
    chat.as_user(ADMIN)

    assert "not allowed" in chat.ask("!polaris invite alice@example.com")
    assert sandbox.calls("createUser") == []


def test_privileged_commands_refuse_when_access_control_is_not_in_force(sandbox, start_bot):
    chat = start_bot(polaris_env(sandbox), ACCESS_CONTROLS={"Polaris:*": {"allowusers": ("*",)}})
    chat.as_user(MEMBER)

    reply = chat.ask("!polaris invite alice@example.com")

    assert "access control is not in force" in reply
    assert "POLARIS_INVITERS" in reply
    assert sandbox.calls("createUser") == []


def test_invitations_fail_closed_without_allowed_domains(sandbox, start_bot):
    chat = start_bot(polaris_env(sandbox, POLARIS_ALLOWED_DOMAINS=""))
    chat.as_user(INVITER)

    reply = chat.ask("!polaris invite alice@example.com")

    assert "POLARIS_ALLOWED_DOMAINS" in reply
    assert sandbox.calls("createUser") == []


def test_a_role_the_account_lacks_is_named_with_the_roles_it_has(sandbox, start_bot):
    chat = start_bot(polaris_env(sandbox, POLARIS_ROLES="Nonexistent Role,readonlyadmin"))
    chat.as_user(INVITER)

    # The bot looked the roles up at start-up, so it refuses before calling Polaris.
    line = chat.ask("!polaris invite alice@example.com")
    assert line.startswith(
        "I can't do that until the bot's settings are fixed: POLARIS_ROLES names 'Nonexistent"
    )
    assert "ReadOnlyAdmin" in line and "Administrator" in line
    assert "Polaris error" not in line
    chat.as_user(MEMBER, email="member@example.com")
    assert chat.ask("!polaris request").startswith("I can't do that until the bot's settings")
    assert sandbox.calls("createUser") == []
    chat.as_user(INVITER)
    assert "POLARIS_ROLES names 'Nonexistent Role'" in chat.ask("!polaris status")
    assert "Invites are refused until this is fixed" in chat.ask("!polaris roles")


def test_a_role_missing_at_start_is_picked_up_once_the_account_has_it(sandbox, start_bot):
    chat = start_bot(polaris_env(sandbox, POLARIS_ROLES="Late Role"))
    chat.as_user(INVITER)
    assert chat.ask("!polaris invite alice@example.com").startswith("I can't do that")

    sandbox.account.add_role("Late Role")
    chat.plugin.desk.recheck_roles()  # what the bot's once-a-minute poller does

    chat.send("!polaris invite alice@example.com")
    assert chat.replies(2)[1] == "alice@example.com: invited"
    assert sandbox.calls("createUser")[0]["roleIds"] == [role_id(sandbox, "Late Role")]


def test_a_polaris_error_is_reported_in_plain_words(chat, sandbox):
    sandbox.set_fault(
        "graphql:createUser", "graphql_error", message="INTERNAL: user service unavailable"
    )

    chat.send("!polaris invite alice@example.com")

    assert chat.reply() == "Inviting 1 address to Polaris…"
    line = chat.reply()
    assert line.startswith("alice@example.com: Polaris error: ")
    assert "user service unavailable" in line
    assert "Traceback" not in line and "Exception" not in line


def test_many_invites_share_one_login(chat, sandbox):
    for n in range(25):
        chat.send(f"!polaris invite person{n}@example.com")
    replies = chat.replies(50)

    assert sum(r.endswith(": invited") for r in replies) == 25
    assert len(sandbox.calls("createUser")) == 25
    assert sandbox.logins == 1


def test_a_bare_command_prints_usage(chat):
    reply = chat.ask("!polaris")

    assert "!polaris invite <email>" in reply
    assert "!polaris request" in reply


def test_an_unknown_subcommand_is_named_with_the_usage(chat):
    reply = chat.ask("!polaris frobnicate now")

    assert "I don't know the Polaris command 'frobnicate'" in reply
    assert "!polaris invite <email>" in reply


def test_invite_without_an_address_says_what_to_type(chat):
    assert chat.ask("!polaris invite") == (
        "Name at least one address: !polaris invite <email> [<email> ...]"
    )


def test_a_subcommand_in_capitals_is_pointed_to_its_lower_case_form(chat, sandbox):
    assert chat.ask("!polaris INVITE alice@example.com") == (
        "Polaris commands are lower-case: try !polaris invite."
    )
    assert sandbox.calls("createUser") == []


def test_an_account_without_permission_to_create_users_is_named_as_such(chat, sandbox):
    sandbox.set_fault(
        "graphql:createUser", "graphql_error", message="PERMISSION_DENIED: user lacks MANAGE_USERS"
    )

    chat.send("!polaris invite alice@example.com")

    assert chat.reply() == "Inviting 1 address to Polaris…"
    line = chat.reply()
    assert line.startswith("alice@example.com: not allowed (permissions): ")
    assert "user lacks MANAGE_USERS" in line
    assert "alice@example.com" not in sandbox.users
