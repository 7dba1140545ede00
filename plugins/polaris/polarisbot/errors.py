"""Exceptions that carry meaning.

Every failure the bot can meet is one of these. Each has a plain sentence for
people (``str(error)``); the chat layer turns them into reply lines in one place
(``polarisbot.render``). Exception text from libraries (requests, json, graphql)
never becomes part of these messages: it goes to the log instead.
"""

from __future__ import annotations


class PolarisBotError(Exception):
    """Base class: ``str()`` is a plain sentence fit to show in chat."""

    default = "Something went wrong talking to Polaris."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default)

    @property
    def reason(self) -> str:
        return str(self)


class ConfigurationError(PolarisBotError):
    """A setting is missing or has a value the bot cannot use."""

    default = "The bot is not configured for this; ask its operator to check the settings."


class LoginFailed(PolarisBotError):
    """RSC refused the bot's credentials (HTTP 401 on login, or MFA required)."""

    default = "Polaris refused the bot's credentials; ask the bot's operator to check them."


class PolarisUnavailable(PolarisBotError):
    """RSC could not be reached or did not answer in time (nothing was changed, or reads only).

    The subclasses say what happened. ``detail`` is the plain sentence `!polaris status`
    shows after "Polaris: <state>: "; it names what RSC did, where ``str()`` keeps to the
    sentence every other command shows.
    """

    default = "Polaris is not answering right now; try again in a few minutes."

    def __init__(self, message: str | None = None, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail or str(self)


class PolarisUnreachable(PolarisUnavailable):
    """No connection to RSC could be made: refused, name not resolved, connect timeout."""


class PolarisSlow(PolarisUnavailable):
    """RSC took the connection but sent no answer within the read timeout."""


class PolarisFailing(PolarisUnavailable):
    """RSC answered, but with a server error, a cut-off answer or something not its API."""


class PolarisBusy(PolarisUnavailable):
    """RSC is rate-limiting the bot for longer than the bot is willing to wait."""

    default = "Polaris is busy (rate limited); try again in a minute."


class PolarisRejected(PolarisBotError):
    """RSC answered with a GraphQL error: the operation did not happen as asked."""

    default = "Polaris refused the request."

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code  # the gRPC-style prefix, e.g. "INVALID_ARGUMENT"


class AlreadyExists(PolarisRejected):
    """createUser found an account with that email (``ALREADY_EXISTS:``)."""

    default = "already has an account"


class InvalidArgument(PolarisRejected):
    """RSC refused an argument (``INVALID_ARGUMENT:``), e.g. an address it will not accept."""

    default = "Polaris did not accept the request as valid."


class OutcomeUnknown(PolarisBotError):
    """A mutation was sent but its answer was lost (timeout, reset, 5xx).

    The change may or may not have happened. Callers must find out what is true
    (ask RSC) rather than send the mutation again.
    """

    default = "Polaris did not confirm the change."
