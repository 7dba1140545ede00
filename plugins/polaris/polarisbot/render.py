"""Turning outcomes, users and status into chat text, in one place.

Anything a person typed is passed through ``safe_text.neutralize`` before it is
echoed, so it cannot become a mention, a channel ping or a link.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from polarisbot.outcomes import Kind, Outcome
from polarisbot.safe_text import neutralize


def outcome_text(outcome: Outcome) -> str:
    """The words after the colon on an address's line."""
    kind, detail = outcome.kind, outcome.detail
    if kind is Kind.INVALID:
        return f"{kind.value} ({detail})" if detail else kind.value
    if kind is Kind.DOMAIN:
        return f"{kind.value} ({detail})" if detail else kind.value
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
    """``<address>: <outcome>`` with the address made safe to echo."""
    return f"{neutralize(shown)}: {outcome_text(outcome)}"


def outcome_lines(pairs: Iterable[tuple[str, Outcome]]) -> str:
    return "\n".join(outcome_line(shown, outcome) for shown, outcome in pairs)


def when(moment: datetime | None) -> str:
    """A sign-in time for people: ``never`` for an invite not yet accepted."""
    if moment is None:
        return "never"
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def counts(stats: Mapping[str, int]) -> str:
    """``3 invited, 1 already has an account`` or ``none yet``."""
    parts = [f"{n} {name}" for name, n in stats.items() if n]
    return ", ".join(parts) if parts else "none yet"


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else (words or word + 's')}"


def user_line(user: Any) -> str:
    """One user of ``!polaris list``: email, status, last sign-in, roles."""
    roles = ", ".join(user.roles) if user.roles else "no roles"
    return f"{user.email}  {user.status.lower()}  last sign-in {when(user.last_login)}  {roles}"
