"""What happened to one address: the outcome model shared by every command."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    """Each outcome a person can be told about an address."""

    INVITED = "invited"
    EXISTS = "already has an account"
    # The invite was sent, its answer was lost, and the account exists now: we cannot
    # tell whether this invite made it or it was there before.
    EXISTS_NOW = "exists now"
    INVALID = "not a valid email address"
    DOMAIN = "domain not allowed"
    NOT_ALLOWED = "not allowed (permissions)"
    UNCONFIRMED = "could not confirm"
    ERROR = "Polaris error"
    REFUSED = "refused"  # refused by the bot before Polaris, with a detail (limits, duplicates)

    @property
    def succeeded(self) -> bool:
        return self in (Kind.INVITED, Kind.EXISTS_NOW)


@dataclass(frozen=True)
class Outcome:
    """The outcome for one address; ``detail`` is a plain sentence fragment or None."""

    email: str
    kind: Kind
    detail: str | None = None
