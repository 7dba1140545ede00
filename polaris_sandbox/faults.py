"""Injected faults: what can go wrong between the bot and RSC, on demand."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

KINDS = (
    "latency",
    "hang",
    "status",
    "rate_limit",
    "reset",
    "not_json",
    "graphql_error",
    "unauthorized",
    "down",
)
TARGETS = ("client_token", "session", "graphql")

_GATEWAY_PAGE = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}
_MAINTENANCE_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Rubrik Security Cloud</title></head>\n"
    "<body><h1>We'll be right back</h1><p>Scheduled maintenance is in progress.</p>"
    "</body></html>\n"
)
UNAUTHENTICATED_BODY = {
    "code": 16,
    "message": "JWT validation failed: Missing or invalid credentials",
    "details": [],
}


@dataclass
class Fault:
    """One armed fault: where it applies, what it does and how many times."""

    target: str
    kind: str
    times: int | None = None
    apply_first: bool = False
    params: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """Return the fault as the JSON the control endpoint accepts."""
        return {
            "target": self.target,
            "kind": self.kind,
            "times": self.times,
            "apply_first": self.apply_first,
            **self.params,
        }


@dataclass
class Answer:
    """An HTTP response to send, or an instruction to drop the connection."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    drop: str | None = None  # "hang" or "reset": send nothing at all

    @classmethod
    def json(cls, status: int, payload: Any, **headers: str) -> Answer:
        """Build a JSON answer."""
        return cls(status, json.dumps(payload).encode(), "application/json", dict(headers))


class FaultBoard:
    """The armed faults, one per target; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}

    def arm(self, fault: Fault) -> None:
        """Arm a fault, replacing any fault already on the same target."""
        base, _, field_name = fault.target.partition(":")
        if base not in TARGETS or (field_name and base != "graphql"):
            raise ValueError(f"unknown fault target {fault.target!r}")
        if fault.kind not in KINDS:
            raise ValueError(f"unknown fault kind {fault.kind!r}; known: {', '.join(KINDS)}")
        if fault.times is not None and fault.times < 1:
            raise ValueError("times must be at least 1 (or None for until cleared)")
        if fault.kind == "status" and int(fault.params.get("code", 500)) < 400:
            raise ValueError("a status fault needs an error code such as 500 or 503")
        with self._lock:
            self._faults[fault.target] = fault

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._faults.clear()

    def armed(self) -> list[Fault]:
        """Return the armed faults."""
        with self._lock:
            return list(self._faults.values())

    def take(self, target: str, fields: tuple[str, ...] = ()) -> Fault | None:
        """Return the fault for a request, counting it against its `times`."""
        candidates = [f"{target}:{name}" for name in fields] + [target]
        with self._lock:
            for key in candidates:
                fault = self._faults.get(key)
                if fault is None:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        del self._faults[key]
                return fault
        return None


def answer_for(fault: Fault, aliases: tuple[str, ...], data: Any) -> Answer:
    """Build the response a fault gives; `data` is the executed result, if any."""
    params = fault.params
    kind = fault.kind
    if kind in ("hang", "reset"):
        return Answer(0, drop=kind)

    if kind == "status":
        return _status_answer(int(params.get("code", 500)))

    if kind == "down":
        if params.get("mode", "status") == "reset":
            return Answer(0, drop="reset")
        return _status_answer(503)

    if kind == "rate_limit":
        headers = {}
        retry_after = params.get("retry_after", 1)
        if params.get("http_date"):
            headers["Retry-After"] = formatdate(time.time() + (retry_after or 1), usegmt=True)
        elif retry_after is not None:
            headers["Retry-After"] = str(int(retry_after))
        return Answer(429, b"Too Many Requests\n", "text/plain; charset=utf-8", headers)

    if kind == "not_json":
        return Answer(200, _MAINTENANCE_PAGE.encode(), "text/html; charset=utf-8")

    if kind == "unauthorized":
        return Answer.json(401, UNAUTHENTICATED_BODY)

    if kind == "graphql_error":
        from .graph import format_error  # graph imports graphql-core; keep this module light

        message = params.get("message", "INTERNAL: sandbox injected fault")
        base, _, wanted = fault.target.partition(":")
        path = [wanted if wanted in aliases else (aliases[0] if aliases else base)]
        body: dict[str, Any] = {"data": None}
        if params.get("partial"):
            body["data"] = data if data else {alias: None for alias in aliases}
        body["errors"] = [format_error(message, path, code=int(params.get("code", 500)))]
        return Answer.json(200, body)

    raise ValueError(f"fault kind {kind!r} has no answer")


def _status_answer(code: int) -> Answer:
    if code in (502, 503, 504):
        page = _GATEWAY_PAGE.format(code=code, reason=_REASONS[code])
        return Answer(code, page.encode(), "text/html")
    message = _REASONS.get(code, "error").lower()
    return Answer.json(code, {"code": 13 if code >= 500 else 2, "message": f"INTERNAL: {message}"})
