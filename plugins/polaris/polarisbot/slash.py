"""The /polaris slash command, delivered over Socket Mode or as a signed HTTP request.

Slack hands a slash command to the bot in one of two ways:

- An app in Socket Mode (the usual set-up: one app for chat and /polaris) sends it
  as a ``slash_commands`` envelope over the socket the SlackV3 backend holds. The
  backend acknowledges every envelope at once, with an empty body; the listener
  here picks out the /polaris ones and posts the acknowledgement to
  ``response_url`` itself.
- An app in HTTP mode posts a signed form to ``/slack/polaris`` and wants an HTTP
  200 within three seconds; the acknowledgement is that response's body.

Either transport only checks the request and passes it to
``SlashCommand.slash_arrived``. Everything slow (Slack's ``users.info``, Polaris)
runs on this module's own worker threads, and every outcome, refusals and errors
included, is posted to ``response_url`` as an ephemeral message.

The pure parts (signature checks, form parsing, the replay cache, access rules,
posting to ``response_url``, looking up an email) are plain functions and classes
testable without a bot; ``SlashCommand`` is the thin mixin that wires them into
the ``Polaris`` plugin.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import parse_qs, urlsplit

from errbot import webhook
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.webhook import WebhookClient

from polarisbot.access import SLACK_MEMBER_ID, rule_for
from polarisbot.desk import Desk
from polarisbot.messages import SeenMessages
from polarisbot.safe_text import neutralize
from polarisbot.settings import Settings

log = logging.getLogger(__name__)
# slack-sdk logs request and response bodies (emails, response URLs) at DEBUG
# whenever its logger allows it; its own logger stays at WARNING whatever the bot's level.
sdk_log = logging.getLogger(__name__ + ".sdk")
sdk_log.setLevel(logging.WARNING)

PATH = "/slack/polaris"
COMMAND = "/polaris"
#: The ``type`` of a Socket Mode envelope that carries a slash command.
SLASH_ENVELOPE = "slash_commands"
MAX_BODY = 64 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"
# Slack refuses timestamps more than five minutes from now, in either direction.
MAX_AGE = 300
# A signature stays acceptable from its timestamp - 5 min to its timestamp + 5 min,
# so remembering it for ten minutes covers every moment it could be replayed.
REPLAY_MEMORY = 2 * MAX_AGE

TIMESTAMP = re.compile(r"[0-9]{1,12}")
SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
CHANNEL_ID = re.compile(r"[A-Z0-9]{1,32}")

ACK = "Working on it…"
ALREADY_WORKING = "Already working on that /polaris request; the answer will follow here."
UNEXPECTED = "Something went wrong with /polaris: the bot's log has the details."

SLASH_USAGE = """\
/polaris me                     ask for a Polaris account for yourself
/polaris <email> [<email> ...]  invite people to Polaris (inviters)
/polaris status                 is Polaris reachable, and what the bot has done
/polaris help                   this text"""

NOT_AN_INVITER = (
    "You're not allowed to invite other people to Polaris. Ask one of the bot's inviters, "
    "or use /polaris me to ask for an account for yourself."
)
NOT_ALLOWED = "You're not allowed to use this /polaris command here."

Respond = Callable[[str], None]


# --- checking the request -----------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why a request is turned away: the HTTP status, and a reason for the log."""

    status: int
    reason: str


def signature_problem(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    clock: Clock | None = None,
) -> str | None:
    """Why ``body`` is not a genuine, fresh Slack request, or None when it is.

    Malformed headers are refused before slack-sdk sees them: its verifier would
    raise on a timestamp that is not a number or a body that is not UTF-8.
    """
    if not timestamp or not TIMESTAMP.fullmatch(timestamp):
        return "missing or malformed timestamp"
    if not signature or not SIGNATURE.fullmatch(signature):
        return "missing or malformed signature"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "body is not UTF-8"
    clock = clock or Clock()
    verifier = SignatureVerifier(secret, clock)
    # The verifier compares in constant time and also refuses stale timestamps;
    # the age is checked here only to name the reason in the log.
    if not verifier.is_valid(text, timestamp, signature):
        if abs(clock.now() - int(timestamp)) > MAX_AGE:
            return "stale timestamp"
        return "bad signature"
    return None


@dataclass(frozen=True)
class SlashForm:
    """The fields of a slash-command request that the bot uses."""

    user_id: str
    channel_id: str
    text: str
    response_url: str


