"""Driving the real bot for the benchmark: Errbot's test backend, many senders at once.

The project's tests speak to the bot as one sender at a time through the test
backend's single input thread. A burst needs many senders at once, so the
benchmark builds each ``Message`` itself (its own sender id, addressed to the bot)
and hands it to ``bot.callback_message`` from several injector threads, which is
what the Slack backend does from its socket-mode worker threads.

The test backend's ``build_reply`` forgets whom a reply answers, so replies are
recorded one level up: ``send_simple_reply`` is wrapped on the bot instance and
notes, once the reply is on the backend's outgoing queue, the time and the
sender of the message it answers. Every reply of the plugin, the later outcome
lines included, goes through ``send_simple_reply``.
"""

from __future__ import annotations

import logging
import re
import shutil
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


# The project's test helpers know how config.py turns an environment into Errbot settings.
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from chat import Chat, bot_config  # noqa: E402
from chat import shown as _shown  # noqa: E402
from errbot.backends.base import Message  # noqa: E402
from errbot.backends.test import TestPerson  # noqa: E402

ADMIN = "U0BENCHADMIN"
ROLE = "ReadOnlyAdmin"
DOMAIN = "example.com"
# The Slack backend's socket-mode client hands events to 10 worker threads by default.
INJECTOR_THREADS = 10


def shown(markdown: str) -> str:
    """A reply as a person reads it (the tests' own rule, in tests/chat.py)."""
    return str(_shown(markdown))


@dataclass(frozen=True)
class Reply:
    """One reply as it left the bot."""

    at: float  # time.perf_counter() once the reply was on the outgoing queue
    text: str


def quiet_logging(log_file: Path) -> None:
    """Send the bot's console log to a file instead of the terminal, at INFO as in production.

    Logging still costs what it costs in production (a line formatted and written by
    the console handler and by the BOT_LOG_FILE handler), but the table stays readable.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    # With a handler on the root logger, TestBot's logging.basicConfig adds no console one.
    logging.getLogger().addHandler(logging.NullHandler())

    from errbot import logs

    # Errbot adds this console handler to the root logger when the bot starts.
    logs.console_hdlr.setStream(open(log_file, "w", encoding="utf-8"))  # noqa: SIM115


def bot_env(url: str, inviters: Sequence[str], **overrides: str) -> dict[str, str]:
    """The environment of a bot on the sandbox at ``url``, as an operator would set it."""
    from polaris_sandbox import CLIENT_ID, CLIENT_SECRET

    env = {
        "POLARIS_URL": url,
        "POLARIS_CLIENT_ID": CLIENT_ID,
        "POLARIS_CLIENT_SECRET": CLIENT_SECRET,
        "POLARIS_ROLES": ROLE,
        "POLARIS_ALLOWED_DOMAINS": DOMAIN,
        "POLARIS_INVITERS": ",".join(inviters),
        "BOT_ADMINS": ADMIN,
        "BOT_ASYNC_POOLSIZE": "10",
    }
    env.update(overrides)
    return env


class Replies:
    """Every reply the bot sends, by the sender of the message it answers."""

    def __init__(self, bot: Any) -> None:
        self._bot = bot
        self._by_sender: dict[str, list[Reply]] = defaultdict(list)
        self._changed = threading.Condition()
        original = bot.send_simple_reply

        def recording(msg: Any, text: str, private: bool = False, threaded: bool = False) -> None:
            original(msg, text, private, threaded)
            at = time.perf_counter()
            sender = str(getattr(msg.frm, "person", msg.frm))
            with self._changed:
                self._by_sender[sender].append(Reply(at, text))
                self._changed.notify_all()

        bot.send_simple_reply = recording

    def of(self, sender: str) -> list[Reply]:
        with self._changed:
            return list(self._by_sender.get(sender, ()))

    def wait(self, wanted: Mapping[str, int], timeout: float) -> bool:
        """Wait until each sender has at least ``wanted[sender]`` replies; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if all(len(self._by_sender.get(s, ())) >= n for s, n in wanted.items()):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))

    def forget(self) -> None:
        """Drop what was recorded and what waits on the backend's outgoing queue."""
        with self._changed:
            self._by_sender.clear()
        queue = self._bot.outgoing_message_queue
        while not queue.empty():
            queue.get_nowait()


