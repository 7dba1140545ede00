"""The sandbox HTTP server: RSC's login and GraphQL endpoints plus /_sandbox controls."""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import socketserver
import struct
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import graph
from .faults import UNAUTHENTICATED_BODY, Answer, Fault, FaultBoard, answer_for
from .state import Account, Role, User, iso
from .tokens import TokenIssuer

LOG = logging.getLogger("polaris_sandbox")

CLIENT_ID = "client|6f1d7c2e-3b8a-4c59-9e0f-2a7b1d4c8e93"
CLIENT_SECRET = "sandbox-secret-Vq3tK8wZr2Lm9XpB"
SERVICE_ACCOUNT_NAME = "polaris-bot-sandbox"
USERNAME = "admin@example.com"
PASSWORD = "sandbox-password"

MAX_BODY = 1 << 20
# Idle keep-alive connections are closed after this long, like a gateway would.
IDLE_TIMEOUT = 120.0


@dataclass(frozen=True)
class RecordedRequest:
    """One request that reached an /api endpoint, as the sandbox answered it.

    `status` is None when no HTTP response was sent (a hang or reset fault, or a
    request still in progress); `applied` tells whether the GraphQL operation ran
    without errors (for a mutation: whether its change was made).
    """

    method: str
    path: str
    fields: tuple[str, ...] = ()
    operation: str | None = None
    variables: dict[str, Any] | None = None
    token: str | None = None
    status: int | None = None
    started: float = 0.0
    finished: float | None = None
    applied: bool = False
    fault: str | None = None


class _Drop(Exception):
    """Raised inside a handler to end the connection without any response."""

    def __init__(self, reset: bool) -> None:
        super().__init__("reset" if reset else "close")
        self.reset = reset


