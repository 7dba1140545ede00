"""The /polaris slash command, end to end: signed HTTP requests to the running bot's
endpoint, a stand-in for Slack (response_url and users.info) on loopback, and the
sandbox RSC."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from chat import shown, wait_for
from conftest import INVITER, MEMBER, polaris_env

from polarisbot.slash import (
    ACK,
    ALREADY_WORKING,
    parse_command,
    post_response,
    rule_allows,
    signature_problem,
)

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xox" + "b-test-token"  # made up; assembled so no token-shaped text is committed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SlackStandIn:
    """Slack's side on loopback: response_urls that record posts, and users.info."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.attempts = 0
        self.fail_next = 0
        self.emails: dict[str, str] = {}
        self.lookups: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, payload: Any) -> None:
                body = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.startswith("/api/"):
                    self._users_info(body)
                    return
                with stand_in._lock:
                    stand_in.attempts += 1
                    if stand_in.fail_next > 0:
                        stand_in.fail_next -= 1
                        self._answer(500, b"server error")
                        return
                    stand_in.posts.append(json.loads(body))
                self._answer(200, b"ok")

            def _users_info(self, body: bytes) -> None:
                url = urlsplit(self.path)
                params = parse_qs(url.query) | parse_qs(body.decode())
                user = params.get("user", [""])[0]
                with stand_in._lock:
                    stand_in.lookups.append((user, self.headers.get("Authorization", "")))
                if url.path != "/api/users.info":
                    self._answer(404, {"ok": False, "error": "unknown_method"})
                elif user not in stand_in.emails:
                    self._answer(200, {"ok": False, "error": "user_not_found"})
                else:
                    profile = {"real_name": "Someone"}
                    if stand_in.emails[user]:
                        profile["email"] = stand_in.emails[user]
                    self._answer(200, {"ok": True, "user": {"id": user, "profile": profile}})

            def do_GET(self) -> None:
                self._users_info(b"")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def texts(self) -> list[str]:
        """The posted texts as Slack shows them: code spans' backticks are formatting."""
        with self._lock:
            return [shown(post.get("text", "")) for post in self.posts]

    def wait_for_posts(self, count: int, timeout: float = 10) -> list[str]:
        assert wait_for(lambda: len(self.posts) >= count, timeout), (
            f"expected {count} posts at response_url, got {self.texts()}"
        )
        return self.texts()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    stand_in = SlackStandIn()
    yield stand_in
    assert not any("Traceback" in text or 'File "' in text for text in stand_in.texts())
    stand_in.stop()


