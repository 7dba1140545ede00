"""A pytest plugin that fails the run when a secret reaches any log record.

For the whole session a handler on the root logger keeps every record's formatted
text (message, exception and stack). The last test of every run,
``test_no_secret_reached_the_logs``, fails when any of them contains:

- a registered secret value: the sandbox's client secret and password, every
  value of a secret-named variable (``*SECRET*``, ``*PASSWORD*``, ``*TOKEN*``) that
  any bot of the suite read through ``load_settings``, and anything a test hands
  to ``register_secret``;
- something shaped like a credential whatever its value: a JWT or the start of
  one (``eyJ...``: RSC access tokens, sandbox or real) and Slack tokens
  (``xoxb-``, ``xapp-``, ...).

Output the suite collects some other way (a subprocess's stderr or log file) goes
through ``scan_text``. Records logged after the last test (session teardown) are
checked once more at the end; a leak there also fails the run.

Only records that loggers actually emit are seen: a secret in a DEBUG message is
caught when the suite runs with ``--log-level=DEBUG``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: Variable names whose values are secrets.
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN", re.IGNORECASE)
#: Values too short to search for without matching ordinary words.
MIN_SECRET_LENGTH = 8
#: Credentials recognised by their shape.
SHAPES = {
    "a JWT (an access token)": re.compile(r"eyJ[A-Za-z0-9_-]{16,}"),
    "a Slack token": re.compile(r"\b(?:xox[abposr]|xapp)-[A-Za-z0-9-]{6,}"),
}
SCAN_TEST_NAME = "test_no_secret_reached_the_logs"
#: The most log lines the scanner keeps; beyond it, older lines are scanned and dropped.
MAX_KEPT = 200_000


@dataclass(frozen=True)
class Finding:
    """A secret seen in a log line, described without repeating the secret."""

    what: str
    where: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.what} in {self.where}: {self.excerpt}"


@dataclass(frozen=True)
class _Line:
    where: str
    text: str


def _mask(text: str, start: int, end: int) -> str:
    """Up to 60 characters around ``text[start:end]`` with the secret itself hidden."""
    before = text[max(0, start - 30) : start].replace("\n", " ")
    after = text[end : end + 30].replace("\n", " ")
    return f"…{before}[{end - start} characters hidden]{after}…"


def _describe(secret: str) -> str:
    return f"a registered secret ({secret[:3]}…, {len(secret)} characters)"


class LogScanner:
    """Collects log text and tells which lines hold a secret."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lines: list[_Line] = []
        self._early: list[Finding] = []
        self._lock = threading.Lock()
        self.where = "collection"
        self.handler = _Capture(self)

    def add_secret(self, value: str | None) -> None:
        """Treat ``value`` as a secret from now on (short values are ignored)."""
        if value and len(value.strip()) >= MIN_SECRET_LENGTH:
            with self._lock:
                self._secrets.add(value.strip())

    def knows(self, value: str) -> bool:
        """Whether ``value`` is one of the secrets the scan looks for."""
        with self._lock:
            return value.strip() in self._secrets

    def add_secrets_from(self, env: Mapping[str, Any]) -> None:
        """Register the values of every secret-named variable in ``env``."""
        for name, value in env.items():
            if isinstance(value, str) and SECRET_NAME.search(str(name)):
                self.add_secret(value)

    def add_text(self, where: str, text: str) -> None:
        """Keep ``text`` (one record or a whole output) for the scan."""
        with self._lock:
            self._lines.append(_Line(where, text))
            if len(self._lines) > MAX_KEPT:
                # Bounded memory: scan the oldest half now with the secrets known so far.
                old, self._lines = self._lines[: MAX_KEPT // 2], self._lines[MAX_KEPT // 2 :]
                self._early.extend(self._scan(old, set(self._secrets)))

    def findings(self) -> list[Finding]:
        """Every line seen so far that holds a secret, in the order they were logged."""
        with self._lock:
            lines, secrets = list(self._lines), set(self._secrets)
        return self._early + self._scan(lines, secrets)

    @staticmethod
    def _scan(lines: Iterable[_Line], secrets: set[str]) -> list[Finding]:
        found: list[Finding] = []
        for line in lines:
            for secret in secrets:
                at = line.text.find(secret)
                if at >= 0:
                    excerpt = _mask(line.text, at, at + len(secret))
                    found.append(Finding(_describe(secret), line.where, excerpt))
            for what, shape in SHAPES.items():
                match = shape.search(line.text)
                if match:
                    excerpt = _mask(line.text, match.start(), match.end())
                    found.append(Finding(what, line.where, excerpt))
        return found


class _Capture(logging.Handler):
    """Hands every record's fully formatted text to the scanner."""

    def __init__(self, scanner: LogScanner) -> None:
        super().__init__(level=logging.NOTSET)
        self.scanner = scanner
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            # A record that cannot be formatted cannot leak through any other handler either.
            return
        self.scanner.add_text(f"{self.scanner.where} (logger {record.name})", text)


SCANNER = LogScanner()
# How many findings the scan test reported, and those logged after it ran.
_REPORTED = pytest.StashKey[int]()
_LATE = pytest.StashKey[list[Finding]]()


def register_secret(value: str) -> None:
    """Fail the run if ``value`` appears in any log record of the session."""
    SCANNER.add_secret(value)


def scan_text(where: str, text: str) -> None:
    """Scan output the suite captured itself, e.g. a subprocess's stderr or log file."""
    SCANNER.add_text(where, text)


def _ensure_attached() -> None:
    # Some code (Errbot's own test fixture) replaces the root logger's handlers.
    root = logging.getLogger()
    if SCANNER.handler not in root.handlers:
        root.addHandler(SCANNER.handler)


def _register_settings_secrets() -> None:
    """Every environment any bot reads through load_settings: its secrets are registered."""
    try:
        from polarisbot import settings
    except ImportError:
        return
    original: Callable[..., Any] = getattr(settings.load_settings, "__wrapped__", None) or (
        settings.load_settings
    )

    def load_settings(env: Mapping[str, str]) -> Any:
        SCANNER.add_secrets_from(env)
        return original(env)

    load_settings.__wrapped__ = original  # type: ignore[attr-defined]
    load_settings.__doc__ = original.__doc__
    settings.load_settings = load_settings


def pytest_configure(config: pytest.Config) -> None:
    """Start capturing, and register the secrets the suite is known to use."""
    _ensure_attached()
    try:
        from polaris_sandbox import CLIENT_SECRET, PASSWORD
    except ImportError:
        pass
    else:
        register_secret(CLIENT_SECRET)
        register_secret(PASSWORD)
    _register_settings_secrets()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Name the test in each finding, and re-attach the handler if a test removed it."""
    SCANNER.where = item.nodeid
    _ensure_attached()
    try:
        return (yield)
    finally:
        _ensure_attached()
        SCANNER.where = "session teardown"


class _SecretScanItem(pytest.Item):
    """The last test of every run: no secret reached any log record."""

    def runtest(self) -> None:
        findings = SCANNER.findings()
        self.config.stash[_REPORTED] = len(findings)
        if findings:
            shown = "\n".join(f"  {finding}" for finding in findings[:20])
            more = f"\n  … and {len(findings) - 20} more" if len(findings) > 20 else ""
            raise AssertionError(
                f"{len(findings)} log line(s) hold a secret:\n{shown}{more}\n"
                "Log the account, user or id instead of the credential."
            )

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        return str(excinfo.value)

    def reportinfo(self) -> tuple[str, int, str]:
        return __file__, 0, SCAN_TEST_NAME


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> Iterator[None]:
    """Append the scan after every other test, once -k and -m have made their choice."""
    result = yield
    if items:
        here = Path(__file__)
        try:
            location = here.relative_to(config.rootpath).as_posix()
        except ValueError:
            location = here.name
        nodeid = f"{location}::{SCAN_TEST_NAME}"
        items.append(
            _SecretScanItem.from_parent(session, name=SCAN_TEST_NAME, path=here, nodeid=nodeid)
        )
    return result


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run for leaks logged after the scan test ran (fixture teardown)."""
    reported = session.config.stash.get(_REPORTED, None)
    if reported is None:
        return
    late = SCANNER.findings()[reported:]
    session.config.stash[_LATE] = late
    if late:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Name the secrets logged during session teardown, which no test could report."""
    late = config.stash.get(_LATE, [])
    if late:
        terminalreporter.section("secret scan", sep="=", red=True, bold=True)
        for finding in late:
            terminalreporter.line(f"secret logged after the last test: {finding}", red=True)