class Sandbox:
    """A local stand-in for one RSC account, served over HTTP on loopback."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        users: int = 300,
        seed: int = 1,
        latency: float = 0.0,
        token_lifetime: float = 43200,
        mfa_users: Iterable[str] = (),
    ) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        self.mfa_users = {name.lower() for name in mfa_users}
        self.account = Account(users, seed, USERNAME)
        self.tokens = TokenIssuer(token_lifetime)
        self.faults = FaultBoard()
        self.service_account = User(
            id=CLIENT_ID,
            email="",
            username=SERVICE_ACCOUNT_NAME,
            domain="CLIENT",
            domainName="",
            status="ACTIVE",
            isAccountOwner=False,
            lastLogin=None,
            roles=[self.account.roles["00000000-0000-0000-0000-000000000000"]],
            isHidden=True,
            isEmailEnabled=False,
        )
        self._log_lock = threading.Lock()
        self._log: list[RecordedRequest] = []
        self._stopping = threading.Event()
        # Bumped by clear_faults(): requests hanging on a fault then end (no answer).
        self._releases = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # Life cycle ---------------------------------------------------------------

    def start(self) -> Sandbox:
        """Bind and serve in a background thread; return self."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"polaris-sandbox:{self.port}",
            daemon=True,
        )
        self._thread.start()
        LOG.info("sandbox serving at %s with %d users", self.url, len(self.users))
        return self

    def stop(self) -> None:
        """Stop serving and drop every open connection, hung ones included."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        LOG.info("sandbox at %s stopped", self.url)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The account URL, scheme and host only (no /api)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def write_service_account_file(self, path: str | Path) -> Path:
        """Write the JSON file RSC lets you download for a service account."""
        target = Path(path)
        content = {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "name": SERVICE_ACCOUNT_NAME,
            "access_token_uri": f"{self.url}/api/client_token",
        }
        target.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
        return target

    # Request log --------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Return a snapshot of the request log, oldest first."""
        with self._log_lock:
            return list(self._log)

    def calls(self, field_name: str) -> list[dict[str, Any]]:
        """Return the variables of every GraphQL request that asked for this field."""
        return [dict(r.variables or {}) for r in self.requests if field_name in r.fields]

    @property
    def logins(self) -> int:
        """Number of access tokens issued so far."""
        return self.tokens.issued

    def reset_log(self) -> None:
        """Forget the logged requests and the login count."""
        with self._log_lock:
            self._log.clear()
        self.tokens.issued = 0

    def _record(self, entry: RecordedRequest) -> int:
        with self._log_lock:
            self._log.append(entry)
            return len(self._log) - 1

    def _update(self, index: int, started: float, **changes: Any) -> None:
        with self._log_lock:
            # reset_log() may have run meanwhile; then the entry is gone on purpose.
            if index < len(self._log) and self._log[index].started == started:
                self._log[index] = replace(self._log[index], **changes)

    # State --------------------------------------------------------------------

    @property
    def users(self) -> dict[str, User]:
        """Users by lower-case email (a snapshot of the mapping; records are live)."""
        return self.account.snapshot_users()

    @property
    def roles(self) -> dict[str, Role]:
        """Roles by name."""
        return {role.name: role for role in self.account.roles.values()}

    def add_user(
        self,
        email: str,
        role_names: Iterable[str] = ("Administrator",),
        last_login: str | datetime | None = None,
        status: str = "ACTIVE",
        domain: str = "LOCAL",
    ) -> User:
        """Add (or replace) a user directly, without going through the API."""
        if isinstance(last_login, datetime):
            last_login = iso(last_login)
        return self.account.add_user(email, role_names, last_login, status, domain)

    # Faults -------------------------------------------------------------------

    def set_fault(
        self,
        target: str,
        kind: str,
        *,
        times: int | None = None,
        apply_first: bool = False,
        **params: Any,
    ) -> None:
        """Arm a fault on a target ("graphql", "graphql:<field>", "session"...)."""
        self.faults.arm(Fault(target, kind, times, apply_first, params))

    def clear_faults(self) -> None:
        """Disarm every fault; requests hanging on one are closed without an answer."""
        self.faults.clear()
        self._releases += 1

    def expire_tokens(self) -> None:
        """Make every issued token invalid, as if all had expired."""
        self.tokens.revoke_all()

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Many concurrent clients connect at once in the benchmark; the default backlog is 5.
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall on DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        LOG.debug("connection from %s failed", client_address, exc_info=True)

    def track(self, connection: socket.socket, live: bool) -> None:
        with self._connections_lock:
            if live:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "polaris-sandbox"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm
        # holds the body back until the client acknowledges the headers (~40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._drop: _Drop | None = None
        self.server.track(self.connection, True)

    def handle(self) -> None:
        try:
            super().handle()
        except _Drop as drop:
            self._drop = drop

    def finish(self) -> None:
        self.server.track(self.connection, False)
        if self._drop is None:
            super().finish()
            return
        if self._drop.reset:
            # Linger 0 makes close() send RST instead of FIN: the client sees a reset.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        for stream in (self.wfile, self.rfile):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        self.connection.close()

    def log_message(self, format: str, *args: Any) -> None:
        if LOG.isEnabledFor(logging.DEBUG):
            LOG.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    # Plumbing -----------------------------------------------------------------

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        body = self._read_body()
        if body is None:
            self._send(Answer.json(413, {"code": 413, "message": "request body too large"}))
            self.close_connection = True
            return
        if parts.path.startswith("/_sandbox/"):
            self._send(_control(self.server.sandbox, self.command, parts.path, parts.query, body))
        elif parts.path.startswith("/api/"):
            self._api(parts.path, body)
        else:
            self._send(Answer.json(404, {"code": 5, "message": "NOT_FOUND: no such page"}))

    def _read_body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("X-Request-Id", str(uuid.uuid4()))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and answer.body:
            self.wfile.write(answer.body)

    def _bearer(self) -> str | None:
        header = self.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def _hang(self, releases: int) -> None:
        """Keep the connection open without answering until the client leaves.

        Clearing the faults (or stopping the sandbox) closes it, still without an answer.
        """
        sandbox = self.server.sandbox
        stopping = sandbox._stopping
        while not stopping.is_set() and sandbox._releases == releases:
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if not readable:
                continue
            try:
                if not self.connection.recv(1, socket.MSG_PEEK):
                    return
            except OSError:
                return
            stopping.wait(0.05)

    # The API ------------------------------------------------------------------

    def _api(self, path: str, body: bytes) -> None:
        sandbox = self.server.sandbox
        started = time.time()
        token = self._bearer()
        target = {
            "/api/client_token": "client_token",
            "/api/session": "session",
            "/api/graphql": "graphql",
        }.get(path)

        request: dict[str, Any] = {}
        operation = graph.Operation()
        if target == "graphql":
            request = _json_object(body) or {}
            query = request.get("query")
            if isinstance(query, str):
                name = request.get("operationName")
                operation = graph.analyse(query, name if isinstance(name, str) else None)
        variables = request.get("variables")
        entry = RecordedRequest(
            method=self.command,
            path=path,
            fields=operation.fields,
            operation=operation.kind,
            variables=variables if isinstance(variables, dict) else None,
            token=token,
            started=started,
        )
        index = sandbox._record(entry)

        sandbox._pause(sandbox.latency)
        releases = sandbox._releases
        fault = sandbox.faults.take(target, operation.fields) if target else None
        if fault is not None and fault.kind == "latency":
            sandbox._pause(float(fault.params.get("seconds", 1.0)))
            fault = None

        outcome = graph.Outcome(0, {})
        if fault is None or fault.apply_first:
            outcome = self._safe_serve(target, body, token, operation, request)
        elif (
            fault.kind == "graphql_error"
            and fault.params.get("partial")
            and operation.kind == "query"
        ):
            # Reads change nothing, so partial data for a query can come from a real run.
            outcome = self._safe_serve(target, body, token, operation, request)
        answer = outcome.extra.get("answer") or Answer.json(outcome.status, outcome.body)
        if fault is not None:
            answer = answer_for(fault, operation.aliases, outcome.body.get("data"))

        sandbox._update(
            index,
            started,
            status=answer.status or None,
            finished=None if answer.drop else time.time(),
            applied=outcome.applied,
            fault=fault.kind if fault else None,
        )
        if answer.drop == "hang":
            self._hang(releases)
            raise _Drop(reset=False)
        if answer.drop == "reset":
            raise _Drop(reset=True)
        self._send(answer)

    def _safe_serve(self, *args: Any) -> graph.Outcome:
        try:
            return self._serve(*args)
        except Exception:
            # A sandbox bug must show as a 500 in the test, not as a dropped connection.
            LOG.exception("sandbox failed to serve %s %s", self.command, self.path)
            return _wrap(Answer.json(500, {"code": 13, "message": "INTERNAL: sandbox error"}))

    def _serve(
        self,
        target: str | None,
        body: bytes,
        token: str | None,
        operation: graph.Operation,
        request: dict[str, Any],
    ) -> graph.Outcome:
        sandbox = self.server.sandbox
        if target == "client_token" and self.command == "POST":
            return _wrap(_client_token(sandbox, body, self.headers.get("Content-Type")))
        if target == "session" and self.command == "POST":
            return _wrap(_session(sandbox, body, self.headers.get("Content-Type")))
        if target == "session" and self.command == "DELETE":
            if token is None or not sandbox.tokens.revoke(token):
                return _wrap(Answer.json(401, UNAUTHENTICATED_BODY))
            return _wrap(Answer(204, b"", "application/json"))
        if target == "graphql" and self.command == "POST":
            return _graphql(sandbox, body, token, operation, request)
        if target is None:
            return _wrap(Answer.json(404, {"code": 5, "message": "NOT_FOUND: no such endpoint"}))
        return _wrap(Answer.json(405, {"code": 12, "message": "UNIMPLEMENTED: method not allowed"}))


