"""Scenarios for the RSC client, over real HTTP to the local sandbox."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from polaris_sandbox import ADMIN_ROLE_ID, CLIENT_ID, CLIENT_SECRET, PASSWORD, USERNAME, Sandbox
from polarisbot import rsc
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
from polarisbot.rsc import STATUS_TIMEOUT, Credentials, RscClient, User

# Library and traceback text that must never reach a person through str(error).
LEAKS = (
    "HTTPConnectionPool",
    "Traceback",
    "Errno",
    "urllib3",
    "requests.",
    "Max retries",
    "<html",
    "JWT",
    CLIENT_SECRET,
    PASSWORD,
)


def assert_plain(error: BaseException) -> str:
    """Check that an error reads as a plain sentence and return its text."""
    text = str(error)
    assert text.strip(), "an error must say something"
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} leaked into {text!r}"
    assert "\n" not in text
    return text


@pytest.fixture
def start_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """Start sandboxes on demand and stop them all after the test."""
    started: list[Sandbox] = []

    def start(**options: object) -> Sandbox:
        options.setdefault("users", 30)
        sandbox = Sandbox(**options).start()  # type: ignore[arg-type]
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def sandbox(start_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return start_sandbox()


@pytest.fixture
def make_client(sandbox: Sandbox) -> Iterator[Callable[..., RscClient]]:
    """Build clients for the sandbox with short timeouts, closing them afterwards."""
    clients: list[RscClient] = []

    def make(credentials: Credentials | None = None, **options: float) -> RscClient:
        options.setdefault("read_timeout", 3.0)
        options.setdefault("retry_budget", 8.0)
        creds = credentials or Credentials.client(sandbox.url, CLIENT_ID, CLIENT_SECRET)
        client = RscClient(creds, **options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., RscClient]) -> RscClient:
    return make_client()


def graphql_requests(sandbox: Sandbox, field: str) -> list[int | None]:
    """HTTP statuses of the GraphQL requests that asked for this field."""
    return [r.status for r in sandbox.requests if field in r.fields]


@contextlib.contextmanager
def unaccepting_listener() -> Iterator[str]:
    """A loopback URL whose listener never accepts, so connecting times out.

    Its backlog is filled first; Linux then drops further SYNs instead of refusing them.
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        fillers = []
        try:
            for _ in range(4):
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(listener.getsockname())
                fillers.append(filler)
            time.sleep(0.1)
            yield url
        finally:
            for filler in fillers:
                filler.close()


