"""A local stand-in for the Rubrik Security Cloud (RSC) GraphQL API, on loopback.

Start one with ``Sandbox().start()`` (or as a context manager) and point the bot at
``sandbox.url`` with ``CLIENT_ID``/``CLIENT_SECRET`` or ``USERNAME``/``PASSWORD``.
"""

from .server import (
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    SERVICE_ACCOUNT_NAME,
    USERNAME,
    RecordedRequest,
    Sandbox,
)
from .state import ADMIN_ROLE_ID, MAX_PAGE_SIZE, Role, User

__all__ = [
    "ADMIN_ROLE_ID",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "MAX_PAGE_SIZE",
    "PASSWORD",
    "SERVICE_ACCOUNT_NAME",
    "USERNAME",
    "RecordedRequest",
    "Role",
    "Sandbox",
    "User",
]
