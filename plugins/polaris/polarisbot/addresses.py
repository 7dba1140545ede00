"""Raw chat text in, email addresses (or the reason an entry was refused) out.

Every command that takes addresses, in chat or through the slash command, hands
its argument text to ``parse_addresses``. The text may come straight from Slack
(link markup, HTML escaping, curly quotes) or be pasted from a mail client or a
spreadsheet, so the parser first undoes all of that:

- Slack links: ``<mailto:a@x.com|a@x.com>`` and ``<mailto:a@x.com>`` give their
  address; a link whose text differs from its target is refused, because the
  person saw one address and the link points to another. ``<http://x.com|x.com>``
  (Slack links anything that looks like a domain) gives its text, so
  ``bob@<http://x.com|x.com>`` reads as ``bob@x.com``. Mentions (``<@U123>``),
  channels (``<#C123|name>``) and broadcasts (``<!here>``) are refused; so is a
  broadcast typed as a plain word (``@here``, ``@channel``, ``@everyone``).
- Slack's escaping (``&amp; &lt; &gt;``) is decoded exactly once.
- Invisible characters (zero-width space, joiner and non-joiner, BOM, soft
  hyphen, other format characters) are removed; unusual spaces (NBSP, narrow
  NBSP, ideographic space, tabs) separate entries like plain spaces.
- Quotes (straight, curly, guillemets), angle brackets, parentheses and square
  brackets around an entry, and punctuation after it (``.,;:!?``), are dropped.
  ``Name <a@x.com>`` and ``"Doe, Jane" <jane@x.com>`` give the address in the
  angle brackets; the words of the name are not entries.
- Entries are separated by spaces, commas, semicolons and new lines. Every valid
  address is returned, and the first ``MAX_REFUSED`` refused entries with their
  reasons; the refused entries after those are counted in one last entry ("37 more
  entries"), so that a pasted spreadsheet cannot flood a channel yet no address is
  lost. What is returned keeps the order of first appearance; the same entry twice
  is returned once. Entries made only of punctuation (a dash, a bullet) are not
  entries. A quoted name is only recognised in front of ``<address>``; elsewhere
  its words are entries of their own (and refused as not addresses).

Validity rule: an entry is a valid address when email-validator accepts it
(``validate_email`` with ``check_deliverability=False``: syntax only, no DNS;
its length limits, strict mode, special-use domains such as ``.local`` refused)
and, on top of that:

- plus addressing (``jane+test@x.com``) is valid;
- an international domain name is accepted and converted to its ASCII
  (punycode) form: ``a@bücher.de`` becomes ``a@xn--bcher-kva.de``;
- a local part (before the @) outside ASCII is refused: Polaris does not take it;
- a domain label that mixes look-alike alphabets (a Cyrillic ``а`` among Latin
  letters) is refused, even though IDNA allows it. A label in one alphabet, or
  Latin mixed with Chinese, Japanese or Korean, is accepted;
- quoted local parts (``"j doe"@x.com``) and IP-address domains (``a@[1.2.3.4]``)
  are refused: Polaris does not support them;
- an entry written with a look-alike of @ (the full-width ``＠`` or the small ``﹫``)
  is refused, saying so, rather than read as an entry without an @.

One mailbox is one account whatever its case, so addresses are compared and
returned in lower case (the whole address).

The parser never raises, and its work grows in step with the text. It reads the first
``MAX_TEXT_CHARS`` characters (cut between entries where it can); when readable
characters come after the cut, one more entry says how many were not read. An entry
longer than ``MAX_ENTRY_CHARS`` cannot be an address and is refused as too long.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote

from email_validator import EmailNotValidError, validate_email

LOG = logging.getLogger(__name__)

# Slack truncates a message after 40,000 characters and the slash command takes bodies
# of at most 64 KiB, so every real message fits; reading this much takes about 0.3 s.
MAX_TEXT_CHARS = 100_000
MAX_REFUSED = 10
# An address has at most 254 characters; with quotes, brackets, "mailto:" and a name
# stuck to its <address>, an entry that could hold one is still far shorter than this.
MAX_ENTRY_CHARS = 1_000

# Reasons. Each reads well after "<entry>: ". Reasons for something that is not an
# address start with NOT_VALID, the project's fixed outcome phrase. Replies show
# them as they are, so they hold no Slack markup and no "@word".
NOT_VALID = "not a valid email address"
LINK_MISMATCH = "the link text differs from where it points"
NON_ASCII_LOCAL = (
    "the address uses letters outside ASCII before the @, which Polaris does not accept"
)
QUOTED_LOCAL = "the address has a quoted part before the @, which Polaris does not accept"
IP_LITERAL = "the address has an IP address after the @, which Polaris does not accept"
MIXED_SCRIPTS = "the domain mixes look-alike alphabets ({scripts}), which Polaris does not accept"
SLACK_MENTION = f"{NOT_VALID} (a Slack mention; give the person's email address)"
SLACK_CHANNEL = f"{NOT_VALID} (a Slack channel)"
SLACK_BROADCAST = f"{NOT_VALID} (a Slack notification for a whole channel)"
SLACK_GROUP = f"{NOT_VALID} (a Slack user group)"
SLACK_MARKUP = f"{NOT_VALID} (Slack markup)"
LOOKALIKE_AT = f"{NOT_VALID} (it uses a look-alike of @)"
TOO_LONG_ENTRY = f"{NOT_VALID} (too long)"
MORE_REFUSED = "not valid email addresses either"
TEXT_CUT = f"not read: the bot reads the first {MAX_TEXT_CHARS:,} characters of a message"
UNREADABLE = "not read: the bot could not read this message"

_SEPARATORS = frozenset(" \n,;")
_HARD_SEPARATORS = frozenset("\n,;")
_OPENERS = frozenset("<([{\"'“‘„‚«‹»›”’")
_CLOSERS = frozenset(".,;:!?…>)]}\"'”’“‘«‹»›")
# Slack's bold, italic, strike and code marks: only dropped in pairs, because a
# local part may begin with one of them.
_FORMAT_MARKS = frozenset("*_~`")
# Opening quote -> the quotes that may close it.
_QUOTE_PAIRS = {
    '"': '"”“',
    "“": "”“",
    "„": "“”",
    "”": "”",
    "'": "'’",
    "‘": "’‘",
    "«": "»",
    "»": "«",
    "‹": "›",
    "›": "‹",
}
_DOUBLE_QUOTES = frozenset('"“”„')
_QUOTE_SEARCH_LIMIT = 200
_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
# Anything but spaces and invisible characters: whether a cut-off rest needs reporting.
_READABLE = re.compile(r"[^\s\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_SLACK_MARKUP = re.compile(r"<([^<>]*)>")
_SLACK_ENTITY = re.compile(r"&(amp|lt|gt);")
_ENTITY_CHARS = {"amp": "&", "lt": "<", "gt": ">"}
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(//)?")
_BROADCASTS = frozenset({"here", "channel", "everyone"})
# Full-width and small commercial at: they look like @ but no mail system takes them.
_LOOKALIKE_ATS = frozenset("\uff20\ufe6b")
# Stands for a piece of Slack markup in the flat text the tokenizer searches.
_LINK_MARK = "\x00"
# Script combinations that are normal in one domain label (after Unicode TR 39's
# "highly restrictive" profile); any other mixture of alphabets is refused.
_ALLOWED_SCRIPT_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
_SCRIPT_ALIASES = {
    "CJK": "HAN",
    "IDEOGRAPHIC": "HAN",
    "KATAKANA-HIRAGANA": "KATAKANA",
    "MODIFIER": "",  # modifier letters belong to no one alphabet
}


@dataclass(frozen=True)
class Candidate:
    """One entry of the argument text: an address, or why it was refused."""

    shown: str  # what the person typed for this entry, cleaned for display
    email: str | None  # normalised lower-case ASCII address when valid
    reason: str | None  # plain sentence fragment when refused


@dataclass(frozen=True)
class _Link:
    """A piece of Slack markup, kept whole so its text never splits into entries."""

    shown: str
    addr: str
    problem: str | None = None


# A unit is one character of plain text or one whole piece of Slack markup.
_Unit = str | _Link


@dataclass
class _Token:
    units: list[_Unit]
    hard_before: bool  # a comma, semicolon or new line (or the start) comes before it
    quoted_local: bool = False
    is_name: bool = False  # words of a display name in front of <address>


def parse_addresses(text: str) -> list[Candidate]:
    """Turn the argument text of a command into candidates, in the order typed."""
    try:
        return _parse(text)
    except Exception:  # the parser must never take a command down with it
        LOG.exception("address parser failed on a %d-character text", len(text))
        return [Candidate(shown="your message", email=None, reason=UNREADABLE)]


def _parse(text: str) -> list[Candidate]:
    head, unread = _cut(str(text))
    tokens = _tokenize(_units(_clean_characters(head)))
    _mark_display_names(tokens)

    candidates: list[Candidate] = []
    seen: set[tuple[str | None, str | None]] = set()
    checked: dict[str, tuple[str | None, str | None]] = {}
    refused = more = 0
    for token in tokens:
        if token.is_name:
            continue
        candidate = _candidate(token, checked)
        if candidate is None:
            continue
        key = (candidate.email, None) if candidate.email else (candidate.shown, candidate.reason)
        if key in seen:
            continue
        seen.add(key)
        if candidate.email is None:
            # Every address is kept; refusals past the first few are only counted.
            refused += 1
            if refused > MAX_REFUSED:
                more += 1
                continue
        candidates.append(candidate)

    if more:
        shown = "1 more entry" if more == 1 else f"{more:,} more entries"
        candidates.append(Candidate(shown, None, MORE_REFUSED))
    if unread:
        shown = f"the last {unread:,} character{'s' if unread > 1 else ''} of the message"
        candidates.append(Candidate(shown, None, TEXT_CUT))
    return candidates


def _cut(text: str) -> tuple[str, int]:
    """The part of ``text`` to read, and how many characters after it are not read.

    The count is 0 when nothing is cut off, or only spaces and invisible characters are.
    """
    if len(text) <= MAX_TEXT_CHARS:
        return text, 0

    # Cut between entries where possible, so the last entry read is whole.
    window = MAX_TEXT_CHARS - MAX_ENTRY_CHARS
    gap = max(text.rfind(ch, window, MAX_TEXT_CHARS) for ch in " \n\t,;")
    cut = gap if gap > 0 else MAX_TEXT_CHARS
    if _READABLE.search(text, cut) is None:
        return text[:cut], 0
    return text[:cut], len(text) - cut


def _clean_characters(text: str) -> str:
    """Drop invisible characters; make every kind of space and line break a plain one."""
    out: list[str] = []
    for ch in text:
        if ch.isascii() and ch.isprintable():
            out.append(ch)
        elif ch in _LINE_BREAKS:
            out.append("\n")
        elif ch.isspace():
            out.append(" ")
        else:
            category = unicodedata.category(ch)
            if category == "Cf":
                continue
            if category == "Cc":
                out.append(" ")
            elif category == "Cs":
                out.append("\ufffd")
            else:
                out.append(ch)
    return "".join(out)


def _decode(text: str) -> str:
    """Undo Slack's escaping once: ``&amp;lt;`` becomes ``&lt;``, not ``<``."""
    return _SLACK_ENTITY.sub(lambda m: _ENTITY_CHARS[m.group(1)], text)


