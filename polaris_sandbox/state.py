"""In-memory account of the sandbox: roles, users and the seeded data set."""

from __future__ import annotations

import base64
import random
import re
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

ADMIN_ROLE_ID = "00000000-0000-0000-0000-000000000000"
MAX_PAGE_SIZE = 1000
# RSC does not document a default page size; 50 keeps an unbounded request cheap.
DEFAULT_PAGE_SIZE = 50
# Seeded dates count back from a fixed day so the data set is the same on every run.
SEED_EPOCH = datetime(2025, 6, 1, tzinfo=UTC)

DOMAINS = ("example.com", "example.org", "corp.example.net")
FIRST_NAMES = (
    "ada",
    "alan",
    "barbara",
    "claude",
    "dennis",
    "edsger",
    "frances",
    "grace",
    "guido",
    "hedy",
    "ivan",
    "joan",
    "ken",
    "linus",
    "margaret",
    "niklaus",
    "radia",
    "rasmus",
    "shafi",
    "tim",
    "tony",
    "ward",
    "yukihiro",
    "zhang",
)
LAST_NAMES = (
    "lovelace",
    "turing",
    "liskov",
    "shannon",
    "ritchie",
    "dijkstra",
    "allen",
    "hopper",
    "rossum",
    "lamarr",
    "sutherland",
    "clarke",
    "thompson",
    "torvalds",
    "hamilton",
    "wirth",
    "perlman",
    "lerdorf",
    "goldwasser",
    "berners",
    "hoare",
    "cunningham",
    "matsumoto",
)

_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@(?=.{1,253}$)"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)


class ApiError(Exception):
    """A failure the real service reports as a GraphQL error with a gRPC-style prefix."""

    CODES: ClassVar[dict[str, int]] = {
        "INVALID_ARGUMENT": 400,
        "UNAUTHENTICATED": 401,
        "PERMISSION_DENIED": 403,
        "NOT_FOUND": 404,
        "ALREADY_EXISTS": 409,
        "INTERNAL": 500,
    }

    def __init__(self, status: str, text: str) -> None:
        super().__init__(f"{status}: {text}")
        self.status = status
        self.code = self.CODES.get(status, 500)


@dataclass(frozen=True)
class Role:
    """A role of the account, shaped like the GraphQL Role type."""

    id: str
    name: str
    description: str
    isOrgAdmin: bool
    isReadOnly: bool
    orgId: str
    permissions: tuple[dict[str, str], ...] = ()


@dataclass
class LockoutState:
    """Whether a user is locked out, shaped like the GraphQL type."""

    isLocked: bool = False
    lockMethod: str = "UNLOCKED"
    lockedAt: str | None = None


@dataclass
class User:
    """A user of the account; attribute names are the GraphQL field names."""

    id: str
    email: str
    username: str
    domain: str
    domainName: str
    status: str
    isAccountOwner: bool
    lastLogin: str | None
    roles: list[Role]
    lockoutState: LockoutState = field(default_factory=LockoutState)
    groups: list[str] = field(default_factory=list)
    isHidden: bool = False
    isEmailEnabled: bool = True
    eulaState: dict[str, bool] = field(default_factory=lambda: {"isAccepted": False})
    totpStatus: str = "DISABLED"

    def as_json(self) -> dict[str, Any]:
        """Return the user as plain JSON, roles by id and name."""
        return {
            "id": self.id,
            "email": self.email,
            "username": self.username,
            "domain": self.domain,
            "domainName": self.domainName,
            "status": self.status,
            "isAccountOwner": self.isAccountOwner,
            "lastLogin": self.lastLogin,
            "lockoutState": vars(self.lockoutState).copy(),
            "roles": [{"id": r.id, "name": r.name} for r in self.roles],
            "groups": list(self.groups),
            "isHidden": self.isHidden,
            "isEmailEnabled": self.isEmailEnabled,
            "eulaState": dict(self.eulaState),
            "totpStatus": self.totpStatus,
        }


