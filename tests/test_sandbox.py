"""Scenarios for the RSC sandbox, driven over real HTTP on loopback."""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from polaris_sandbox import (
    ADMIN_ROLE_ID,
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    USERNAME,
    Sandbox,
)

ROOT = Path(__file__).resolve().parents[1]
CREATE = (
    "mutation New($email: String!, $roleIds: [String!]!) "
    "{ createUser(email: $email, roleIds: $roleIds) }"
)
USERS_PAGE = """
query Users($first: Int, $after: String, $filter: UserFilterInput) {
  usersInCurrentAndDescendantOrganization(first: $first, after: $after, filter: $filter) {
    count
    edges { cursor node { id email } }
    nodes { id email lastLogin status roles { id name } }
    pageInfo { endCursor hasNextPage hasPreviousPage startCursor }
  }
}
"""


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(users=300, seed=7) as running:
        yield running


def login(sandbox: Sandbox) -> str:
    reply = requests.post(
        f"{sandbox.url}/api/client_token",
        json={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
        timeout=10,
    )
    reply.raise_for_status()
    token: str = reply.json()["access_token"]
    return token


def gql(
    sandbox: Sandbox,
    token: str,
    query: str,
    variables: dict[str, Any] | None = None,
    timeout: float = 10,
) -> requests.Response:
    return requests.post(
        f"{sandbox.url}/api/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout,
    )


def jwt_payload(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


def create(sandbox: Sandbox, token: str, email: str, roles: list[str] | None = None) -> Any:
    roles = [ADMIN_ROLE_ID] if roles is None else roles
    return gql(sandbox, token, CREATE, {"email": email, "roleIds": roles})


# Logging in ------------------------------------------------------------------------


def test_service_account_login_returns_a_jwt_with_its_lifetime() -> None:
    with Sandbox(users=5, token_lifetime=600) as sandbox:
        reply = requests.post(
            f"{sandbox.url}/api/client_token",
            json={
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
            timeout=10,
        )
        body = reply.json()

        assert reply.status_code == 200
        assert body["client_id"] == CLIENT_ID and CLIENT_ID.startswith("client|")
        assert body["expires_in"] == 600
        claims = jwt_payload(body["access_token"])
        assert claims["exp"] - claims["iat"] == 600
        assert claims["sub"] and claims["jti"]
        assert sandbox.logins == 1


@pytest.mark.parametrize(
    "send",
    [
        {"data": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}},
        {"json": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "name": "bot"}},
        {
            "data": {
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "name": "bot",
            }
        },
    ],
    ids=["form-without-grant-type", "json-with-name", "form-with-everything"],
)
def test_service_account_login_accepts_each_client_style(
    sandbox: Sandbox, send: dict[str, Any]
) -> None:
    reply = requests.post(f"{sandbox.url}/api/client_token", timeout=10, **send)

    assert reply.status_code == 200
    assert gql(sandbox, reply.json()["access_token"], "{ accountId }").status_code == 200
    assert sandbox.requests[0].path == "/api/client_token"


@pytest.mark.parametrize("client_id", [CLIENT_ID, "client|00000000-dead-beef-0000-000000000000"])
def test_a_wrong_client_secret_or_unknown_client_is_refused_like_rsc(
    sandbox: Sandbox, client_id: str
) -> None:
    reply = requests.post(
        f"{sandbox.url}/api/client_token",
        json={"grant_type": "client_credentials", "client_id": client_id, "client_secret": "x"},
        timeout=10,
    )

    assert reply.status_code == 401
    assert reply.json()["code"] == 16
    assert reply.json()["message"] == "UNAUTHENTICATED: incorrect client secret"
    assert sandbox.logins == 0


def test_session_login_gives_a_token_without_expiry_and_logout_ends_it(
    sandbox: Sandbox,
) -> None:
    reply = requests.post(
        f"{sandbox.url}/api/session",
        json={"username": USERNAME, "password": PASSWORD},
        timeout=10,
    )
    assert reply.status_code == 200
    assert set(reply.json()) == {"access_token"}
    token = reply.json()["access_token"]
    assert "exp" in jwt_payload(token)
    me = gql(sandbox, token, "{ currentUser { email isAccountOwner } }").json()
    assert me["data"]["currentUser"] == {"email": USERNAME, "isAccountOwner": True}

    bye = requests.delete(
        f"{sandbox.url}/api/session", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )

    assert bye.status_code == 204
    assert gql(sandbox, token, "{ accountId }").status_code == 401


def test_a_wrong_password_is_refused_like_rsc(sandbox: Sandbox) -> None:
    reply = requests.post(
        f"{sandbox.url}/api/session",
        json={"username": USERNAME, "password": "guess"},
        timeout=10,
    )

    assert reply.status_code == 401
    assert reply.json()["message"] == "UNAUTHENTICATED: wrong username or password"


def test_a_user_with_mfa_gets_an_mfa_token_and_no_access_token() -> None:
    with Sandbox(users=5, mfa_users=["mfa@example.com"]) as sandbox:
        reply = requests.post(
            f"{sandbox.url}/api/session",
            json={"username": "mfa@example.com", "password": PASSWORD},
            timeout=10,
        )

        assert reply.status_code == 200
        assert reply.json()["access_token"] == ""
        assert reply.json()["mfa_token"]
        assert sandbox.logins == 0


# Tokens and request validation ---------------------------------------------------------


def test_graphql_without_a_live_token_is_401(sandbox: Sandbox) -> None:
    token = login(sandbox)
    assert gql(sandbox, token, "{ accountId }").status_code == 200

    missing = requests.post(f"{sandbox.url}/api/graphql", json={"query": "{ accountId }"})
    forged = gql(sandbox, token[:-4] + "AAAA", "{ accountId }")
    sandbox.expire_tokens()
    expired = gql(sandbox, token, "{ accountId }")

    for reply in (missing, forged, expired):
        assert reply.status_code == 401
        body = reply.json()
        assert body["code"] == 16
        assert body["message"] == "JWT validation failed: Missing or invalid credentials"
    assert [r.status for r in sandbox.requests][-3:] == [401, 401, 401]


def test_a_token_past_its_lifetime_is_401() -> None:
    with Sandbox(users=5, token_lifetime=0.3) as sandbox:
        token = login(sandbox)
        time.sleep(0.5)

        assert gql(sandbox, token, "{ accountId }").status_code == 401


def test_a_body_that_is_not_json_is_400(sandbox: Sandbox) -> None:
    reply = requests.post(
        f"{sandbox.url}/api/graphql",
        data=b"query { accountId }",
        headers={"Authorization": f"Bearer {login(sandbox)}", "Content-Type": "text/plain"},
        timeout=10,
    )

    assert reply.status_code == 400
    assert reply.json()["uri"] == "/api/graphql"


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ("{ currentUser { emial } }", "Cannot query field 'emial' on type 'User'"),
        ('{ getRolesByIds(ids: ["x"]) { id } }', "Unknown argument 'ids'"),
        ("{ accountId ", "Syntax Error"),
        ('mutation { inviteUser(email: "a@b.c") }', "Cannot query field 'inviteUser'"),
    ],
    ids=["misspelt-field", "wrong-argument", "syntax", "no-such-mutation"],
)
def test_a_query_that_does_not_fit_the_schema_is_a_query_analysis_error(
    sandbox: Sandbox, query: str, complaint: str
) -> None:
    reply = gql(sandbox, login(sandbox), query)

    assert reply.status_code == 400
    body = reply.json()
    assert body["code"] == 400 and body["uri"] == "/api/graphql"
    assert body["message"].startswith("[QueryAnalysisError] ")
    assert complaint in body["message"]


