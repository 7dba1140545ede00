"""Shared test set-up: the plugin's library on sys.path (as Errbot puts it), a sandbox
RSC on loopback, and a factory for real bots configured through config.py."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins" / "polaris"))
sys.path.insert(0, str(ROOT))

pytest_plugins = ["errbot.backends.test", "secret_scan"]

ADMIN = "U0ADMIN"
INVITER = "U0INVITER"
MEMBER = "U0MEMBER"
ROLE = "ReadOnlyAdmin"
DOMAIN = "example.com"


@pytest.fixture
def sandbox() -> Iterator[Any]:
    from polaris_sandbox import Sandbox

    with Sandbox(users=300) as server:
        yield server


def polaris_env(sandbox: Any, **overrides: str) -> dict[str, str]:
    """Environment variables for a bot that uses ``sandbox`` with client credentials."""
    from polaris_sandbox import CLIENT_ID, CLIENT_SECRET

    env = {
        "POLARIS_URL": sandbox.url,
        "POLARIS_CLIENT_ID": CLIENT_ID,
        "POLARIS_CLIENT_SECRET": CLIENT_SECRET,
        "POLARIS_ROLES": ROLE,
        "POLARIS_ALLOWED_DOMAINS": DOMAIN,
        "POLARIS_INVITERS": INVITER,
        "BOT_ADMINS": ADMIN,
        "POLARIS_READ_TIMEOUT": "5",
        "POLARIS_RETRY_BUDGET": "3",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


@pytest.fixture
def start_bot(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start a real bot (Errbot's test backend) from an environment; stopped after the test."""
    from chat import Chat, bot_config

    running: list[Chat] = []

    def start(env: dict[str, str], **extra: Any) -> Chat:
        config = bot_config({"BOT_DATA_DIR": str(tmp_path), **env})
        config.update(extra)
        chat = Chat(config)
        running.append(chat)
        return chat

    yield start
    for chat in running:
        chat.stop()


@pytest.fixture
def chat(sandbox: Any, start_bot: Callable[..., Any]) -> Any:
    """A bot on the sandbox with the usual settings, spoken to by an inviter."""
    bot = start_bot(polaris_env(sandbox))
    bot.as_user(INVITER)
    return bot
