"""Scenarios for the address parser: what people paste into Slack becomes addresses or reasons."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polarisbot import addresses
from polarisbot.addresses import (
    IP_LITERAL,
    LINK_MISMATCH,
    LOOKALIKE_AT,
    MAX_ENTRY_CHARS,
    MAX_REFUSED,
    MAX_TEXT_CHARS,
    MORE_REFUSED,
    NON_ASCII_LOCAL,
    NOT_VALID,
    QUOTED_LOCAL,
    SLACK_BROADCAST,
    TEXT_CUT,
    TOO_LONG_ENTRY,
    UNREADABLE,
    Candidate,
    parse_addresses,
)

OK = None  # expected reason of a valid address
MIXED = "the domain mixes look-alike alphabets"

# raw text -> [(shown, email, start of the reason)]
CASES: list[tuple[str, list[tuple[str, str | None, str | None]]]] = [
    # plain addresses, case, plus addressing
    ("jane@example.com", [("jane@example.com", "jane@example.com", OK)]),
    ("Jane.Doe@Example.COM", [("Jane.Doe@Example.COM", "jane.doe@example.com", OK)]),
    ("jane+test@example.com", [("jane+test@example.com", "jane+test@example.com", OK)]),
    # Slack link markup
    ("<mailto:a@x.com|a@x.com>", [("a@x.com", "a@x.com", OK)]),
    ("<mailto:a@x.com>", [("a@x.com", "a@x.com", OK)]),
    ("<mailto:A@X.com|a@x.COM>", [("a@x.COM", "a@x.com", OK)]),
    ("<mailto:evil@attacker.com|boss@x.com>", [("boss@x.com", None, LINK_MISMATCH)]),
    ("<mailto:a@x.com,b@y.com|a@x.com>", [("a@x.com", None, LINK_MISMATCH)]),
    ("bob@<http://x.com|x.com>", [("bob@x.com", "bob@x.com", OK)]),
    ("bob@<http://evil.com|x.com>", [("bob@x.com", None, LINK_MISMATCH)]),
    ("<http://x.com|x.com>", [("x.com", None, f"{NOT_VALID} (no @)")]),
    ("<@U0123ABC>", [("@U0123ABC", None, NOT_VALID)]),
    ("<@U0123ABC|jane>", [("@jane", None, NOT_VALID)]),
    ("<#C0123|general>", [("#general", None, NOT_VALID)]),
    ("<!here>", [("@here", None, NOT_VALID)]),
    ("<!channel> a@x.com", [("@channel", None, NOT_VALID), ("a@x.com", "a@x.com", OK)]),
    ("<!subteam^S123|@admins>", [("@admins", None, NOT_VALID)]),
    # Slack's HTML escaping, decoded exactly once
    ("&lt;a@x.com&gt;", [("a@x.com", "a@x.com", OK)]),
    ("&amp;lt;a@x.com&amp;gt;", [("&lt;a@x.com&gt", None, NOT_VALID)]),
    ("a&amp;b@x.com", [("a&b@x.com", "a&b@x.com", OK)]),
    ("&lt;<mailto:a@x.com|a@x.com>&gt;", [("a@x.com", "a@x.com", OK)]),
    # quotes and brackets around an address
    ('"a@x.com"', [("a@x.com", "a@x.com", OK)]),
    ("'a@x.com'", [("a@x.com", "a@x.com", OK)]),
    ("“a@x.com”", [("a@x.com", "a@x.com", OK)]),
    ("‘a@x.com’", [("a@x.com", "a@x.com", OK)]),
    ("«a@x.com»", [("a@x.com", "a@x.com", OK)]),
    ("(a@x.com)", [("a@x.com", "a@x.com", OK)]),
    ("[a@x.com]", [("a@x.com", "a@x.com", OK)]),
    ("*a@x.com*", [("a@x.com", "a@x.com", OK)]),
    ("_bob@x.com", [("_bob@x.com", "_bob@x.com", OK)]),
    ("mailto:a@x.com", [("a@x.com", "a@x.com", OK)]),
    # mail-client forms
    ("Jane Doe <jane@x.com>", [("jane@x.com", "jane@x.com", OK)]),
    ('"Doe, Jane" <jane@x.com>', [("jane@x.com", "jane@x.com", OK)]),
    ("“Doe, Jane” &lt;<mailto:jane@x.com|jane@x.com>&gt;", [("jane@x.com", "jane@x.com", OK)]),
    ("Jane<jane@x.com>", [("jane@x.com", "jane@x.com", OK)]),
    (
        "Jane Doe <jane@x.com>, Bob Roe <bob@y.com>",
        [("jane@x.com", "jane@x.com", OK), ("bob@y.com", "bob@y.com", OK)],
    ),
    ("typo, Jane <jane@x.com>", [("typo", None, NOT_VALID), ("jane@x.com", "jane@x.com", OK)]),
    # invisible and unusual whitespace
    ("\u200ba@x.com\u200d", [("a@x.com", "a@x.com", OK)]),
    ("\ufeffa@x\u200c.com", [("a@x.com", "a@x.com", OK)]),
    ("so\u00adft@x.com", [("soft@x.com", "soft@x.com", OK)]),
    (
        "a@x.com\u00a0b@y.com\u202fc@z.com\u3000d@w.com\te@v.com",
        [(f"{c}@{d}.com", f"{c}@{d}.com", OK) for c, d in zip("abcde", "xyzwv", strict=True)],
    ),
    # trailing punctuation
    ("a@x.com.", [("a@x.com", "a@x.com", OK)]),
    ("a@x.com!?", [("a@x.com", "a@x.com", OK)]),
    ("a@x.com:", [("a@x.com", "a@x.com", OK)]),
    # several addresses, duplicates, case
    (
        "a@x.com, b@y.com; c@z.com\nd@w.com",
        [(f"{c}@{d}.com", f"{c}@{d}.com", OK) for c, d in zip("abcd", "xyzw", strict=True)],
    ),
    ("a@x.com A@X.COM a@x.com", [("a@x.com", "a@x.com", OK)]),
    ("B@y.com b@y.com", [("B@y.com", "b@y.com", OK)]),
    ("hello a@x.com", [("hello", None, f"{NOT_VALID} (no @)"), ("a@x.com", "a@x.com", OK)]),
    ("- a@x.com\n• b@y.com", [("a@x.com", "a@x.com", OK), ("b@y.com", "b@y.com", OK)]),
    ("", []),
    ("  ,; \n ", []),
    # validity rule
    ("a@@x.com", [("a@@x.com", None, f"{NOT_VALID} (more than one @)")]),
    ("@x.com", [("@x.com", None, f"{NOT_VALID} (nothing before the @)")]),
    ("jane@", [("jane@", None, f"{NOT_VALID} (nothing after the @)")]),
    ("jane@example", [("jane@example", None, NOT_VALID)]),
    ("a..b@x.com", [("a..b@x.com", None, NOT_VALID)]),
    ("jane@x.local", [("jane@x.local", None, NOT_VALID)]),
    ("x" * 65 + "@x.com", [("x" * 65 + "@x.com", None, f"{NOT_VALID} (too long)")]),
    ("jürgen@x.de", [("jürgen@x.de", None, NON_ASCII_LOCAL)]),
    ("a@bücher.de", [("a@bücher.de", "a@xn--bcher-kva.de", OK)]),
    ("a@xn--bcher-kva.de", [("a@xn--bcher-kva.de", "a@xn--bcher-kva.de", OK)]),
    ("a@例え.jp", [("a@例え.jp", "a@xn--r8jz45g.jp", OK)]),
    ("a@аpple.com", [("a@аpple.com", None, MIXED)]),
    ("a@paypaӏ.com", [("a@paypaӏ.com", None, MIXED)]),
    ("a@xn--pple-43d.com", [("a@xn--pple-43d.com", None, MIXED)]),
    ('"john doe"@x.com', [('"john doe"@x.com', None, QUOTED_LOCAL)]),
    # look-alikes of @, and Slack broadcasts typed as plain words
    ("fw1\uff20example.com", [("fw1\uff20example.com", None, LOOKALIKE_AT)]),
    ("sm1\ufe6bexample.com", [("sm1\ufe6bexample.com", None, LOOKALIKE_AT)]),
    ("a\uff20b@x.com", [("a\uff20b@x.com", None, LOOKALIKE_AT)]),
    ("@channel", [("@channel", None, SLACK_BROADCAST)]),
    ("@Here, a@x.com", [("@Here", None, SLACK_BROADCAST), ("a@x.com", "a@x.com", OK)]),
    ("@everyone!", [("@everyone", None, SLACK_BROADCAST)]),
    ("a@[192.168.0.1]", [("a@[192.168.0.1]", None, IP_LITERAL)]),
    ("a@[IPv6:::1]", [("a@[IPv6:::1]", None, IP_LITERAL)]),
]


@pytest.mark.parametrize(("raw", "expected"), CASES, ids=[repr(raw)[:40] for raw, _ in CASES])
def test_each_kind_of_pasted_text_gives_the_expected_entries(
    raw: str, expected: list[tuple[str, str | None, str | None]]
) -> None:
    candidates = parse_addresses(raw)

    assert [(c.shown, c.email) for c in candidates] == [(s, e) for s, e, _ in expected]
    for candidate, (_, _, reason) in zip(candidates, expected, strict=True):
        if reason is None:
            assert candidate.reason is None
        else:
            assert candidate.reason is not None
            assert candidate.reason.startswith(reason), candidate.reason


def test_the_table_covers_enough_inputs() -> None:
    assert len(CASES) >= 45


def test_a_refusal_for_an_invalid_address_starts_with_the_projects_phrase() -> None:
    for raw in ["nope", "a@@b.com", "a@b", "<@U1>", "<!everyone>"]:
        [candidate] = parse_addresses(raw)
        assert candidate.reason is not None and candidate.reason.startswith(NOT_VALID)


def test_no_reason_could_ping_anyone_when_shown_as_it_is() -> None:
    # Replies echo reasons without neutralizing them, and Slack links @words.
    reasons = [value for name, value in vars(addresses).items() if name.isupper()]
    reasons = [r for r in reasons if isinstance(r, str)]
    assert len(reasons) > 10
    for reason in reasons:
        assert not re.search(r"@\w|[<>&]", reason), reason


def test_a_link_pointing_elsewhere_names_what_the_person_saw_not_the_target() -> None:
    [candidate] = parse_addresses("<mailto:attacker@evil.com|ceo@x.com>")
    assert candidate.shown == "ceo@x.com"
    assert "evil" not in candidate.shown
    assert candidate.email is None


def test_every_address_is_returned_however_many_there_are() -> None:
    # The batch limit is the plugin's to enforce; it needs to know how many there are.
    text = " ".join(f"user{i}@x.com" for i in range(500))

    candidates = parse_addresses(text)

    assert [c.email for c in candidates] == [f"user{i}@x.com" for i in range(500)]


def test_the_valid_address_after_150_junk_entries_is_found() -> None:
    text = " ".join(f"junk{i}" for i in range(150)) + " found.me@example.com"

    candidates = parse_addresses(text)

    refused = [Candidate(f"junk{i}", None, f"{NOT_VALID} (no @)") for i in range(MAX_REFUSED)]
    assert candidates == [
        *refused,
        Candidate("found.me@example.com", "found.me@example.com", None),
        Candidate("140 more entries", None, MORE_REFUSED),
    ]


def test_addresses_among_refusals_keep_the_order_they_were_typed_in() -> None:
    text = "a@x.com nope b@x.com " + " ".join(f"j{i}" for i in range(20)) + " c@x.com j0 a@x.com"

    candidates = parse_addresses(text)

    assert [c.shown for c in candidates] == [
        "a@x.com",
        "nope",
        "b@x.com",
        *[f"j{i}" for i in range(MAX_REFUSED - 1)],
        "c@x.com",
        "11 more entries",
    ]


def test_twenty_thousand_entries_give_a_few_refusals_and_every_address() -> None:
    valid = [f"person{k}@example.com" for k in range(15)]
    entries = [f"{i:x}" for i in range(20_000)]
    for k, address in enumerate(valid):
        entries[k * 1333 + 7] = address
    text = ",".join(entries)
    assert len(text) < MAX_TEXT_CHARS

    candidates = parse_addresses(text)

    assert [c.email for c in candidates if c.email] == valid
    refusals = [c for c in candidates if c.email is None]
    assert len(refusals) <= MAX_REFUSED + 2
    assert refusals[-1] == Candidate(
        f"{20_000 - 15 - MAX_REFUSED:,} more entries", None, MORE_REFUSED
    )
    assert not any(c.reason == TEXT_CUT for c in candidates)


def test_one_refused_entry_past_the_first_few_is_counted_as_one() -> None:
    text = " ".join(f"j{i}" for i in range(MAX_REFUSED + 1))
    assert parse_addresses(text)[-1] == Candidate("1 more entry", None, MORE_REFUSED)


def test_repeating_one_address_many_times_is_one_entry() -> None:
    candidates = parse_addresses("a@x.com " * 2000)
    assert candidates == [Candidate("a@x.com", "a@x.com", None)]


def test_repeating_one_refused_entry_many_times_is_one_refusal() -> None:
    candidates = parse_addresses("nope " * 2000 + "a@x.com")
    assert [c.shown for c in candidates] == ["nope", "a@x.com"]


def test_a_text_longer_than_the_cap_says_how_many_characters_were_not_read() -> None:
    head = "a@x.com " + "word " * ((MAX_TEXT_CHARS - 8) // 5)
    text = head + "z@x.com and more words"
    assert len(head) <= MAX_TEXT_CHARS < len(text)

    candidates = parse_addresses(text)

    assert candidates[0].email == "a@x.com"
    assert all(c.email != "z@x.com" for c in candidates)
    # The cut falls on the last space within the cap: what follows it is not read.
    cut = text.rfind(" ", 0, MAX_TEXT_CHARS)
    unread = len(text) - cut
    assert candidates[-1] == Candidate(
        f"the last {unread:,} characters of the message", None, TEXT_CUT
    )
    assert f"{MAX_TEXT_CHARS:,} characters" in TEXT_CUT


def test_a_text_exactly_as_long_as_the_cap_is_read_whole() -> None:
    text = "x" * (MAX_TEXT_CHARS - len(" z@x.com")) + " z@x.com"
    assert len(text) == MAX_TEXT_CHARS

    candidates = parse_addresses(text)

    assert candidates[-1] == Candidate("z@x.com", "z@x.com", None)
    assert not any(c.reason == TEXT_CUT for c in candidates)


def test_an_entry_too_long_to_be_an_address_is_refused_without_reading_it_through() -> None:
    [candidate] = parse_addresses("mailto:" * (MAX_ENTRY_CHARS // 7 + 1) + "a@x.com")
    assert candidate.reason == TOO_LONG_ENTRY


def test_a_huge_text_is_answered_without_error_and_says_what_was_not_read() -> None:
    candidates = parse_addresses("\u200b" * 1_000_000 + "x" * 1_000_000)
    unread = 2_000_000 - MAX_TEXT_CHARS
    assert candidates == [
        Candidate(f"the last {unread:,} characters of the message", None, TEXT_CUT)
    ]


@pytest.mark.parametrize(
    "text",
    [
        " ".join(f"u{i}@x{i % 7}.com" for i in range(100_000)),
        " ".join(f"w{i}" for i in range(200_000)),
        "« " * 500_000,
        "mailto:" * 150_000,
        '"' + "a" * 999_999,
        "<mailto:a@x.com|b@x.com> " * 40_000,
        "a " * 490_000 + "<x@y.com>",
    ],
    ids=["addresses", "words", "open-quotes", "mailto", "one-quote", "links", "name-words"],
)
def test_a_million_characters_of_any_shape_are_read_in_reasonable_time(text: str) -> None:
    started = time.monotonic()
    candidates = parse_addresses(text)

    # A generous bound for a slow machine; the parser takes well under a second here.
    assert time.monotonic() - started < 5
    assert len([c for c in candidates if c.email is None]) <= MAX_REFUSED + 2


def test_invisible_characters_alone_after_the_cap_are_not_reported_as_a_cut() -> None:
    candidates = parse_addresses("a@x.com" + " " * MAX_TEXT_CHARS + "\u200b" * 50)
    assert candidates == [Candidate("a@x.com", "a@x.com", None)]


# Property tests ------------------------------------------------------------------------

emails = st.builds(
    "{}@{}.{}".format,
    st.from_regex(r"[A-Za-z0-9._+'-]{1,12}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9-]{1,10}|bücher|аpple|例え", fullmatch=True),
    st.sampled_from(["com", "org", "de", "local", "x"]),
)
slack_pieces = st.one_of(
    emails,
    emails.map(lambda e: f"<mailto:{e}|{e}>"),
    emails.map(lambda e: f"<mailto:{e}>"),
    st.tuples(emails, emails).map(lambda p: f"<mailto:{p[0]}|{p[1]}>"),
    st.from_regex(r"[a-z]{1,6}", fullmatch=True).map(lambda d: f"bob@<http://{d}.com|{d}.com>"),
    st.sampled_from(["<@U123>", "<#C1|general>", "<!here>", "<!subteam^S1|@team>", "<>", "<|>"]),
    emails.map(lambda e: f"&lt;{e}&gt;"),
    emails.map(lambda e: f"Jane Doe <{e}>"),
    emails.map(lambda e: f'"Doe, Jane" <{e}>'),
    emails.map(lambda e: f"“{e}”"),
    st.sampled_from(["&amp;", "&lt;", "&gt;", "&amp;lt;", '"', "“", "«", "»", "(", ")", "[", "]"]),
    st.sampled_from(["\u200b", "\u200d", "\u200c", "\ufeff", "\u00a0", "\u202f", "\u3000", "\xad"]),
    st.sampled_from([".", ",", ";", ":", "!", "?", "@", "*", "_", "mailto:", "@[1.2.3.4]"]),
    st.text(max_size=5),
)
separators = st.sampled_from([" ", ", ", ";", "\n", "\t", "", " , "])
slack_like_text = st.lists(st.tuples(slack_pieces, separators), max_size=12).map(
    lambda parts: "".join(piece + sep for piece, sep in parts)
)
any_text = st.one_of(
    st.text(),
    st.text(st.characters(codec=None, exclude_categories=())),
    slack_like_text,
)


def check_candidates(candidates: list[Candidate]) -> None:
    seen: set[str] = set()
    for candidate in candidates:
        assert isinstance(candidate, Candidate)
        assert (candidate.email is None) != (candidate.reason is None)
        assert candidate.reason != UNREADABLE
        assert isinstance(candidate.shown, str)
        if candidate.email is not None:
            email = candidate.email
            assert email == email.lower()
            assert email.isascii()
            assert email.count("@") == 1
            assert email not in seen
            seen.add(email)
            assert parse_addresses(email) == [Candidate(email, email, None)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_text)
def test_any_text_gives_well_formed_candidates_and_never_raises(text: str) -> None:
    check_candidates(parse_addresses(text))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(slack_like_text)
def test_slack_like_text_gives_well_formed_candidates(text: str) -> None:
    check_candidates(parse_addresses(text))


@settings(max_examples=100, deadline=None)
@given(st.lists(emails, min_size=1, max_size=8), separators.filter(bool))
def test_every_valid_address_in_a_list_is_returned_once(addresses: list[str], sep: str) -> None:
    candidates = parse_addresses(sep.join(addresses))

    returned = [c.email for c in candidates if c.email]
    for address in addresses:
        [alone] = parse_addresses(address)
        if alone.email:
            assert alone.email in returned
    assert len(returned) == len(set(returned))
