"""The /polaris slash command over Socket Mode, end to end: envelopes dispatched by
slack-sdk's own Socket Mode code to the SlackV3 backend's listener and then the
plugin's, on the running bot, with the stand-in for Slack (response_url and
users.info) and the sandbox RSC on loopback."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from chat import wait_for
from conftest import INVITER, MEMBER, polaris_env
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slackv3.slackv3 import SlackBackend
from test_slash import BOT_TOKEN, SlackStandIn, created

from polarisbot.slash import ACK, NOT_AN_INVITER


class BackendListener:
    """The SlackV3 backend's own Socket Mode listener, run on a stand-in for the backend.

    It acknowledges every envelope with an empty body and hands the payload to the
    Events API dispatch, which finds no event in a slash command and drops it.
    """

    _generic_wrapper = SlackBackend._generic_wrapper
    _sm_generic_event_handler = SlackBackend._sm_generic_event_handler


class LoopbackSocket(BaseSocketModeClient):
    """A Socket Mode client without a socket: envelopes go through slack-sdk's dispatch.

    ``run_message_listeners`` is slack-sdk's own code: it builds the SocketModeRequest
    and calls every listener in order, logging (not raising) a listener's failure.
    """

    def __init__(self) -> None:
        self.logger = logging.getLogger(f"tests.socket.{uuid.uuid4().hex}")
        self.logger.propagate = False
        self.failures: list[str] = []
        failures = self.failures

        class Recorder(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                failures.append(record.getMessage())

        self.logger.addHandler(Recorder(logging.ERROR))
        self.message_listeners: list[Any] = []
        self.socket_mode_request_listeners: list[Any] = [
            BackendListener()._sm_generic_event_handler
        ]
        self.sent: list[dict[str, Any]] = []

    def send_message(self, message: str) -> None:
        self.sent.append(json.loads(message))

    def deliver(self, envelope: dict[str, Any]) -> None:
        self.run_message_listeners(envelope, json.dumps(envelope))

    def acknowledged(self) -> list[str]:
        """Envelope ids acknowledged, in order; each acknowledgement carries no payload."""
        assert all(set(sent) == {"envelope_id"} for sent in self.sent), self.sent
        return [sent["envelope_id"] for sent in self.sent]


class Workspace:
    """Slack's side of the socket: builds /polaris envelopes and delivers them."""

    def __init__(self, client: LoopbackSocket, slack: SlackStandIn) -> None:
        self.client = client
        self.slack = slack

    def envelope(
        self, text: str, user: str = INVITER, kind: str = "slash_commands", **extra: Any
    ) -> dict[str, Any]:
        payload = {
            "token": "deprecated-verification-token",
            "team_id": "T0TEAM",
            "team_domain": "example",
            "channel_id": "C0CHANNEL",
            "channel_name": "general",
            "user_id": user,
            "user_name": "someone",
            "command": "/polaris",
            "text": text,
            "api_app_id": "A0APP",
            "is_enterprise_install": "false",
            "response_url": f"{self.slack.url}/commands/T0TEAM/{uuid.uuid4().hex}",
            "trigger_id": uuid.uuid4().hex,
            **extra,
        }
        return {
            "envelope_id": str(uuid.uuid4()),
            "type": kind,
            "accepts_response_payload": True,
            "payload": payload,
        }

    def ask(self, text: str, user: str = INVITER, **extra: Any) -> dict[str, Any]:
        envelope = self.envelope(text, user, **extra)
        self.client.deliver(envelope)
        return envelope


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    stand_in = SlackStandIn()
    yield stand_in
    assert not any("Traceback" in text or 'File "' in text for text in stand_in.texts())
    stand_in.stop()


def start_bot_on(start_bot: Any, sandbox: Any, slack: SlackStandIn) -> Any:
    """A bot whose Slack web API is the stand-in; no web server, no signing secret."""
    return start_bot(
        polaris_env(
            sandbox,
            SLACK_API_URL=f"{slack.url}/api/",
            SLACK_BOT_TOKEN=BOT_TOKEN,
            POLARIS_APPROVAL="auto",
        )
    )


@pytest.fixture
def workspace(start_bot: Any, sandbox: Any, slack: SlackStandIn) -> Iterator[Workspace]:
    bot = start_bot_on(start_bot, sandbox, slack)
    client = LoopbackSocket()
    # The test backend has no socket, so the plugin registers nothing by itself
    # (test_the_listener_follows_the_plugin covers registration): wire it here.
    client.socket_mode_request_listeners.append(bot.plugin.on_socket_request)
    yield Workspace(client, slack)
    assert client.failures == []


# --- what people ask ----------------------------------------------------------------


def test_an_inviter_gets_the_acknowledgement_then_the_outcome(workspace, slack, sandbox):
    envelope = workspace.ask("alice@example.com")

    texts = slack.wait_for_posts(3)
    assert texts == [ACK, "Inviting 1 address to Polaris…", "alice@example.com: invited"]
    assert all(post["response_type"] == "ephemeral" for post in slack.posts)
    assert created(sandbox) == ["alice@example.com"]
    # The backend acknowledged the envelope itself, with an empty body.
    assert workspace.client.acknowledged() == [envelope["envelope_id"]]