class BenchBot:
    """A real bot in Errbot's test backend, with its replies recorded."""

    def __init__(
        self, env: Mapping[str, str], data_dir: Path, extra: Mapping[str, Any] | None = None
    ) -> None:
        config = bot_config({"BOT_DATA_DIR": str(data_dir), **env})
        # Errbot's default, which production keeps; the test backend would switch to Memory.
        config["STORAGE"] = "Shelf"
        config.update(extra or {})
        root = logging.getLogger()
        before = list(root.handlers)
        started = time.perf_counter()
        self.chat = Chat(config)
        # Ready means serving chat, logged in to RSC, and role ids looked up.
        self.chat.plugin.ready.wait(60)
        self.start_seconds = time.perf_counter() - started
        self._handlers = [h for h in root.handlers if h not in before]
        for handler in self._handlers:
            # TestBot adds a second handler on BOT_LOG_FILE, which production does not have.
            if isinstance(handler, logging.FileHandler) and handler.formatter is None:
                root.removeHandler(handler)
                handler.close()
        self.bot: Any = self.chat.bot
        self.replies = Replies(self.bot)

    @property
    def plugin(self) -> Any:
        return self.chat.plugin

    def message(self, sender: str, text: str) -> Message:
        """A direct message to the bot from ``sender``, as a backend would build it."""
        msg = Message(text, extras={})
        msg.frm = TestPerson(sender)
        msg.to = self.bot.bot_identifier
        return msg

    def inject(self, sender: str, text: str) -> float:
        """Deliver one message now, on this thread; returns when it was delivered."""
        msg = self.message(sender, text)
        at = time.perf_counter()
        self.bot.callback_message(msg)
        return at

    def inject_burst(
        self, items: Sequence[tuple[str, str]], threads: int = INJECTOR_THREADS
    ) -> dict[str, float]:
        """Deliver every (sender, text) at once from ``threads`` threads; delivery times."""
        delivered: dict[str, float] = {}
        lock = threading.Lock()
        gate = threading.Barrier(threads)

        def injector(share: Iterable[tuple[str, str]]) -> None:
            gate.wait()
            for sender, text in share:
                at = self.inject(sender, text)
                with lock:
                    delivered[sender] = at

        workers = [
            threading.Thread(target=injector, args=(items[i::threads],), name=f"bench-inject-{i}")
            for i in range(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return delivered

    def ask(self, sender: str, text: str, timeout: float = 30.0) -> tuple[float, Reply]:
        """Send one message and wait for its first reply: (seconds taken, the reply)."""
        already = len(self.replies.of(sender))
        at = self.inject(sender, text)
        if not self.replies.wait({sender: already + 1}, timeout):
            raise TimeoutError(f"no reply to {text!r} within {timeout} s")
        reply = self.replies.of(sender)[already]
        return reply.at - at, reply

    def stop(self) -> None:
        """Stop the bot and drop the log handlers it added to the root logger."""
        self.chat.stop()
        root = logging.getLogger()
        for handler in self._handlers:
            root.removeHandler(handler)
            handler.close()
        # TestBot made this directory for the bot's storage and log, and leaves it behind.
        shutil.rmtree(self.chat.testbot.bot_config.BOT_DATA_DIR, ignore_errors=True)


def ids(prefix: str, count: int) -> list[str]:
    """``count`` distinct Slack-style member ids."""
    return [f"U0{prefix}{i:04d}" for i in range(count)]


INVITING = re.compile(r"^Inviting 1 address to Polaris")
