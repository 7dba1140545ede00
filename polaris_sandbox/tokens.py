"""Access tokens: HS256 JWTs signed with a per-sandbox secret, revocable."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Grant:
    """Who a live token was issued to."""

    subject: str
    expires: float


class TokenIssuer:
    """Issues tokens and tells which ones are still live; thread-safe."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._live: dict[str, Grant] = {}
        self.issued = 0

    def issue(self, subject: str) -> str:
        """Return a new signed token for the subject."""
        now = time.time()
        jti = str(uuid.uuid4())
        header = {"alg": "HS256", "typ": "JWT"}
        payload = {
            "iss": "polaris-sandbox",
            "sub": subject,
            "iat": int(now),
            "exp": int(now + self.lifetime),
            "jti": jti,
        }
        signing_input = ".".join(
            _b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, payload)
        )
        signature = hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest()
        with self._lock:
            # The precise expiry is kept here: the JWT's whole-second exp could be early.
            self._live[jti] = Grant(subject, now + self.lifetime)
            self.issued += 1
        return f"{signing_input}.{_b64(signature)}"

    def check(self, token: str) -> Grant | None:
        """Return the grant of a live, well-signed token, or None."""
        jti = self._verified_jti(token)
        if jti is None:
            return None
        with self._lock:
            grant = self._live.get(jti)
            if grant is None or grant.expires <= time.time():
                self._live.pop(jti, None)
                return None
            return grant

    def revoke(self, token: str) -> bool:
        """End one token; tell whether it was live."""
        jti = self._verified_jti(token)
        with self._lock:
            return jti is not None and self._live.pop(jti, None) is not None

    def revoke_all(self) -> None:
        """End every token issued so far."""
        with self._lock:
            self._live.clear()

    def _verified_jti(self, token: str) -> str | None:
        try:
            header, payload, signature = token.split(".")
            expected = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _unb64(signature)):
                return None
            jti = json.loads(_unb64(payload))["jti"]
        except (ValueError, KeyError, TypeError):
            return None
        return jti if isinstance(jti, str) else None
