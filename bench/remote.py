"""The sandbox RSC in a child process, driven through a pipe.

The benchmark measures the bot's own latency and memory. A sandbox in the same
process would share the bot's interpreter lock and heap: a hundred HTTP handler
threads parsing GraphQL would slow the bot's acknowledgements, and the sandbox's
pages would count as the bot's memory. Real RSC runs elsewhere, so the sandbox
does too. The child runs the very same ``polaris_sandbox.Sandbox``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from multiprocessing.connection import Connection
from typing import Any

from polaris_sandbox import Sandbox


def _serve(conn: Connection, options: dict[str, Any]) -> None:
    """Child process: run a Sandbox and answer requests about it until told to stop."""
    sandbox = Sandbox(**options).start()
    conn.send(sandbox.url)
    try:
        while True:
            request = conn.recv()
            if request is None:
                break
            action, name, args, kwargs = request
            try:
                if action == "get":
                    result: Any = getattr(sandbox, name)
                elif action == "set":
                    setattr(sandbox, name, args[0])
                    result = None
                elif action == "roles":
                    result = {role.name: role.id for role in sandbox.roles.values()}
                elif action == "user_count":
                    result = len(sandbox.users)
                else:
                    result = getattr(sandbox, name)(*args, **kwargs)
                conn.send(("ok", result))
            except Exception as error:  # the parent raises it; the child keeps serving
                conn.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        sandbox.stop()
        conn.close()


class RemoteSandbox:
    """A ``Sandbox`` running in a child process; the parts of its API the benchmark uses."""

    def __init__(self, **options: Any) -> None:
        # spawn, not fork: the parent has threads (a running bot) by the time it starts one.
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, options), name="bench-sandbox", daemon=True
        )
        self._process.start()
        child.close()
        if not self._conn.poll(60):
            self._process.kill()
            raise RuntimeError("the sandbox process did not start within 60 s")
        self.url: str = self._conn.recv()

    def _ask(self, action: str, name: str = "", *args: Any, **kwargs: Any) -> Any:
        self._conn.send((action, name, args, kwargs))
        status, result = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"sandbox {action} {name}: {result}")
        return result

    @property
    def logins(self) -> int:
        """Access tokens the sandbox has issued since the last ``reset_log``."""
        return int(self._ask("get", "logins"))

    @property
    def requests(self) -> list[Any]:
        """The sandbox's request log (``RecordedRequest`` records)."""
        return list(self._ask("get", "requests"))

    def set_latency(self, seconds: float) -> None:
        """Seconds added to every API request from now on."""
        self._ask("set", "latency", seconds)

    def set_fault(self, target: str, kind: str, **params: Any) -> None:
        """Arm a fault, as ``Sandbox.set_fault``."""
        self._ask("call", "set_fault", target, kind, **params)

    def clear_faults(self) -> None:
        self._ask("call", "clear_faults")

    def reset_log(self) -> None:
        """Forget logged requests and the login count."""
        self._ask("call", "reset_log")

    def role_ids(self) -> dict[str, str]:
        """Role ids by role name."""
        return dict(self._ask("roles"))

    def user_count(self) -> int:
        return int(self._ask("user_count"))

    def stop(self) -> None:
        """Stop the sandbox and its process."""
        if not self._process.is_alive():
            return
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._conn.close()

    def __enter__(self) -> RemoteSandbox:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