def test_a_variable_of_the_wrong_type_is_a_query_analysis_error(sandbox: Sandbox) -> None:
    reply = gql(sandbox, login(sandbox), CREATE, {"email": "a@example.com", "roleIds": 5})

    assert reply.status_code == 400
    assert "[QueryAnalysisError]" in reply.json()["message"]
    assert "a@example.com" not in sandbox.users


# Users and roles ------------------------------------------------------------------------


def test_creating_a_user_stores_it_lower_case_and_a_second_create_conflicts(
    sandbox: Sandbox,
) -> None:
    token = login(sandbox)

    first = create(sandbox, token, "New.Person@Example.COM").json()
    again = create(sandbox, token, "new.person@example.com").json()

    user = sandbox.users["new.person@example.com"]
    assert first == {"data": {"createUser": user.id}}
    assert user.status == "ACTIVE" and user.lastLogin is None
    assert [r.name for r in user.roles] == ["Administrator"]
    assert again["data"] is None
    error = again["errors"][0]
    assert error["message"] == "ALREADY_EXISTS: cant create user as conflicts with existing one"
    assert error["path"] == ["createUser"]
    assert error["extensions"]["code"] == 409 and "trace" in error["extensions"]
    assert error["locations"]
    assert sandbox.calls("createUser") == [
        {"email": "New.Person@Example.COM", "roleIds": [ADMIN_ROLE_ID]},
        {"email": "new.person@example.com", "roleIds": [ADMIN_ROLE_ID]},
    ]
    assert [r.applied for r in sandbox.requests if "createUser" in r.fields] == [True, False]


