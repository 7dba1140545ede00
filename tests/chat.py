"""Driving the real bot in tests: Errbot's test backend, configured by our config.py.

``bot_config(env)`` runs config.py with ``env`` as the environment, exactly as the
bot would at start-up, and returns the settings to hand to Errbot's TestBot. The
``Chat`` wrapper sends messages as a given Slack member and collects replies.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import queue
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from unittest import mock

from errbot.backends.base import Message
from errbot.backends.test import TestBot, TestOccupant, TestPerson, TestRoom

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = str(ROOT / "plugins")

# Keys of config.py that the test backend sets for itself.
BACKEND_OWNED = {"BACKEND", "BOT_IDENTITY", "BOT_DATA_DIR", "BOT_LOG_FILE", "BOT_LOG_LEVEL"}


def bot_config(env: Mapping[str, str]) -> dict[str, Any]:
    """The upper-case settings config.py produces when the environment is ``env``."""
    spec = importlib.util.spec_from_file_location("polaris_test_config", ROOT / "config.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    data_dir = env.get("BOT_DATA_DIR") or os.environ.get("PYTEST_DATA_DIR") or "/tmp"
    with mock.patch.dict(os.environ, {"BOT_DATA_DIR": data_dir, **env}, clear=True):
        spec.loader.exec_module(module)
        settings = {k: v for k, v in vars(module).items() if k.isupper()}
    return {k: v for k, v in settings.items() if k not in BACKEND_OWNED}


class Chat:
    """A running bot and the conversation with it."""

    def __init__(self, extra_config: Mapping[str, Any]) -> None:
        self.testbot = TestBot(
            extra_plugin_dir=PLUGINS, loglevel=logging.INFO, extra_config=dict(extra_config)
        )
        self.testbot.start(timeout=10)
        # The plugin logs in and looks up role ids in the background at start-up; tests
        # begin once that is over, so faults they arm meet their own commands only.
        plugin = self.plugin
        if plugin is not None and hasattr(plugin, "ready"):
            plugin.ready.wait(30)

    @property
    def bot(self) -> Any:
        return self.testbot.bot

    @property
    def plugin(self) -> Any:
        return self.bot.plugin_manager.get_plugin_obj_by_name("Polaris")

    def stop(self) -> None:
        self.testbot.stop()

    def as_user(self, member_id: str, email: str | None = None) -> None:
        """Send the next messages as ``member_id`` (a Slack-style member id)."""
        self.bot.sender = TestPerson(member_id, email=email)

    def send(self, text: str, extras: Mapping[str, Any] | None = None) -> None:
        """A direct message to the bot."""
        self.bot.push_message(text, dict(extras) if extras else {})

    def send_in_channel(self, text: str, channel: str = "C0CHANNEL") -> None:
        """A message in a channel, from the current sender."""
        room = TestRoom(channel, bot=self.bot)
        msg = Message(text, extras={})
        msg.frm = TestOccupant(self.bot.sender.person, room)
        msg.to = room
        self.bot.callback_message(msg)

    def reply(self, timeout: float = 10) -> str:
        """The next message the bot sends, as a person sees it (zero-width spaces are
        invisible); fails the test if none comes in time."""
        try:
            return visible(str(self.bot.pop_message(timeout=timeout)))
        except queue.Empty:
            raise AssertionError(f"the bot said nothing within {timeout} s") from None

    def replies(self, count: int, timeout: float = 10) -> list[str]:
        return [self.reply(timeout) for _ in range(count)]

    def silent(self, seconds: float = 0.5) -> bool:
        """True when the bot says nothing more for ``seconds``."""
        try:
            extra = self.bot.pop_message(timeout=seconds)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected extra reply: {extra!r}")

    def ask(self, text: str, timeout: float = 10) -> str:
        self.send(text)
        return self.reply(timeout)


def visible(text: str) -> str:
    """``text`` as Slack shows it: zero-width spaces (the bot's markup breaks) are
    invisible, and Slack decodes its three escapes (the test backend does not, in code)."""
    for escaped, plain in (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&")):
        text = text.replace(escaped, plain)
    return text.replace("\u200b", "")


def shown(markdown: str) -> str:
    """A reply's Markdown as a person reads it: ``visible``, without code-span backticks."""
    return visible(markdown).replace("`", "")


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())