def test_a_non_inviter_asking_to_invite_someone_is_refused(workspace, slack, sandbox):
    workspace.ask("bob@example.com", user=MEMBER)

    assert slack.wait_for_posts(2) == [ACK, NOT_AN_INVITER]
    time.sleep(0.3)
    assert created(sandbox) == []


def test_me_asks_for_an_account_with_the_email_slack_has_for_the_member(workspace, slack, sandbox):
    slack.emails[MEMBER] = "member.person@example.com"

    workspace.ask("me", user=MEMBER, user_name="someone.else@example.com")

    assert wait_for(lambda: created(sandbox) == ["member.person@example.com"], timeout=10)
    assert slack.lookups == [(MEMBER, f"Bearer {BOT_TOKEN}")]
    texts = slack.wait_for_posts(3)
    assert texts[0] == ACK
    assert texts[-1] == "member.person@example.com: invited"


def test_an_invite_rule_for_one_channel_is_applied_to_the_envelopes_channel(
    start_bot, sandbox, slack
):
    bot = start_bot(
        polaris_env(sandbox, SLACK_API_URL=f"{slack.url}/api/"),
        ACCESS_CONTROLS={
            "Polaris:polaris_invite": {"allowusers": (INVITER,), "allowrooms": ("C0ADMINS",)},
            "Polaris:*": {"allowusers": ("*",)},
        },
    )
    client = LoopbackSocket()
    client.socket_mode_request_listeners.append(bot.plugin.on_socket_request)
    workspace = Workspace(client, slack)

    workspace.ask("carol@example.com", channel_id="C0CHANNEL")

    assert slack.wait_for_posts(2) == [ACK, NOT_AN_INVITER]
    workspace.ask("carol@example.com", channel_id="C0ADMINS")
    assert slack.wait_for_posts(5)[-1] == "carol@example.com: invited"
    assert created(sandbox) == ["carol@example.com"]
    assert client.failures == []


# --- envelopes that must do nothing new ---------------------------------------------


def test_a_redelivered_envelope_does_no_new_work(workspace, slack, sandbox):
    first = workspace.ask("once@example.com")
    slack.wait_for_posts(3)

    retried = {**first, "retry_attempt": 1, "retry_reason": "timeout"}
    workspace.client.deliver(retried)
    # A retry may come in a new envelope; the command's trigger_id is still the same.
    again = {**retried, "envelope_id": str(uuid.uuid4()), "retry_attempt": 2}
    workspace.client.deliver(again)

    time.sleep(0.5)
    assert created(sandbox) == ["once@example.com"]
    assert len(slack.posts) == 3
    assert workspace.client.acknowledged() == [
        first["envelope_id"],
        first["envelope_id"],
        again["envelope_id"],
    ]


def test_other_envelopes_and_other_commands_are_left_alone(workspace, slack, sandbox):
    others = [
        workspace.envelope("left.alone@example.com", command="/deploy"),
        workspace.envelope("left.alone@example.com", kind="interactive"),
        workspace.envelope("left.alone@example.com", kind="events_api"),
        workspace.envelope("left.alone@example.com", user_id="someone"),
        workspace.envelope("left.alone@example.com", response_url="file:///etc/passwd"),
    ]

    for envelope in others:
        workspace.client.deliver(envelope)

    time.sleep(0.5)
    assert slack.posts == []
    assert created(sandbox) == []
    assert workspace.client.acknowledged() == [envelope["envelope_id"] for envelope in others]


# --- the listener's life ------------------------------------------------------------


def test_the_listener_follows_the_plugin(start_bot, sandbox, slack, monkeypatch):
    bot = start_bot_on(start_bot, sandbox, slack)
    manager = bot.bot.plugin_manager
    client = LoopbackSocket()
    backend_listener = client.socket_mode_request_listeners[0]
    bot.bot.slack_socket_mode = client

    # Not the SlackV3 backend: the client is not touched.
    manager.deactivate_plugin("Polaris")
    manager.activate_plugin("Polaris")
    assert client.socket_mode_request_listeners == [backend_listener]

    # The SlackV3 backend in Socket Mode: registered on activation, once, although
    # Errbot also signals every plugin when the connection is up.
    monkeypatch.setattr(type(bot.bot), "mode", property(lambda _: "slackv3"))
    manager.deactivate_plugin("Polaris")
    manager.activate_plugin("Polaris")
    bot.bot.signal_connect_to_all_plugins()
    plugin = bot.plugin
    assert client.socket_mode_request_listeners == [backend_listener, plugin.on_socket_request]

    Workspace(client, slack).ask("help")
    texts = slack.wait_for_posts(2)
    assert texts[0] == ACK
    assert "/polaris me" in texts[1]

    manager.deactivate_plugin("Polaris")
    assert client.socket_mode_request_listeners == [backend_listener]
    assert client.failures == []
