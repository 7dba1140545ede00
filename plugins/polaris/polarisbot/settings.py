"""The bot's settings, read from environment-style variables.

A bad value never stops the bot from starting. It becomes a *problem*: a plain
sentence naming the variable and what to do, tagged with the part of the bot it
disables. The commands that need that part answer with the sentence, and
``!polaris status`` lists every problem.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from polarisbot.errors import ConfigurationError
from polarisbot.rsc import Credentials

#: Parts of the bot a problem can disable.
RSC = "rsc"  # anything that talks to Polaris
INVITE = "invite"  # creating accounts (invite, request, approve)
SLASH = "slash"  # the /polaris slash command endpoint

DEFAULT_CONCURRENCY = 8
DEFAULT_LIST_LIMIT = 50


@dataclass(frozen=True)
class Problem:
    """A setting the bot cannot use, and the part of the bot it disables."""

    part: str
    sentence: str


@dataclass
class Settings:
    """Everything the plugin reads from its environment."""

    credentials: Credentials | None = None
    roles: tuple[str, ...] = ()
    allowed_domains: tuple[str, ...] = ()
    concurrency: int = DEFAULT_CONCURRENCY
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    retry_budget: float = 30.0
    list_limit: int = DEFAULT_LIST_LIMIT
    max_batch: int = 20
    # Errbot's web server (slash command, health): on when either is asked for.
    webserver_host: str = "127.0.0.1"
    webserver_port: int | None = None
    signing_secret: str = ""
    # Slack Web API, for /polaris me (users.info); the URL is changed only by tests.
    slack_bot_token: str = ""
    slack_api_url: str = "https://slack.com/api/"
    # Approval of self-service requests, and limits.
    approval: str = "required"  # or "auto"
    approvers_channel: str = ""
    request_ttl_hours: float = 72.0
    max_invites_per_hour: int = 30
    # Errbot's console has no user profiles: the demo names its users' emails here.
    console_emails: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def problems_for(self, *parts: str) -> list[str]:
        """Sentences of the problems that disable any of ``parts``."""
        return [p.sentence for p in self.problems if p.part in parts]


def split_list(value: str | None) -> tuple[str, ...]:
    """Split a comma-separated setting, dropping blanks and surrounding whitespace."""
    if not value:
        return ()
    return tuple(item.strip() for item in value.split(",") if item.strip())


class _Reader:
    """Reads typed values and records problems instead of raising."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[Problem] = []

    def text(self, name: str) -> str:
        return (self.env.get(name) or "").strip()

    def number(self, name: str, default: float, part: str, *, lowest: float) -> float:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < lowest:
            self.problems.append(
                Problem(part, f"{name} must be a number of at least {lowest:g}, not '{raw}'.")
            )
            return default
        return value

    def whole(self, name: str, default: int, part: str, *, lowest: int) -> int:
        raw = self.text(name)
        if not raw:
            return default
        if not raw.isdigit() or int(raw) < lowest:
            self.problems.append(
                Problem(part, f"{name} must be a whole number of at least {lowest}, not '{raw}'.")
            )
            return default
        return int(raw)


def _credentials(read: _Reader) -> Credentials | None:
    """The first complete form of RSC credentials, in the documented order of preference."""
    account_file = read.text("POLARIS_SERVICE_ACCOUNT_FILE")
    url = read.text("POLARIS_URL")
    client_id = read.text("POLARIS_CLIENT_ID")
    secret = read.text("POLARIS_CLIENT_SECRET")
    username = read.text("POLARIS_USERNAME")
    password = read.env.get("POLARIS_PASSWORD") or ""

    try:
        if account_file:
            return Credentials.from_service_account_file(account_file)
        if url and client_id and secret:
            return Credentials.client(url, client_id, secret)
        if url and username and password:
            return Credentials.password(url, username, password)
    except ConfigurationError as error:
        read.problems.append(Problem(RSC, str(error)))
        return None

    read.problems.append(
        Problem(
            RSC,
            "No Polaris credentials are set: set POLARIS_SERVICE_ACCOUNT_FILE, or POLARIS_URL "
            "with POLARIS_CLIENT_ID and POLARIS_CLIENT_SECRET (or POLARIS_USERNAME and "
            "POLARIS_PASSWORD).",
        )
    )
    return None


def _pairs(value: str) -> dict[str, str]:
    """``you=you@example.com,luser=l@example.com`` as a mapping; malformed items are skipped."""
    pairs = {}
    for item in split_list(value):
        name, _, email = item.partition("=")
        if name.strip() and email.strip():
            pairs[name.strip().lstrip("@")] = email.strip()
    return pairs


def _approval(read: _Reader) -> str:
    mode = read.text("POLARIS_APPROVAL").lower() or "required"
    if mode not in ("auto", "required"):
        read.problems.append(
            Problem(INVITE, f"POLARIS_APPROVAL must be 'auto' or 'required', not '{mode}'.")
        )
        return "required"
    return mode


def load_settings(env: Mapping[str, str]) -> Settings:
    """Read the settings from ``env`` (normally ``os.environ``)."""
    read = _Reader(env)
    credentials = _credentials(read)

    roles = split_list(read.text("POLARIS_ROLES"))
    if not roles:
        read.problems.append(
            Problem(
                INVITE,
                "POLARIS_ROLES is not set: set it to the Polaris role names that invited "
                "people get, e.g. POLARIS_ROLES=ReadOnlyAdmin.",
            )
        )

    domains = tuple(d.lower().lstrip("@") for d in split_list(read.text("POLARIS_ALLOWED_DOMAINS")))
    if not domains:
        read.problems.append(
            Problem(
                INVITE,
                "No email domain may be invited yet: set POLARIS_ALLOWED_DOMAINS, "
                "e.g. POLARIS_ALLOWED_DOMAINS=example.com.",
            )
        )

    settings = Settings(
        credentials=credentials,
        roles=roles,
        allowed_domains=domains,
        concurrency=read.whole("POLARIS_CONCURRENCY", DEFAULT_CONCURRENCY, RSC, lowest=1),
        connect_timeout=read.number("POLARIS_CONNECT_TIMEOUT", 5.0, RSC, lowest=0.1),
        read_timeout=read.number("POLARIS_READ_TIMEOUT", 20.0, RSC, lowest=0.1),
        retry_budget=read.number("POLARIS_RETRY_BUDGET", 30.0, RSC, lowest=0),
        list_limit=read.whole("POLARIS_LIST_LIMIT", DEFAULT_LIST_LIMIT, RSC, lowest=1),
        max_batch=read.whole("POLARIS_MAX_BATCH", 20, INVITE, lowest=1),
        signing_secret=read.env.get("SLACK_SIGNING_SECRET") or "",
        webserver_host=read.text("WEBSERVER_HOST") or "127.0.0.1",
        slack_bot_token=read.env.get("SLACK_BOT_TOKEN") or "",
        slack_api_url=read.text("SLACK_API_URL") or "https://slack.com/api/",
        approval=_approval(read),
        approvers_channel=read.text("POLARIS_APPROVERS_CHANNEL"),
        request_ttl_hours=read.number("POLARIS_REQUEST_TTL_HOURS", 72.0, INVITE, lowest=0.01),
        max_invites_per_hour=read.whole("POLARIS_MAX_INVITES_PER_HOUR", 30, INVITE, lowest=1),
        console_emails=_pairs(read.text("POLARIS_CONSOLE_EMAILS")),
    )
    if settings.signing_secret or read.text("WEBSERVER_PORT"):
        settings.webserver_port = read.whole("WEBSERVER_PORT", 3141, SLASH, lowest=0)
    settings.problems = read.problems
    return settings