def _units(text: str) -> list[_Unit]:
    """Split text into characters, keeping each piece of Slack markup as one unit."""
    units: list[_Unit] = []
    end = 0
    for match in _SLACK_MARKUP.finditer(text):
        units.extend(_decode(text[end : match.start()]))
        link = _slack_markup(match.group(1))
        if link is None:
            units.extend(_decode(match.group(0)))  # angle brackets typed outside Slack
        else:
            units.append(link)
        end = match.end()
    units.extend(_decode(text[end:]))
    return units


def _slack_markup(inner: str) -> _Link | None:
    """The unit for ``<inner>``, or None when it is not Slack markup."""
    target, _, label = inner.partition("|")
    target, label = _decode(target).strip(), _decode(label).strip()

    if target.startswith("@"):
        shown = "@" + (label.lstrip("@") or target[1:])
        return _Link(shown, shown, SLACK_MENTION)
    if target.startswith("#"):
        shown = "#" + (label or target[1:])
        return _Link(shown, shown, SLACK_CHANNEL)
    if target.startswith("!"):
        name = target[1:].split("^")[0].lower()
        if name in _BROADCASTS:
            return _Link("@" + name, "@" + name, SLACK_BROADCAST)
        shown = label or target
        return _Link(shown, shown, SLACK_GROUP if name == "subteam" else SLACK_MARKUP)

    scheme = _URL_SCHEME.match(target)
    if scheme is None:
        return None
    if scheme.group(0).lower() == "mailto:":
        address = unquote(target[len("mailto:") :].split("?")[0])
        # Cleaned like typed text, so the address reads the same once echoed back.
        address = _address_text(_strip_wrapping(list(_clean_characters(address)), False))
        if not label:
            return _Link(address, address)
        problem = None if _same_address(label, address) else LINK_MISMATCH
        return _Link(label, address, problem)
    if not label:
        return _Link(target, target)
    pointed_at = target[scheme.end() :].rstrip("/")
    problem = None if _same_address(label, pointed_at) else LINK_MISMATCH
    return _Link(label, label, problem)