# Endpoint logic -------------------------------------------------------------------


def _wrap(answer: Answer) -> graph.Outcome:
    return graph.Outcome(answer.status, {}, extra={"answer": answer})


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _form_or_json(body: bytes, content_type: str | None) -> dict[str, Any] | None:
    if "json" in (content_type or "") or body.lstrip().startswith(b"{"):
        return _json_object(body)
    try:
        pairs = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (ValueError, UnicodeDecodeError):
        return None
    return {key: values[-1] for key, values in pairs.items()}


def _bad_request(message: str) -> Answer:
    return Answer.json(400, {"code": 3, "message": f"INVALID_ARGUMENT: {message}", "details": []})


def _client_token(sandbox: Sandbox, body: bytes, content_type: str | None) -> Answer:
    form = _form_or_json(body, content_type)
    if form is None:
        return _bad_request("request body is neither JSON nor form-encoded")
    grant_type = form.get("grant_type", "client_credentials")
    if grant_type != "client_credentials":
        return _bad_request(f"unsupported grant_type {grant_type!r}")
    client_id, secret = form.get("client_id"), form.get("client_secret")
    if not isinstance(client_id, str) or not isinstance(secret, str) or not client_id:
        return _bad_request("client_id and client_secret are required")
    if client_id != CLIENT_ID or secret != CLIENT_SECRET:
        body_json = {"code": 16, "message": "UNAUTHENTICATED: incorrect client secret"}
        return Answer.json(401, {**body_json, "details": []})
    token = sandbox.tokens.issue(CLIENT_ID)
    return Answer.json(
        200,
        {"client_id": CLIENT_ID, "access_token": token, "expires_in": int(sandbox.tokens.lifetime)},
    )


