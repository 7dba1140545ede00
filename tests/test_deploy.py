"""Deployment: the image's rules, its entry point run for real, the Slack app manifest,
and the log scan for secrets.

There is no Docker engine here, so the Dockerfile is checked as text
(scripts/check_dockerfile.py), and the image's ENTRYPOINT and HEALTHCHECK commands
are read from it and run directly against a sandbox, with /app mapped to the
repository.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import secret_scan
import yaml
from chat import wait_for
from conftest import polaris_env

from scripts.check_dockerfile import check_dockerfile, check_dockerignore, parse

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
MANIFEST = ROOT / "slack-app-manifest.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
PLUGIN_SOURCES = [
    ROOT / "plugins/polaris/polaris.py",
    *ROOT.glob("plugins/polaris/polarisbot/*.py"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def image_command(keyword: str) -> list[str]:
    """The exec-form command of ENTRYPOINT or HEALTHCHECK, runnable from the repository."""
    (instruction,) = [i for i in parse(DOCKERFILE.read_text()) if i.keyword == keyword][-1:]
    text = instruction.arguments
    if keyword == "HEALTHCHECK":
        text = text.partition("CMD")[2]
    command = json.loads(text)
    assert command[0] == "python", "the image runs its commands with the image's python"
    return [sys.executable, *(arg.replace("/app/", f"{ROOT}/") for arg in command[1:])]


# --- the Dockerfile ---------------------------------------------------------------


def test_the_dockerfile_and_dockerignore_keep_every_image_rule():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/check_dockerfile.py")],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 0, result.stdout + result.stderr


# Made-up tokens are put together at run time, so no token-shaped string is committed.
FAKE_BOT_TOKEN = "xox" + "b-1234-5678-abcdef"

BAD_DOCKERFILE = f"""\
FROM python:latest
ENV SLACK_BOT_TOKEN={FAKE_BOT_TOKEN} BOT_DATA_DIR=/srv
ARG POLARIS_CLIENT_SECRET
COPY . .
RUN pip install -r requirements.txt && pip install --no-cache-dir requests
USER root
CMD python config.py
"""


def test_the_dockerfile_check_names_each_broken_rule():
    problems = "\n".join(check_dockerfile(BAD_DOCKERFILE))

    assert "base image 'python:latest' is not a pinned" in problems
    assert "the last USER is root" in problems
    assert "ENV SLACK_BOT_TOKEN looks like a secret" in problems
    assert "ARG POLARIS_CLIENT_SECRET looks like a secret" in problems
    assert "no HEALTHCHECK" in problems
    assert "CMD is in shell form" in problems
    assert "pip install without --no-cache-dir" in problems
    assert "pip installs 'requests' without a pin" in problems
    assert "no VOLUME /data" in problems
    assert "ENV BOT_DATA_DIR is not /data" in problems


def test_the_dockerfile_check_fails_the_command_on_a_violation(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("USER polaris:polaris", "USER 0"))
    ignore = tmp_path / ".dockerignore"
    ignore.write_text(".git\n.venv\n")

    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts/check_dockerfile.py"),
            f"--dockerfile={bad}",
            f"--dockerignore={ignore}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 1
    assert "the last USER is root" in result.stdout
    assert ".dockerignore does not exclude *.json" in result.stdout
    assert ".dockerignore does not exclude .env" in result.stdout


def test_a_dockerignore_without_the_secret_and_state_entries_is_refused():
    assert check_dockerignore(".venv\n/data/\n.git\n**/*.json\n.env\n") == []
    assert check_dockerignore("") == [
        f".dockerignore does not exclude {entry}"
        for entry in (".venv", "data", ".git", "*.json", ".env")
    ]


# --- the entry point, run as the image runs it ----------------------------------------


@pytest.fixture
def running_bot(sandbox: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The image's ENTRYPOINT as a process: console backend, web server on a free port."""
    port = free_port()
    data = tmp_path / "data"
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SLACK_", "POLARIS_", "BOT_", "WEBSERVER_"))
    }
    # The console backend knows people as @name, not as Slack member ids.
    env.update(polaris_env(sandbox, BOT_ADMINS="@you", POLARIS_INVITERS="@you"))
    env.update({"BOT_DATA_DIR": str(data), "WEBSERVER_HOST": "127.0.0.1"})
    env["WEBSERVER_PORT"] = str(port)
    stdout = (tmp_path / "stdout").open("w")
    stderr = (tmp_path / "stderr").open("w")
    # The console backend reads stdin: a pipe that stays open keeps it serving.
    bot = subprocess.Popen(
        image_command("ENTRYPOINT"),
        cwd=tmp_path,
        env=env,
        stdin=subprocess.PIPE,
        stdout=stdout,
        stderr=stderr,
    )
    running: dict[str, Any] = {
        "process": bot,
        "env": env,
        "log": data / "errbot.log",
        "tmp": tmp_path,
    }
    try:
        yield running
    finally:
        if bot.poll() is None:
            bot.kill()
            bot.wait(timeout=10)
        if bot.stdin:
            bot.stdin.close()
        stdout.close()
        stderr.close()
        for name in ("stdout", "stderr"):
            secret_scan.scan_text(f"the bot process's {name}", (tmp_path / name).read_text())
        if running["log"].exists():
            secret_scan.scan_text("the bot process's log file", running["log"].read_text())


