"""An independent stand-in for the Rubrik Security Cloud API, for cross-checking the bot.

Written from /work/shared/polaris-api.md and rubrikinc's public SDKs only, without looking
at the project's own sandbox or client, so that a misreading shared by the bot and its
sandbox shows up here. It is a real HTTP server on loopback that serves
``/api/client_token``, ``/api/session`` and ``/api/graphql``, validates every query
against the SDL below with graphql-core, and answers in the shapes the notes describe.

Where the real service is strict, this one is too: unknown fields or arguments are a
``[QueryAnalysisError]`` (HTTP 400), every GraphQL call needs ``Authorization: Bearer``,
a page holds at most 1000 items, and GraphQL bodies must be JSON.

Sources for the schema (GO = rubrikinc/rubrik-polaris-sdk-for-go):
- createUser: GO pkg/polaris/graphql/access/queries/create_user.graphql
- usersInCurrentAndDescendantOrganization: GO .../users_in_current_and_descendant_organization
  .graphql (after, filter; nodes and pageInfo), argument list from polaris-api.md
- getAllRolesInOrgConnection: GO .../get_all_roles_in_org_connection.graphql
- currentUserLoginContext { accountName orgFullName orgId orgName user }: RSC API reference
  (rubrikinc/rubrik-developer-center, queries/currentUserLoginContext)
- userAlreadyExists, deploymentVersion, deleteUsersFromAccount: polaris-api.md
Guesses are marked [I]; they matter only if the bot selects those fields.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from graphql import (
    GraphQLError,
    build_schema,
    graphql_sync,
    parse,
    validate,
)
from graphql.language import FieldNode, OperationDefinitionNode

CLIENT_ID = "client|3f1d0c4e-7b7a-4c55-9a43-0d2f6a1e9b10"
CLIENT_SECRET = "independent-client-secret"
USERNAME = "bot.owner@example.com"
PASSWORD = "independent-password"
ACCOUNT_NAME = "indie-acct"
DEPLOYMENT_VERSION = "v20250611-7"
ORG_ID = "8b8f1a4e-2f2b-4d4e-9a1a-6f5e4c3b2a19"
MAX_PAGE = 1000
HOST = "127.0.0.1"
# [I] The notes do not say how many items a page holds when `first` is left out.
DEFAULT_PAGE = 50

SDL = """
scalar DateTime

enum UserDomainEnum { CLIENT LDAP LOCAL PAT SSO SUPPORT }
enum UserStatus { ACTIVE DEACTIVATED UNKNOWN }
enum SortOrder { ASC DESC }
enum UserSortByField { DOMAIN EMAIL LAST_LOGIN STATUS }
enum LockoutStateFilter { ALL LOCKED NOT_LOCKED }
# [I] value names of the next four enums are guesses
enum HiddenStateFilter { ALL HIDDEN NOT_HIDDEN }
enum LockoutReason { FAILED_LOGINS INACTIVITY ADMIN }
enum LockMethod { AUTOMATIC MANUAL UNKNOWN }
enum TotpStatus { ENABLED NOT_ENABLED ENFORCED }
enum RoleFieldEnum { NAME DESCRIPTION }

input UserSortByParam { field: UserSortByField, sortOrder: SortOrder }

input UserFilterInput {
  emailFilter: String
  domainFilter: [UserDomainEnum!]
  roleIdsFilter: [String!]
  orgIdsFilter: [String!]
  authDomainIdsFilter: [String!]
  lockoutStateFilter: LockoutStateFilter
  hiddenStateFilter: HiddenStateFilter
  lockoutReasonsFilter: [LockoutReason!]
}

type PageInfo {
  endCursor: String
  hasNextPage: Boolean!
  hasPreviousPage: Boolean!
  startCursor: String
}

type ObjectsForHierarchyType { objectIds: [String!]! snappableType: String! }
type Permission { operation: String! objectsForHierarchyTypes: [ObjectsForHierarchyType!]! }

type Role {
  id: String!
  name: String!
  description: String!
  isOrgAdmin: Boolean!
  isReadOnly: Boolean!
  orgId: String!
  permissions: [Permission!]!
  explicitlyAssignedPermissions: [Permission!]!
}

type LockoutState { isLocked: Boolean! lockMethod: LockMethod! lockedAt: DateTime }
type EulaState { isAccepted: Boolean! }

type User {
  id: String!
  email: String!
  username: String!
  domain: UserDomainEnum!
  domainName: String!
  status: UserStatus!
  isAccountOwner: Boolean!
  lastLogin: DateTime
  lockoutState: LockoutState!
  roles: [Role!]!
  groups: [String!]!
  isHidden: Boolean!
  isEmailEnabled: Boolean!
  eulaState: EulaState!
  totpStatus: TotpStatus!
}

