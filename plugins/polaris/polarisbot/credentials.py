"""How the bot logs in to RSC: a service account file, a client id and secret, or a password.

`Credentials` only holds and checks what the settings give; logging in is the job of
`polarisbot.rsc.RscClient`. Secrets never appear in ``repr()`` or in error messages.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from polarisbot.errors import ConfigurationError

log = logging.getLogger("polarisbot.rsc")

Kind = Literal["service_account", "client", "password"]

# A service account file is a few hundred bytes; anything much bigger is the wrong file.
_MAX_FILE_BYTES = 64 * 1024
_FILE_KEYS = ("client_id", "client_secret", "access_token_uri")
_LOOPBACK_NAMES = {"localhost"}


@dataclass(frozen=True)
class Credentials:
    """What the bot needs to log in to one RSC account; ``repr()`` hides the secret."""

    kind: Kind
    # Base of the API, without a trailing slash: "https://acme.my.rubrik.com/api".
    api_base: str
    # Where to log in: ".../api/client_token" or ".../api/session".
    login_url: str
    # Client id ("client|...") or username: not secret, useful in logs.
    principal: str
    secret: str = field(repr=False)
    # Service account name, or the file it came from, for messages and logs.
    label: str = ""

    @property
    def graphql_url(self) -> str:
        return f"{self.api_base}/graphql"

    @property
    def host(self) -> str:
        return urlsplit(self.api_base).hostname or ""

    @property
    def account_label(self) -> str:
        """The account name as the URL shows it: the first DNS label of the host."""
        host = self.host
        if _is_ip_address(host):
            return host
        return host.split(".", 1)[0]

    @classmethod
    def from_service_account_file(cls, path: str | Path) -> Credentials:
        """Read the JSON file RSC lets you download for a service account."""
        path = Path(path).expanduser()
        content = _read_service_account_file(path)

        missing = [key for key in _FILE_KEYS if not content.get(key)]
        if missing:
            raise ConfigurationError(
                f"The service account file {path} lacks {', '.join(missing)}; "
                "download it again from Polaris."
            )
        for key in (*_FILE_KEYS, "name"):
            if key in content and not isinstance(content[key], str):
                raise ConfigurationError(
                    f"The service account file {path} has a {key} that is not text; "
                    "download it again from Polaris."
                )

        token_uri = content["access_token_uri"].strip()
        base = _base_from_token_uri(token_uri, path)
        name = str(content.get("name") or path.name)
        return cls(
            kind="service_account",
            api_base=base,
            login_url=token_uri.rstrip("/"),
            principal=content["client_id"].strip(),
            secret=content["client_secret"],
            label=name,
        )

    @classmethod
    def client(cls, url: str, client_id: str, secret: str) -> Credentials:
        """Log in with a service account's client id and secret at an account URL."""
        account_url = normalise_account_url(url)
        if not client_id or not secret:
            raise ConfigurationError(
                "Logging in with a client id needs both the client id and its secret."
            )
        return cls(
            kind="client",
            api_base=f"{account_url}/api",
            login_url=f"{account_url}/api/client_token",
            principal=client_id.strip(),
            secret=secret,
            label=client_id.strip(),
        )

    @classmethod
    def password(cls, url: str, username: str, password: str) -> Credentials:
        """Log in as a local RSC user with a username and password (no MFA)."""
        account_url = normalise_account_url(url)
        if not username or not password:
            raise ConfigurationError(
                "Logging in with a username needs both the username and its password."
            )
        return cls(
            kind="password",
            api_base=f"{account_url}/api",
            login_url=f"{account_url}/api/session",
            principal=username.strip(),
            secret=password,
            label=username.strip(),
        )


def normalise_account_url(url: str) -> str:
    """Turn what an operator typed into ``scheme://host[:port]``, or raise ConfigurationError."""
    text = (url or "").strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"The Polaris URL '{text}' is not an account URL like https://acme.my.rubrik.com."
        )
    path = parts.path.rstrip("/")
    if path.endswith("/api"):
        path = path[: -len("/api")]
    if path:
        raise ConfigurationError(
            f"The Polaris URL '{text}' has a path; give only the account URL, "
            "like https://acme.my.rubrik.com."
        )
    _warn_if_plain_http(parts.scheme, parts.hostname)
    return f"{parts.scheme}://{parts.netloc}"


def _read_service_account_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigurationError(f"The service account file {path} does not exist.") from None
    except IsADirectoryError:
        raise ConfigurationError(
            f"The service account file {path} is a directory, not a file."
        ) from None
    except PermissionError:
        raise ConfigurationError(
            f"The service account file {path} cannot be read: the bot lacks permission."
        ) from None
    except OSError as error:
        log.debug("reading %s failed: %r", path, error)
        raise ConfigurationError(f"The service account file {path} cannot be read.") from None

    if len(raw) > _MAX_FILE_BYTES:
        raise ConfigurationError(
            f"The service account file {path} is too large to be a service account file."
        )
    try:
        content = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        # The parser's message could quote the secret: keep it out of the log too.
        raise ConfigurationError(
            f"The service account file {path} is not valid JSON; download it again from Polaris."
        ) from None
    if not isinstance(content, dict):
        raise ConfigurationError(
            f"The service account file {path} does not hold a JSON object; "
            "download it again from Polaris."
        )
    return content


def _base_from_token_uri(token_uri: str, path: Path) -> str:
    parts = urlsplit(token_uri)
    segments = parts.path.rstrip("/").rsplit("/", 1)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(segments) != 2:
        raise ConfigurationError(
            f"The service account file {path} has an access_token_uri that is not a URL like "
            "https://acme.my.rubrik.com/api/client_token."
        )
    _warn_if_plain_http(parts.scheme, parts.hostname)
    return f"{parts.scheme}://{parts.netloc}{segments[0]}"


def _warn_if_plain_http(scheme: str, host: str) -> None:
    if scheme == "http" and not _is_loopback(host):
        log.warning("The Polaris URL uses plain http to %s: credentials travel unencrypted.", host)


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