@pytest.mark.parametrize(
    ("email", "roles", "message"),
    [
        ("not an address", [ADMIN_ROLE_ID], "INVALID_ARGUMENT: cant create user as email"),
        ("someone@example.com", [], "INVALID_ARGUMENT: "),
        ("someone@example.com", ["no-such-role"], "NOT_FOUND: "),
    ],
    ids=["bad-address", "no-roles", "unknown-role"],
)
def test_a_create_with_bad_arguments_is_refused_and_changes_nothing(
    sandbox: Sandbox, email: str, roles: list[str], message: str
) -> None:
    before = len(sandbox.users)

    reply = create(sandbox, login(sandbox), email, roles)

    assert reply.status_code == 200
    assert reply.json()["errors"][0]["message"].startswith(message)
    assert len(sandbox.users) == before


def test_deleting_a_user_removes_it(sandbox: Sandbox) -> None:
    user = sandbox.add_user("leaver@example.org", role_names=["ReadOnlyAdmin"])

    reply = gql(
        sandbox,
        login(sandbox),
        "mutation Del($ids: [String!]!) { deleteUsersFromAccount(ids: $ids) }",
        {"ids": [user.id]},
    )

    assert reply.json() == {"data": {"deleteUsersFromAccount": True}}
    assert "leaver@example.org" not in sandbox.users


def test_paging_with_cursors_lists_every_user_exactly_once() -> None:
    with Sandbox(users=2500, seed=3) as sandbox:
        token = login(sandbox)
        seen: list[str] = []
        after = None
        pages = 0
        while True:
            body = gql(sandbox, token, USERS_PAGE, {"first": 1000, "after": after}).json()
            connection = body["data"]["usersInCurrentAndDescendantOrganization"]
            assert connection["count"] == 2500
            assert [e["node"]["id"] for e in connection["edges"]] == [
                n["id"] for n in connection["nodes"]
            ]
            seen += [n["email"] for n in connection["nodes"]]
            pages += 1
            assert connection["pageInfo"]["hasPreviousPage"] == (pages > 1)
            if not connection["pageInfo"]["hasNextPage"]:
                break
            after = connection["pageInfo"]["endCursor"]

        assert pages == 3
        assert len(seen) == len(set(seen)) == 2500
        assert set(seen) == set(sandbox.users)
        assert len(sandbox.calls("usersInCurrentAndDescendantOrganization")) == 3


def test_a_page_larger_than_1000_is_an_invalid_argument(sandbox: Sandbox) -> None:
    body = gql(sandbox, login(sandbox), USERS_PAGE, {"first": 1001}).json()

    assert body["data"] is None
    assert body["errors"][0]["message"].startswith("INVALID_ARGUMENT: ")
    assert body["errors"][0]["extensions"]["code"] == 400