type UserEdge { cursor: String! node: User! }
type UserConnection {
  count: Int!
  edges: [UserEdge!]!
  nodes: [User!]!
  pageInfo: PageInfo!
}

type RoleEdge { cursor: String! node: Role! }
type RoleConnection {
  count: Int!
  edges: [RoleEdge!]!
  nodes: [Role!]!
  pageInfo: PageInfo!
}

type UserLoginContext {
  accountName: String!
  orgFullName: String!
  orgId: String!
  orgName: String!
  user: User!
}

# [I] the reply type's name; only doesExist is documented
type UserAlreadyExistsReply { doesExist: Boolean! }

type Query {
  deploymentVersion: String!
  accountId: String!
  currentUser: User!
  currentUserLoginContext: UserLoginContext!
  usersInCurrentAndDescendantOrganization(
    first: Int, after: String, last: Int, before: String,
    sortBy: UserSortByParam, filter: UserFilterInput,
    shouldIncludeUserWithoutRole: Boolean
  ): UserConnection!
  getAllRolesInOrgConnection(
    first: Int, after: String, last: Int, before: String,
    sortOrder: SortOrder, sortBy: RoleFieldEnum, nameFilter: String,
    assignedRoleIds: [String!], roleSyncedFilter: Boolean
  ): RoleConnection!
  getRolesByIds(roleIds: [String!]!): [Role!]!
  userAlreadyExists(
    emailOrUsername: String!, userDomain: UserDomainEnum!, userDomainId: String
  ): UserAlreadyExistsReply!
}

type Mutation {
  createUser(email: String!, roleIds: [String!]!): String!
  deleteUsersFromAccount(ids: [String!]!): Boolean!
}
"""

SCHEMA = build_schema(SDL)

# The http-like code RSC puts in extensions.code for each gRPC-style message prefix.
ERROR_CODES = {
    "ALREADY_EXISTS": 409,
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "INTERNAL": 500,
    "PERMISSION_DENIED": 403,
}


class RscError(Exception):
    """A resolver failure carrying RSC's prefixed message."""


@dataclass
class Received:
    """One HTTP request as this stand-in saw it."""

    method: str
    path: str
    content_type: str
    body: Any
    token: str | None
    status: int = 0
    query: str = ""
    fields: list[str] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)


@dataclass
class StoredRole:
    id: str
    name: str
    description: str = ""
    is_org_admin: bool = False


@dataclass
class StoredUser:
    id: str
    email: str
    role_ids: list[str]
    status: str = "ACTIVE"
    last_login: str | None = None
    is_account_owner: bool = False


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(subject: str, lifetime: int) -> str:
    """A JWT-shaped token whose payload carries ``exp``, as RSC's tokens do (unsigned)."""
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    claims = {"sub": subject, "exp": int(time.time()) + lifetime, "jti": uuid.uuid4().hex}
    return f"{header}.{_b64(json.dumps(claims).encode())}.{_b64(uuid.uuid4().bytes)}"


def _cursor(index: int) -> str:
    return base64.b64encode(f"indie:{index}".encode()).decode()


def _index(cursor: str) -> int:
    try:
        prefix, _, number = base64.b64decode(cursor.encode(), validate=True).decode().partition(":")
        if prefix == "indie":
            return int(number)
    except (ValueError, UnicodeDecodeError):
        pass
    raise RscError("INVALID_ARGUMENT: invalid cursor")


def _looks_like_email(text: str) -> bool:
    local, at, domain = text.partition("@")
    return bool(at and local and "." in domain and " " not in text and "@" not in domain)


