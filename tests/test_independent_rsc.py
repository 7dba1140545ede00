"""The real bot against an RSC stand-in written independently of the project's sandbox.

The stand-in (independent_rsc.py) follows the API notes and rubrikinc's SDKs, so a
misreading the bot shares with its own sandbox fails here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from chat import wait_for
from conftest import ADMIN, DOMAIN, INVITER, ROLE
from independent_rsc import (
    ACCOUNT_NAME,
    CLIENT_ID,
    CLIENT_SECRET,
    DEPLOYMENT_VERSION,
    MAX_PAGE,
    PASSWORD,
    USERNAME,
    IndependentRsc,
)

FORMS = ["service account file", "client id and secret", "username and password"]


@pytest.fixture
def rsc() -> Iterator[IndependentRsc]:
    with IndependentRsc(users=5) as server:
        yield server


def indie_env(rsc: IndependentRsc, form: str, tmp_path: Path, **overrides: str) -> dict[str, str]:
    """Bot settings for ``rsc`` with one of the three ways of logging in."""
    env = {
        "POLARIS_ROLES": ROLE,
        "POLARIS_ALLOWED_DOMAINS": DOMAIN,
        "POLARIS_INVITERS": INVITER,
        "BOT_ADMINS": ADMIN,
        "POLARIS_APPROVAL": "auto",
        "POLARIS_READ_TIMEOUT": "5",
        "POLARIS_RETRY_BUDGET": "3",
    }
    if form == "service account file":
        path = rsc.write_service_account_file(tmp_path / "service-account.json")
        env["POLARIS_SERVICE_ACCOUNT_FILE"] = str(path)
    elif form == "client id and secret":
        env.update(POLARIS_URL=rsc.url, POLARIS_CLIENT_ID=CLIENT_ID)
        env["POLARIS_CLIENT_SECRET"] = CLIENT_SECRET
    else:
        env.update(POLARIS_URL=rsc.url, POLARIS_USERNAME=USERNAME, POLARIS_PASSWORD=PASSWORD)
    env.update(overrides)
    return env


def inviter_bot(start_bot: Callable[..., Any], env: dict[str, str]) -> Any:
    chat = start_bot(env)
    chat.as_user(INVITER)
    return chat


def assert_every_query_was_accepted(rsc: IndependentRsc) -> None:
    """Each GraphQL request passed schema validation, carried a token and got no errors."""
    for record in rsc.received:
        if record.path != "/api/graphql":
            continue
        assert record.token, f"no Bearer token on: {record.query!r}"
        assert record.content_type == "application/json"
        assert record.status == 200, f"HTTP {record.status} for query {record.query!r}"


# --- the stand-in itself ----------------------------------------------------------


def test_the_stand_in_refuses_what_rsc_refuses(rsc: IndependentRsc) -> None:
    form = requests.post(
        f"{rsc.url}/api/client_token",
        data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        timeout=5,
    )
    assert form.status_code == 200 and form.json()["expires_in"] == 43200
    bearer = {"Authorization": f"Bearer {form.json()['access_token']}"}

    def ask(query: str, headers: dict[str, str] = bearer) -> requests.Response:
        return requests.post(
            f"{rsc.url}/api/graphql", json={"query": query}, headers=headers, timeout=5
        )

    assert ask("{ deploymentVersion }").json() == {
        "data": {"deploymentVersion": DEPLOYMENT_VERSION}
    }
    no_token = ask("{ deploymentVersion }", headers={})
    assert no_token.status_code == 401 and no_token.json()["code"] == 16
    unknown = ask("{ deploymentVersion inviteUser }")
    assert unknown.status_code == 400
    assert unknown.json()["message"].startswith("[QueryAnalysisError]")
    too_many = ask("{ usersInCurrentAndDescendantOrganization(first: 1001) { count } }").json()
    assert too_many["data"] is None
    assert too_many["errors"][0]["message"].startswith("INVALID_ARGUMENT:")
    assert too_many["errors"][0]["extensions"]["code"] == 400


# --- the three credential forms ---------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
def test_the_bot_invites_lists_and_reports_status_with_each_credential_form(
    form: str, rsc: IndependentRsc, start_bot: Callable[..., Any], tmp_path: Path
) -> None:
    chat = inviter_bot(start_bot, indie_env(rsc, form, tmp_path))

    chat.send("!polaris invite New@Example.com")
    assert chat.reply() == "Inviting 1 address to Polaris…"
    assert chat.reply() == "new@example.com: invited"
    assert rsc.calls("createUser") == [{"email": "new@example.com", "roleIds": [rsc.role_id(ROLE)]}]
    assert rsc.users["new@example.com"].role_ids == [rsc.role_id(ROLE)]

    listed = chat.ask("!polaris list new").splitlines()
    assert listed[0] == "1 Polaris user matching new:"
    assert listed[1].startswith("new@example.com  active  last sign-in never")
    filters = [c.get("filter") for c in rsc.calls("usersInCurrentAndDescendantOrganization")]
    assert filters and all((f or {}).get("emailFilter", "").lower() == "new" for f in filters)

    status = chat.ask("!polaris status")
    assert "reachable, login works" in status
    assert ACCOUNT_NAME in status
    assert DEPLOYMENT_VERSION in status
    assert rsc.calls("currentUserLoginContext") and rsc.calls("deploymentVersion")

    expected = "/api/session" if form == "username and password" else "/api/client_token"
    logins = rsc.logins()
    assert {r.path for r in logins} == {expected}
    assert len(logins) == 1 and logins[0].status == 200
    assert_every_query_was_accepted(rsc)


def test_a_service_account_login_sends_the_file_credentials_as_rsc_expects(
    rsc: IndependentRsc, start_bot: Callable[..., Any], tmp_path: Path
) -> None:
    chat = inviter_bot(start_bot, indie_env(rsc, "service account file", tmp_path))

    assert "login works" in chat.ask("!polaris status")

    (login,) = rsc.logins()
    assert login.content_type in ("application/json", "application/x-www-form-urlencoded")
    assert login.body["client_id"] == CLIENT_ID
    assert login.body["client_secret"] == CLIENT_SECRET
    assert login.body.get("grant_type", "client_credentials") == "client_credentials"


# --- refusals RSC gives -----------------------------------------------------------


def test_inviting_someone_who_already_has_an_account_says_so(
    rsc: IndependentRsc, start_bot: Callable[..., Any], tmp_path: Path
) -> None:
    rsc.add_user("taken@example.com", last_login="2025-05-01T09:00:00.000Z")
    chat = inviter_bot(start_bot, indie_env(rsc, "client id and secret", tmp_path))

    chat.send("!polaris invite Taken@example.com")

    assert chat.reply() == "Inviting 1 address to Polaris…"
    assert chat.reply() == "taken@example.com: already has an account"
    assert len([u for u in rsc.users if u == "taken@example.com"]) == 1
    assert_every_query_was_accepted(rsc)


def test_a_wrong_client_secret_gets_a_plain_refusal_without_exception_text(
    rsc: IndependentRsc, start_bot: Callable[..., Any], tmp_path: Path
) -> None:
    env = indie_env(rsc, "client id and secret", tmp_path, POLARIS_CLIENT_SECRET="not-it")
    chat = inviter_bot(start_bot, env)

    chat.send("!polaris invite someone@example.com")
    replies = [chat.reply()]
    if replies[0].startswith("Inviting"):
        replies.append(chat.reply())
    status = chat.ask("!polaris status")

    assert replies[-1].startswith("someone@example.com: Polaris error: ")
    assert "client secret" in replies[-1]
    assert status.startswith("Polaris: reachable, but login fails")
    for text in [*replies, status]:
        for leak in ("Traceback", "Error(", "HTTPError", "401 Client Error", "not-it", "{"):
            assert leak not in text, f"{leak!r} in {text!r}"
    assert rsc.calls("createUser") == []
    assert all(r.status == 401 for r in rsc.logins())


def test_a_session_token_is_renewed_from_its_jwt_expiry_before_rsc_rejects_it(
    start_bot: Callable[..., Any], tmp_path: Path
) -> None:
    with IndependentRsc(users=5, token_lifetime=2) as short:
        env = indie_env(short, "username and password", tmp_path)
        chat = inviter_bot(start_bot, env)
        assert wait_for(lambda: short.live_tokens() == 0, timeout=5)

        chat.send("!polaris invite late@example.com")

        assert chat.replies(2)[1] == "late@example.com: invited"
        assert len(short.logins()) >= 2
        rejected = [r.query for r in short.received if r.status == 401]
        assert rejected == [], "the bot used a session token past the `exp` in its JWT"


# --- paging ---------------------------------------------------------------------


def test_list_pages_through_more_than_a_thousand_users(
    start_bot: Callable[..., Any], tmp_path: Path
) -> None:
    with IndependentRsc(users=2100) as big:
        chat = inviter_bot(start_bot, indie_env(big, "client id and secret", tmp_path))

        chat.send("!polaris list")
        attached = chat.bot.pop_message(timeout=15)  # the test backend delivers files as bytes
        summary = chat.reply()

        assert summary.splitlines()[0] == f"{len(big.users)} Polaris users:"
        emails = {line.split()[0] for line in attached.decode().splitlines()}
        assert emails == set(big.users)
        pages = big.calls("usersInCurrentAndDescendantOrganization")
        assert len(pages) >= 3
        assert all(page.get("first") is None or page["first"] <= MAX_PAGE for page in pages)
        assert pages[0].get("after") is None
        afters = [page.get("after") for page in pages[1:]]
        assert all(afters) and len(set(afters)) == len(afters)
        assert_every_query_was_accepted(big)
