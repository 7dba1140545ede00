"""The demo: the RSC stand-in on loopback plus the bot in Errbot's console.

Run it through ``./dev demo``. You are the console user ``@you``, an inviter, so
``!polaris invite someone@example.com`` works at once. Commands can also be piped
in (``printf '!polaris status\\n' | ./dev demo``): the demo then waits briefly for
the last answers before it stops.
"""

from __future__ import annotations

import argparse
import os
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
    options = parser.parse_args()

    with Sandbox(users=options.users, latency=options.latency) as sandbox:
        data_dir = Path(tempfile.mkdtemp(prefix="polaris-demo-"))
        account_file = sandbox.write_service_account_file(data_dir / "service-account.json")
        env = {
            **os.environ,
            "POLARIS_SERVICE_ACCOUNT_FILE": str(account_file),
            "POLARIS_ROLES": os.environ.get("POLARIS_ROLES", "ReadOnlyAdmin"),
            "POLARIS_ALLOWED_DOMAINS": os.environ.get("POLARIS_ALLOWED_DOMAINS", "example.com"),
            "POLARIS_INVITERS": os.environ.get("POLARIS_INVITERS", "@you"),
            "BOT_ADMINS": os.environ.get("BOT_ADMINS", "@you"),
            "BOT_DATA_DIR": str(data_dir),
        }
        for secret in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"):
            env.pop(secret, None)  # the demo is always the console
        print(f"Polaris stand-in: {sandbox.url} (control it under {sandbox.url}/_sandbox/)")
        print("You are @you, an inviter. Try: !polaris invite someone@example.com")
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
