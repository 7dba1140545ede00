"""Scenarios for echoing what people typed: no mention, broadcast or link can come out of it."""

from __future__ import annotations

import html
import re

import pytest
from errbot.rendering import text as text_renderer
from hypothesis import given, settings
from hypothesis import strategies as st
from slackv3.markdown import slack_markdown_converter

from polarisbot.safe_text import MAX_ECHO_CHARS, ZERO_WIDTH_SPACE, code, neutralize

SLACK = slack_markdown_converter()
TEXT = text_renderer()

# A word-start @ followed by a word is what Slack's link_names turns into a notification.
MENTION_WORD = re.compile(r"(?<![^\W_])@\w", re.UNICODE)
MARKDOWN_LINK = re.compile(r"\]\s*[(\[:]")


def what_slack_receives(markdown: str) -> list[str]:
    """The text Slack gets for ``markdown``: through Errbot's converter, and posted directly."""
    return [SLACK.convert(markdown), markdown]


def assert_harmless(markdown: str) -> None:
    for sent in [*what_slack_receives(markdown), TEXT.convert(markdown)]:
        assert "<" not in sent and ">" not in sent, sent
        assert not MENTION_WORD.search(sent), sent
        # Slack decodes entities once before showing text; that must not form markup either.
        assert not MENTION_WORD.search(html.unescape(sent)), sent
    assert not MARKDOWN_LINK.search(markdown)
    assert not any(ch in markdown for ch in "\n\r\t\x00\u202e")


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("jane@example.com", "jane@example.com"),
        ("<!here>", "‹!here›"),
        ("<!channel|channel>", "‹!channel|channel›"),
        ("<@U0123ABC>", f"‹@{ZERO_WIDTH_SPACE}U0123ABC›"),
        ("@here", f"@{ZERO_WIDTH_SPACE}here"),
        ("hi @channel!", f"hi @{ZERO_WIDTH_SPACE}channel!"),
        ("@Everyone", f"@{ZERO_WIDTH_SPACE}Everyone"),
        ("@jane", f"@{ZERO_WIDTH_SPACE}jane"),
        ("a & b", "a &amp; b"),
        ("&lt;!here&gt;", f"&amp;{ZERO_WIDTH_SPACE}lt;!here&amp;{ZERO_WIDTH_SPACE}gt;"),
        ("<http://evil.com|click>", "‹http://evil.com|click›"),
        ("[click](http://evil.com)", f"[click]{ZERO_WIDTH_SPACE}(http://evil.com)"),
        ("line\nbreak\ttab", "line break tab"),
        ("bell\x07\u202eevil", "bellevil"),
        ("\ud800", "\ufffd"),
    ],
)
def test_typed_text_is_echoed_without_markup(typed: str, expected: str) -> None:
    assert neutralize(typed) == expected
    assert_harmless(neutralize(typed))


def test_an_address_echoes_unchanged_through_errbot_on_slack_and_in_tests() -> None:
    for address in ["jane@example.com", "a+b@x.com", "a@xn--bcher-kva.de"]:
        assert SLACK.convert(neutralize(address)) == address
        assert TEXT.convert(neutralize(address)) == address


def test_an_ampersand_shows_as_itself_after_errbots_conversion() -> None:
    assert SLACK.convert(neutralize("Q & A")) == "Q & A"
    assert TEXT.convert(neutralize("Q&1")) == "Q&1"
    assert SLACK.convert(neutralize("a&b@x.com")) == f"a&{ZERO_WIDTH_SPACE}b@x.com"


def test_a_broadcast_written_as_entities_stays_text_through_errbot() -> None:
    # Errbot unescapes once: escaping only once would hand Slack a real <!here>.
    sent = SLACK.convert(neutralize("&lt;!here&gt;"))
    assert sent.replace(ZERO_WIDTH_SPACE, "") == "&lt;!here&gt;"
    assert html.unescape(sent) == sent
    assert "<!here>" not in SLACK.convert(neutralize("<!here>"))


def test_long_text_is_cut_with_an_ellipsis() -> None:
    echoed = neutralize("x" * 10_000)
    assert len(echoed) == MAX_ECHO_CHARS
    assert echoed.endswith("…")
    assert neutralize("abcdef", limit=4) == "abc…"


def test_code_keeps_backticks_inside_from_ending_the_span() -> None:
    wrapped = code("a`<!here>`b")
    assert wrapped.startswith("`") and wrapped.endswith("`")
    assert wrapped.count("`") == 2
    assert_harmless(wrapped)


def test_code_of_nothing_is_still_a_code_span() -> None:
    assert code("") == "` `"
    assert code("\u200b") == "` `"


def test_code_shows_plain_text_unchanged() -> None:
    assert code("jane@example.com") == "`jane@example.com`"
    assert TEXT.convert(code("jane@example.com")) == "jane@example.com"


pieces = st.one_of(
    st.text(max_size=8),
    st.sampled_from(
        [
            "<",
            ">",
            "&",
            "&lt;",
            "&gt;",
            "&amp;",
            "&amp;lt;",
            "&#60;",
            "&#x3c;",
            "&lt",
            "<!here>",
            "<!channel>",
            "<!everyone>",
            "<@U123>",
            "<#C1|x>",
            "@here",
            "@channel",
            "@everyone",
            "@",
            "!",
            "[",
            "]",
            "(",
            ")",
            "http://evil.com",
            "mailto:a@x.com",
            "|",
            "`",
            "*",
            "_",
            "~",
            "\\",
            "\n",
            "\u200b",
            "\u200d",
        ]
    ),
)
hostile_text = st.one_of(st.text(), st.lists(pieces, max_size=20).map("".join))


@settings(max_examples=300, deadline=None)
@given(hostile_text)
def test_no_typed_text_can_become_a_mention_broadcast_or_link(typed: str) -> None:
    assert_harmless(neutralize(typed))


@settings(max_examples=200, deadline=None)
@given(hostile_text)
def test_no_typed_text_can_break_out_of_code(typed: str) -> None:
    wrapped = code(typed)
    assert wrapped.count("`") == 2
    assert_harmless(wrapped)


@settings(max_examples=200, deadline=None)
@given(st.text(), st.integers(min_value=1, max_value=300))
def test_echoed_text_never_exceeds_the_cap(typed: str, limit: int) -> None:
    echoed = neutralize(typed, limit=limit)
    visible = echoed.replace(ZERO_WIDTH_SPACE, "").replace("&amp;", "&")
    assert len(visible) <= limit


def test_echoed_text_starting_with_a_hash_is_not_a_markdown_heading() -> None:
    assert neutralize("#general").startswith("\u200b#")