def test_the_email_filter_is_a_case_insensitive_substring(sandbox: Sandbox) -> None:
    sandbox.add_user("Mixed.Case@Example.com", last_login="2025-01-02T03:04:05.000Z")

    body = gql(
        sandbox, login(sandbox), USERS_PAGE, {"first": 50, "filter": {"emailFilter": "XED.cAS"}}
    ).json()

    nodes = body["data"]["usersInCurrentAndDescendantOrganization"]["nodes"]
    assert [n["email"] for n in nodes] == ["mixed.case@example.com"]
    assert nodes[0]["lastLogin"] == "2025-01-02T03:04:05.000Z"
    assert nodes[0]["roles"] == [{"id": ADMIN_ROLE_ID, "name": "Administrator"}]


def test_user_already_exists_answers_for_the_domain_asked(sandbox: Sandbox) -> None:
    sandbox.add_user("Here@Example.com")
    token = login(sandbox)
    query = (
        "query E($e: String!, $d: UserDomainEnum!) "
        "{ userAlreadyExists(emailOrUsername: $e, userDomain: $d) { doesExist } }"
    )

    def exists(email: str, domain: str = "LOCAL") -> bool:
        body = gql(sandbox, token, query, {"e": email, "d": domain}).json()
        answer: bool = body["data"]["userAlreadyExists"]["doesExist"]
        return answer

    assert exists("here@example.COM") is True
    assert exists("here@example.com", "SSO") is False
    assert exists("nobody@example.com") is False


def test_the_seeded_account_is_varied_and_the_same_for_the_same_seed() -> None:
    with Sandbox(users=300, seed=11) as one, Sandbox(users=300, seed=11) as two:
        users = list(one.users.values())

        assert list(one.users) == list(two.users)
        assert len(users) == 300
        assert sum(u.isAccountOwner for u in users) == 1
        assert 0.15 < sum(u.lastLogin is None for u in users) / 300 < 0.35
        assert {u.email.split("@")[1] for u in users} == {
            "example.com",
            "example.org",
            "corp.example.net",
        }
        assert {u.status for u in users} == {"ACTIVE", "DEACTIVATED", "UNKNOWN"}
        assert {r.name for u in users for r in u.roles} == set(one.roles)
        assert one.roles["Administrator"].id == ADMIN_ROLE_ID


def test_roles_can_be_listed_by_name_and_fetched_by_id(sandbox: Sandbox) -> None:
    token = login(sandbox)
    read_only = sandbox.roles["ReadOnlyAdmin"]

    listed = gql(
        sandbox,
        token,
        '{ getAllRolesInOrgConnection(nameFilter: "readonly") '
        "{ count nodes { id name isReadOnly isOrgAdmin orgId } } }",
    ).json()["data"]["getAllRolesInOrgConnection"]
    fetched = gql(
        sandbox,
        token,
        "query R($ids: [String!]!) { getRolesByIds(roleIds: $ids) { name permissions "
        "{ operation } } }",
        {"ids": [ADMIN_ROLE_ID]},
    ).json()["data"]["getRolesByIds"]

    assert listed["count"] == 1
    assert listed["nodes"][0]["id"] == read_only.id and listed["nodes"][0]["isReadOnly"]
    assert fetched[0]["name"] == "Administrator" and fetched[0]["permissions"]


def test_health_queries_name_the_account(sandbox: Sandbox) -> None:
    body = gql(
        sandbox,
        login(sandbox),
        "{ deploymentVersion accountId currentUserLoginContext { accountName orgId "
        "user { domain } } }",
    ).json()["data"]

    assert body["deploymentVersion"] and body["accountId"]
    assert body["currentUserLoginContext"]["accountName"] == "sandbox"
    assert body["currentUserLoginContext"]["user"]["domain"] == "CLIENT"
    assert sandbox.requests[-1].fields == (
        "deploymentVersion",
        "accountId",
        "currentUserLoginContext",
    )


# Faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [500, 502, 503, 504])
def test_a_status_fault_answers_with_that_status(sandbox: Sandbox, code: int) -> None:
    token = login(sandbox)
    sandbox.set_fault("graphql", "status", code=code)

    reply = gql(sandbox, token, "{ accountId }")

    assert reply.status_code == code and reply.text
    assert sandbox.requests[-1].status == code
    assert sandbox.requests[-1].fault == "status"


def test_a_rate_limit_fault_sends_retry_after_in_seconds_or_as_a_date(sandbox: Sandbox) -> None:
    token = login(sandbox)
    sandbox.set_fault("graphql", "rate_limit", times=1, retry_after=7)
    in_seconds = gql(sandbox, token, "{ accountId }")
    sandbox.set_fault("graphql", "rate_limit", times=1, retry_after=30, http_date=True)
    as_date = gql(sandbox, token, "{ accountId }")

    assert in_seconds.status_code == 429 and in_seconds.headers["Retry-After"] == "7"
    assert as_date.status_code == 429
    wait = parsedate_to_datetime(as_date.headers["Retry-After"]).timestamp() - time.time()
    assert 20 < wait <= 31
    assert gql(sandbox, token, "{ accountId }").status_code == 200


def test_a_fault_with_times_hits_only_that_many_requests(sandbox: Sandbox) -> None:
    token = login(sandbox)
    sandbox.set_fault("graphql", "status", times=2, code=503)

    codes = [gql(sandbox, token, "{ accountId }").status_code for _ in range(3)]

    assert codes == [503, 503, 200]


def test_a_field_fault_hits_only_requests_for_that_field(sandbox: Sandbox) -> None:
    token = login(sandbox)
    sandbox.set_fault("graphql:createUser", "status", code=502)

    assert gql(sandbox, token, "{ accountId }").status_code == 200
    assert create(sandbox, token, "someone@example.com").status_code == 502
    assert "someone@example.com" not in sandbox.users
    assert sandbox.requests[-1].applied is False


def test_apply_first_makes_the_change_then_loses_the_answer(sandbox: Sandbox) -> None:
    token = login(sandbox)
    sandbox.set_fault("graphql:createUser", "status", times=1, apply_first=True, code=504)

    lost = create(sandbox, token, "lost.answer@example.com")
    retry = create(sandbox, token, "lost.answer@example.com").json()

    assert lost.status_code == 504
    assert "lost.answer@example.com" in sandbox.users
    assert [r.applied for r in sandbox.requests if "createUser" in r.fields] == [True, False]
    assert retry["errors"][0]["message"].startswith("ALREADY_EXISTS: ")


def test_a_reset_fault_resets_the_connection(sandbox: Sandbox) -> None:
    token = login(sandbox)
    sandbox.set_fault("graphql:createUser", "reset", apply_first=True)

    with pytest.raises(requests.ConnectionError) as caught:
        create(sandbox, token, "reset@example.com")

    assert "reset" in str(caught.value).lower()
    assert "reset@example.com" in sandbox.users
    assert sandbox.requests[-1].status is None


def test_a_hang_fault_never_answers_and_does_not_block_shutdown() -> None:
    sandbox = Sandbox(users=5).start()
    token = login(sandbox)
    sandbox.set_fault("graphql", "hang")

    with pytest.raises(requests.ReadTimeout):
        gql(sandbox, token, "{ accountId }", timeout=0.3)
    outcome: list[BaseException] = []

    def wait_forever() -> None:
        try:
            gql(sandbox, token, "{ accountId }", timeout=30)
        except requests.RequestException as error:
            outcome.append(error)

    waiter = threading.Thread(target=wait_forever)
    waiter.start()
    time.sleep(0.2)
    stopping = threading.Thread(target=sandbox.stop)
    stopping.start()
    stopping.join(timeout=10)
    waiter.join(timeout=10)

    assert not stopping.is_alive()
    assert not waiter.is_alive() and isinstance(outcome[0], requests.ConnectionError)