def _same_address(label: str, target: str) -> bool:
    """Whether a link's text names what it points to, after the parser's own cleaning."""
    a = _address_text(_peel(list(_clean_characters(label)))).lower()
    b = _address_text(_peel(list(_clean_characters(target)))).lower()
    if a == b:
        return True
    email_a, _ = _check(a, {})
    email_b, _ = _check(b, {})
    return email_a is not None and email_a == email_b


def _tokenize(units: list[_Unit]) -> list[_Token]:
    """Split units into entries at separators, keeping quoted parts together."""
    tokens: list[_Token] = []
    # The units as one string, so that finding a closing quote is a fast str.find.
    flat = "".join(u if isinstance(u, str) else _LINK_MARK for u in units)
    hard = True
    i, n = 0, len(units)
    while i < n:
        unit = units[i]
        if _is_separator(units, i):
            hard = hard or unit in _HARD_SEPARATORS
            i += 1
            continue

        start, quoted_local = i, False
        close = _closing_quote(flat, i)
        if close is not None:
            after = close + 1
            if after < n and units[after] == "@" and unit in _DOUBLE_QUOTES:
                quoted_local, i = True, after
            else:
                while after < n and units[after] == " ":
                    after += 1
                if after < n and units[after] == "<":
                    # "Doe, Jane" <jane@x.com>: the quoted name is not an entry.
                    i, hard = after, True
                    continue

        end = i
        while end < n and not _is_separator(units, end):
            end += 1
        tokens.append(_Token(units[start:end], hard, quoted_local))
        hard, i = False, end
    return tokens


