"""What the plugin needs to know about an incoming chat message, whatever the backend."""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from typing import Any


def slack_event(msg: Any) -> dict[str, Any] | None:
    extras = getattr(msg, "extras", None) or {}
    event = extras.get("slack_event") if isinstance(extras, dict) else None
    return event if isinstance(event, dict) else None


def raw_text(msg: Any) -> str:
    """The text as the person sent it.

    SlackV3 rewrites ``<mailto:a|b>`` to ``b`` in ``msg.body``; the untouched text is
    in the Slack event (``message.text`` for an edit). Other backends deliver the raw
    text as the body.
    """
    event = slack_event(msg)
    if event:
        inner = event.get("message")
        text = inner.get("text") if isinstance(inner, dict) else event.get("text")
        if isinstance(text, str):
            return text
    return str(getattr(msg, "body", "") or "")


def arguments(msg: Any, args: str, subcommand: str) -> str:
    """The raw text after ``polaris <subcommand>``, falling back to Errbot's ``args``."""
    text = raw_text(msg)
    found = re.search(rf"polaris[\s_]+{re.escape(subcommand)}\b", text, re.IGNORECASE)
    if found:
        return text[found.end() :]
    return args or ""


def message_key(msg: Any) -> str | None:
    """Slack's identity of a message across redeliveries and edits: channel and ts."""
    event = slack_event(msg)
    if not event:
        return None
    inner = event.get("message") if isinstance(event.get("message"), dict) else None
    ts = (inner or {}).get("ts") or event.get("ts")
    channel = event.get("channel") or ""
    return f"{channel}/{ts}" if ts else None


def requester_email(msg: Any) -> str:
    """The email in the sender's chat profile, or "" when the backend does not give one."""
    email = getattr(msg.frm, "email", "") or ""
    return email if isinstance(email, str) else ""


def sender_id(msg: Any) -> str:
    """The id Errbot's ACLs match on (Slack member id on Slack)."""
    frm = msg.frm
    return str(getattr(frm, "aclattr", None) or getattr(frm, "userid", None) or frm)


class SeenMessages:
    """Remembers recently handled message keys so a redelivery does no new work."""

    def __init__(self, ttl: float = 3600.0, size: int = 10_000) -> None:
        self._ttl = ttl
        self._size = size
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, key: str | None) -> bool:
        """True the first time ``key`` is offered (a None key is always new)."""
        if key is None:
            return True
        now = time.monotonic()
        with self._lock:
            while self._seen and (
                len(self._seen) > self._size or next(iter(self._seen.values())) < now - self._ttl
            ):
                self._seen.popitem(last=False)
            if key in self._seen:
                return False
            self._seen[key] = now
            return True