class IndependentRsc:
    """A loopback RSC stand-in with a request log; use as a context manager."""

    def __init__(self, users: int = 5, token_lifetime: int = 43200) -> None:
        self.token_lifetime = token_lifetime
        self.received: list[Received] = []
        self.resolved: list[tuple[str, dict[str, Any]]] = []
        self.tokens: dict[str, float] = {}  # token -> expiry (epoch seconds)
        self.lock = threading.Lock()
        self.roles = {
            r.id: r
            for r in (
                StoredRole("00000000-0000-0000-0000-000000000000", "Administrator", "", True),
                StoredRole(str(uuid.uuid4()), "ReadOnlyAdmin", "Read-only access"),
                StoredRole(str(uuid.uuid4()), "Auditor", "Reads the audit log"),
            )
        }
        self.users: dict[str, StoredUser] = {}
        self.add_user(USERNAME, "Administrator", last_login="2025-06-01T08:00:00.000Z")
        self.users[USERNAME].is_account_owner = True
        for n in range(users - 1):
            self.add_user(f"seed.{n:05d}@example.com", last_login="2025-05-02T10:30:00.000Z")
        self._server = ThreadingHTTPServer((HOST, 0), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- control --------------------------------------------------------------

    @property
    def url(self) -> str:
        """The account URL (scheme and host, no ``/api``)."""
        return f"http://{HOST}:{self._server.server_address[1]}"

    def start(self) -> IndependentRsc:
        """Serve on a background thread; returns itself."""
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> IndependentRsc:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def add_user(
        self, email: str, role_name: str = "ReadOnlyAdmin", last_login: str | None = None
    ) -> StoredUser:
        """A user already on the account (stored lower case, as RSC stores emails)."""
        role = self.role_id(role_name)
        user = StoredUser(str(uuid.uuid4()), email.lower(), [role], last_login=last_login)
        self.users[user.email] = user
        return user

    def role_id(self, name: str) -> str:
        """The id of the role called ``name``."""
        return next(r.id for r in self.roles.values() if r.name == name)

    def write_service_account_file(self, path: Path) -> Path:
        """The JSON file RSC lets you download for a service account."""
        path.write_text(
            json.dumps(
                {
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "name": "polaris-bot",
                    "access_token_uri": f"{self.url}/api/client_token",
                }
            )
        )
        return path

    def graphql_requests(self, field_name: str) -> list[Received]:
        """GraphQL requests whose operation selects ``field_name`` at the top level."""
        return [r for r in self.received if r.path == "/api/graphql" and field_name in r.fields]

    def calls(self, field_name: str) -> list[dict[str, Any]]:
        """The arguments the resolver of ``field_name`` received, literals and variables
        both resolved, in order."""
        return [args for name, args in self.resolved if name == field_name]

    def live_tokens(self) -> int:
        """How many issued tokens have not expired yet."""
        with self.lock:
            return sum(1 for expiry in self.tokens.values() if expiry > time.time())

    def logins(self) -> list[Received]:
        """Requests to the two login endpoints, in order."""
        return [r for r in self.received if r.path in ("/api/client_token", "/api/session")]

    # --- auth -------------------------------------------------------------------

    def _client_token(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        grant = body.get("grant_type", "client_credentials")
        if grant != "client_credentials":
            return 400, {"message": "INVALID_ARGUMENT: unsupported grant_type"}
        if body.get("client_id") != CLIENT_ID or body.get("client_secret") != CLIENT_SECRET:
            return 401, {"code": 16, "message": "UNAUTHENTICATED: incorrect client secret"}
        token = self._issue(CLIENT_ID)
        return 200, {
            "client_id": CLIENT_ID,
            "access_token": token,
            "expires_in": self.token_lifetime,
        }

    def _issue(self, subject: str) -> str:
        token = _jwt(subject, self.token_lifetime)
        with self.lock:
            self.tokens[token] = time.time() + self.token_lifetime
        return token

    def _valid(self, token: str | None) -> bool:
        return token is not None and self.tokens.get(token, 0.0) > time.time()

    def _session(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("username") != USERNAME or body.get("password") != PASSWORD:
            return 401, {"code": 16, "message": "UNAUTHENTICATED: wrong username or password"}
        token = self._issue(USERNAME)
        # The session answer has no expiry field: a client reads `exp` from the JWT.
        return 200, {"access_token": token, "is_eula_accepted": True}

    # --- GraphQL ----------------------------------------------------------------

    def _graphql(self, record: Received) -> tuple[int, dict[str, Any]]:
        body = record.body
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return 400, {"code": 400, "uri": "/api/graphql", "message": "bad request body"}
        query = body["query"]
        variables = body.get("variables") or {}
        operation = body.get("operationName")
        record.query = query
        record.variables = variables if isinstance(variables, dict) else {}
        try:
            document = parse(query)
        except GraphQLError as error:
            return self._analysis_error(str(error.message))
        record.fields = [
            sel.name.value
            for definition in document.definitions
            if isinstance(definition, OperationDefinitionNode)
            for sel in definition.selection_set.selections
            if isinstance(sel, FieldNode)
        ]
        problems = validate(SCHEMA, document)
        if problems:
            return self._analysis_error("; ".join(p.message for p in problems))
        result = graphql_sync(
            SCHEMA,
            query,
            root_value=_Root(self),
            variable_values=record.variables,
            operation_name=operation,
        )
        answer: dict[str, Any] = {"data": result.data}
        if result.errors:
            # Variable coercion failures come back with no data at all: RSC's gateway
            # rejects those before execution, like other analysis errors.
            if result.data is None and all(not e.path for e in result.errors):
                return self._analysis_error("; ".join(e.message for e in result.errors))
            answer["errors"] = [self._error_entry(e) for e in result.errors]
        return 200, answer

    @staticmethod
    def _analysis_error(message: str) -> tuple[int, dict[str, Any]]:
        return 400, {
            "code": 400,
            "uri": "/api/graphql",
            "message": f"[QueryAnalysisError] {message}",
        }

    @staticmethod
    def _error_entry(error: GraphQLError) -> dict[str, Any]:
        prefix = error.message.partition(":")[0]
        return {
            "message": error.message,
            "path": error.path,
            "locations": [
                {"line": loc.line, "column": loc.column} for loc in error.locations or []
            ],
            "extensions": {
                "code": ERROR_CODES.get(prefix, 500),
                "trace": {"operation": "/api/graphql", "traceId": uuid.uuid4().hex},
            },
        }

    # --- HTTP -------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        rsc = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self._serve("POST")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

            def do_GET(self) -> None:
                self._serve("GET")

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                auth = self.headers.get("Authorization") or ""
                token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else None
                record = Received(
                    method, self.path, content_type, _decode(raw, content_type), token
                )
                with rsc.lock:
                    rsc.received.append(record)
                status, answer = rsc._route(record)
                record.status = status
                self._answer(status, answer)

            def _answer(self, status: int, answer: dict[str, Any] | None) -> None:
                data = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                if answer is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _route(self, record: Received) -> tuple[int, dict[str, Any] | None]:
        path, method = record.path, record.method
        if path == "/api/client_token" and method == "POST":
            if record.content_type not in ("application/json", "application/x-www-form-urlencoded"):
                return 415, {"message": "INVALID_ARGUMENT: unsupported content type"}
            return self._client_token(record.body if isinstance(record.body, dict) else {})
        if path == "/api/session" and method == "POST":
            if record.content_type != "application/json":
                return 415, {"message": "INVALID_ARGUMENT: unsupported content type"}
            return self._session(record.body if isinstance(record.body, dict) else {})
        if path == "/api/session" and method == "DELETE":
            if record.token is None or not self._valid(record.token):
                return 401, _JWT_FAILED
            self.tokens.pop(record.token, None)
            return 204, None
        if path == "/api/graphql" and method == "POST":
            if not self._valid(record.token):
                return 401, _JWT_FAILED
            if record.content_type != "application/json":
                return 415, {"code": 415, "uri": path, "message": "content type must be JSON"}
            return self._graphql(record)
        return 404, {"code": 404, "uri": path, "message": "NOT_FOUND"}


_JWT_FAILED = {
    "code": 16,
    "message": "JWT validation failed: Missing or invalid credentials",
    "details": [],
}


def _decode(raw: bytes, content_type: str) -> Any:
    if content_type == "application/x-www-form-urlencoded":
        return {k: v[0] for k, v in parse_qs(raw.decode(errors="replace")).items()}
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _page(items: list[Any], args: dict[str, Any]) -> tuple[list[Any], int, bool]:
    """The slice of ``items`` a connection's first/after arguments ask for."""
    first = args.get("first")
    if args.get("last") is not None or args.get("before") is not None:
        raise RscError("INVALID_ARGUMENT: backward paging is not supported here")
    if first is not None and not 0 <= first <= MAX_PAGE:
        raise RscError(f"INVALID_ARGUMENT: first must be between 0 and {MAX_PAGE}")
    size = DEFAULT_PAGE if first is None else first
    start = _index(args["after"]) + 1 if args.get("after") else 0
    chunk = items[start : start + size]
    return chunk, start, start + size < len(items)


def _connection(chunk: list[Any], start: int, more: bool, total: int) -> dict[str, Any]:
    cursors = [_cursor(start + i) for i in range(len(chunk))]
    return {
        "count": total,
        "nodes": chunk,
        "edges": [{"cursor": c, "node": n} for c, n in zip(cursors, chunk, strict=True)],
        "pageInfo": {
            "startCursor": cursors[0] if cursors else None,
            "endCursor": cursors[-1] if cursors else None,
            "hasNextPage": more,
            "hasPreviousPage": start > 0,
        },
    }


class _Root:
    """Root resolvers: graphql-core calls the attribute named after each top-level field."""

    def __init__(self, rsc: IndependentRsc) -> None:
        self.rsc = rsc

    def _log(self, name: str, args: dict[str, Any]) -> None:
        with self.rsc.lock:
            self.rsc.resolved.append((name, args))

    def _role(self, role: StoredRole) -> dict[str, Any]:
        return {
            "id": role.id,
            "name": role.name,
            "description": role.description,
            "isOrgAdmin": role.is_org_admin,
            "isReadOnly": False,
            "orgId": ORG_ID,
            "permissions": [],
            "explicitlyAssignedPermissions": [],
        }

    def _user(self, user: StoredUser) -> dict[str, Any]:
        return {
            "id": user.id,
            "email": user.email,
            "username": user.email,
            "domain": "LOCAL",
            "domainName": "",
            "status": user.status,
            "isAccountOwner": user.is_account_owner,
            "lastLogin": user.last_login,
            "lockoutState": {"isLocked": False, "lockMethod": "UNKNOWN", "lockedAt": None},
            "roles": [self._role(self.rsc.roles[r]) for r in user.role_ids],
            "groups": [],
            "isHidden": False,
            "isEmailEnabled": True,
            "eulaState": {"isAccepted": user.last_login is not None},
            "totpStatus": "NOT_ENABLED",
        }

    def deploymentVersion(self, _info: Any) -> str:
        self._log("deploymentVersion", {})
        return DEPLOYMENT_VERSION

    def accountId(self, _info: Any) -> str:
        self._log("accountId", {})
        return ACCOUNT_NAME

    def currentUser(self, _info: Any) -> dict[str, Any]:
        self._log("currentUser", {})
        return self._user(self.rsc.users[USERNAME])

    def currentUserLoginContext(self, _info: Any) -> dict[str, Any]:
        self._log("currentUserLoginContext", {})
        return {
            "accountName": ACCOUNT_NAME,
            "orgFullName": ACCOUNT_NAME,
            "orgId": ORG_ID,
            "orgName": ACCOUNT_NAME,
            "user": self._user(self.rsc.users[USERNAME]),
        }

    def usersInCurrentAndDescendantOrganization(self, _info: Any, **args: Any) -> dict[str, Any]:
        self._log("usersInCurrentAndDescendantOrganization", args)
        wanted = ((args.get("filter") or {}).get("emailFilter") or "").lower()
        with self.rsc.lock:
            users = sorted(self.rsc.users.values(), key=lambda u: u.email)
        users = [u for u in users if wanted in u.email]
        chunk, start, more = _page(users, args)
        return _connection([self._user(u) for u in chunk], start, more, len(users))

    def getAllRolesInOrgConnection(self, _info: Any, **args: Any) -> dict[str, Any]:
        self._log("getAllRolesInOrgConnection", args)
        wanted = (args.get("nameFilter") or "").lower()
        roles = [r for r in self.rsc.roles.values() if wanted in r.name.lower()]
        chunk, start, more = _page(roles, args)
        return _connection([self._role(r) for r in chunk], start, more, len(roles))

    def getRolesByIds(self, _info: Any, roleIds: list[str]) -> list[dict[str, Any]]:
        self._log("getRolesByIds", {"roleIds": roleIds})
        missing = [r for r in roleIds if r not in self.rsc.roles]
        if missing:
            raise RscError(f"NOT_FOUND: roles not found: {', '.join(missing)}")
        return [self._role(self.rsc.roles[r]) for r in roleIds]

    def userAlreadyExists(self, _info: Any, **args: Any) -> dict[str, bool]:
        self._log("userAlreadyExists", args)
        wanted = args["emailOrUsername"].lower()
        return {"doesExist": args["userDomain"] == "LOCAL" and wanted in self.rsc.users}

    def createUser(self, _info: Any, email: str, roleIds: list[str]) -> str:
        self._log("createUser", {"email": email, "roleIds": roleIds})
        if not _looks_like_email(email):
            raise RscError("INVALID_ARGUMENT: cant create user as email address is invalid")
        if not roleIds:
            raise RscError("INVALID_ARGUMENT: at least one role is required")
        unknown = [r for r in roleIds if r not in self.rsc.roles]
        if unknown:
            raise RscError(f"NOT_FOUND: role {unknown[0]} not found")
        with self.rsc.lock:
            if email.lower() in self.rsc.users:
                raise RscError("ALREADY_EXISTS: cant create user as conflicts with existing one")
            user = StoredUser(str(uuid.uuid4()), email.lower(), list(roleIds))
            self.rsc.users[user.email] = user
        return user.id

    def deleteUsersFromAccount(self, _info: Any, ids: list[str]) -> bool:
        self._log("deleteUsersFromAccount", {"ids": ids})
        with self.rsc.lock:
            for email in [e for e, u in self.rsc.users.items() if u.id in ids]:
                del self.rsc.users[email]
        return True
