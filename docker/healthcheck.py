"""Exit 0 when the bot's /health answers "ok", 1 otherwise: the container's HEALTHCHECK.

The plugin serves GET /health on Errbot's web server, and Errbot activates plugins
only while the backend is connected to chat, so an answer means "connected". The
address comes from the same WEBSERVER_HOST and WEBSERVER_PORT the bot reads; a
wildcard bind address is reached over loopback.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def health_url(env: Mapping[str, str]) -> str:
    """The /health URL for the web server the environment configures."""
    host = (env.get("WEBSERVER_HOST") or "127.0.0.1").strip()
    host = WILDCARDS.get(host, host)
    port = (env.get("WEBSERVER_PORT") or "3141").strip()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/health"


def healthy(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    """Whether ``url`` answers 200 with status "ok", and a short reason for the log."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            body = json.loads(answer.read(4096) or b"{}")
    except (OSError, ValueError) as error:
        # URLError, HTTPError, timeouts and refused connections are all OSErrors.
        return False, f"{url}: {error}"
    if not isinstance(body, dict) or body.get("status") != "ok":
        return False, f"{url}: unexpected answer {body!r:.200}"
    return True, f"{url}: ok ({body.get('backend')})"


def main() -> int:
    """Check once and report the result on stdout (Docker keeps it in `docker inspect`)."""
    ok, reason = healthy(health_url(os.environ))
    print(reason)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