def _is_separator(units: list[_Unit], i: int) -> bool:
    """Whether unit ``i`` separates entries (not the ``;`` of a literally typed ``&lt;``)."""
    unit = units[i]
    if not isinstance(unit, str) or unit not in _SEPARATORS:
        return False
    if unit != ";":
        return True
    before = "".join(u for u in units[max(0, i - 4) : i] if isinstance(u, str))
    return not before.endswith(("&amp", "&lt", "&gt"))


def _closing_quote(flat: str, i: int) -> int | None:
    """Where the quote opened at ``i`` closes on the same line, if ``i`` opens one.

    ``flat`` is the units as one string, one character per unit.
    """
    closers = _QUOTE_PAIRS.get(flat[i])
    if closers is None:
        return None
    limit = min(len(flat), i + 1 + _QUOTE_SEARCH_LIMIT)
    line_end = flat.find("\n", i + 1, limit)
    if line_end != -1:
        limit = line_end
    found = [j for j in (flat.find(ch, i + 1, limit) for ch in closers) if j != -1]
    return min(found) if found else None


def _mark_display_names(tokens: list[_Token]) -> None:
    """Mark the words before ``<address>`` back to the previous comma as a name."""
    for index, token in enumerate(tokens):
        if token.hard_before or not _is_angle_address(token):
            continue
        for back in range(index - 1, -1, -1):
            before = tokens[back]
            if not _is_plain_word(before) or before.is_name:
                break
            before.is_name = True
            if before.hard_before:
                break


def _is_angle_address(token: _Token) -> bool:
    return bool(token.units) and token.units[0] == "<" and "@" in _address_text(token.units)


def _is_plain_word(token: _Token) -> bool:
    return all(isinstance(u, str) and u != "@" for u in token.units)


def _peel(units: list[_Unit], keep_brackets: bool = False) -> list[_Unit]:
    """Drop quotes, brackets and punctuation around an entry."""
    closers = _CLOSERS - {"]"} if keep_brackets else _CLOSERS
    start, end = 0, len(units)
    while start < end:
        first, last = units[start], units[end - 1]
        if isinstance(first, str) and first in _OPENERS:
            start += 1
        elif isinstance(last, str) and last in closers:
            end -= 1
        elif end - start >= 2 and first == last and first in _FORMAT_MARKS:
            start, end = start + 1, end - 1
        else:
            break
    return units[start:end]


def _strip_wrapping(units: list[_Unit], ip_literal: bool) -> list[_Unit]:
    """Peel an entry down to the address: quotes, brackets, a name before <, ``mailto:``."""
    while True:
        before = len(units)
        units = _peel(units, keep_brackets=ip_literal)

        # Jane<jane@x.com> written without a space: the name is not part of the entry.
        brackets = [k for k, u in enumerate(units) if u == "<"]
        if brackets and "@" not in _address_text(units[: brackets[-1]]):
            units = units[brackets[-1] + 1 :]
        head = units[:7]
        if all(isinstance(u, str) for u in head) and _address_text(head).lower() == "mailto:":
            units = units[7:]
        if len(units) == before:
            return units


def _address_text(units: list[_Unit]) -> str:
    return "".join(u if isinstance(u, str) else u.addr for u in units)


def _shown_text(units: list[_Unit]) -> str:
    return "".join(u if isinstance(u, str) else u.shown for u in units)