def form_fields(fields: Mapping[str, Any]) -> SlashForm | str:
    """The fields the bot uses from a slash command's form, or why they are unusable.

    The same fields arrive as a form body over HTTP and as the ``payload`` of a
    Socket Mode envelope; a field that is not a string counts as missing.
    """

    def field(name: str) -> str:
        value = fields.get(name)
        return value if isinstance(value, str) else ""

    user_id = field("user_id")
    if not SLACK_MEMBER_ID.fullmatch(user_id):
        return "user_id is missing or not a Slack member id"
    response_url = field("response_url")
    parts = urlsplit(response_url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        return "response_url is missing or not an HTTP(S) URL"
    channel_id = field("channel_id")
    if not CHANNEL_ID.fullmatch(channel_id):
        channel_id = "unknown"
    return SlashForm(user_id, channel_id, field("text"), response_url)


def parse_form(body: bytes) -> SlashForm | str:
    """The slash-command fields in a verified form body, or why they are unusable."""
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        return "the body is not form data"
    return form_fields({key: values[0] for key, values in fields.items() if values})


def check_request(
    secret: str,
    content_type: str,
    content_length: int | None,
    read_body: Callable[[], bytes],
    headers: Mapping[str, str],
    clock: Clock | None = None,
) -> tuple[bytes, SlashForm] | Refusal:
    """Check one request in order: size, signature, content type, fields.

    The size is checked before the body is read, so an oversized request costs
    nothing; the signature comes before anything that reads the form.
    """
    if not secret:
        return Refusal(404, "SLACK_SIGNING_SECRET is not set")
    if content_length is None:
        return Refusal(411, "no Content-Length")
    if content_length > MAX_BODY:
        return Refusal(413, f"body of {content_length} bytes")
    body = read_body()
    if len(body) > MAX_BODY:
        return Refusal(413, f"body of {len(body)} bytes")

    problem = signature_problem(
        secret,
        body,
        headers.get("X-Slack-Request-Timestamp"),
        headers.get("X-Slack-Signature"),
        clock,
    )
    if problem:
        return Refusal(401, problem)
    if content_type.lower() != FORM_TYPE:
        return Refusal(415, "not form data")
    form = parse_form(body)
    if isinstance(form, str):
        return Refusal(400, form)
    return body, form


class ReplayCache:
    """Remembers recent requests so a replay or a Slack retry does no new work.

    A request is known by several keys at once, and is a repeat when any of them was
    seen before. Over HTTP the keys are its signature and a digest of its body (the
    body carries Slack's one-time ``trigger_id``, so a retry that Slack signs again
    with a new timestamp is still recognised); over Socket Mode they are the
    envelope id and the ``trigger_id``.
    """

    def __init__(self, memory: float = REPLAY_MEMORY, size: int = 10_000) -> None:
        self._seen = SeenMessages(ttl=memory, size=size)

    def first_time(self, *keys: str) -> bool:
        """True the first time a request is offered under any of ``keys``; all are recorded."""
        # Every key is offered, even after a known one, so that each is remembered.
        fresh = [self._seen.first_time(key) for key in keys]
        return all(fresh)


def http_keys(signature: str, body: bytes) -> tuple[str, ...]:
    """The replay keys of a signed HTTP request."""
    return "sig:" + signature, "body:" + hashlib.sha256(body).hexdigest()


def socket_keys(envelope_id: str, payload: Mapping[str, Any]) -> tuple[str, ...]:
    """The replay keys of a Socket Mode envelope: its id, and the command's trigger_id."""
    trigger = payload.get("trigger_id")
    if isinstance(trigger, str) and trigger:
        return "envelope:" + envelope_id, "trigger:" + trigger
    return ("envelope:" + envelope_id,)


# --- deciding what was asked, and who may ask it ------------------------------------


@dataclass(frozen=True)
class Ask:
    """What a /polaris text asks for: ``me``, ``invite``, ``status`` or ``help``."""

    action: str
    args: str = ""
    unknown: str = ""


def parse_command(text: str) -> Ask:
    """Read the text after /polaris."""
    words = text.split()
    if not words:
        return Ask("me")
    first, rest = words[0].lower(), text.split(None, 1)[1] if len(words) > 1 else ""
    if first in ("me", "request") and len(words) == 1:
        return Ask("me")
    if first == "status" and len(words) == 1:
        return Ask("status")
    if first == "help" and len(words) == 1:
        return Ask("help")
    if first == "invite":
        return Ask("invite", rest)
    if "@" in words[0]:
        return Ask("invite", text.strip())
    return Ask("help", unknown=words[0])


#: The chat command whose access rule each slash action follows.
CHAT_COMMAND = {"me": "polaris_request", "invite": "polaris_invite", "status": "polaris_status"}


def _matches(text: str, patterns: Any) -> bool:
    """Errbot's ACL glob: case-sensitive, one pattern or several."""
    if isinstance(patterns, str):
        patterns = (patterns,)
    return any(fnmatch.fnmatchcase(text, str(pattern)) for pattern in patterns)


def rule_allows(rule: Mapping[str, Any], user_id: str, channel_id: str, args: str) -> bool:
    """Whether Errbot's ACLs plugin would let ``user_id`` run a command under ``rule``.

    The same filters in the same order, matched on the Slack member and channel ids
    as the SlackV3 backend does. Direct-message channel ids start with ``D``.
    """
    if "allowargs" in rule and not _matches(args, rule["allowargs"]):
        return False
    if "denyargs" in rule and _matches(args, rule["denyargs"]):
        return False
    if "allowusers" in rule and not _matches(user_id, rule["allowusers"]):
        return False
    if "denyusers" in rule and _matches(user_id, rule["denyusers"]):
        return False
    if channel_id.startswith("D"):
        return rule.get("allowprivate", True) is not False
    if rule.get("allowmuc", True) is False:
        return False
    if "allowrooms" in rule and not _matches(channel_id, rule["allowrooms"]):
        return False
    return not ("denyrooms" in rule and _matches(channel_id, rule["denyrooms"]))


# --- talking to Slack ---------------------------------------------------------------


def profile_email(client: WebClient | None, user_id: str) -> tuple[str, str]:
    """The email in ``user_id``'s Slack profile, or "" and why it could not be read."""
    if client is None:
        return "", "the bot has no Slack bot token (SLACK_BOT_TOKEN is not set)"
    try:
        answer = client.users_info(user=user_id)
    except SlackApiError as error:
        code = str(error.response.get("error", "")) if error.response is not None else ""
        if code == "missing_scope":
            return "", "the Slack app lacks the users:read and users:read.email scopes"
        if code in ("invalid_auth", "not_authed", "account_inactive", "token_revoked"):
            return "", "Slack refused the bot's token (SLACK_BOT_TOKEN)"
        if code == "user_not_found":
            return "", "Slack does not know your member id"
        shown = code if re.fullmatch(r"[a-z_]{1,40}", code) else "an error"
        return "", f"Slack answered {shown}"
    except Exception as error:
        log.info("users.info for %s failed: %s", user_id, type(error).__name__)
        return "", "Slack's API could not be reached"
    user = answer.get("user") if isinstance(answer.data, dict) else None
    profile = user.get("profile") if isinstance(user, dict) else None
    email = profile.get("email") if isinstance(profile, dict) else None
    if not isinstance(email, str) or not email.strip():
        return "", (
            "your Slack profile shows the bot no email address (the Slack app needs "
            "the users:read.email scope)"
        )
    return email.strip(), ""


def no_email_sentence(reason: str) -> str:
    return (
        f"I couldn't determine your email address, so I can't ask for an account for you: "
        f"{reason}. Ask the bot's operator, or an inviter, to invite you."
    )


def post_response(
    url: str,
    text: str,
    *,
    tries: int = 3,
    backoff: float = 0.25,
    timeout: int = 10,
) -> bool:
    """Post ``text`` to a ``response_url`` as an ephemeral message; True once it arrives.

    Connection failures, 429 and 5xx answers are tried again, waiting a little
    longer each time; other refusals (an expired or used URL) are final. The URL
    is never logged: it lets anyone answer in the person's name for 30 minutes.
    """
    client = WebhookClient(url, timeout=timeout, retry_handlers=[], logger=sdk_log)
    failure = "no attempt"
    for attempt in range(tries):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            answer = client.send(text=text, response_type="ephemeral")
        except Exception as error:
            failure = type(error).__name__
            continue
        if 200 <= answer.status_code < 300:
            return True
        failure = f"HTTP {answer.status_code}"
        if answer.status_code != 429 and answer.status_code < 500:
            break
    log.warning(
        "could not post a /polaris answer to Slack after %d tries: %s", attempt + 1, failure
    )
    return False


def _reply(status: int, text: str | None = None) -> tuple[str, int, dict[str, str]]:
    if text is None:
        return "", status, {"Content-Type": "text/plain; charset=utf-8"}
    body = json.dumps({"response_type": "ephemeral", "text": text})
    return body, status, {"Content-Type": "application/json"}


# --- the plugin mixin ---------------------------------------------------------------


class Arrival(Enum):
    """What became of a verified request handed to ``SlashCommand.slash_arrived``."""

    STARTED = "started"
    REPEATED = "repeated"
    CLOSED = "closed"


class SlashCommand:
    """Mixin for the Polaris plugin: answers /polaris over Socket Mode and at ``/slack/polaris``.

    Not a BotPlugin itself, so Errbot never loads it as a plugin of its own. The
    HTTP route is always registered (Errbot routes every ``@webhook`` of an
    activated plugin), and answers 404 while ``SLACK_SIGNING_SECRET`` is unset:
    without a secret no request could be verified. The Socket Mode listener is
    registered only when the bot runs on the SlackV3 backend with an app token.
    """

    # Provided by the Polaris plugin and BotPlugin.
    settings: Settings
    log: logging.Logger
    bot_config: Any
    _bot: Any
    name: str
    desk: Desk

    def activate(self) -> None:
        self._slash_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="polaris-slash")
        self._slash_replays = ReplayCache()
        self._slash_socket: Any = None
        self._slash_open = True
        super().activate()  # type: ignore[misc]

    def callback_connect(self) -> None:
        super().callback_connect()  # type: ignore[misc]
        # Listening starts here, not in activate(): Errbot calls this once the whole of
        # Polaris.activate() (settings, invite queue) has run, at start-up and after a
        # later re-activation alike, just after it routes the plugin's webhooks.
        client = self._socket_client()
        if client is None:
            return
        listeners = client.socket_mode_request_listeners
        # Errbot calls this twice at start-up (plugin activation, then "connected").
        if self.on_socket_request not in listeners:
            listeners.append(self.on_socket_request)
            self.log.info("/polaris is answered over Socket Mode")
        self._slash_socket = client

    def deactivate(self) -> None:
        client, self._slash_socket = self._slash_socket, None
        if client is not None:
            listeners = client.socket_mode_request_listeners
            if self.on_socket_request in listeners:
                listeners.remove(self.on_socket_request)
        self._slash_open = False
        # Answers already queued still go out; nothing new is accepted.
        self._slash_pool.shutdown(wait=False)
        super().deactivate()  # type: ignore[misc]

    def _socket_client(self) -> Any:
        """The SlackV3 backend's Socket Mode client, or None on any other transport.

        The backend creates it before connecting and calls connect_callback (which
        activates plugins) only once the socket says hello, so it exists by now.
        """
        if self._bot.mode != "slackv3":
            return None
        client = getattr(self._bot, "slack_socket_mode", None)
        listeners = getattr(client, "socket_mode_request_listeners", None)
        return client if isinstance(listeners, list) else None

    # --- the two transports --------------------------------------------------------

    def on_socket_request(self, client: Any, req: SocketModeRequest) -> None:
        """Take on a /polaris command that Slack delivered over the Socket Mode connection.

        Runs on the socket client's thread after the backend's own listener, which
        has already acknowledged the envelope with an empty body and then ignored
        it. Anything but a /polaris slash command is left alone.
        """
        if req.type != SLASH_ENVELOPE or not isinstance(req.payload, dict):
            return
        if req.payload.get("command") != COMMAND:
            return
        # No signature to check: Slack signs only HTTP requests, and this socket was
        # opened with the app-level token (apps.connections.open), so only Slack can
        # send on it.
        form = form_fields(req.payload)
        if isinstance(form, str):
            self.log.info("ignored a /polaris envelope: %s", form)
            return
        self.log.debug("/polaris from %s over Socket Mode", form.user_id)
        arrival = self.slash_arrived(
            form,
            socket_keys(req.envelope_id, req.payload),
            retry=bool(req.retry_attempt),
            post_ack=True,
        )
        if arrival is Arrival.CLOSED:
            self.log.info("dropped a /polaris envelope from %s: stopping", form.user_id)

    @webhook(PATH, methods=("POST",), raw=True)
    def slack_polaris(self, request: Any) -> tuple[str, int, dict[str, str]]:
        """Acknowledge a signed /polaris request at once and do the work elsewhere."""
        checked = check_request(
            self.settings.signing_secret,
            request.mimetype or "",
            request.content_length,
            lambda: request.get_data(cache=False),
            request.headers,
        )
        if isinstance(checked, Refusal):
            self.log.info("refused a /polaris request: %s (%d)", checked.reason, checked.status)
            return _reply(checked.status)
        body, form = checked

        arrival = self.slash_arrived(
            form,
            http_keys(request.headers["X-Slack-Signature"], body),
            retry=bool(request.headers.get("X-Slack-Retry-Num")),
            post_ack=False,
        )
        if arrival is Arrival.REPEATED:
            return _reply(200, ALREADY_WORKING)
        if arrival is Arrival.CLOSED:
            return _reply(503)
        return _reply(200, ACK)

    def slash_arrived(
        self, form: SlashForm, keys: tuple[str, ...], *, retry: bool, post_ack: bool
    ) -> Arrival:
        """Take on a verified /polaris request, whichever way Slack delivered it.

        ``keys`` identify the request for replay protection: a request seen before
        under any of them does no new work. With ``post_ack`` the acknowledgement is
        posted to ``response_url`` before the answer: over Socket Mode the backend
        has already acknowledged the envelope, with no text for the person.
        """
        if not self._slash_open:
            return Arrival.CLOSED
        if not self._slash_replays.first_time(*keys):
            self.log.info(
                "ignored a repeated /polaris request from %s%s",
                form.user_id,
                " (Slack retry)" if retry else "",
            )
            return Arrival.REPEATED
        try:
            self._slash_pool.submit(self._slash_answer, form, post_ack)
        except RuntimeError:  # deactivated between the check above and now
            return Arrival.CLOSED
        return Arrival.STARTED

    # --- on the worker threads -----------------------------------------------------

    def _slash_answer(self, form: SlashForm, post_ack: bool = False) -> None:
        """Work out the answer to one request and post it, with any later outcome."""
        # Later outcomes wait for the first answer, so they arrive in order. Reentrant:
        # while the plugin stops, respond() posts inline, possibly from this thread.
        order = threading.RLock()

        # TODO: a response_url takes five posts within 30 minutes; an invite outcome later
        # than that (queued behind a long burst) is only logged. Needs a DM fallback.
        # (Decisions on requests already reach the requester by DM, from the desk.)
        def respond(text: str) -> None:
            def later() -> None:
                with order:
                    post_response(form.response_url, text)

            try:
                self._slash_pool.submit(later)
            except RuntimeError:  # the plugin is stopping: post from here instead
                later()

        with order:
            started = time.monotonic()
            if post_ack:
                post_response(form.response_url, ACK)
            try:
                text = self._slash_text(form, respond)
            except Exception:
                self.log.exception("/polaris from %s failed", form.user_id)
                text = UNEXPECTED
            post_response(form.response_url, text)
            self.log.debug(
                "/polaris from %s answered in %.0f ms",
                form.user_id,
                (time.monotonic() - started) * 1000,
            )

    def _slash_text(self, form: SlashForm, respond: Respond) -> str:
        """The first answer to a request; invites report their outcome to ``respond``."""
        ask = parse_command(form.text)
        where = f"slash:{form.channel_id}"
        if ask.action == "help":
            if ask.unknown:
                return f"I don't know '/polaris {neutralize(ask.unknown[:40])}'.\n{SLASH_USAGE}"
            return SLASH_USAGE

        if not self._slash_allowed(ask, form):
            self.log.info("/polaris %s by %s in %s: refused", ask.action, form.user_id, where)
            return NOT_AN_INVITER if ask.action == "invite" else NOT_ALLOWED

        if ask.action == "status":
            self.log.info("/polaris status by %s in %s", form.user_id, where)
            return self.desk.status_report()
        if ask.action == "invite":
            return self.desk.invite_for(form.user_id, ask.args, where=where, respond=respond)

        email, why = profile_email(self._slack_client(), form.user_id)
        if not email:
            self.log.info("/polaris me by %s: no email (%s)", form.user_id, why)
            return no_email_sentence(why)
        return self.desk.request_for(form.user_id, email, where=where, respond=respond)

    def _slash_allowed(self, ask: Ask, form: SlashForm) -> bool:
        """The chat command's ACCESS_CONTROLS rule, applied as Errbot's ACLs plugin would."""
        active = {n.lower() for n in self._bot.plugin_manager.get_all_active_plugin_names()}
        if "acls" not in active:
            # Chat enforces nothing then either; the desk refuses invites on its own.
            return True
        rule = rule_for(
            f"{self.name}:{CHAT_COMMAND[ask.action]}",
            self.bot_config.ACCESS_CONTROLS,
            self.bot_config.ACCESS_CONTROLS_DEFAULT,
        )
        return rule_allows(rule, form.user_id, form.channel_id, ask.args)

    def _slack_client(self) -> WebClient | None:
        if not self.settings.slack_bot_token:
            return None
        return WebClient(
            token=self.settings.slack_bot_token,
            base_url=self.settings.slack_api_url,
            timeout=10,
            logger=sdk_log,
        )