def _session(sandbox: Sandbox, body: bytes, content_type: str | None) -> Answer:
    form = _form_or_json(body, content_type)
    if form is None:
        return _bad_request("request body is neither JSON nor form-encoded")
    username, password = form.get("username"), form.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        return _bad_request("username and password are required")
    name = username.lower()
    if password != PASSWORD or name not in {USERNAME, *sandbox.mfa_users}:
        message = "UNAUTHENTICATED: wrong username or password"
        return Answer.json(401, {"code": 16, "message": message, "details": []})
    if name in sandbox.mfa_users:
        return Answer.json(
            200,
            {"access_token": "", "mfa_token": uuid.uuid4().hex, "userId": name, "is_eula": True},
        )
    return Answer.json(200, {"access_token": sandbox.tokens.issue(name)})


def _graphql(
    sandbox: Sandbox,
    body: bytes,
    token: str | None,
    operation: graph.Operation,
    request: dict[str, Any],
) -> graph.Outcome:
    grant = sandbox.tokens.check(token) if token else None
    if grant is None:
        return _wrap(Answer.json(401, UNAUTHENTICATED_BODY))
    if not request and _json_object(body) is None:
        return graph.Outcome(
            400, {"code": 400, "uri": "/api/graphql", "message": "request body is not valid JSON"}
        )
    query, variables = request.get("query"), request.get("variables")
    if not isinstance(query, str) or not query.strip():
        return graph.query_analysis_error("the request has no query")
    if variables is not None and not isinstance(variables, dict):
        return graph.query_analysis_error("variables must be a JSON object")
    name = request.get("operationName")
    caller = (
        sandbox.service_account
        if grant.subject == CLIENT_ID
        else sandbox.account.find_user(grant.subject) or sandbox.service_account
    )
    context = graph.Context(sandbox.account, caller)
    outcome = graph.run(operation, variables, name if isinstance(name, str) else None, context)
    if outcome.status == 200 and operation.kind == "mutation":
        LOG.debug("mutation %s applied=%s", ",".join(operation.fields), outcome.applied)
    return outcome


# Controls -------------------------------------------------------------------------


def _control(sandbox: Sandbox, method: str, path: str, query: str, body: bytes) -> Answer:
    """Serve /_sandbox/*: the demo's remote control; never recorded in the log."""
    payload = _json_object(body) if body else {}
    if payload is None:
        return Answer.json(400, {"error": "body must be a JSON object"})
    try:
        return _control_action(sandbox, method, path, query, payload)
    except (TypeError, ValueError, KeyError) as error:
        return Answer.json(400, {"error": str(error)})


def _control_action(
    sandbox: Sandbox, method: str, path: str, query: str, payload: dict[str, Any]
) -> Answer:
    ok = Answer.json(200, {"ok": True})
    if path == "/_sandbox/faults" and method == "POST":
        arguments = dict(payload)
        target, kind = arguments.pop("target"), arguments.pop("kind")
        sandbox.set_fault(target, kind, **arguments)
        return ok
    if path == "/_sandbox/faults" and method == "DELETE":
        sandbox.clear_faults()
        return ok
    if path == "/_sandbox/faults" and method == "GET":
        return Answer.json(200, {"faults": [f.as_json() for f in sandbox.faults.armed()]})
    if path == "/_sandbox/latency" and method == "POST":
        sandbox.latency = max(0.0, float(payload["seconds"]))
        return ok
    if path == "/_sandbox/expire_tokens" and method == "POST":
        sandbox.expire_tokens()
        return ok
    if path == "/_sandbox/requests" and method == "GET":
        return Answer.json(200, {"requests": [asdict(r) for r in sandbox.requests]})
    if path == "/_sandbox/requests" and method == "DELETE":
        sandbox.reset_log()
        return ok
    if path == "/_sandbox/users" and method == "GET":
        email = (parse_qs(query).get("email") or [""])[-1]
        if not email:
            return Answer.json(200, {"count": len(sandbox.users)})
        user = sandbox.account.find_user(email)
        if user is None:
            return Answer.json(404, {"user": None})
        return Answer.json(200, {"user": user.as_json()})
    return Answer.json(404, {"error": f"no control {method} {path}"})


__all__ = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "PASSWORD",
    "SERVICE_ACCOUNT_NAME",
    "USERNAME",
    "RecordedRequest",
    "Sandbox",
]