def _candidate(
    token: _Token, checked: dict[str, tuple[str | None, str | None]]
) -> Candidate | None:
    """The candidate for one entry, or None when the entry is only punctuation."""
    units = token.units
    if token.quoted_local:
        return Candidate(_shown_text(units), None, QUOTED_LOCAL)
    if len(units) > MAX_ENTRY_CHARS:
        # Peeling such an entry could take long (mailto:mailto:...); it is no address.
        if not any(isinstance(u, _Link) or u.isalnum() for u in units):
            return None
        return Candidate(_shown_text(units), None, TOO_LONG_ENTRY)
    ip_literal = "@[" in _address_text(units)
    units = _strip_wrapping(units, ip_literal)
    if not units:
        return None

    shown, address = _shown_text(units), _address_text(units)
    problems = [u.problem for u in units if isinstance(u, _Link) and u.problem]
    if problems:
        return Candidate(shown, None, problems[0])
    if not _LOOKALIKE_ATS.isdisjoint(address):
        return Candidate(shown, None, LOOKALIKE_AT)
    if "@" not in address:
        if not any(ch.isalnum() for ch in address):
            return None
        return Candidate(shown, None, f"{NOT_VALID} (no @)")
    if ip_literal:
        return Candidate(shown, None, IP_LITERAL)
    if address[:1] == "@" and address[1:].lower() in _BROADCASTS:
        return Candidate(shown, None, SLACK_BROADCAST)

    email, reason = _check(address, checked)
    return Candidate(shown, email, reason)


def _check(
    address: str, checked: dict[str, tuple[str | None, str | None]]
) -> tuple[str | None, str | None]:
    """Apply the validity rule to one address: (email, None) or (None, reason)."""
    if address in checked:
        return checked[address]
    result = _validate(address)
    checked[address] = result
    return result


def _validate(address: str) -> tuple[str | None, str | None]:
    local, _, domain = address.rpartition("@")
    if "@" in local:
        return None, f"{NOT_VALID} (more than one @)"
    if not local:
        return None, f"{NOT_VALID} (nothing before the @)"
    if not domain:
        return None, f"{NOT_VALID} (nothing after the @)"

    try:
        result = validate_email(
            address,
            check_deliverability=False,
            allow_smtputf8=True,  # so that a non-ASCII local part gets its own reason
            allow_empty_local=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            strict=True,
            globally_deliverable=True,
            test_environment=False,
        )
    except EmailNotValidError as error:
        return None, _invalid_reason(str(error))
    except ValueError:  # UnicodeError and friends from odd input: still just invalid
        return None, NOT_VALID

    if not result.local_part.isascii():
        return None, NON_ASCII_LOCAL
    scripts = _mixed_scripts(result.domain)
    if scripts:
        return None, MIXED_SCRIPTS.format(scripts=" and ".join(scripts))
    email = f"{result.local_part}@{result.ascii_domain}".lower()
    if len(email) > 254:  # the ASCII form of an international domain can be longer
        return None, f"{NOT_VALID} (too long)"
    return email, None


def _invalid_reason(message: str) -> str:
    """Our words for email-validator's complaint (its sentences are not ours to show)."""
    lowered = message.lower()
    if "quoting" in lowered:
        return QUOTED_LOCAL
    if "bracketed ip" in lowered:
        return IP_LITERAL
    if "too long" in lowered or "so many characters" in lowered:
        return f"{NOT_VALID} (too long)"
    if "should have a period" in lowered:
        return f"{NOT_VALID} (no dot after the @)"
    if "special-use or reserved" in lowered:
        return f"{NOT_VALID} (a reserved domain)"
    if "characters" in lowered or "period" in lowered or "hyphen" in lowered:
        return f"{NOT_VALID} (it has characters or dots an address cannot have)"
    return NOT_VALID


def _mixed_scripts(domain: str) -> list[str]:
    """The alphabets of the first domain label that mixes look-alike ones, else []."""
    for label in domain.split("."):
        scripts = {s for s in map(_script, label) if s}
        if len(scripts) < 2 or any(scripts <= allowed for allowed in _ALLOWED_SCRIPT_MIXES):
            continue
        return sorted(s.title() for s in scripts)
    return []


def _script(ch: str) -> str | None:
    """The alphabet of a letter, from its Unicode name; None for digits, marks, hyphens."""
    if ch.isascii():
        return "LATIN" if ch.isalpha() else None
    if not unicodedata.category(ch).startswith("L"):
        return None
    word = unicodedata.name(ch, "").split(" ")[0]
    return _SCRIPT_ALIASES.get(word, word) or None