def iso(moment: datetime) -> str:
    """Format a moment the way RSC formats DateTime values."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def is_valid_email(email: str) -> bool:
    """Tell whether an address is one the sandbox accepts for createUser."""
    local = email.partition("@")[0]
    return (
        bool(_EMAIL.match(email))
        and len(local) <= 64
        and not local.startswith(".")
        and not local.endswith(".")
        and ".." not in local
    )


def encode_cursor(index: int) -> str:
    """Return the opaque cursor of the item at this position of a listing."""
    return base64.urlsafe_b64encode(f"sandbox-offset:{index}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    """Return the position a cursor stands for, or raise INVALID_ARGUMENT."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        prefix, _, number = text.partition(":")
        if prefix != "sandbox-offset":
            raise ValueError(prefix)
        return int(number)
    except ValueError:
        raise ApiError("INVALID_ARGUMENT", f"invalid cursor {cursor!r}") from None


def page(
    items: Sequence[Any],
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> dict[str, Any]:
    """Slice a listing the Relay way and shape it as a GraphQL connection."""
    for name, size in (("first", first), ("last", last)):
        if size is not None and size < 0:
            raise ApiError("INVALID_ARGUMENT", f"{name} must be non-negative")
        if size is not None and size > MAX_PAGE_SIZE:
            raise ApiError(
                "INVALID_ARGUMENT",
                f"{name} must be at most {MAX_PAGE_SIZE}, got {size}",
            )
    start = decode_cursor(after) + 1 if after else 0
    end = decode_cursor(before) if before else len(items)
    start, end = max(0, start), min(len(items), end)
    if first is None and last is None:
        first = DEFAULT_PAGE_SIZE
    if first is not None:
        end = min(end, start + first)
    if last is not None:
        start = max(start, end - last)
    start = min(start, end)

    nodes = list(items[start:end])
    edges = [{"cursor": encode_cursor(start + i), "node": n} for i, n in enumerate(nodes)]
    return {
        "count": len(items),
        "edges": edges,
        "nodes": nodes,
        "pageInfo": {
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
            "hasNextPage": end < len(items),
            "hasPreviousPage": start > 0,
        },
    }


_USER_SORT_KEYS = {
    "EMAIL": lambda u: u.email,
    "DOMAIN": lambda u: (u.domain, u.email),
    "STATUS": lambda u: (u.status, u.email),
    # Never-signed-in users sort before everyone in ascending order.
    "LAST_LOGIN": lambda u: (u.lastLogin or "", u.email),
}


class Account:
    """Roles and users of one sandbox account; every method is thread-safe."""

    def __init__(self, users: int, seed: int, owner_email: str) -> None:
        self.lock = threading.RLock()
        self._rng = random.Random(seed)
        self.account_id = self._uuid()
        self.org_id = self._uuid()
        self.account_name = "sandbox"
        self.deployment_version = "v20250601-7-sandbox"
        self.roles: dict[str, Role] = {}
        self._users: dict[str, User] = {}
        self._by_id: dict[str, User] = {}
        # Sorted views are rebuilt only after a change, so paging stays linear per page.
        self._version = 0
        self._sorted: dict[tuple[str, str], tuple[int, list[User]]] = {}
        self._seed_roles()
        self._seed_users(users, owner_email)

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _seed_roles(self) -> None:
        specs = [
            (ADMIN_ROLE_ID, "Administrator", "Full access to the account.", True, False),
            (self._uuid(), "ReadOnlyAdmin", "Can view everything, change nothing.", False, True),
            (self._uuid(), "Compliance Auditor", "Can view reports and audit logs.", False, True),
        ]
        for role_id, name, text, is_admin, read_only in specs:
            operations = ("VIEW_INVENTORY", "VIEW_REPORTS") + (
                ("MANAGE_USERS", "MANAGE_SLA") if is_admin else ()
            )
            self.roles[role_id] = Role(
                id=role_id,
                name=name,
                description=text,
                isOrgAdmin=is_admin,
                isReadOnly=read_only,
                orgId=self.org_id,
                permissions=tuple({"operation": op} for op in operations),
            )

    def add_role(self, name: str, description: str = "", read_only: bool = True) -> Role:
        """Add a role, as an administrator would in the console; returns it."""
        with self.lock:
            role = Role(
                id=self._uuid(),
                name=name,
                description=description,
                isOrgAdmin=False,
                isReadOnly=read_only,
                orgId=self.org_id,
                permissions=({"operation": "VIEW_INVENTORY"},),
            )
            self.roles[role.id] = role
            return role

    def _seed_users(self, count: int, owner_email: str) -> None:
        rng = self._rng
        role_list = list(self.roles.values())
        owner = self._make_user(owner_email, [role_list[0]], "LOCAL")
        owner.isAccountOwner = True
        owner.lastLogin = iso(SEED_EPOCH - timedelta(hours=3))
        owner.eulaState = {"isAccepted": True}
        owner.totpStatus = "ENABLED"
        self._insert(owner)

        taken = {owner_email}
        for index in range(1, count):
            name = f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}"
            email = f"{name}@{rng.choice(DOMAINS)}"
            if email in taken:
                email = email.replace("@", f"{index}@")
            taken.add(email)

            domain = "SSO" if rng.random() < 0.15 else "LOCAL"
            roles = [rng.choices(role_list, weights=(2, 5, 3))[0]]
            if rng.random() < 0.1:
                roles = role_list[1:]
            user = self._make_user(email, roles, domain)
            if domain == "SSO":
                user.status = "UNKNOWN"
            elif rng.random() < 0.06:
                user.status = "DEACTIVATED"
            if rng.random() >= 0.25:
                seen = SEED_EPOCH - timedelta(minutes=rng.randrange(1, 60 * 24 * 400))
                user.lastLogin = iso(seen)
                user.eulaState = {"isAccepted": True}
            if rng.random() < 0.02:
                user.lockoutState = LockoutState(
                    isLocked=True,
                    lockMethod=rng.choice(("AUTOMATIC", "MANUAL")),
                    lockedAt=iso(SEED_EPOCH - timedelta(days=rng.randrange(1, 30))),
                )
            if rng.random() < 0.2:
                user.groups = [rng.choice(("ops", "backup-admins", "security", "finance"))]
            self._insert(user)

    def _make_user(self, email: str, roles: list[Role], domain: str) -> User:
        return User(
            id=self._uuid(),
            email=email,
            username=email,
            domain=domain,
            domainName="sandbox-idp" if domain == "SSO" else "",
            status="ACTIVE",
            isAccountOwner=False,
            lastLogin=None,
            roles=list(roles),
        )

    def _insert(self, user: User) -> None:
        self._users[user.email] = user
        self._by_id[user.id] = user
        self._version += 1

    # Queries -----------------------------------------------------------------

    def snapshot_users(self) -> dict[str, User]:
        """Return the users by lower-case email (a copy of the mapping)."""
        with self.lock:
            return dict(self._users)

    def find_user(self, email: str) -> User | None:
        """Return the user with this email (any case), if any."""
        with self.lock:
            return self._users.get(email.lower())

    def user_by_id(self, user_id: str) -> User | None:
        """Return the user with this id, if any."""
        with self.lock:
            return self._by_id.get(user_id)

    def user_exists(self, name: str, domain: str) -> bool:
        """Tell whether a user with this email or username exists in the domain."""
        lowered = name.lower()
        with self.lock:
            user = self._users.get(lowered)
            if user is None:
                user = next((u for u in self._users.values() if u.username == lowered), None)
            return user is not None and user.domain == domain

    def list_users(
        self, sort_by: dict[str, Any] | None, filters: dict[str, Any] | None
    ) -> list[User]:
        """Return the users matching the filter, in the requested order."""
        sort_by = sort_by or {}
        field_name = sort_by.get("field") or "EMAIL"
        order = sort_by.get("sortOrder") or "ASC"
        with self.lock:
            cached = self._sorted.get((field_name, order))
            if cached is None or cached[0] != self._version:
                ordered = sorted(
                    self._users.values(),
                    key=_USER_SORT_KEYS[field_name],
                    reverse=order == "DESC",
                )
                cached = (self._version, ordered)
                self._sorted[(field_name, order)] = cached
            ordered = cached[1]
        if not filters:
            return ordered
        return [u for u in ordered if _matches(u, filters, self.org_id)]

    def list_roles(
        self, name_filter: str | None, assigned: Iterable[str] | None, descending: bool
    ) -> list[Role]:
        """Return roles whose name contains the filter, ordered by name."""
        wanted = set(assigned or ())
        roles = [
            r
            for r in self.roles.values()
            if (not name_filter or name_filter.lower() in r.name.lower())
            and (not wanted or r.id in wanted)
        ]
        return sorted(roles, key=lambda r: r.name.lower(), reverse=descending)

    # Mutations ---------------------------------------------------------------

    def create_user(self, email: str, role_ids: Sequence[str]) -> User:
        """Create a LOCAL user the way createUser does, or raise ApiError."""
        email = email.strip().lower()
        if not is_valid_email(email):
            raise ApiError("INVALID_ARGUMENT", "cant create user as email address is invalid")
        if not role_ids:
            raise ApiError("INVALID_ARGUMENT", "cant create user without any role")
        unknown = [r for r in role_ids if r not in self.roles]
        if unknown:
            raise ApiError("NOT_FOUND", f"cant create user as role {unknown[0]} does not exist")
        with self.lock:
            if email in self._users:
                raise ApiError("ALREADY_EXISTS", "cant create user as conflicts with existing one")
            user = self._make_user(email, [self.roles[r] for r in dict.fromkeys(role_ids)], "LOCAL")
            user.id = str(uuid.uuid4())
            self._insert(user)
            return user

    def add_user(
        self,
        email: str,
        role_names: Iterable[str],
        last_login: str | None,
        status: str,
        domain: str = "LOCAL",
    ) -> User:
        """Add a user directly (test set-up); the email is stored lower case."""
        by_name = {r.name.lower(): r for r in self.roles.values()}
        roles = [by_name[name.lower()] for name in role_names]
        with self.lock:
            user = self._make_user(email.lower(), roles, domain)
            user.id = str(uuid.uuid4())
            user.status = status
            user.lastLogin = last_login
            user.eulaState = {"isAccepted": last_login is not None}
            old = self._users.get(user.email)
            if old is not None:
                del self._by_id[old.id]
            self._insert(user)
            return user

    def delete_users(self, ids: Sequence[str]) -> None:
        """Delete users by id; all or nothing, as one request."""
        with self.lock:
            for user_id in ids:
                user = self._by_id.get(user_id)
                if user is None:
                    raise ApiError("NOT_FOUND", f"user {user_id} does not exist")
                if user.isAccountOwner:
                    raise ApiError("INVALID_ARGUMENT", "cant delete the account owner")
            for user_id in ids:
                user = self._by_id.pop(user_id)
                del self._users[user.email]
            self._version += 1


