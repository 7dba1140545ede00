"""Client for the Rubrik Security Cloud (RSC, formerly Polaris) GraphQL API.

One `RscClient` is shared by every thread of the bot. It logs in once, keeps the token
until shortly before it expires (or until RSC answers 401), and turns every failure into
one of the exceptions in `polarisbot.errors`, whose ``str()`` is a plain sentence.

Every HTTP attempt has a connect and a read timeout. Reads are retried on 429,
500/502/503/504, timeouts and connection failures, with exponential backoff and full
jitter, honouring Retry-After. A retry starts only while the call's `retry_budget` (shared
with any login the call needs) has room for its wait, so a call ends within the budget
plus one login attempt and one call attempt: ``retry_budget + 2 * (connect + read)``.
Mutations are retried only when RSC cannot have acted on them (the connection was never
made, or the gateway answered 429); any other failure after sending raises
`OutcomeUnknown`, because sending the mutation again could do it twice.

A read given up on says how RSC failed it: `PolarisUnreachable` (no connection could be
made), `PolarisSlow` (connected, no answer in time), `PolarisFailing` (a server error, a
cut-off answer, not its API) or `PolarisBusy`. `status()` makes one attempt of each step
within STATUS_TIMEOUT, and names that difference.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import logging
import random
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from urllib3.exceptions import ConnectTimeoutError
from urllib3.util import Timeout

from polarisbot import __version__
from polarisbot.credentials import Credentials
from polarisbot.errors import (
    AlreadyExists,
    ConfigurationError,
    InvalidArgument,
    LoginFailed,
    OutcomeUnknown,
    PolarisBotError,
    PolarisBusy,
    PolarisFailing,
    PolarisRejected,
    PolarisSlow,
    PolarisUnavailable,
    PolarisUnreachable,
)

__all__ = ["Credentials", "Role", "RscClient", "Status", "User"]

log = logging.getLogger("polarisbot.rsc")

# Token lifetime when RSC gives neither expires_in nor a JWT exp claim (one SDK does this).
DEFAULT_TOKEN_LIFETIME = 3600.0
# A token is renewed when less than this is left, but never earlier than 90 % of its life,
# so a call started just before the renewal point still finishes with a valid token.
REFRESH_MARGIN = 60.0
REFRESH_FRACTION = 0.1

MAX_PAGE_SIZE = 1000
# Backoff between retries: full jitter over base * 2**n, capped.
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
# Enough pooled connections for the invite workers plus chat threads asking for status.
POOL_SIZE = 32

# status() answers `!polaris status`, which must come back quickly even while RSC hangs:
# it spends at most this long on RSC in all, waiting for another thread's login included.
STATUS_TIMEOUT = 4.0
# The longest a status check waits for a connection. A lost SYN is sent again after 1 s,
# so 1.5 s still connects then; an attempt's read gets whatever the connect did not use.
STATUS_CONNECT_TIMEOUT = 1.5
# The shortest timeout an attempt gets when a deadline clips it.
MIN_ATTEMPT_TIMEOUT = 0.1

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
REASON_LIMIT = 200

_GRPC_PREFIX = re.compile(r"^\s*([A-Z][A-Z_]+[A-Z])\s*:\s*(.*)$", re.DOTALL)
_MUTATION = re.compile(r"^\s*(?:#[^\n]*\n\s*)*mutation\b")
_FIRST_FIELD = re.compile(r"\{\s*(?:\w+\s*:\s*)?(\w+)")

CREATE_USER = """
mutation PolarisBotCreateUser($email: String!, $roleIds: [String!]!) {
  createUser(email: $email, roleIds: $roleIds)
}
"""

USER_EXISTS = """
query PolarisBotUserExists($email: String!) {
  userAlreadyExists(emailOrUsername: $email, userDomain: LOCAL) { doesExist }
}
"""

USERS_PAGE = """
query PolarisBotUsers($first: Int!, $after: String, $filter: UserFilterInput,
                      $sortBy: UserSortByParam) {
  usersInCurrentAndDescendantOrganization(first: $first, after: $after, filter: $filter,
                                          sortBy: $sortBy) {
    nodes {
      id email status isAccountOwner lastLogin
      lockoutState { isLocked }
      roles { id name }
    }
    pageInfo { endCursor hasNextPage }
  }
}
"""

ROLES_PAGE = """
query PolarisBotRoles($first: Int!, $after: String) {
  getAllRolesInOrgConnection(first: $first, after: $after) {
    nodes { id name description isOrgAdmin isReadOnly }
    pageInfo { endCursor hasNextPage }
  }
}
"""

STATUS = """
query PolarisBotStatus {
  deploymentVersion
  currentUserLoginContext { accountName }
}
"""


@dataclass(frozen=True)
class User:
    """One RSC user as the bot sees it."""

    id: str
    email: str
    status: str
    last_login: datetime | None
    roles: tuple[str, ...]
    is_account_owner: bool
    locked: bool


@dataclass(frozen=True)
class Role:
    """One RSC role."""

    id: str
    name: str
    description: str
    is_org_admin: bool
    is_read_only: bool


@dataclass(frozen=True)
class Status:
    """How the connection to RSC is doing, for ``!polaris status``.

    `login_ok` is True only when the whole check passed (then `round_trip_ms` and
    `version` are set); `problem` says which part failed:

    - "unreachable": no connection could be made (refused, name unknown, connect timeout);
    - "slow": connected, but no answer came in time;
    - "failing": RSC answered with a server error, a cut-off answer or not its API;
    - "waiting": another thread's login is still waiting for RSC, so nothing was sent;
    - "login": RSC refused the bot's credentials or token;
    - "busy": RSC is rate-limiting the bot;
    - "error": RSC answered the check with an error, or the bot's settings are wrong.

    `error` is the plain sentence that follows "Polaris: <state>: " in `summary()`.
    """

    reachable: bool
    login_ok: bool
    round_trip_ms: float | None
    version: str | None
    account: str
    error: str | None
    problem: str | None = None

    def summary(self) -> str:
        """The status in plain sentences, one line per fact, for chat."""
        if self.error is None:
            return (
                f"Polaris: reachable, login works, round trip {self.round_trip_ms or 0:.0f} ms.\n"
                f"Account: {self.account}, version {self.version or 'unknown'}."
            )
        if self.problem == "login":
            return f"Polaris: reachable, but login fails: {self.error}"
        if self.problem == "busy":
            return f"Polaris: reachable, but busy: {self.error}"
        if self.problem == "slow":
            return f"Polaris: reachable, but slow: {self.error}"
        if self.problem == "failing":
            return f"Polaris: reachable, but failing: {self.error}"
        if self.problem == "error":
            return f"Polaris: reachable, but the status check failed: {self.error}"
        if self.problem == "waiting":
            return f"Polaris: no answer yet: {self.error}"
        return f"Polaris: not reachable: {self.error}"


@dataclass(frozen=True)
class _Token:
    value: str = ""
    # time.monotonic() after which the token should no longer be used.
    renew_at: float = 0.0
    expires_at: float = 0.0

    def fresh(self) -> bool:
        return time.monotonic() < self.renew_at

    def __repr__(self) -> str:
        return f"_Token(renew_at={self.renew_at:.0f})"


class _Retry(Exception):
    """One attempt failed in a way that may be worth another try.

    `kind` is what happened, in the terms of the exception given up with: "unreachable"
    (no connection), "slow" (no answer within `waited` seconds), "busy" (429), "failing"
    (a server error `code`, a reset, a cut-off or unreadable answer).
    """

    def __init__(
        self,
        why: str,
        *,
        kind: str = "failing",
        sent: bool = True,
        retry_after: float | None = None,
        code: int | None = None,
        waited: float | None = None,
    ) -> None:
        super().__init__(why)
        self.why = why  # for the log only
        self.kind = kind
        # False only when RSC cannot have acted on the request.
        self.sent = sent
        self.retry_after = retry_after
        self.code = code
        self.waited = waited


class RscClient:
    """Thread-safe RSC GraphQL client: login, token cache, retries, meaningful errors."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 20.0,
        retry_budget: float = 30.0,
        max_attempts: int = 4,
        user_agent: str = f"polaris-bot/{__version__}",
    ) -> None:
        self.credentials = credentials
        self.timeout = (connect_timeout, read_timeout)
        self.retry_budget = retry_budget
        self.max_attempts = max(1, max_attempts)
        self.logins = 0

        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE, max_retries=0)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._session.headers.update({"User-Agent": user_agent, "Accept": "application/json"})

        self._lock = threading.Lock()
        self._token: _Token | None = None
        # Bumped after every login attempt, so threads that queued behind a failed login
        # share its failure instead of each trying again.
        self._login_generation = 0
        self._login_error: PolarisBotError | None = None
        # The account name RSC last reported, shown by status() even while RSC is down.
        self._account_name: str | None = None

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    def __enter__(self) -> RscClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- GraphQL -----------------------------------------------------------------------

    def graphql(
        self, query: str, variables: dict[str, Any] | None = None, *, mutation: bool = False
    ) -> dict[str, Any]:
        """Run one GraphQL operation and return its ``data``, or raise a meaningful error."""
        return self._execute(query, variables, mutation=mutation, retries=True)

    def _execute(
        self,
        query: str,
        variables: dict[str, Any] | None,
        *,
        mutation: bool,
        retries: bool,
        deadline: float | None = None,
        strict: bool = False,
    ) -> dict[str, Any]:
        """Run one operation; no retry starts after `deadline` (monotonic seconds).

        With `strict`, the deadline also shortens each attempt's timeouts and the wait
        for another thread's login, so the whole call ends close to the deadline.
        """
        operation = _operation_field(query)
        # A mutation sent as a read would be retried, and could then happen twice.
        mutation = mutation or bool(_MUTATION.match(query))
        body = {"query": query, "variables": variables or {}}
        if deadline is None:
            deadline = time.monotonic() + self.retry_budget
        attempt = 0
        relogged = False

        while True:
            attempt += 1
            token = self._valid_token(retries=retries, deadline=deadline, strict=strict)
            timeout = self._timeout(deadline, strict)
            try:
                return self._post_graphql(
                    operation, body, token, mutation=mutation, timeout=timeout
                )
            except _Unauthorised:
                if relogged:
                    raise LoginFailed(
                        "Polaris refused the bot's token even right after a new login; ask the "
                        "bot's operator to check the bot's Polaris account."
                    ) from None
                log.debug("rsc %s: token refused, logging in again", operation)
                relogged = True
                self._valid_token(failed=token, retries=retries, deadline=deadline, strict=strict)
                attempt -= 1  # a new login is not a retry of the call
                continue
            except _Retry as retry:
                if mutation and retry.sent:
                    log.warning("rsc %s: outcome unknown after sending (%s)", operation, retry.why)
                    raise OutcomeUnknown(
                        "Polaris did not confirm the change; it may or may not have happened."
                    ) from None
                wait = self._next_wait(retry, attempt, deadline, retries)
                if wait is None:
                    log.info(
                        "rsc %s: giving up after %d attempt(s) (%s)", operation, attempt, retry.why
                    )
                    raise _give_up(retry) from None
                log.debug("rsc %s: %s; retrying in %.2f s", operation, retry.why, wait)
                time.sleep(wait)

    def _post_graphql(
        self,
        operation: str,
        body: dict[str, Any],
        token: _Token,
        *,
        mutation: bool,
        timeout: tuple[float, float] | Timeout,
    ) -> dict[str, Any]:
        started = time.monotonic()
        url = self.credentials.graphql_url
        response = self._send(operation, url, body, token.value, timeout)
        elapsed_ms = (time.monotonic() - started) * 1000
        log.debug("rsc %s: HTTP %d in %.0f ms", operation, response.status_code, elapsed_ms)

        status = response.status_code
        if status == 401:
            raise _Unauthorised()
        if status in RETRYABLE_STATUS:
            raise _Retry(
                f"HTTP {status}",
                kind="busy" if status == 429 else "failing",
                sent=status != 429,
                retry_after=_retry_after(response),
                code=status,
            )

        if status >= 500:
            log.warning("rsc %s: unexpected HTTP %d", operation, status)
            if mutation:
                raise _Retry(f"HTTP {status}", code=status)
            raise PolarisFailing(detail=_server_error(status))
        if status == 404:
            raise ConfigurationError(
                f"Polaris has no API at {self.credentials.graphql_url}; "
                "check the bot's Polaris URL."
            )
        payload = _json_body(response, operation)
        if status == 400:
            # The service could not parse or validate the query: a bug on the bot's side.
            message = _clip(str((payload or {}).get("message", "")))
            log.error("rsc %s: Polaris rejected the request as invalid: %s", operation, message)
            raise PolarisRejected(
                "Polaris did not understand the bot's request; the bot may need an update.",
                code="QUERY_ANALYSIS" if "QueryAnalysisError" in message else "HTTP_400",
            )
        if status == 403:
            raise PolarisRejected(
                "Polaris refused the request: the bot's account lacks permission for it.",
                code="PERMISSION_DENIED",
            )
        if status != 200:
            log.warning("rsc %s: unexpected HTTP %d", operation, status)
            raise PolarisRejected(
                f"Polaris refused the request (HTTP {status}).", code=f"HTTP_{status}"
            )
        if payload is None:
            if mutation:
                raise _Retry("HTTP 200 with a body that is not JSON")
            raise PolarisFailing(
                "Polaris answered with something that is not an API response; "
                "check the bot's Polaris URL.",
                detail="it answered with something that is not an API response; "
                "check the bot's Polaris URL.",
            )

        errors = payload.get("errors")
        if errors:
            raise _graphql_error(operation, errors)
        data = payload.get("data")
        if not isinstance(data, dict):
            if mutation:
                raise _Retry("answer without data", sent=True)
            raise PolarisFailing(
                "Polaris answered without any data; try again later.",
                detail="it answered without any data; try again later.",
            )
        return data

    def _send(
        self,
        operation: str,
        url: str,
        body: dict[str, Any],
        token: str | None,
        timeout: tuple[float, float] | Timeout,
    ) -> requests.Response:
        """POST once; turn transport failures into _Retry saying whether RSC may have acted."""
        auth = _BearerAuth(token)
        started = time.monotonic()
        try:
            # requests hands a urllib3 Timeout to its adapter as it is (the status check's
            # total budget); its type stubs list only numbers and pairs.
            return self._session.post(url, json=body, auth=auth, timeout=timeout)  # type: ignore[arg-type]
        except requests.exceptions.ConnectTimeout:
            waited = time.monotonic() - started
            raise _Retry("connect timeout", kind="unreachable", sent=False, waited=waited) from None
        except requests.exceptions.ReadTimeout:
            waited = time.monotonic() - started
            raise _Retry("read timeout", kind="slow", waited=waited) from None
        except requests.exceptions.ConnectionError as error:
            sent = not _never_connected(error)
            log.debug("rsc %s: connection failed: %r", operation, error)
            if sent:
                raise _Retry("connection reset", kind="failing") from None
            raise _Retry("connection refused", kind="unreachable", sent=False) from None
        except requests.exceptions.RequestException as error:
            # Chunked-encoding and similar failures: the request was sent, the answer broken.
            log.debug("rsc %s: request failed: %r", operation, error)
            raise _Retry(type(error).__name__) from None

    def _next_wait(
        self, retry: _Retry, attempt: int, deadline: float, retries: bool
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now."""
        if not retries or attempt >= self.max_attempts:
            return None
        if retry.retry_after is not None:
            wait = retry.retry_after
        else:
            wait = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)))
        if time.monotonic() + wait > deadline:
            return None
        return wait

    def _timeout(self, deadline: float, strict: bool) -> tuple[float, float] | Timeout:
        """Connect and read timeouts for one attempt; `strict` fits them before `deadline`.

        A strict attempt gets urllib3's `total`: the read may use all the time the connect
        did not, so a pooled connection leaves nearly the whole budget for the answer,
        while connect plus read still end by the deadline.
        """
        if not strict:
            return self.timeout
        left = max(MIN_ATTEMPT_TIMEOUT, deadline - time.monotonic())
        connect = max(MIN_ATTEMPT_TIMEOUT, min(self.timeout[0], STATUS_CONNECT_TIMEOUT, left / 2))
        read = max(MIN_ATTEMPT_TIMEOUT, min(self.timeout[1], left))
        return Timeout(connect=connect, read=read, total=left)

    # ---- login and token cache ------------------------------------------------------------

    def _valid_token(
        self,
        failed: _Token | None = None,
        *,
        retries: bool = True,
        deadline: float | None = None,
        strict: bool = False,
    ) -> _Token:
        """Return a usable token, logging in at most once however many threads ask.

        `failed` is a token RSC just refused: it is replaced unless another thread has
        already replaced it. No login retry starts after `deadline`; with `strict`, the
        wait for another thread's login ends at the deadline too.
        """
        token = self._token
        if token is not None and token is not failed and token.fresh():
            return token
        if deadline is None:
            deadline = time.monotonic() + self.retry_budget

        generation = self._login_generation
        patience = max(0.0, deadline - time.monotonic()) if strict else -1
        if not self._lock.acquire(timeout=patience):
            log.info("rsc login: still waiting for another thread's login; not waiting longer")
            # Whether RSC took that login's connection is the other thread's to know.
            raise PolarisUnavailable(
                "Polaris is slow to answer the bot's login; try again in a few minutes.",
                detail=f"the bot's login has waited more than {patience:.1f} s for Polaris; "
                "try again in a few minutes.",
            )
        try:
            token = self._token
            if token is not None and token is not failed and token.fresh():
                return token
            if self._login_generation != generation and self._login_error is not None:
                raise copy.copy(self._login_error)

            try:
                token = self._login(retries, deadline, strict)
            except PolarisBotError as error:
                self._token = None
                # A quick check's short timeouts say little about the login the other
                # threads are waiting for: they try for themselves rather than share it.
                if not strict:
                    self._login_error = error
                    self._login_generation += 1
                raise
            self._token = token
            self._login_error = None
            self._login_generation += 1
            self.logins += 1
            return token
        finally:
            self._lock.release()

    def _login(self, retries: bool, deadline: float, strict: bool) -> _Token:
        creds = self.credentials
        if creds.kind == "password":
            body: dict[str, Any] = {"username": creds.principal, "password": creds.secret}
        else:
            body = {
                "grant_type": "client_credentials",
                "client_id": creds.principal,
                "client_secret": creds.secret,
            }

        attempt = 0
        while True:
            attempt += 1
            try:
                return self._login_once(body, self._timeout(deadline, strict))
            except _Retry as retry:
                wait = self._next_wait(retry, attempt, deadline, retries)
                if wait is None:
                    log.warning("rsc login as %s: giving up (%s)", creds.label, retry.why)
                    raise _give_up(retry, login=True) from None
                log.debug("rsc login: %s; retrying in %.2f s", retry.why, wait)
                time.sleep(wait)

    def _login_once(self, body: dict[str, Any], timeout: tuple[float, float] | Timeout) -> _Token:
        creds = self.credentials
        sent_at = time.monotonic()
        response = self._send("login", creds.login_url, body, None, timeout)
        log.debug(
            "rsc login (%s) as %s: HTTP %d in %.0f ms",
            creds.kind,
            creds.label,
            response.status_code,
            (time.monotonic() - sent_at) * 1000,
        )

        status = response.status_code
        if status in RETRYABLE_STATUS:
            raise _Retry(
                f"HTTP {status}",
                kind="busy" if status == 429 else "failing",
                retry_after=_retry_after(response),
                code=status,
            )
        payload = _json_body(response, "login")
        if status in (400, 401, 403):
            message = str((payload or {}).get("message", ""))
            log.warning("rsc login as %s refused: HTTP %d %s", creds.label, status, _clip(message))
            raise LoginFailed(_login_refused_sentence(creds, message))
        if status == 404:
            raise ConfigurationError(
                f"Polaris has no login page at {creds.login_url}; check the bot's Polaris URL."
            )
        if payload is None or status != 200:
            raise PolarisFailing(
                "Polaris answered the bot's login with something that is not an API "
                "response; check the bot's Polaris URL.",
                detail=_server_error(status, login=True)
                if status >= 500
                else "it answered the bot's login with something that is not an API "
                "response; check the bot's Polaris URL.",
            )

        value = payload.get("access_token")
        if not value:
            if payload.get("mfa_token"):
                raise LoginFailed(
                    f"The Polaris user {creds.principal} needs multi-factor authentication, "
                    "which a bot cannot do; use a service account instead."
                )
            raise LoginFailed("Polaris accepted the bot's login but gave it no token.")
        if not isinstance(value, str):
            raise LoginFailed("Polaris answered the bot's login with a token it cannot use.")
        return _make_token(value, payload.get("expires_in"), sent_at)

    # ---- operations ---------------------------------------------------------------------

    def create_user(self, email: str, role_ids: Sequence[str]) -> str:
        """Create an RSC user with these roles; RSC sends the invitation. Returns the id."""
        if not role_ids:
            raise ConfigurationError(
                "No Polaris role is set for new users; set POLARIS_ROLES to at least one role."
            )
        data = self.graphql(
            CREATE_USER,
            {"email": email.strip().lower(), "roleIds": list(role_ids)},
            mutation=True,
        )
        user_id = data.get("createUser")
        if not isinstance(user_id, str) or not user_id:
            raise OutcomeUnknown("Polaris did not confirm the change; it gave no user id.")
        return user_id

    def user_exists(self, email: str) -> bool:
        """Whether a local RSC user with this email (or username) exists."""
        data = self.graphql(USER_EXISTS, {"email": email.strip().lower()})
        reply = data.get("userAlreadyExists") or {}
        return bool(reply.get("doesExist"))

    def iter_users(
        self, email_filter: str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[User]:
        """Yield users sorted by email, a page at a time; the filter is case-insensitive."""
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        variables: dict[str, Any] = {
            "first": min(page_size, MAX_PAGE_SIZE),
            "sortBy": {"field": "EMAIL", "sortOrder": "ASC"},
        }
        if email_filter:
            variables["filter"] = {"emailFilter": email_filter.strip()}
        for node in self._pages(USERS_PAGE, "usersInCurrentAndDescendantOrganization", variables):
            yield _user(node)

    def roles(self) -> list[Role]:
        """Every role of the account's organisation."""
        variables = {"first": MAX_PAGE_SIZE}
        return [
            Role(
                id=node["id"],
                name=node["name"],
                description=node.get("description") or "",
                is_org_admin=bool(node.get("isOrgAdmin")),
                is_read_only=bool(node.get("isReadOnly")),
            )
            for node in self._pages(ROLES_PAGE, "getAllRolesInOrgConnection", variables)
        ]

    def resolve_roles(self, names: Sequence[str]) -> list[str]:
        """Role ids for these role names (case-insensitive), in order, without repeats."""
        wanted = [name.strip() for name in names if name.strip()]
        if not wanted:
            raise ConfigurationError(
                "POLARIS_ROLES is empty; name at least one Polaris role for new users."
            )
        roles = self.roles()
        by_name = {role.name.lower(): role.id for role in roles}

        missing = [name for name in wanted if name.lower() not in by_name]
        if missing:
            quoted = " and ".join(f"'{name}'" for name in missing)
            which = "which this account does not have"
            if len(missing) > 1:
                which += " any of"
            have = ", ".join(sorted(role.name for role in roles)) or "no roles at all"
            raise ConfigurationError(f"POLARIS_ROLES names {quoted}, {which}; it has: {have}")

        ids: list[str] = []
        for name in wanted:
            role_id = by_name[name.lower()]
            if role_id not in ids:
                ids.append(role_id)
        return ids

    def status(self) -> Status:
        """Check login and a cheap query once, within STATUS_TIMEOUT seconds; never raises."""
        fallback = self._account_name or self.credentials.account_label

        def failed(problem: str, error: str) -> Status:
            reachable = problem not in ("unreachable", "waiting")
            return Status(reachable, False, None, None, fallback, error, problem)

        deadline = time.monotonic() + STATUS_TIMEOUT
        started = time.monotonic()
        try:
            self._valid_token(retries=False, deadline=deadline, strict=True)
            started = time.monotonic()
            data = self._execute(
                STATUS, None, mutation=False, retries=False, deadline=deadline, strict=True
            )
        except LoginFailed as error:
            return failed("login", str(error))
        except PolarisUnavailable as error:
            return failed(_status_problem(error), error.detail)
        except PolarisBotError as error:
            return failed("error", str(error))
        except Exception:  # status must answer whatever happens
            log.exception("rsc status: the check failed unexpectedly")
            return failed("error", "the bot hit an unexpected problem; its log has the details.")
        round_trip_ms = (time.monotonic() - started) * 1000

        context = data.get("currentUserLoginContext") or {}
        if context.get("accountName"):
            self._account_name = str(context["accountName"])
        return Status(
            reachable=True,
            login_ok=True,
            round_trip_ms=round_trip_ms,
            version=data.get("deploymentVersion"),
            account=context.get("accountName") or fallback,
            error=None,
        )

    def _pages(
        self, query: str, connection: str, variables: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        """Yield the nodes of a cursor-paged connection, fetching one page at a time."""
        after: str | None = None
        while True:
            data = self.graphql(query, {**variables, "after": after})
            page = data.get(connection) or {}
            yield from page.get("nodes") or []

            info = page.get("pageInfo") or {}
            if not info.get("hasNextPage"):
                return
            cursor = info.get("endCursor")
            if not cursor or cursor == after:
                # Following the same cursor again would loop forever.
                log.error("rsc %s: next page promised without a new cursor", connection)
                raise PolarisFailing("Polaris gave an incomplete list; try again in a few minutes.")
            after = cursor


class _BearerAuth(AuthBase):
    """Adds the bearer token; giving requests an auth also keeps .netrc credentials out."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.token:
            request.headers["Authorization"] = f"Bearer {self.token}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(<hidden>)"


class _Unauthorised(Exception):
    """RSC answered 401 to a GraphQL call: the token is no good."""


def _operation_field(query: str) -> str:
    match = _FIRST_FIELD.search(query)
    return match.group(1) if match else "graphql"


def _json_body(response: requests.Response, operation: str) -> dict[str, Any] | None:
    try:
        payload = response.json()
    except ValueError:
        log.debug("rsc %s: body is not JSON: %r", operation, response.text[:200])
        return None
    return payload if isinstance(payload, dict) else None


def _retry_after(response: requests.Response) -> float | None:
    """Seconds from a Retry-After header, given as seconds or as an HTTP date."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _never_connected(error: BaseException) -> bool:
    """Whether a requests ConnectionError happened before any byte reached the server."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        # urllib3's NewConnectionError (refused, unresolved) is a ConnectTimeoutError too.
        if isinstance(current, ConnectTimeoutError):
            return True
        # urllib3 keeps the cause in .reason, or in args; either may also be plain text.
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked.extend(current.args)
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return False


def _give_up(retry: _Retry, *, login: bool = False) -> PolarisUnavailable:
    """The exception for an attempt not tried again: what happened, in plain words."""
    if retry.kind == "busy":
        return PolarisBusy()
    message = (
        "Polaris is not answering the bot's login right now; try again in a few minutes."
        if login
        else None
    )
    later = "; try again in a few minutes."
    waited = f"{retry.waited or 0:.1f} s"
    if retry.kind == "unreachable":
        within = f" within {waited}" if retry.waited is not None else ""
        return PolarisUnreachable(message, detail=f"the bot could not connect to it{within}{later}")
    if retry.kind == "slow":
        to = " to the bot's login" if login else ""
        return PolarisSlow(message, detail=f"no answer{to} within {waited}{later}")
    if retry.code is not None:
        return PolarisFailing(message, detail=_server_error(retry.code, login=login))
    during = " during the bot's login" if login else ""
    return PolarisFailing(
        message, detail=f"it closed the connection{during} without a whole answer{later}"
    )


def _server_error(status: int, *, login: bool = False) -> str:
    """What `!polaris status` says about an HTTP 5xx answer."""
    what = " the bot's login" if login else ""
    return f"it answered{what} with a server error (HTTP {status}); try again in a few minutes."


def _status_problem(error: PolarisUnavailable) -> str:
    """The `Status.problem` for an unavailable RSC: which way it is unavailable."""
    if isinstance(error, PolarisBusy):
        return "busy"
    if isinstance(error, PolarisUnreachable):
        return "unreachable"
    if isinstance(error, PolarisSlow):
        return "slow"
    if isinstance(error, PolarisFailing):
        return "failing"
    return "waiting"


def _graphql_error(operation: str, errors: Any) -> PolarisRejected:
    first = errors[0] if isinstance(errors, list) and errors else {}
    message = str(first.get("message", "")) if isinstance(first, dict) else str(first)
    match = _GRPC_PREFIX.match(message)
    code, text = (match.group(1), match.group(2)) if match else (None, message)
    reason = _clip(text)
    log.info("rsc %s: Polaris answered %s: %s", operation, code or "an error", reason)

    said = f"Polaris said: {reason}" if reason else None
    if code == "ALREADY_EXISTS":
        return AlreadyExists(code=code)
    if code == "INVALID_ARGUMENT":
        return InvalidArgument(said, code=code)
    return PolarisRejected(said, code=code)


def _clip(text: str) -> str:
    """RSC's own words, on one line and at most REASON_LIMIT characters."""
    flat = " ".join(text.split())
    if len(flat) > REASON_LIMIT:
        flat = flat[: REASON_LIMIT - 1].rstrip() + "…"
    return flat


def _login_refused_sentence(creds: Credentials, message: str) -> str:
    lowered = message.lower()
    if "client secret" in lowered or "client_secret" in lowered:
        return (
            "Polaris refused the bot's client secret; ask the bot's operator to check the "
            "service account."
        )
    if "username or password" in lowered:
        return (
            "Polaris refused the bot's username or password; ask the bot's operator to check them."
        )
    if creds.kind == "password":
        return "Polaris refused the bot's login; ask the bot's operator to check its username."
    return "Polaris refused the bot's service account; ask the bot's operator to check it."


def _make_token(value: str, expires_in: Any, sent_at: float) -> _Token:
    """Work out when a token should be renewed, from expires_in, the JWT exp, or a default."""
    lifetime: float | None = None
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
        lifetime = float(expires_in)
    else:
        claims = _jwt_claims(value)
        exp = claims.get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            lifetime = max(0.0, float(exp) - time.time())
    if lifetime is None:
        lifetime = DEFAULT_TOKEN_LIFETIME

    # Counting from when the request was sent errs on the early side.
    expires_at = sent_at + lifetime
    margin = min(REFRESH_MARGIN, lifetime * REFRESH_FRACTION)
    return _Token(value=value, renew_at=expires_at - margin, expires_at=expires_at)


def _jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, read without checking its signature (only for its expiry)."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _user(node: dict[str, Any]) -> User:
    return User(
        id=node["id"],
        email=node["email"],
        status=node.get("status") or "UNKNOWN",
        last_login=_datetime(node.get("lastLogin")),
        roles=tuple(role["name"] for role in node.get("roles") or []),
        is_account_owner=bool(node.get("isAccountOwner")),
        locked=bool((node.get("lockoutState") or {}).get("isLocked")),
    )


def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        log.debug("rsc: unreadable lastLogin %r", value)
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