def closed_port_url() -> str:
    """A loopback URL where nothing listens, so connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ---- credentials ---------------------------------------------------------------------


@pytest.mark.parametrize("form", ["service_account_file", "client", "client_api_url", "password"])
def test_each_credential_form_logs_in_and_creates_a_lower_cased_user(
    form: str, sandbox: Sandbox, make_client: Callable[..., RscClient], tmp_path: Path
) -> None:
    if form == "service_account_file":
        path = sandbox.write_service_account_file(tmp_path / "sa.json")
        credentials = Credentials.from_service_account_file(path)
        login_path = "/api/client_token"
    elif form == "client":
        credentials = Credentials.client(sandbox.url + "/", CLIENT_ID, CLIENT_SECRET)
        login_path = "/api/client_token"
    elif form == "client_api_url":
        credentials = Credentials.client(sandbox.url + "/api/", CLIENT_ID, CLIENT_SECRET)
        login_path = "/api/client_token"
    else:
        credentials = Credentials.password(sandbox.url, USERNAME, PASSWORD)
        login_path = "/api/session"
    client = make_client(credentials)

    role_ids = client.resolve_roles(["administrator"])
    user_id = client.create_user("  New.Person@Example.COM ", role_ids)

    assert role_ids == [ADMIN_ROLE_ID]
    assert sandbox.calls("createUser") == [
        {"email": "new.person@example.com", "roleIds": [ADMIN_ROLE_ID]}
    ]
    assert sandbox.users["new.person@example.com"].id == user_id
    assert [r.path for r in sandbox.requests if r.path != "/api/graphql"] == [login_path]
    assert client.logins == sandbox.logins == 1


def test_service_account_file_gives_the_api_base_and_account_name(tmp_path: Path) -> None:
    path = tmp_path / "sa.json"
    path.write_text(
        json.dumps(
            {
                "client_id": "client|abc",
                "client_secret": "s3cret-value",
                "name": "bot",
                "access_token_uri": "https://acme.my.rubrik.com/api/client_token",
            }
        )
    )

    credentials = Credentials.from_service_account_file(path)

    assert credentials.graphql_url == "https://acme.my.rubrik.com/api/graphql"
    assert credentials.login_url == "https://acme.my.rubrik.com/api/client_token"
    assert credentials.account_label == "acme"
    assert "s3cret-value" not in repr(credentials)


@pytest.mark.parametrize(
    "url",
    [
        "https://acme.my.rubrik.com",
        "https://acme.my.rubrik.com/",
        " https://acme.my.rubrik.com/api ",
    ],
)
def test_account_urls_are_tolerated_with_slash_or_api(url: str) -> None:
    credentials = Credentials.password(url, "bot@example.com", "hunter2-password")

    assert credentials.login_url == "https://acme.my.rubrik.com/api/session"
    assert credentials.graphql_url == "https://acme.my.rubrik.com/api/graphql"
    assert "hunter2-password" not in repr(credentials)


@pytest.mark.parametrize("url", ["acme.my.rubrik.com", "ftp://acme", "https://acme/x/y", ""])
def test_a_url_that_is_not_an_account_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Credentials.client(url, CLIENT_ID, CLIENT_SECRET)

    assert "account URL" in assert_plain(caught.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        ("{not json, " + CLIENT_SECRET, "not valid JSON"),
        (json.dumps(["a list"]), "JSON object"),
        (json.dumps({"client_id": "client|x", "client_secret": CLIENT_SECRET}), "access_token_uri"),
        (
            json.dumps(
                {"client_id": "c", "client_secret": CLIENT_SECRET, "access_token_uri": "nowhere"}
            ),
            "not a URL",
        ),
        (b"\xff\xfe{}", "not valid JSON"),
    ],
)
def test_a_bad_service_account_file_names_the_file_and_the_problem(
    content: str | bytes | None, expected: str, tmp_path: Path
) -> None:
    path = tmp_path / "service-account.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)

    with pytest.raises(ConfigurationError) as caught:
        Credentials.from_service_account_file(path)

    text = assert_plain(caught.value)
    assert str(path) in text
    assert expected in text


def test_a_directory_instead_of_a_service_account_file_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Credentials.from_service_account_file(tmp_path)

    assert "is a directory" in assert_plain(caught.value)


# ---- token cache ---------------------------------------------------------------------


def test_one_token_serves_fifty_calls(sandbox: Sandbox, client: RscClient) -> None:
    for _ in range(50):
        assert client.user_exists(USERNAME)

    assert sandbox.logins == 1
    assert client.logins == 1
    assert len({r.token for r in sandbox.requests if r.path == "/api/graphql"}) == 1


def test_twenty_threads_without_a_token_share_one_login(
    start_sandbox: Callable[..., Sandbox],
) -> None:
    sandbox = start_sandbox(latency=0.05)
    client = RscClient(Credentials.client(sandbox.url, CLIENT_ID, CLIENT_SECRET))
    barrier = threading.Barrier(20)
    answers: list[bool] = []

    def ask() -> None:
        barrier.wait()
        answers.append(client.user_exists(USERNAME))

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    client.close()

    assert answers == [True] * 20
    assert sandbox.logins == 1
    assert len(graphql_requests(sandbox, "userAlreadyExists")) == 20


def test_expired_tokens_cause_one_new_login_even_for_many_threads(
    start_sandbox: Callable[..., Sandbox],
) -> None:
    sandbox = start_sandbox(latency=0.05)
    client = RscClient(Credentials.client(sandbox.url, CLIENT_ID, CLIENT_SECRET))
    assert client.user_exists(USERNAME)
    sandbox.expire_tokens()
    barrier = threading.Barrier(10)
    answers: list[bool] = []

    def ask() -> None:
        barrier.wait()
        answers.append(client.user_exists(USERNAME))

    threads = [threading.Thread(target=ask) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    client.close()

    assert answers == [True] * 10
    assert sandbox.logins == 2
    assert client.logins == 2


def test_a_token_refused_twice_raises_login_failed(sandbox: Sandbox, client: RscClient) -> None:
    sandbox.set_fault("graphql", "unauthorized")

    with pytest.raises(LoginFailed) as caught:
        client.user_exists(USERNAME)

    assert_plain(caught.value)
    assert sandbox.logins == 2
    assert graphql_requests(sandbox, "userAlreadyExists") == [401, 401]


def test_a_short_lived_token_is_renewed_before_it_expires(
    start_sandbox: Callable[..., Sandbox], make_client: Callable[..., RscClient]
) -> None:
    sandbox = start_sandbox(token_lifetime=2)
    client = make_client(Credentials.client(sandbox.url, CLIENT_ID, CLIENT_SECRET))
    assert client.user_exists(USERNAME)

    # The client renews with a tenth of the lifetime left (0.2 s); the token still
    # has 0.15 s of life in the sandbox, so a client that did not renew would not
    # get a 401 and the login count would stay at one.
    time.sleep(1.85)
    assert client.user_exists(USERNAME)

    assert sandbox.logins == 2
    assert 401 not in [r.status for r in sandbox.requests]


def test_a_password_token_expiry_comes_from_the_jwt(
    start_sandbox: Callable[..., Sandbox], make_client: Callable[..., RscClient]
) -> None:
    sandbox = start_sandbox(token_lifetime=2)
    client = make_client(Credentials.password(sandbox.url, USERNAME, PASSWORD))
    assert client.user_exists(USERNAME)

    # The JWT's exp is in whole seconds, so renewal can only come earlier than this.
    time.sleep(1.9)
    assert client.user_exists(USERNAME)

    assert sandbox.logins == 2
    assert 401 not in [r.status for r in sandbox.requests]


# ---- login failures ------------------------------------------------------------------


def test_a_wrong_client_secret_says_so_without_the_secret(
    sandbox: Sandbox, make_client: Callable[..., RscClient]
) -> None:
    client = make_client(Credentials.client(sandbox.url, CLIENT_ID, "not-the-" + CLIENT_SECRET))

    with pytest.raises(LoginFailed) as caught:
        client.user_exists(USERNAME)

    text = assert_plain(caught.value)
    assert "client secret" in text
    assert "UNAUTHENTICATED" not in text
    assert client.logins == 0


def test_a_wrong_password_says_so(sandbox: Sandbox, make_client: Callable[..., RscClient]) -> None:
    client = make_client(Credentials.password(sandbox.url, USERNAME, "wrong-" + PASSWORD))

    with pytest.raises(LoginFailed) as caught:
        client.create_user("someone@example.com", [ADMIN_ROLE_ID])

    assert "username or password" in assert_plain(caught.value)
    assert sandbox.calls("createUser") == []


def test_threads_queued_behind_a_failed_login_share_its_failure(
    start_sandbox: Callable[..., Sandbox],
) -> None:
    sandbox = start_sandbox(latency=0.1)
    client = RscClient(Credentials.client(sandbox.url, CLIENT_ID, "wrong"))
    barrier = threading.Barrier(10)
    failures: list[BaseException] = []

    def ask() -> None:
        barrier.wait()
        try:
            client.user_exists(USERNAME)
        except LoginFailed as error:
            failures.append(error)

    threads = [threading.Thread(target=ask) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    client.close()

    assert len(failures) == 10
    logins = [r for r in sandbox.requests if r.path == "/api/client_token"]
    assert 1 <= len(logins) < 10


def test_a_user_who_needs_mfa_is_told_to_use_a_service_account(
    start_sandbox: Callable[..., Sandbox], make_client: Callable[..., RscClient]
) -> None:
    sandbox = start_sandbox(mfa_users=["mfa.person@example.com"])
    client = make_client(Credentials.password(sandbox.url, "mfa.person@example.com", PASSWORD))

    with pytest.raises(LoginFailed) as caught:
        client.user_exists(USERNAME)

    text = assert_plain(caught.value)
    assert "multi-factor" in text
    assert "service account" in text


def test_a_login_endpoint_that_is_down_makes_polaris_unavailable(
    sandbox: Sandbox, make_client: Callable[..., RscClient]
) -> None:
    sandbox.set_fault("client_token", "status", code=503)
    client = make_client(max_attempts=2)

    with pytest.raises(PolarisUnavailable) as caught:
        client.user_exists(USERNAME)

    assert_plain(caught.value)
    assert not isinstance(caught.value, PolarisBusy)


# ---- GraphQL errors ------------------------------------------------------------------


def test_creating_an_existing_user_raises_already_exists(
    sandbox: Sandbox, client: RscClient
) -> None:
    with pytest.raises(AlreadyExists) as caught:
        client.create_user(USERNAME.upper(), [ADMIN_ROLE_ID])

    assert assert_plain(caught.value) == "already has an account"
    assert caught.value.code == "ALREADY_EXISTS"
    assert len(sandbox.calls("createUser")) == 1


def test_an_address_polaris_refuses_gives_its_reason(sandbox: Sandbox, client: RscClient) -> None:
    with pytest.raises(InvalidArgument) as caught:
        client.create_user("not-an-address", [ADMIN_ROLE_ID])

    assert assert_plain(caught.value) == (
        "Polaris said: cant create user as email address is invalid"
    )


def test_other_graphql_errors_keep_their_code_and_a_clipped_one_line_reason(
    sandbox: Sandbox, client: RscClient
) -> None:
    long_text = "the role\nwas removed " + "x" * 400
    sandbox.set_fault("graphql:createUser", "graphql_error", message="NOT_FOUND: " + long_text)

    with pytest.raises(PolarisRejected) as caught:
        client.create_user("new@example.com", [ADMIN_ROLE_ID])

    text = assert_plain(caught.value)
    assert caught.value.code == "NOT_FOUND"
    assert text.startswith("Polaris said: the role was removed xxx")
    assert len(text) < 230


def test_an_error_with_partial_data_still_raises(sandbox: Sandbox, client: RscClient) -> None:
    sandbox.set_fault(
        "graphql:accountId", "graphql_error", partial=True, message="INTERNAL: account lookup"
    )

    with pytest.raises(PolarisRejected) as caught:
        client.graphql("query { deploymentVersion accountId }")

    assert caught.value.code == "INTERNAL"
    assert assert_plain(caught.value) == "Polaris said: account lookup"


def test_a_query_polaris_cannot_parse_is_reported_as_needing_an_update(
    client: RscClient, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(PolarisRejected) as caught:
        client.graphql("query { noSuchField }")

    assert "may need an update" in assert_plain(caught.value)
    assert any(r.levelno == logging.ERROR for r in caplog.records)


def test_a_body_that_is_not_json_makes_polaris_unavailable(
    sandbox: Sandbox, client: RscClient
) -> None:
    sandbox.set_fault("graphql", "not_json")

    with pytest.raises(PolarisUnavailable) as caught:
        client.user_exists(USERNAME)

    assert_plain(caught.value)


# ---- retries of reads ----------------------------------------------------------------


@pytest.mark.parametrize("http_date", [False, True])
def test_a_read_told_to_retry_after_waits_and_succeeds(
    http_date: bool, sandbox: Sandbox, client: RscClient
) -> None:
    sandbox.set_fault("graphql", "rate_limit", times=1, retry_after=1, http_date=http_date)

    started = time.monotonic()
    assert client.user_exists(USERNAME)

    assert graphql_requests(sandbox, "userAlreadyExists") == [429, 200]
    # An HTTP date has whole seconds, so the wait may be a little shorter than 1 s.
    assert time.monotonic() - started >= (0.0 if http_date else 0.9)


def test_a_retry_after_beyond_the_budget_gives_busy_at_once(
    sandbox: Sandbox, make_client: Callable[..., RscClient]
) -> None:
    sandbox.set_fault("graphql", "rate_limit", retry_after=120)
    client = make_client(retry_budget=5.0)

    started = time.monotonic()
    with pytest.raises(PolarisBusy) as caught:
        client.user_exists(USERNAME)

    assert time.monotonic() - started < 4
    assert_plain(caught.value)
    assert graphql_requests(sandbox, "userAlreadyExists") == [429]


def test_a_read_is_retried_through_a_passing_503(sandbox: Sandbox, client: RscClient) -> None:
    sandbox.set_fault("graphql", "status", times=2, code=503)

    assert client.user_exists(USERNAME)
    assert graphql_requests(sandbox, "userAlreadyExists") == [503, 503, 200]


def test_a_read_that_keeps_failing_gives_up_after_max_attempts(
    sandbox: Sandbox, make_client: Callable[..., RscClient]
) -> None:
    sandbox.set_fault("graphql", "status", code=502)
    client = make_client(max_attempts=3)

    with pytest.raises(PolarisUnavailable) as caught:
        client.user_exists(USERNAME)

    assert_plain(caught.value)
    assert graphql_requests(sandbox, "userAlreadyExists") == [502, 502, 502]


def test_a_read_survives_a_reset_connection(sandbox: Sandbox, client: RscClient) -> None:
    sandbox.set_fault("graphql", "reset", times=1)

    assert client.user_exists(USERNAME)
    assert len(graphql_requests(sandbox, "userAlreadyExists")) == 2


# ---- mutations are never repeated once sent -----------------------------------------


@pytest.mark.parametrize(
    ("kind", "params"),
    [("hang", {}), ("reset", {}), ("status", {"code": 502}), ("not_json", {})],
)
def test_a_create_user_whose_answer_is_lost_is_outcome_unknown_and_sent_once(
    kind: str,
    params: dict[str, Any],
    sandbox: Sandbox,
    make_client: Callable[..., RscClient],
) -> None:
    sandbox.set_fault("graphql:createUser", kind, apply_first=True, **params)
    client = make_client(read_timeout=0.5)

    with pytest.raises(OutcomeUnknown) as caught:
        client.create_user("lost.answer@example.com", [ADMIN_ROLE_ID])

    assert_plain(caught.value)
    assert len(sandbox.calls("createUser")) == 1
    assert "lost.answer@example.com" in sandbox.users


def test_a_mutation_sent_through_graphql_without_the_flag_is_still_never_repeated(
    sandbox: Sandbox, client: RscClient
) -> None:
    sandbox.set_fault("graphql:createUser", "reset", apply_first=True)
    mutation = (
        "# made by hand\n"
        'mutation { createUser(email: "by.hand@example.com", roleIds: ["' + ADMIN_ROLE_ID + '"]) }'
    )

    with pytest.raises(OutcomeUnknown):
        client.graphql(mutation)

    assert len(graphql_requests(sandbox, "createUser")) == 1


def test_a_rate_limited_create_user_is_retried_because_it_was_not_done(
    sandbox: Sandbox, client: RscClient
) -> None:
    sandbox.set_fault("graphql:createUser", "rate_limit", times=1, retry_after=0)

    client.create_user("patient@example.com", [ADMIN_ROLE_ID])

    assert graphql_requests(sandbox, "createUser") == [429, 200]


def test_a_create_user_that_could_not_connect_is_unavailable_not_unknown(
    sandbox: Sandbox, make_client: Callable[..., RscClient]
) -> None:
    working = Credentials.client(sandbox.url, CLIENT_ID, CLIENT_SECRET)
    nowhere = replace(working, api_base=closed_port_url() + "/api")
    client = make_client(nowhere, max_attempts=2)

    with pytest.raises(PolarisUnavailable) as caught:
        client.create_user("never.sent@example.com", [ADMIN_ROLE_ID])

    assert_plain(caught.value)
    assert sandbox.logins == 1


def test_a_create_user_after_an_expired_token_logs_in_again_and_is_done_once(
    sandbox: Sandbox, client: RscClient
) -> None:
    assert client.user_exists(USERNAME)
    sandbox.expire_tokens()

    client.create_user("after.expiry@example.com", [ADMIN_ROLE_ID])

    assert graphql_requests(sandbox, "createUser") == [401, 200]
    assert sandbox.logins == 2


# ---- users and roles -----------------------------------------------------------------


def test_iter_users_pages_with_cursors_and_is_lazy(
    start_sandbox: Callable[..., Sandbox], make_client: Callable[..., RscClient]
) -> None:
    sandbox = start_sandbox(users=2500)
    client = make_client(Credentials.client(sandbox.url, CLIENT_ID, CLIENT_SECRET))

    users = client.iter_users(page_size=1000)
    first = next(users)
    assert len(sandbox.calls("usersInCurrentAndDescendantOrganization")) == 1
    rest = list(users)

    calls = sandbox.calls("usersInCurrentAndDescendantOrganization")
    assert len(calls) == 3
    assert all(call["first"] == 1000 for call in calls)
    assert calls[0]["after"] is None and calls[1]["after"] and calls[2]["after"]
    emails = [first.email, *(user.email for user in rest)]
    assert len(emails) == len(set(emails)) == 2500
    assert emails == sorted(emails)


def test_iter_users_never_asks_for_more_than_a_thousand(
    sandbox: Sandbox, client: RscClient
) -> None:
    assert len(list(client.iter_users(page_size=5000))) == len(sandbox.users)
    assert sandbox.calls("usersInCurrentAndDescendantOrganization")[0]["first"] == 1000


def test_users_are_found_whatever_the_case_of_the_filter(
    sandbox: Sandbox, client: RscClient
) -> None:
    sandbox.add_user("Mixed.Case@Example.com", ["ReadOnlyAdmin"], last_login=None)
    sandbox.add_user("mixed.case.other@example.com", ["Administrator"])

    found = list(client.iter_users(email_filter="MIXED.case"))

    assert [user.email for user in found] == [
        "mixed.case.other@example.com",
        "mixed.case@example.com",
    ]
    user = found[1]
    assert isinstance(user, User)
    assert user.roles == ("ReadOnlyAdmin",)
    assert user.last_login is None
    assert user.status == "ACTIVE"
    assert list(client.iter_users(email_filter="nobody.here@example.com")) == []


def test_the_account_owner_reads_with_a_last_login(sandbox: Sandbox, client: RscClient) -> None:
    owner = next((u for u in client.iter_users(USERNAME) if u.email == USERNAME), None)

    assert owner is not None
    assert owner.is_account_owner
    assert owner.last_login is not None and owner.last_login.tzinfo is not None
    assert not owner.locked


def test_roles_resolve_by_name_whatever_the_case(client: RscClient) -> None:
    roles = {role.name: role for role in client.roles()}

    ids = client.resolve_roles(["compliance auditor", "ADMINISTRATOR", "Administrator"])

    assert ids == [roles["Compliance Auditor"].id, ADMIN_ROLE_ID]
    assert roles["Administrator"].is_org_admin
    assert roles["ReadOnlyAdmin"].is_read_only


def test_a_role_the_account_lacks_is_a_configuration_error_listing_the_roles(
    client: RscClient,
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        client.resolve_roles(["Administrator", "Backup Wizard"])

    assert assert_plain(caught.value) == (
        "POLARIS_ROLES names 'Backup Wizard', which this account does not have; "
        "it has: Administrator, Compliance Auditor, ReadOnlyAdmin"
    )


def test_no_role_names_at_all_is_a_configuration_error(client: RscClient) -> None:
    with pytest.raises(ConfigurationError):
        client.resolve_roles([" ", ""])


# ---- status --------------------------------------------------------------------------


def test_status_reports_version_account_and_round_trip(client: RscClient) -> None:
    status = client.status()

    assert status.reachable and status.login_ok
    assert status.version == "v20250601-7-sandbox"
    assert status.account == "sandbox"
    assert status.round_trip_ms is not None and status.round_trip_ms >= 0
    assert status.error is None


def test_status_when_polaris_is_down_says_so_without_raising(
    sandbox: Sandbox, client: RscClient
) -> None:
    assert client.status().login_ok
    sandbox.stop()

    started = time.monotonic()
    status = client.status()

    assert time.monotonic() - started < 10
    assert (status.reachable, status.problem) == (False, "unreachable")
    assert status.summary() == (
        "Polaris: not reachable: the bot could not connect to it; try again in a few minutes."
    )
    assert status.account == "sandbox"


def test_status_before_any_login_when_down_falls_back_to_the_url(
    make_client: Callable[..., RscClient],
) -> None:
    client = make_client(Credentials.client(closed_port_url(), CLIENT_ID, CLIENT_SECRET))

    status = client.status()

    assert not status.reachable and not status.login_ok
    assert status.account == "127.0.0.1"
    assert status.error is not None


def test_status_with_a_wrong_secret_is_reachable_but_not_logged_in(
    sandbox: Sandbox, make_client: Callable[..., RscClient]
) -> None:
    client = make_client(Credentials.client(sandbox.url, CLIENT_ID, "wrong"))

    status = client.status()

    assert status.reachable and not status.login_ok
    assert status.error is not None and "client secret" in status.error


def test_status_answers_within_its_own_short_timeout_while_polaris_hangs(
    sandbox: Sandbox, make_client: Callable[..., RscClient]
) -> None:
    client = make_client(read_timeout=20.0, retry_budget=30.0)
    assert client.status().login_ok
    sandbox.set_fault("graphql", "hang")

    started = time.monotonic()
    status = client.status()

    assert time.monotonic() - started < STATUS_TIMEOUT + 1
    # The connection was made, so Polaris is reachable; it is slow.
    assert (status.reachable, status.login_ok, status.problem) == (True, False, "slow")
    assert re.fullmatch(
        r"Polaris: reachable, but slow: no answer within \d\.\d s; try again in a few minutes\.",
        status.summary(),
    )
    assert len(graphql_requests(sandbox, "deploymentVersion")) == 2


def test_status_of_a_polaris_answering_in_three_seconds_says_it_works(
    sandbox: Sandbox, make_client: Callable[..., RscClient]
) -> None:
    # The bot's default timeouts: the status check's own budget decides, not these.
    client = make_client(connect_timeout=5.0, read_timeout=20.0, retry_budget=30.0)
    assert client.status().login_ok
    sandbox.set_fault("graphql:deploymentVersion", "latency", seconds=3.2)

    started = time.monotonic()
    status = client.status()

    assert time.monotonic() - started < STATUS_TIMEOUT + 1
    assert status.login_ok, status.summary()
    assert status.round_trip_ms is not None and status.round_trip_ms >= 3200
    assert graphql_requests(sandbox, "deploymentVersion") == [200, 200]


def test_status_says_slow_when_the_login_gets_no_answer(
    sandbox: Sandbox, make_client: Callable[..., RscClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A shorter budget than the bot's keeps the test quick; the words are the same.
    monkeypatch.setattr(rsc, "STATUS_TIMEOUT", 1.0)
    client = make_client(connect_timeout=5.0, read_timeout=20.0, retry_budget=30.0)
    sandbox.set_fault("client_token", "hang")

    started = time.monotonic()
    status = client.status()

    assert time.monotonic() - started < 1.0 + 1
    assert (status.reachable, status.problem) == (True, "slow")
    assert status.summary().startswith(
        "Polaris: reachable, but slow: no answer to the bot's login within "
    )


@pytest.mark.parametrize(
    ("target", "kind", "params", "words"),
    [
        (
            "graphql",
            "status",
            {"code": 503},
            "failing: it answered with a server error (HTTP 503); try again in a few minutes.",
        ),
        (
            "graphql",
            "status",
            {"code": 501},
            "failing: it answered with a server error (HTTP 501); try again in a few minutes.",
        ),
        (
            "graphql",
            "not_json",
            {},
            "failing: it answered with something that is not an API response; "
            "check the bot's Polaris URL.",
        ),
        (
            "graphql",
            "reset",
            {},
            "failing: it closed the connection without a whole answer; try again in a few minutes.",
        ),
        (
            "client_token",
            "down",
            {},
            "failing: it answered the bot's login with a server error (HTTP 503); "
            "try again in a few minutes.",
        ),
    ],
    ids=["503", "501", "not-json", "reset", "login-down"],
)
def test_status_of_a_polaris_that_answers_badly_says_failing_not_unreachable(
    target: str,
    kind: str,
    params: dict[str, Any],
    words: str,
    sandbox: Sandbox,
    client: RscClient,
) -> None:
    if target == "client_token":
        sandbox.expire_tokens()
    else:
        assert client.status().login_ok
    sandbox.set_fault(target, kind, **params)

    status = client.status()

    assert (status.reachable, status.login_ok, status.problem) == (True, False, "failing")
    assert status.summary() == f"Polaris: reachable, but {words}"


def test_status_says_not_reachable_when_no_connection_is_made_in_time(
    make_client: Callable[..., RscClient],
) -> None:
    with unaccepting_listener() as url:
        client = make_client(Credentials.client(url, CLIENT_ID, CLIENT_SECRET), connect_timeout=0.3)

        started = time.monotonic()
        status = client.status()

    assert time.monotonic() - started < STATUS_TIMEOUT + 1
    assert (status.reachable, status.problem) == (False, "unreachable")
    assert re.fullmatch(
        r"Polaris: not reachable: the bot could not connect to it within \d\.\d s; "
        r"try again in a few minutes\.",
        status.summary(),
    )


@pytest.mark.parametrize(
    ("arm", "kind"),
    [
        (lambda s: s.set_fault("graphql", "hang"), PolarisSlow),
        (lambda s: s.set_fault("graphql", "status", code=502), PolarisFailing),
        (lambda s: s.set_fault("graphql", "not_json"), PolarisFailing),
        (lambda s: s.stop(), PolarisUnreachable),
    ],
    ids=["hang", "502", "not-json", "stopped"],
)
def test_an_unavailable_polaris_is_reported_as_the_kind_it_is_with_the_same_words(
    arm: Callable[[Sandbox], None],
    kind: type[PolarisUnavailable],
    sandbox: Sandbox,
    make_client: Callable[..., RscClient],
) -> None:
    client = make_client(read_timeout=0.5, retry_budget=1.0, max_attempts=2)
    assert client.user_exists(USERNAME)
    arm(sandbox)

    with pytest.raises(PolarisUnavailable) as caught:
        client.user_exists(USERNAME)

    assert type(caught.value) is kind
    # Commands other than status keep their sentence; only status tells the kinds apart.
    text = assert_plain(caught.value)
    assert text.startswith("Polaris is not answering right now") or "not an API" in text
    assert_plain(PolarisBotError(caught.value.detail))


@pytest.mark.parametrize(
    ("arm", "problem", "words"),
    [
        (
            lambda s: s.set_fault("graphql", "rate_limit", retry_after=60),
            "busy",
            "reachable, but busy",
        ),
        (lambda s: s.set_fault("graphql", "graphql_error"), "error", "the status check failed"),
        (lambda s: s.set_fault("graphql", "unauthorized"), "login", "login fails"),
    ],
    ids=["busy", "graphql-error", "token-refused"],
)
def test_status_names_the_part_that_failed(
    arm: Callable[[Sandbox], None], problem: str, words: str, sandbox: Sandbox, client: RscClient
) -> None:
    arm(sandbox)

    status = client.status()

    assert not status.login_ok and status.round_trip_ms is None
    assert status.problem == problem
    assert words in status.summary()
    assert_plain(PolarisBotError(status.summary().replace("\n", " ")))


def test_a_login_that_hangs_uses_the_calls_retry_budget(
    sandbox: Sandbox, make_client: Callable[..., RscClient]
) -> None:
    client = make_client(connect_timeout=0.5, read_timeout=0.5, retry_budget=1.0)
    sandbox.set_fault("client_token", "hang")

    started = time.monotonic()
    with pytest.raises(PolarisUnavailable) as caught:
        client.user_exists(USERNAME)

    # The budget, then one more login attempt and one call attempt at most.
    assert time.monotonic() - started < 1.0 + 2 * (0.5 + 0.5) + 1
    assert "login" in assert_plain(caught.value)
    assert graphql_requests(sandbox, "userAlreadyExists") == []


# ---- logging -------------------------------------------------------------------------


def test_the_log_never_holds_the_secret_token_or_bodies(
    sandbox: Sandbox, client: RscClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="polarisbot")
    sandbox.set_fault("graphql", "not_json", times=1)

    with pytest.raises(PolarisBotError):
        client.user_exists(USERNAME)
    client.create_user("logged.person@example.com", [ADMIN_ROLE_ID])

    tokens = {r.token for r in sandbox.requests if r.token}
    assert tokens
    assert "createUser" in caplog.text
    for secret in (CLIENT_SECRET, *tokens, "logged.person@example.com"):
        assert secret not in caplog.text
