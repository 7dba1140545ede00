"""The address table, through the real bot: every raw input, as typed into chat.

tests/test_addresses.py checks the parser on its own; here each row goes through
``!polaris invite`` to the sandbox, and the reply and what reached Polaris are
checked: one line per entry, in order, and a createUser only for valid addresses.
"""

from __future__ import annotations

import pytest
from chat import Chat, bot_config
from conftest import INVITER, polaris_env
from test_addresses import CASES

from polaris_sandbox import Sandbox

DOMAINS = "x.com,y.com,z.com,w.com,v.com,example.com,xn--bcher-kva.de,xn--r8jz45g.jp"


@pytest.fixture(scope="module")
def table_bot(tmp_path_factory):
    with Sandbox(users=20) as sandbox:
        env = polaris_env(
            sandbox,
            POLARIS_ALLOWED_DOMAINS=DOMAINS,
            POLARIS_MAX_BATCH="10",
            POLARIS_MAX_INVITES_PER_HOUR="1000",
        )
        chat = Chat(bot_config({"BOT_DATA_DIR": str(tmp_path_factory.mktemp("bot")), **env}))
        chat.as_user(INVITER)
        try:
            yield chat, sandbox
        finally:
            chat.stop()


def test_the_table_is_big_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize(("raw", "expected"), CASES, ids=[repr(raw)[:40] for raw, _ in CASES])
def test_each_raw_input_through_the_bot(table_bot, raw, expected):
    chat, sandbox = table_bot
    sandbox.reset_log()
    valid = [email for _, email, _ in expected if email]

    chat.send(f"!polaris invite {raw}")

    if not expected:
        assert chat.reply().startswith("Name at least one address")
        return
    first = chat.reply()
    if valid:
        assert first.startswith("Inviting ")
        lines = chat.reply().splitlines()
    else:
        lines = first.splitlines()
    assert len(lines) == len(expected), lines
    for shown_line, (_, email, reason) in zip(lines, expected, strict=True):
        line = shown_line.replace("\u200b", "")  # invisible breaks keep "&b" from being markup
        if email:
            assert line in (f"{email}: invited", f"{email}: already has an account")
        else:
            assert f": {reason}" in line
    assert sorted(c["email"] for c in sandbox.calls("createUser")) == sorted(valid)
