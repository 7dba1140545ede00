"""The demo: the RSC stand-in on loopback plus the bot in Errbot's console.

Run it through ``./dev demo``. You are the console user ``@you``, an inviter, so
``!polaris invite someone@example.com`` works at once; ``!asuser`` makes you
``@luser``, who can ``!polaris request`` an account for you to approve after
``!asadmin``. Commands can also be piped in (``printf '!polaris status\\n' | ./dev demo``):
the demo then waits ``--drain`` seconds for the last answers before it stops.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from polaris_sandbox import Sandbox

ROOT = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300, help="seeded Polaris users")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per RSC call")
    parser.add_argument(
        "--drain", type=float, default=3.0, help="seconds to wait for answers after piped input"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the bot's data directory and log afterwards"
    )
    options = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="polaris-demo-"))
    try:
        return run(options, data_dir)
    finally:
        if options.keep:
            print(f"The bot's storage and log (errbot.log) are kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def run(options: argparse.Namespace, data_dir: Path) -> int:
    """Start the stand-in, then the bot against it; returns the bot's exit code."""
    with Sandbox(users=options.users, latency=options.latency) as sandbox:
        account_file = sandbox.write_service_account_file(data_dir / "service-account.json")
        env = {
            **os.environ,
            "POLARIS_SERVICE_ACCOUNT_FILE": str(account_file),
            "POLARIS_ROLES": os.environ.get("POLARIS_ROLES", "ReadOnlyAdmin"),
            "POLARIS_ALLOWED_DOMAINS": os.environ.get("POLARIS_ALLOWED_DOMAINS", "example.com"),
            # @you in a one-to-one chat, and as a room occupant after !inroom.
            "POLARIS_INVITERS": os.environ.get("POLARIS_INVITERS", "@you,#*/you"),
            # The console has no profiles: what !polaris request uses for each console user.
            "POLARIS_CONSOLE_EMAILS": os.environ.get(
                "POLARIS_CONSOLE_EMAILS", "you=you@example.com,luser=luser@example.com"
            ),
            "BOT_ADMINS": os.environ.get("BOT_ADMINS", "@you"),
            "BOT_DATA_DIR": str(data_dir),
        }
        for secret in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"):
            env.pop(secret, None)  # the demo is always the console
        print(f"Polaris stand-in: {sandbox.url} (control it under {sandbox.url}/_sandbox/)")
        print(f"The bot's storage and log: {data_dir} (removed at the end unless --keep)")
        print("You are @you, an inviter. Try: !polaris invite someone@example.com")
        print(
            "Requests: !asuser, !polaris request, !asadmin, !polaris pending, !polaris approve ID"
        )
        sys.stdout.flush()

        command = [sys.executable, "-m", "errbot.cli", "-c", str(ROOT / "config.py")]
        if sys.stdin.isatty():
            return subprocess.call(command, env=env, cwd=ROOT)

        # Piped commands: feed them, give the bot time to answer, then end its input.
        bot = subprocess.Popen(command, env=env, cwd=ROOT, stdin=subprocess.PIPE, text=True)
        assert bot.stdin is not None
        for line in sys.stdin:
            bot.stdin.write(line)
            bot.stdin.flush()
        time.sleep(options.drain)
        bot.stdin.close()
        return bot.wait()


if __name__ == "__main__":
    sys.exit(main())
