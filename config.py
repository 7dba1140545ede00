"""Errbot configuration for polaris-bot, read from environment variables.

With SLACK_BOT_TOKEN and SLACK_APP_TOKEN set, the bot joins Slack through the
SlackV3 backend in socket mode; without them it runs Errbot's Text backend, a
console, so it can be tried anywhere. Every variable is described in README.md.

Secrets (Slack tokens, RSC credentials) stay in the environment: never in plugin
configuration, which Errbot echoes back into chat.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _ids(name: str) -> tuple[str, ...]:
    """A comma-separated list of ids from the environment, blanks dropped."""
    return tuple(part.strip() for part in os.environ.get(name, "").split(",") if part.strip())


def _slackv3_dir() -> str | None:
    spec = importlib.util.find_spec("slackv3")
    return str(Path(spec.origin).parent) if spec and spec.origin else None


SLACK = bool(os.environ.get("SLACK_BOT_TOKEN") and os.environ.get("SLACK_APP_TOKEN"))

if SLACK:
    BACKEND = "SlackV3"
    BOT_EXTRA_BACKEND_DIR = _slackv3_dir()
    BOT_IDENTITY = {
        "token": os.environ["SLACK_BOT_TOKEN"],
        "app_token": os.environ["SLACK_APP_TOKEN"],
    }
    BOT_PREFIX = os.environ.get("BOT_PREFIX", "!")
    # Slack member ids (U0123ABC); names like @alice never match on Slack.
    BOT_ADMINS = _ids("BOT_ADMINS")
else:
    BACKEND = "Text"
    BOT_IDENTITY = {}
    BOT_PREFIX = os.environ.get("BOT_PREFIX", "!")
    # The console speaks as BOT_ADMINS[0]; Text identities start with "@", so ids
    # written for Slack (U0123ABC) get one rather than stopping the console.
    BOT_ADMINS = tuple(a if a.startswith("@") else f"@{a}" for a in _ids("BOT_ADMINS")) or ("@you",)
    TEXT_DEMO_MODE = os.environ.get("TEXT_DEMO_MODE", "1") != "0"

BOT_DATA_DIR = os.environ.get("BOT_DATA_DIR", str(HERE / "data"))
Path(BOT_DATA_DIR).mkdir(parents=True, exist_ok=True)
BOT_EXTRA_PLUGIN_DIR = str(HERE / "plugins")
BOT_LOG_FILE = os.environ.get("BOT_LOG_FILE", str(Path(BOT_DATA_DIR) / "errbot.log"))
BOT_LOG_LEVEL = getattr(logging, os.environ.get("BOT_LOG_LEVEL", "INFO").upper(), logging.INFO)

# Polaris calls run on this pool; the plugin keeps its own RSC cap below its size.
BOT_ASYNC = True
BOT_ASYNC_POOLSIZE = int(os.environ.get("BOT_ASYNC_POOLSIZE", "10"))

# The plugin can install plugins from chat: keep that off.
AUTOINSTALL_DEPS = False
SUPPRESS_CMD_NOT_FOUND = False
HIDE_RESTRICTED_ACCESS = False
HIDE_RESTRICTED_COMMANDS = False

# --- Access control -------------------------------------------------------------
# Errbot has no groups: one tuple of inviters is reused in every rule. The first
# matching key wins, so the specific Polaris rules come before any catch-all.
INVITERS = _ids("POLARIS_INVITERS")
EVERYONE = {"allowusers": ("*",)}
INVITERS_ONLY = {"allowusers": INVITERS}
INVITERS_DIRECT_ONLY = {"allowusers": INVITERS, "allowmuc": False}

ACCESS_CONTROLS_DEFAULT: dict = {}
ACCESS_CONTROLS = {
    "Polaris:polaris_invite": INVITERS_ONLY,
    "Polaris:polaris_roles": INVITERS_ONLY,
    "Polaris:polaris_list": INVITERS_DIRECT_ONLY,
    "Polaris:polaris_approve": INVITERS_ONLY,
    "Polaris:polaris_deny": INVITERS_ONLY,
    "Polaris:polaris_pending": INVITERS_ONLY,
    "Polaris:polaris_audit": INVITERS_DIRECT_ONLY,
    "Polaris:*": EVERYONE,
    # Errbot's own administrative commands stay with the bot admins.
    "Plugins:*": {"allowusers": BOT_ADMINS},
    "Utils:*": {"allowusers": BOT_ADMINS},
    "Help:*": EVERYONE,
    "Health:*": {"allowusers": BOT_ADMINS},
}


class _Environment(dict):
    """A copy of the environment that never prints its values (they include secrets)."""

    def __repr__(self) -> str:
        return f"<environment: {len(self)} variables>"

    __str__ = __repr__


# Settings the plugin reads: the environment itself (see README.md).
POLARIS_SETTINGS = _Environment(os.environ)
