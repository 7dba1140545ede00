"""Who may be invited: the domain policy, decided before anything reaches Polaris."""

from __future__ import annotations

from collections.abc import Iterable


def domain_of(email: str) -> str:
    """The part after the last @, lower-cased."""
    return email.rpartition("@")[2].lower()


def domain_allowed(email: str, allowed: Iterable[str]) -> bool:
    """True when the address's domain is exactly one of ``allowed``.

    Subdomains do not count: ``eng.example.com`` must be listed itself. An empty
    list allows nothing (fail closed).
    """
    return domain_of(email) in {d.lower() for d in allowed}


def batch_too_large(valid: int, max_batch: int) -> str | None:
    """A sentence refusing a command that carries more than ``max_batch`` addresses."""
    if valid <= max_batch:
        return None
    return (
        f"That is {valid} addresses; one command can invite at most {max_batch}. "
        "Split them over several commands."
    )
