"""Run the sandbox from the command line: python -m polaris_sandbox."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .server import CLIENT_ID, CLIENT_SECRET, PASSWORD, USERNAME, Sandbox


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m polaris_sandbox",
        description="Serve a local stand-in for the RSC GraphQL API until interrupted.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback)")
    parser.add_argument("--port", type=int, default=8700, help="port; 0 picks a free one")
    parser.add_argument("--users", type=int, default=300, help="number of seeded users")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated data")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument(
        "--token-lifetime", type=float, default=43200, help="access token lifetime, seconds"
    )
    parser.add_argument(
        "--service-account-file", metavar="PATH", help="write a service-account JSON file here"
    )
    parser.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="permit binding to an address other than loopback (the sandbox has no real auth)",
    )
    parser.add_argument("--debug", action="store_true", help="log every request")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Start the sandbox, print how to reach it, and serve until SIGINT or SIGTERM."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if not _is_loopback(args.host) and not args.allow_non_loopback:
        print(
            f"refusing to bind to {args.host}: not a loopback address "
            "(pass --allow-non-loopback if you really mean it)",
            file=sys.stderr,
        )
        return 2

    sandbox = Sandbox(
        host=args.host,
        port=args.port,
        users=args.users,
        seed=args.seed,
        latency=args.latency,
        token_lifetime=args.token_lifetime,
    )
    try:
        sandbox.start()
    except OSError as error:
        print(f"cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1

    lines = [
        f"polaris sandbox serving {sandbox.url} ({args.users} users); Ctrl-C stops it",
        f"POLARIS_URL={sandbox.url}",
        f"POLARIS_CLIENT_ID={CLIENT_ID}",
        f"POLARIS_CLIENT_SECRET={CLIENT_SECRET}",
        f"POLARIS_USERNAME={USERNAME}",
        f"POLARIS_PASSWORD={PASSWORD}",
    ]
    if args.service_account_file:
        path = sandbox.write_service_account_file(args.service_account_file)
        lines.append(f"POLARIS_SERVICE_ACCOUNT_FILE={path.resolve()}")
    print("\n".join(lines), flush=True)

    done = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    while not done.wait(0.5):
        pass
    sandbox.stop()
    print("polaris sandbox stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
