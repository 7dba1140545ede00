"""Start one bot in a fresh process and say when it is ready: python -m bench.startup.

Reads the bot's environment as JSON on stdin. Prints one JSON line: the moment the
bot answered its first message (``time.monotonic()``, which on Linux is the same
clock in every process, so the parent can subtract its launch time), the seconds
the in-process start took, and the resident memory once ready. A fresh process
counts what an operator waits for: interpreter start, imports, config.py, Errbot's
plugin loading and activation, and the first answered message.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path


def resident_kib(field: str = "VmRSS") -> int | None:
    """A memory figure of this process from /proc/self/status, in KiB (None elsewhere)."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def main() -> int:
    """Start the bot from the environment on stdin, report, stop."""
    env = json.loads(sys.stdin.read())

    from bench.harness import RESULTS, BenchBot, quiet_logging

    quiet_logging(RESULTS / "bench-startup.log")
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as data_dir:
        bot = BenchBot(env, Path(data_dir))
        ready = time.monotonic()
        rss = resident_kib()
        print(
            json.dumps({"ready": ready, "start_seconds": bot.start_seconds, "rss_kib": rss}),
            flush=True,
        )
        bot.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
