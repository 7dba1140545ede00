"""The bot starts Errbot's web server itself when the environment asks for it."""

from __future__ import annotations

import socket

import requests
from chat import wait_for
from conftest import polaris_env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def test_the_web_server_starts_with_the_bot_and_reports_health(sandbox, start_bot):
    port = free_port()
    start_bot(polaris_env(sandbox, WEBSERVER_PORT=str(port)))

    assert wait_for(lambda: answers(f"http://127.0.0.1:{port}/health"), timeout=10)
    body = requests.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
    assert body["status"] == "ok"


def test_no_web_server_is_started_unless_asked_for(sandbox, start_bot):
    chat = start_bot(polaris_env(sandbox))

    active = chat.bot.plugin_manager.get_all_active_plugin_names()
    assert "Webserver" not in active