def health_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, run once."""
    return subprocess.run(
        image_command("HEALTHCHECK"), env=env, capture_output=True, text=True, timeout=15
    )


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_entrypoint_becomes_healthy_and_stops_cleanly_on_a_stop_signal(running_bot, stop):
    bot = running_bot["process"]

    def healthy() -> bool:
        return bot.poll() is not None or health_check(running_bot["env"]).returncode == 0

    def serving() -> bool:
        # /health answers once the Polaris plugin is up, which can be a moment before
        # Errbot has activated every other plugin and entered its serve loop; a stop
        # signal in that moment ends the start-up instead (exit 128 + signal, documented).
        log = running_bot["log"]
        return bot.poll() is not None or (
            log.exists() and "Plugin activation done." in log.read_text()
        )

    wait_for(healthy, timeout=20)
    wait_for(serving, timeout=20)
    assert bot.poll() is None and healthy(), (
        "the bot never became healthy: " + (running_bot["tmp"] / "stderr").read_text()[-2000:]
    )
    bot.send_signal(stop)

    assert bot.wait(timeout=10) == 0
    log = running_bot["log"].read_text()
    assert f"{stop.name} received, stopping" in log
    # Errbot's plugin manager finished its shutdown: storage closed, plugins deactivated.
    assert "Bye." in log
    unhealthy = health_check(running_bot["env"])
    assert unhealthy.returncode == 1
    assert "/health" in unhealthy.stdout


def test_the_health_check_fails_while_nothing_answers():
    env = {"WEBSERVER_HOST": "0.0.0.0", "WEBSERVER_PORT": str(free_port())}

    result = health_check({**os.environ, **env})

    assert result.returncode == 1
    assert f"http://127.0.0.1:{env['WEBSERVER_PORT']}/health" in result.stdout


# --- the Slack app manifest -----------------------------------------------------------


def manifest_scopes() -> set[str]:
    manifest = yaml.safe_load(MANIFEST.read_text())
    return set(manifest["oauth_config"]["scopes"]["bot"])


def plugin_code() -> str:
    return "\n".join(path.read_text() for path in PLUGIN_SOURCES)


def test_the_manifest_is_a_socket_mode_app_with_the_events_the_backend_handles():
    manifest = yaml.safe_load(MANIFEST.read_text())

    assert manifest["display_information"]["name"]
    assert manifest["settings"]["socket_mode_enabled"] is True
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert {"message.im", "message.channels", "message.groups"} <= events
    # The same app carries /polaris: over the socket, so it needs no request URL.
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/polaris"
    assert "url" not in command
    assert "commands" in manifest["oauth_config"]["scopes"]["bot"]


def test_the_manifest_grants_the_scopes_the_code_needs():
    scopes = manifest_scopes()
    code = plugin_code()

    # Posting replies; reading commands in direct messages and channels.
    assert {"chat:write", "im:history", "channels:history", "groups:history"} <= scopes
    # The backend resolves every sender and channel, and each DM's team, before a
    # command runs.
    assert {"users:read", "channels:read", "groups:read", "team:read"} <= scopes
    # !polaris request reads the profile email; /polaris me asks users.info for it.
    assert "users:read.email" in scopes
    assert "im:write" in scopes  # the bot opens DMs to admins and approvers
    if re.search(r"send_stream_request|files_upload", code):
        assert "files:write" in scopes
    if re.search(r"add_reaction|reactions_add", code):
        assert "reactions:write" in scopes


def test_every_scope_in_the_manifest_says_why_it_is_needed():
    lines = [line.strip() for line in MANIFEST.read_text().splitlines()]
    scope_lines = [line for line in lines if re.match(r"- ([a-z_.]+:[a-z_.:]+|commands)\b", line)]

    assert len(scope_lines) == len(manifest_scopes())
    for line in scope_lines:
        assert re.search(r"#\s*\w+", line), f"no reason given for {line!r}"


def test_the_http_mode_alternative_in_the_slash_command_guide_reaches_the_bot_over_http():
    guide = ROOT / "docs" / "slash-command.md"
    blocks = re.findall(r"```yaml\n(.*?)```", guide.read_text(), flags=re.S)
    manifests = [yaml.safe_load(block) for block in blocks]
    (slash_app,) = [m for m in manifests if m and m.get("features", {}).get("slash_commands")]

    assert slash_app["settings"]["socket_mode_enabled"] is False
    (command,) = slash_app["features"]["slash_commands"]
    assert command["command"] == "/polaris"
    assert command["url"].startswith("https://") and command["url"].endswith("/slack/polaris")
    assert command["usage_hint"]
    assert slash_app["oauth_config"]["scopes"]["bot"] == ["commands"]
    assert '"/slack/polaris"' in (ROOT / "plugins/polaris/polarisbot/slash.py").read_text()


# --- the log scan for secrets ---------------------------------------------------------


def isolated_scanner() -> tuple[secret_scan.LogScanner, logging.Logger]:
    """A scanner on a logger that does not reach the session's own scan."""
    scanner = secret_scan.LogScanner()
    logger = logging.getLogger(f"secret_scan.selftest.{time.monotonic_ns()}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(scanner.handler)
    return scanner, logger


def test_the_scanner_finds_a_planted_secret_without_repeating_it():
    scanner, logger = isolated_scanner()
    planted = "planted-Secret-7Qx2"
    scanner.add_secret(planted)

    logger.info("nothing to see here")
    logger.warning("logging in with %s", planted)

    (finding,) = scanner.findings()
    assert "registered secret" in str(finding)
    assert "logging in with" in str(finding)
    assert planted not in str(finding)


def test_the_scanner_finds_tokens_by_their_shape_and_in_tracebacks():
    scanner, logger = isolated_scanner()
    jwt_start = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"

    try:
        raise RuntimeError(f"bad token {jwt_start}.e30.sig")
    except RuntimeError:
        logger.exception("call failed")
    logger.info("slack said hi to %s", "xox" + "b-1111-2222-abcdefgh")

    found = [finding.what for finding in scanner.findings()]
    assert found == ["a JWT (an access token)", "a Slack token"]


def test_secrets_in_a_bots_environment_are_registered_for_the_scan(sandbox, start_bot):
    signing_secret = "signing-secret-registered-8Kd2"

    start_bot(polaris_env(sandbox, SLACK_SIGNING_SECRET=signing_secret))

    assert secret_scan.SCANNER.knows(signing_secret)


def test_a_run_that_logs_a_secret_fails_on_the_scan(tmp_path):
    (tmp_path / "test_leak.py").write_text(
        textwrap.dedent(
            """\
            import logging

            from polaris_sandbox import CLIENT_SECRET

            def test_logs_the_client_secret():
                logging.getLogger("leaky").warning("logging in with %s", CLIENT_SECRET)
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "secret_scan", "-p", "no:cacheprovider", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    from polaris_sandbox import CLIENT_SECRET

    assert result.returncode == 1, result.stdout
    assert "FAILED secret_scan.py::test_no_secret_reached_the_logs" in result.stdout
    assert "in test_leak.py::test_logs_the_client_secret (logger leaky)" in result.stdout
    assert CLIENT_SECRET not in result.stdout
