"""What Slack does to a message before the plugin sees it, and what the bot echoes back."""

from __future__ import annotations

from polarisbot.access import entries_that_cannot_match_on_slack


def slack_event(text: str, ts: str = "1733300000.000100", channel: str = "D0DM") -> dict:
    return {"slack_event": {"type": "message", "text": text, "ts": ts, "channel": channel}}


def test_link_targets_are_read_from_the_raw_slack_text(chat, sandbox):
    # SlackV3 hands the plugin the label as the body; the raw event keeps the target.
    chat.send(
        "!polaris invite bob@example.com",
        extras=slack_event("!polaris invite <mailto:mallory@example.com|bob@example.com>"),
    )

    reply = chat.reply()
    assert reply.startswith("bob@example.com: the link text differs from where it points")
    assert sandbox.calls("createUser") == []


def test_a_matching_mailto_link_is_invited_once(chat, sandbox):
    chat.send(
        "!polaris invite carol@example.com",
        extras=slack_event("!polaris invite <mailto:carol@example.com|carol@example.com>"),
    )

    assert chat.replies(2)[1] == "carol@example.com: invited"
    assert [c["email"] for c in sandbox.calls("createUser")] == ["carol@example.com"]


def test_the_same_slack_message_delivered_twice_invites_once(chat, sandbox):
    event = slack_event("!polaris invite dave@example.com", ts="1733300000.000200")

    chat.send("!polaris invite dave@example.com", extras=event)
    chat.send("!polaris invite dave@example.com", extras=event)

    assert chat.replies(2) == ["Inviting 1 address to Polaris…", "dave@example.com: invited"]
    assert chat.silent(1.0)
    assert len(sandbox.calls("createUser")) == 1


def test_an_edit_of_a_handled_message_does_not_invite_again(chat, sandbox):
    chat.send(
        "!polaris invite erin@example.com",
        extras=slack_event("!polaris invite erin@example.com", ts="1733300000.000300"),
    )
    chat.replies(2)
    edit = {
        "slack_event": {
            "type": "message",
            "subtype": "message_changed",
            "channel": "D0DM",
            "message": {"text": "!polaris invite frank@example.com", "ts": "1733300000.000300"},
        }
    }

    chat.send("!polaris invite frank@example.com", extras=edit)

    assert chat.silent(1.0)
    assert [c["email"] for c in sandbox.calls("createUser")] == ["erin@example.com"]


def test_replies_never_turn_typed_text_into_pings_or_links(chat, sandbox):
    chat.send("!polaris invite <!channel> @here <@U0BOSS> <https://evil.example|click>")

    reply = str(chat.bot.pop_message(timeout=10))  # as sent, invisible breaks included
    for markup in ("<!channel>", "<@U0BOSS>", "<https://", "@here"):
        assert markup not in reply
    assert sandbox.calls("createUser") == []


def test_an_unknown_subcommand_is_echoed_without_markup(chat):
    reply = chat.ask("!polaris <!everyone>")

    assert "<!everyone>" not in reply


def test_acl_entries_written_as_names_are_flagged_for_slack():
    controls = {
        "Polaris:polaris_invite": {"allowusers": ("U0INVITER", "@alice")},
        "Polaris:polaris_list": {"allowrooms": ("#ops", "C0OPS")},
        "Polaris:*": {"allowusers": ("*",)},
    }

    warnings = entries_that_cannot_match_on_slack(controls, admins=("U0ADMIN", "bob"))

    assert len(warnings) == 3
    assert any("'@alice'" in w for w in warnings)
    assert any("'#ops'" in w for w in warnings)
    assert any("BOT_ADMINS entry 'bob'" in w for w in warnings)