def test_a_not_json_fault_answers_200_with_html(sandbox: Sandbox) -> None:
    token = login(sandbox)
    sandbox.set_fault("graphql", "not_json")

    reply = gql(sandbox, token, "{ accountId }")

    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        reply.json()


def test_a_graphql_error_fault_answers_200_with_errors_and_maybe_partial_data(
    sandbox: Sandbox,
) -> None:
    token = login(sandbox)
    sandbox.set_fault("graphql", "graphql_error", times=1, message="INTERNAL: boom")
    plain = gql(sandbox, token, "{ accountId }").json()
    sandbox.set_fault("graphql", "graphql_error", times=1, partial=True)
    partial = gql(sandbox, token, "{ accountId deploymentVersion }").json()
    sandbox.set_fault("graphql:createUser", "graphql_error", apply_first=True, partial=True)
    created = create(sandbox, token, "partial@example.com").json()

    assert plain["data"] is None and plain["errors"][0]["message"] == "INTERNAL: boom"
    assert plain["errors"][0]["path"] == ["accountId"]
    assert partial["data"]["accountId"] and partial["errors"]
    assert created["data"]["createUser"] == sandbox.users["partial@example.com"].id
    assert created["errors"][0]["extensions"]["code"] == 500


def test_an_unauthorized_fault_looks_like_an_expired_token(sandbox: Sandbox) -> None:
    token = login(sandbox)
    sandbox.set_fault("graphql", "unauthorized", times=1)

    first, second = (gql(sandbox, token, "{ accountId }") for _ in range(2))

    assert first.status_code == 401 and first.json()["code"] == 16
    assert second.status_code == 200


def test_login_endpoints_can_be_down(sandbox: Sandbox) -> None:
    sandbox.set_fault("client_token", "down")
    sandbox.set_fault("session", "down", mode="reset")

    token_reply = requests.post(
        f"{sandbox.url}/api/client_token",
        json={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        timeout=10,
    )
    with pytest.raises(requests.ConnectionError):
        requests.post(
            f"{sandbox.url}/api/session",
            json={"username": USERNAME, "password": PASSWORD},
            timeout=10,
        )

    assert token_reply.status_code == 503
    assert sandbox.logins == 0
    sandbox.clear_faults()
    assert login(sandbox)


def test_a_latency_fault_delays_only_the_matching_requests(sandbox: Sandbox) -> None:
    token = login(sandbox)
    sandbox.set_fault("graphql:createUser", "latency", seconds=0.4)

    started = time.monotonic()
    create(sandbox, token, "slow@example.com")
    slow = time.monotonic() - started

    assert slow >= 0.4
    assert "slow@example.com" in sandbox.users


def test_an_unknown_fault_kind_or_target_is_refused(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError):
        sandbox.set_fault("graphql", "explode")
    with pytest.raises(ValueError):
        sandbox.set_fault("session:createUser", "reset")


# Load and connections ----------------------------------------------------------------------


def test_many_concurrent_slow_requests_are_all_answered() -> None:
    with Sandbox(users=50, latency=0.5) as sandbox:
        token = login(sandbox)

        def ask(_: int) -> int:
            return gql(sandbox, token, "{ accountId }").status_code

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=120) as pool:
            codes = list(pool.map(ask, range(120)))

        assert codes == [200] * 120
        # Served one at a time this would take a minute; in parallel about a second.
        assert time.monotonic() - started < 10


def test_one_keep_alive_connection_carries_many_requests(sandbox: Sandbox) -> None:
    token = login(sandbox)
    connection = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=10)
    body = json.dumps({"query": "{ accountId }"})
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    sockets = []
    try:
        for _ in range(5):
            connection.request("POST", "/api/graphql", body=body, headers=headers)
            reply = connection.getresponse()
            assert reply.status == 200 and json.loads(reply.read())["data"]["accountId"]
            sockets.append(connection.sock)
    finally:
        connection.close()

    assert sockets[0] is not None and all(sock is sockets[0] for sock in sockets)


