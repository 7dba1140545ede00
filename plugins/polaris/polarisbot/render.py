"""Turning outcomes, users and status into chat text, in one place.

Anything a person typed is passed through ``safe_text.neutralize`` (or ``code``)
before it is echoed, so it cannot become a mention, a channel ping, a link or
formatting that changes what it says.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from polarisbot.outcomes import Kind, Outcome
from polarisbot.safe_text import ZERO_WIDTH_SPACE, code

# Errbot's Markdown converters drop the line break before a line that opens with inline
# code; an invisible character in front keeps each address on its own line.
LINE_START = ZERO_WIDTH_SPACE


def outcome_text(outcome: Outcome) -> str:
    """The words after the colon on an address's line."""
    kind, detail = outcome.kind, outcome.detail
    if kind is Kind.INVALID:
        return f"{kind.value} ({detail})" if detail else kind.value
    if kind is Kind.DOMAIN:
        return f"{kind.value} ({detail})" if detail else kind.value
    if kind is Kind.NOT_ALLOWED:
        return f"{kind.value}: {detail}" if detail else kind.value
    if kind is Kind.EXISTS_NOW:
        return (
            "has an account now; Polaris's answer to the invite was lost, "
            "so it may have existed already"
        )
    if kind is Kind.UNCONFIRMED:
        return f"could not confirm, check with !polaris list {outcome.email}"
    if kind is Kind.ERROR:
        return f"Polaris error: {detail or 'no reason given'}"
    if kind is Kind.REFUSED:
        return detail or "refused"
    return kind.value


def outcome_line(shown: str, outcome: Outcome) -> str:
    """``<address>: <outcome>``, the address as code so that Markdown and Slack show it as it is.

    Outside a code span, ``x*y*z@example.com`` would lose its stars to bold text and
    ``#h@example.com`` would become a heading: the reply would name another address.
    """
    return f"{LINE_START}{code(shown)}: {outcome_text(outcome)}"


def outcome_lines(pairs: Iterable[tuple[str, Outcome]]) -> str:
    return "\n".join(outcome_line(shown, outcome) for shown, outcome in pairs)


def when(moment: datetime | None) -> str:
    """A sign-in time for people: ``never`` for an invite not yet accepted."""
    if moment is None:
        return "never"
    return moment.strftime("%Y-%m-%d %H:%M UTC")


# How each outcome reads in the counts of !polaris status.
COUNT_LABELS = {
    Kind.INVITED: "invited",
    Kind.EXISTS: "already had an account",
    Kind.EXISTS_NOW: "had an account after a lost answer",
    Kind.INVALID: "not valid addresses",
    Kind.DOMAIN: "in domains not allowed",
    Kind.NOT_ALLOWED: "refused for lack of permission",
    Kind.UNCONFIRMED: "could not be confirmed",
    Kind.ERROR: "failed with a Polaris error",
    Kind.REFUSED: "refused",
}


def counts(stats: Mapping[str, int]) -> str:
    """``3 invited, 1 already had an account`` or ``none yet``, from counts by outcome."""
    labels = {kind.value: label for kind, label in COUNT_LABELS.items()}
    parts = [f"{n} {labels.get(name, name)}" for name, n in stats.items() if n]
    return ", ".join(parts) if parts else "none yet"


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else (words or word + 's')}"


def user_line(user: Any) -> str:
    """One user of ``!polaris list`` in chat: email, status, last sign-in, roles."""
    return LINE_START + _user_fields(user, code(user.email))


def user_row(user: Any) -> str:
    """The same user as plain text, for the file with the whole list."""
    return _user_fields(user, user.email)


def _user_fields(user: Any, email: str) -> str:
    roles = ", ".join(user.roles) if user.roles else "no roles"
    return f"{email}  {user.status.lower()}  last sign-in {when(user.last_login)}  {roles}"
