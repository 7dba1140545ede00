"""The original tool's way of inviting, for comparison: log in for every invite, one at a time.

The tool polaris-bot replaces took one address, fetched a fresh access token from
RSC, sent ``createUser`` with it, and only then looked at the next address. This
is a small re-implementation of exactly that, with ``requests`` and no connection
reuse (each call opens its own connection, as a plain ``requests.post`` does), run
against the same sandbox as the bot.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import requests

CREATE_USER = (
    "mutation BaselineCreateUser($email: String!, $roleIds: [String!]!) "
    "{ createUser(email: $email, roleIds: $roleIds) }"
)


@dataclass
class BaselineRun:
    """What the baseline did: how long it took in all and per invite, and what failed."""

    total: float = 0.0
    per_invite: list[float] = field(default_factory=list)
    logins: int = 0
    failures: list[str] = field(default_factory=list)


def invite_one_by_one(
    url: str,
    client_id: str,
    client_secret: str,
    role_id: str,
    emails: Sequence[str],
    timeout: float = 30.0,
) -> BaselineRun:
    """Invite ``emails`` in order, logging in to RSC again before each one."""
    run = BaselineRun()
    started = time.perf_counter()
    for email in emails:
        began = time.perf_counter()
        try:
            token = _log_in(url, client_id, client_secret, timeout)
            run.logins += 1
            _create_user(url, token, email, role_id, timeout)
        except (requests.RequestException, ValueError, KeyError) as error:
            run.failures.append(f"{email}: {type(error).__name__}: {error}")
        run.per_invite.append(time.perf_counter() - began)
    run.total = time.perf_counter() - started
    return run


def _log_in(url: str, client_id: str, client_secret: str, timeout: float) -> str:
    response = requests.post(
        f"{url}/api/client_token",
        json={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
        },
        timeout=timeout,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def _create_user(url: str, token: str, email: str, role_id: str, timeout: float) -> None:
    response = requests.post(
        f"{url}/api/graphql",
        json={"query": CREATE_USER, "variables": {"email": email, "roleIds": [role_id]}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout,
    )
    response.raise_for_status()
    payload = response.json()
    if payload.get("errors") or not payload.get("data", {}).get("createUser"):
        raise ValueError(f"createUser was not confirmed: {str(payload)[:200]}")