def _matches(user: User, filters: dict[str, Any], org_id: str) -> bool:
    text = filters.get("emailFilter")
    if text and text.lower() not in user.email:
        return False
    domains = filters.get("domainFilter")
    if domains and user.domain not in domains:
        return False
    role_ids = filters.get("roleIdsFilter")
    if role_ids and not any(r.id in role_ids for r in user.roles):
        return False
    org_ids = filters.get("orgIdsFilter")
    if org_ids and org_id not in org_ids:
        return False
    lockout = filters.get("lockoutStateFilter") or "ALL"
    if lockout != "ALL" and user.lockoutState.isLocked != (lockout == "LOCKED"):
        return False
    hidden = filters.get("hiddenStateFilter") or "ALL"
    if hidden != "ALL" and user.isHidden != (hidden == "HIDDEN"):
        return False
    reasons = filters.get("lockoutReasonsFilter")
    if reasons:
        reason = {"AUTOMATIC": "FAILED_LOGINS", "MANUAL": "MANUAL"}.get(
            user.lockoutState.lockMethod
        )
        if not user.lockoutState.isLocked or reason not in reasons:
            return False
    # authDomainIdsFilter names identity providers; the sandbox has one, "sandbox-idp".
    idps = filters.get("authDomainIdsFilter")
    return not idps or user.domainName in idps
