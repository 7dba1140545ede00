"""Whatever text follows !polaris invite, the real bot answers with what it meant to say.

Hypothesis sends generated text, plain and Slack-like, through the bot to the
sandbox. Every reply must be the acknowledgement or one line per entry; nothing
may be Errbot's error reply or exception text, and Polaris may only be asked to
create valid addresses in the allowed domain.
"""

from __future__ import annotations

import string

from chat import Chat, bot_config
from conftest import INVITER, polaris_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polaris_sandbox import Sandbox

FORBIDDEN = ("Computer says", "Traceback", "Exception", "Error:", "HTTPConnection", "Errno")

pieces = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "a@example.com",
            "B.C@Example.com",
            "x*y@example.com",
            "<mailto:a@example.com|a@example.com>",
            "<mailto:evil@example.com|boss@example.com>",
            "<!here>",
            "@channel",
            "<@U0123>",
            "&lt;a@example.com&gt;",
            "“q@example.com”",
            "a@other.org",
            "\u200b",
            "#h@example.com",
            "`b@example.com`",
        ]
    ),
    st.text(alphabet=string.ascii_letters + "@.+-_", max_size=25),
)
texts = st.lists(pieces, max_size=6).map(" ".join)


def test_any_text_after_invite_gets_a_meant_reply(tmp_path_factory):
    with Sandbox(users=5) as sandbox:
        env = polaris_env(
            sandbox,
            POLARIS_MAX_INVITES_PER_HOUR="100000",
            POLARIS_MAX_BATCH="100",
        )
        data = str(tmp_path_factory.mktemp("bot"))
        chat = Chat(bot_config({"BOT_DATA_DIR": data, **env}))
        chat.as_user(INVITER)
        try:
            check_many(chat, sandbox)
        finally:
            chat.stop()


def check_many(chat: Chat, sandbox: Sandbox) -> None:
    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )
    @given(texts)
    def one(text: str) -> None:
        sandbox.reset_log()
        chat.send(f"!polaris invite {text}")

        first = chat.reply()
        replies = [first, chat.reply()] if first.startswith("Inviting ") else [first]
        for reply in replies:
            assert not any(word in reply for word in FORBIDDEN), reply
        assert chat.silent(0.05)
        for call in sandbox.calls("createUser"):
            email = call["email"]
            assert email == email.lower() and email.endswith("@example.com"), email

    one()