def test_requests_are_not_logged_to_stderr(
    sandbox: Sandbox, capfd: pytest.CaptureFixture[str]
) -> None:
    gql(sandbox, login(sandbox), "{ accountId }")

    assert capfd.readouterr().err == ""


# HTTP controls --------------------------------------------------------------------------------


def test_the_http_controls_drive_faults_latency_tokens_and_state(sandbox: Sandbox) -> None:
    control = f"{sandbox.url}/_sandbox"
    token = login(sandbox)

    armed = requests.post(
        f"{control}/faults",
        json={"target": "graphql:createUser", "kind": "status", "code": 503, "times": 1},
        timeout=10,
    )
    refused = create(sandbox, token, "remote@example.com")
    created = create(sandbox, token, "remote@example.com")
    requests.post(f"{control}/faults", json={"target": "graphql", "kind": "status"}, timeout=10)
    cleared = requests.delete(f"{control}/faults", timeout=10)
    bad = requests.post(f"{control}/faults", json={"target": "graphql", "kind": "x"}, timeout=10)
    requests.post(f"{control}/latency", json={"seconds": 0.25}, timeout=10)
    latency = sandbox.latency
    requests.post(f"{control}/latency", json={"seconds": 0}, timeout=10)
    requests.post(f"{control}/expire_tokens", timeout=10)
    expired = gql(sandbox, token, "{ accountId }")
    log = requests.get(f"{control}/requests", timeout=10).json()["requests"]
    found = requests.get(f"{control}/users", params={"email": "REMOTE@example.com"}, timeout=10)
    missing = requests.get(f"{control}/users", params={"email": "nobody@example.com"}, timeout=10)

    assert armed.status_code == 200 and cleared.status_code == 200 and bad.status_code == 400
    assert refused.status_code == 503 and created.status_code == 200
    assert latency == 0.25 and sandbox.latency == 0
    assert expired.status_code == 401
    assert [entry["status"] for entry in log] == [200, 503, 200, 401]
    assert all(entry["path"].startswith("/api/") for entry in log)
    assert found.json()["user"]["email"] == "remote@example.com"
    assert missing.status_code == 404


def test_the_service_account_file_points_at_the_sandbox(sandbox: Sandbox, tmp_path: Path) -> None:
    path = sandbox.write_service_account_file(tmp_path / "sa.json")
    content = json.loads(path.read_text())

    reply = requests.post(
        content["access_token_uri"],
        json={"client_id": content["client_id"], "client_secret": content["client_secret"]},
        timeout=10,
    )

    assert content["access_token_uri"] == f"{sandbox.url}/api/client_token"
    assert content["name"]
    assert reply.status_code == 200


def test_reset_log_forgets_requests_and_logins(sandbox: Sandbox) -> None:
    gql(sandbox, login(sandbox), "{ accountId }")

    sandbox.reset_log()

    assert sandbox.requests == [] and sandbox.logins == 0


# Command line -------------------------------------------------------------------------------


def test_the_command_line_serves_until_terminated(tmp_path: Path) -> None:
    account_file = tmp_path / "sa.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "polaris_sandbox",
            "--port",
            "0",
            "--users",
            "20",
            "--service-account-file",
            str(account_file),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(7)]
        env = dict(line.strip().split("=", 1) for line in lines if "=" in line)
        assert env["POLARIS_CLIENT_ID"] == CLIENT_ID
        assert env["POLARIS_SERVICE_ACCOUNT_FILE"] == str(account_file.resolve())

        reply = requests.post(
            f"{env['POLARIS_URL']}/api/session",
            json={"username": env["POLARIS_USERNAME"], "password": env["POLARIS_PASSWORD"]},
            timeout=10,
        )
        assert reply.status_code == 200
    finally:
        process.terminate()
        code = process.wait(timeout=10)

    assert code == 0


def test_the_command_line_refuses_a_non_loopback_address() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "polaris_sandbox", "--host", "0.0.0.0", "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert "loopback" in result.stderr