class Endpoint:
    """Signs and sends slash-command requests the way Slack does."""

    def __init__(self, port: int, slack: SlackStandIn) -> None:
        self.url = f"http://127.0.0.1:{port}/slack/polaris"
        self.slack = slack

    def form(self, text: str, user: str = INVITER, **extra: str) -> bytes:
        fields = {
            "token": "deprecated-verification-token",
            "team_id": "T0TEAM",
            "channel_id": "C0CHANNEL",
            "user_id": user,
            "user_name": "someone",
            "command": "/polaris",
            "text": text,
            "response_url": f"{self.slack.url}/commands/T0TEAM/{uuid.uuid4().hex}",
            "trigger_id": uuid.uuid4().hex,
            **extra,
        }
        return urlencode(fields).encode()

    @staticmethod
    def headers(body: bytes, timestamp: int | None = None, secret: str = SECRET) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        digest = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
        return {
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": "v0=" + digest.hexdigest(),
            "Content-Type": "application/x-www-form-urlencoded",
        }

    def post(
        self, body: bytes, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> requests.Response:
        return requests.post(
            self.url, data=body, headers=headers or self.headers(body), timeout=5, **kwargs
        )

    def ask(self, text: str, user: str = INVITER, **extra: str) -> requests.Response:
        return self.post(self.form(text, user, **extra))


def start_endpoint(start_bot: Any, sandbox: Any, slack: SlackStandIn, **env: str) -> Endpoint:
    port = free_port()
    settings = {
        "SLACK_SIGNING_SECRET": SECRET,
        "WEBSERVER_PORT": str(port),
        "SLACK_API_URL": f"{slack.url}/api/",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "POLARIS_APPROVAL": "auto",
        **env,
    }
    start_bot(polaris_env(sandbox, **settings))
    health = f"http://127.0.0.1:{port}/health"
    assert wait_for(lambda: _answers(health), timeout=10)
    return Endpoint(port, slack)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.fixture
def endpoint(start_bot: Any, sandbox: Any, slack: SlackStandIn) -> Endpoint:
    return start_endpoint(start_bot, sandbox, slack)


def created(sandbox: Any) -> list[str]:
    return [call["email"] for call in sandbox.calls("createUser")]


# --- answering in time ------------------------------------------------------------


def test_the_acknowledgement_comes_at_once_while_polaris_takes_five_seconds(
    start_bot, sandbox, slack
):
    endpoint = start_endpoint(start_bot, sandbox, slack, POLARIS_READ_TIMEOUT="10")
    # Log in and read the roles first, so each invite below is one slow call.
    endpoint.ask("warm.up@example.com")
    slack.wait_for_posts(2)
    slack.posts.clear()
    sandbox.latency = 5

    timings, answers = [], []
    for n in range(3):
        started = time.monotonic()
        answer = endpoint.ask(f"slow{n}@example.com")
        timings.append(time.monotonic() - started)
        answers.append(answer)

    assert statistics.median(timings) < 0.3, timings
    for answer in answers:
        assert answer.status_code == 200
        assert answer.json() == {"response_type": "ephemeral", "text": ACK}
    texts = slack.wait_for_posts(6, timeout=15)
    for n in range(3):
        assert f"slow{n}@example.com: invited" in texts
    assert all(post["response_type"] == "ephemeral" for post in slack.posts)
    slow = [f"slow{n}@example.com" for n in range(3)]
    assert sorted(created(sandbox)) == [*slow, "warm.up@example.com"]


def test_an_inviter_gets_the_acknowledgement_then_the_outcome(endpoint, slack, sandbox):
    answer = endpoint.ask("alice.new@example.com bob@other.org")

    assert answer.status_code == 200
    texts = slack.wait_for_posts(2)
    assert texts[0] == "Inviting 1 address to Polaris…"
    assert texts[1].splitlines() == [
        "alice.new@example.com: invited",
        "bob@other.org: domain not allowed (this bot invites only example.com addresses)",
    ]
    assert created(sandbox) == ["alice.new@example.com"]


def test_an_answer_that_needs_no_polaris_call_is_posted_too(endpoint, slack, sandbox):
    endpoint.ask("invite eve@evil.example")

    texts = slack.wait_for_posts(1)
    assert texts == [
        "eve@evil.example: domain not allowed (this bot invites only example.com addresses)"
    ]
    assert created(sandbox) == []


# --- who may do what ----------------------------------------------------------------


def test_a_non_inviter_asking_to_invite_someone_is_refused(endpoint, slack, sandbox):
    endpoint.ask("bob@example.com", user=MEMBER)

    (text,) = slack.wait_for_posts(1)
    assert "not allowed to invite" in text
    assert created(sandbox) == []


def test_me_asks_for_an_account_with_the_email_slack_has_for_the_member(endpoint, slack, sandbox):
    slack.emails[MEMBER] = "member.person@example.com"

    endpoint.ask("me", user=MEMBER, user_name="someone.else@example.com")

    assert wait_for(lambda: created(sandbox) == ["member.person@example.com"], timeout=10)
    assert slack.lookups == [(MEMBER, f"Bearer {BOT_TOKEN}")]
    assert wait_for(lambda: any("member.person@example.com" in t for t in slack.texts()))


def test_me_without_an_email_in_slack_says_why_and_never_guesses(endpoint, slack, sandbox):
    slack.emails[MEMBER] = ""  # profile without an email: the scope is missing

    endpoint.ask("", user=MEMBER, user_name="member@example.com")

    (text,) = slack.wait_for_posts(1)
    assert "couldn't determine your email address" in text
    assert "users:read.email" in text
    assert created(sandbox) == []


def test_me_when_slack_does_not_know_the_member(endpoint, slack, sandbox):
    endpoint.ask("me", user="U0STRANGER")

    (text,) = slack.wait_for_posts(1)
    assert "couldn't determine your email address" in text
    assert "Slack does not know your member id" in text
    assert created(sandbox) == []


def test_status_works_for_everyone(endpoint, slack):
    endpoint.ask("status", user=MEMBER)

    (text,) = slack.wait_for_posts(1)
    assert text.startswith("Polaris: reachable, login works")


def test_help_and_unknown_words_get_the_usage(endpoint, slack):
    endpoint.ask("help")
    endpoint.ask("frobnicate <!here>")

    texts = slack.wait_for_posts(2)
    assert all("/polaris me" in text for text in texts)
    unknown = next(text for text in texts if "don't know" in text)
    assert "<!here>" not in unknown


def test_invites_refuse_when_access_control_is_not_in_force(start_bot, sandbox, slack):
    port = free_port()
    start_bot(
        polaris_env(
            sandbox,
            SLACK_SIGNING_SECRET=SECRET,
            WEBSERVER_PORT=str(port),
            SLACK_API_URL=f"{slack.url}/api/",
        ),
        ACCESS_CONTROLS={"Polaris:*": {"allowusers": ("*",)}},
    )
    assert wait_for(lambda: _answers(f"http://127.0.0.1:{port}/health"), timeout=10)
    endpoint = Endpoint(port, slack)

    endpoint.ask("alice@example.com", user=MEMBER)

    (text,) = slack.wait_for_posts(1)
    assert "access control is not in force" in text
    assert created(sandbox) == []


# --- requests that must do nothing --------------------------------------------------


def test_forged_and_malformed_signatures_are_refused_and_invite_no_one(endpoint, sandbox):
    body = endpoint.form("forged@example.com")
    good = endpoint.headers(body)
    forged = [
        endpoint.headers(body, secret="not-the-secret"),
        {**good, "X-Slack-Signature": "v0=" + "0" * 64},
        {**good, "X-Slack-Signature": "v0=not-hex"},
        {**good, "X-Slack-Signature": "v0=ü".encode()},
        {**good, "X-Slack-Request-Timestamp": "not-a-number"},
        {**good, "X-Slack-Request-Timestamp": "١٢٣".encode()},  # digits, but not ASCII
        {"Content-Type": "application/x-www-form-urlencoded"},
    ]

    statuses = [endpoint.post(body, headers).status_code for headers in forged]
    tampered = endpoint.post(body.replace(b"forged", b"other"), good).status_code
    not_utf8 = endpoint.post(b"text=\xff", endpoint.headers(b"text=\xff")).status_code

    assert statuses == [401] * len(forged)
    assert tampered == 401
    assert not_utf8 == 401
    time.sleep(0.3)
    assert created(sandbox) == []


def test_a_stale_timestamp_is_refused_even_when_signed_correctly(endpoint, sandbox):
    body = endpoint.form("stale@example.com")

    old = endpoint.post(body, endpoint.headers(body, timestamp=int(time.time()) - 301))
    future = endpoint.post(body, endpoint.headers(body, timestamp=int(time.time()) + 301))

    assert (old.status_code, future.status_code) == (401, 401)
    time.sleep(0.3)
    assert created(sandbox) == []


def test_a_replayed_or_retried_request_invites_only_once(endpoint, slack, sandbox):
    body = endpoint.form("once@example.com")
    headers = endpoint.headers(body)

    first = endpoint.post(body, headers)
    replay = endpoint.post(body, headers)
    retry = endpoint.post(body, {**headers, "X-Slack-Retry-Num": "1"})
    # Slack may sign a retry again with a new timestamp; the body is still the same.
    resigned = endpoint.headers(body, timestamp=int(time.time()) - 2)
    retry_resigned = endpoint.post(body, {**resigned, "X-Slack-Retry-Num": "2"})

    assert first.json()["text"] == ACK
    for answer in (replay, retry, retry_resigned):
        assert answer.status_code == 200
        assert answer.json() == {"response_type": "ephemeral", "text": ALREADY_WORKING}
    slack.wait_for_posts(2)
    time.sleep(0.3)
    assert created(sandbox) == ["once@example.com"]
    assert len(slack.posts) == 2


def test_bodies_that_are_not_small_forms_get_a_4xx(endpoint, sandbox):
    as_json = json.dumps({"text": "json@example.com"}).encode()
    json_headers = {**endpoint.headers(as_json), "Content-Type": "application/json"}
    huge = endpoint.form("huge@example.com", padding="x" * 70_000)

    assert endpoint.post(as_json, json_headers).status_code == 415
    assert endpoint.post(huge).status_code == 413
    assert requests.get(endpoint.url, timeout=5).status_code == 405
    time.sleep(0.3)
    assert created(sandbox) == []


def test_without_a_signing_secret_the_endpoint_answers_404(start_bot, sandbox, slack):
    port = free_port()
    start_bot(polaris_env(sandbox, WEBSERVER_PORT=str(port)))
    assert wait_for(lambda: _answers(f"http://127.0.0.1:{port}/health"), timeout=10)
    endpoint = Endpoint(port, slack)

    assert endpoint.ask("nosecret@example.com").status_code == 404
    assert created(sandbox) == []


# --- posting to response_url --------------------------------------------------------


def test_a_failing_response_url_is_tried_again(endpoint, slack):
    slack.fail_next = 2

    endpoint.ask("help")

    (text,) = slack.wait_for_posts(1)
    assert "/polaris me" in text
    assert slack.attempts == 3


def test_a_response_url_that_keeps_failing_is_logged_after_three_tries(slack, caplog):
    slack.fail_next = 10

    with caplog.at_level(logging.WARNING, logger="polarisbot.slash"):
        delivered = post_response(f"{slack.url}/commands/x", "hello", backoff=0.01)

    assert not delivered
    assert slack.attempts == 3
    assert "after 3 tries: HTTP 500" in caplog.text
    assert slack.url not in caplog.text


# --- the pure parts -----------------------------------------------------------------


def test_signature_checks_never_raise_on_odd_headers():
    body = b"text=hi"
    stamp = str(int(time.time()))
    signature = Endpoint.headers(body, int(stamp))["X-Slack-Signature"]

    assert signature_problem(SECRET, body, stamp, signature) is None
    assert signature_problem(SECRET, body, None, signature) == "missing or malformed timestamp"
    assert signature_problem(SECRET, body, "1e9", signature) == "missing or malformed timestamp"
    assert signature_problem(SECRET, body, stamp, "v1=" + "0" * 64) == (
        "missing or malformed signature"
    )
    assert signature_problem(SECRET, body + b"!", stamp, signature) == "bad signature"
    old = str(int(time.time()) - 400)
    stale = Endpoint.headers(body, int(old))["X-Slack-Signature"]
    assert signature_problem(SECRET, body, old, stale) == "stale timestamp"


def test_the_text_after_polaris_picks_the_action():
    assert parse_command("").action == "me"
    assert parse_command(" ME ").action == "me"
    assert parse_command("status").action == "status"
    assert parse_command("a@example.com b@example.com").args == "a@example.com b@example.com"
    assert parse_command("invite a@example.com").args == "a@example.com"
    assert parse_command("status now").unknown == "status"


def test_access_rules_match_member_and_channel_ids_like_errbot():
    inviters = {"allowusers": ("U0INVITER",)}

    assert rule_allows(inviters, "U0INVITER", "C0CHANNEL", "")
    assert not rule_allows(inviters, "u0inviter", "C0CHANNEL", "")  # case-sensitive
    assert not rule_allows(inviters, "U0MEMBER", "C0CHANNEL", "")
    assert not rule_allows({"allowusers": ("U0*",), "denyusers": ("U0M*",)}, "U0MEMBER", "C1", "")
    assert not rule_allows({"allowmuc": False}, "U0INVITER", "C0CHANNEL", "")
    assert rule_allows({"allowmuc": False}, "U0INVITER", "D0DIRECT", "")
    assert not rule_allows({"denyrooms": ("C0*",)}, "U0INVITER", "C0CHANNEL", "")


def test_the_command_still_answers_after_the_plugin_is_deactivated_and_activated_again(
    start_bot, sandbox, slack
):
    port = free_port()
    env = {"SLACK_SIGNING_SECRET": SECRET, "WEBSERVER_PORT": str(port)}
    bot = start_bot(polaris_env(sandbox, SLACK_API_URL=f"{slack.url}/api/", **env))
    assert wait_for(lambda: _answers(f"http://127.0.0.1:{port}/health"), timeout=10)
    manager = bot.bot.plugin_manager

    manager.deactivate_plugin("Polaris")
    manager.activate_plugin("Polaris")
    answer = Endpoint(port, slack).ask("help")

    assert answer.status_code == 200
    assert "/polaris me" in slack.wait_for_posts(1)[0]
