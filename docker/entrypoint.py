"""Run the bot as a container's main process and stop it cleanly on SIGTERM or SIGINT.

Errbot stops cleanly only on SIGINT, which Python turns into ``KeyboardInterrupt``:
the backend's serve loop catches it, deactivates the plugins (the invite queue
drains, the web server stops) and closes the storage. SIGTERM, the signal
``docker stop`` and Kubernetes send, has no handler in Errbot, so the process would
die without closing its storage. Here both signals take the SIGINT path.

Exit status: 0 after a clean stop, 128 + the signal number when a signal arrives
before the bot is serving, Errbot's own status otherwise.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

log = logging.getLogger("polaris.entrypoint")


class _Stop:
    """The first stop signal interrupts the bot; later ones are logged and ignored."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is not None:
            # A second KeyboardInterrupt would abort the shutdown half way.
            log.warning("already stopping; %s ignored", signal.Signals(signum).name)
            return
        self.signum = signum
        log.info("%s received, stopping", signal.Signals(signum).name)
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Start Errbot with the project's config.py and return the exit status."""
    config = os.environ.get("BOT_CONFIG") or str(ROOT / "config.py")
    stop = _Stop()
    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)

    sys.argv = ["errbot", "--config", config, *(argv or [])]
    from errbot.cli import main as errbot_main

    try:
        errbot_main()
    except KeyboardInterrupt:
        # Errbot had not reached its serve loop: nothing to shut down yet.
        return 128 + (stop.signum or signal.SIGINT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
