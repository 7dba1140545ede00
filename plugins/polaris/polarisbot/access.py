"""Reading Errbot's access controls: is a rule in force, and can its entries match on Slack?"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Any

# Slack member ids start with U or W; channel ids with C, G (private) or D (direct).
SLACK_MEMBER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
SLACK_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")

# The id form each ACL field needs on Slack, and how to name it in a warning.
ID_FORMS = {
    "allowusers": (SLACK_MEMBER_ID, "Slack member id (U...)"),
    "denyusers": (SLACK_MEMBER_ID, "Slack member id (U...)"),
    "allowrooms": (SLACK_CHANNEL_ID, "Slack channel id (C...)"),
    "denyrooms": (SLACK_CHANNEL_ID, "Slack channel id (C...)"),
}


def rule_for(
    command: str, controls: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """The rule Errbot's ACLs plugin applies to ``Plugin:command``: first matching key wins."""
    rule = dict(defaults)
    for pattern, entry in controls.items():
        if ":" not in pattern:
            pattern = f"*:{pattern}"
        if fnmatch.fnmatchcase(command.lower(), pattern.lower()):
            rule.update(entry)
            break
    return rule


def restricted(command: str, controls: Mapping[str, Any], defaults: Mapping[str, Any]) -> bool:
    """True when the rule for ``command`` limits it to a list of users (not everyone)."""
    allowed = rule_for(command, controls, defaults).get("allowusers")
    if allowed is None:
        return False
    if isinstance(allowed, str):
        allowed = (allowed,)
    return "*" not in allowed


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def entries_that_cannot_match_on_slack(
    controls: Mapping[str, Any], admins: Iterable[str]
) -> list[str]:
    """Sentences naming ACL and admin entries written as names rather than Slack ids.

    Slack identifies people by member id (U0123ABC) and channels by channel id
    (C0123ABC); an entry like ``@alice`` or ``#ops`` silently never matches.
    """
    warnings = []
    for admin in admins:
        if not SLACK_MEMBER_ID.match(admin):
            warnings.append(f"BOT_ADMINS entry '{admin}' is not a Slack member id (U...).")
    for key, rule in controls.items():
        for field, (form, what) in ID_FORMS.items():
            for entry in _as_tuple(rule.get(field)):
                if not any(ch in entry for ch in "*?[") and not form.match(entry):
                    warnings.append(
                        f"ACCESS_CONTROLS['{key}'] {field} entry '{entry}' is not a "
                        f"{what}, so it never matches on Slack."
                    )
    return warnings
