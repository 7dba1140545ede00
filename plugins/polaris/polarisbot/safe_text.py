"""Make text a person typed safe to echo in a chat reply.

The bot repeats what people typed ("bob@x: not a valid email address"). Echoed
text must not become a broadcast (``<!here>``, ``@channel``), a mention
(``<@U123>``, ``@jane``) or a link whose text hides its target. Two ways out
have to be safe at once:

- Errbot replies. On Slack, Errbot converts the reply from Markdown to Slack
  text and, on the way, HTML-unescapes it once: ``&lt;!here&gt;`` written by the
  bot reaches Slack as ``<!here>``, a real broadcast. It also turns
  ``[text](url)`` into ``<url|text>``, and the bot posts with ``link_names`` on,
  so ``@here`` and ``@jane`` become notifications. The test and text backends
  unescape the same way.
- Text posted straight to Slack (the slash command's ``response_url``), where
  ``&``, ``<`` and ``>`` must be written ``&amp;``, ``&lt;`` and ``&gt;``.

So ``neutralize``:

- writes ``&`` as ``&amp;`` (both ways show ``&``; one unescape gives back
  ``&``, never ``<``, so no markup can appear), with a zero-width space after it
  when a letter or ``#`` follows, so that no entity (``&lt;``, ``&lt``, ``&#60;``)
  can form even if the text is unescaped twice somewhere;
- writes ``<`` and ``>`` as the look-alikes ``‹`` and ``›``: an entity would be
  undone by Errbot, and a double-escaped one would show as ``&lt;`` in one of
  the two ways; no address contains them, so nothing a person needs to copy
  changes;
- puts a zero-width space after an ``@`` that starts a word (``@here``,
  ``@channel``, ``@everyone``, ``@jane``): it reads the same, but Slack no longer
  sees the word after the ``@``. Backticks would also stop it, but they change how
  the reply looks and can be broken out of; an ``@`` inside an address such as
  ``bob@x.com`` follows a letter and is left alone;
- puts a zero-width space after ``]`` so ``[text](url)`` and ``[text][ref]`` are
  no longer Markdown links;
- drops control and other invisible characters (a new line in echoed text could
  fake a reply line; a right-to-left override could disguise it), and caps the
  length.
"""

from __future__ import annotations

import unicodedata

MAX_ECHO_CHARS = 200
ELLIPSIS = "…"
ZERO_WIDTH_SPACE = "\u200b"
_REPLACEMENTS = {"&": "&amp;", "<": "‹", ">": "›"}
# Backticks inside code() become a look-alike so they cannot end the code span.
_BACKTICK_LOOKALIKE = "ˋ"  # U+02CB MODIFIER LETTER GRAVE ACCENT


def neutralize(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """``text`` made safe to echo: no mentions, broadcasts or links can come from it."""
    cleaned = _visible(text)
    if len(cleaned) > limit:
        cleaned = cleaned[: max(limit - 1, 0)] + ELLIPSIS

    out: list[str] = []
    for i, ch in enumerate(cleaned):
        out.append(_REPLACEMENTS.get(ch, ch))
        if _needs_break(ch, cleaned[i - 1 : i], cleaned[i + 1 : i + 2]):
            out.append(ZERO_WIDTH_SPACE)
    # Echoed text often starts a reply line, where Markdown reads "#word" as a heading.
    if cleaned.lstrip().startswith("#"):
        out.insert(0, ZERO_WIDTH_SPACE)
    return "".join(out)


def code(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """``text`` as inline code (between backticks), neutralized, with no way out of the span."""
    body = neutralize(text.replace("`", _BACKTICK_LOOKALIKE), limit)
    # An empty or blank span is not code in Markdown; show one visible space instead.
    return f"`{body}`" if body.strip() else "` `"


def _needs_break(ch: str, previous: str, following: str) -> bool:
    """Whether a zero-width space must follow ``ch`` to stop Slack or Markdown reading it."""
    if ch == "@":
        return not (previous.isascii() and previous.isalnum())  # inside an address is fine
    if ch == "&":
        return following == "#" or (following.isascii() and following.isalpha())
    return ch == "]"


def _visible(text: str) -> str:
    """Text on one line, without control or invisible characters."""
    out: list[str] = []
    for ch in str(text):
        if ch.isascii() and ch.isprintable():
            out.append(ch)
            continue
        category = unicodedata.category(ch)
        if ch.isspace() or category in ("Zl", "Zp"):
            out.append(" ")
        elif category == "Cs":
            out.append("\ufffd")  # a lone surrogate cannot be sent to Slack at all
        elif category not in ("Cc", "Cf"):
            out.append(ch)
    return "".join(out)
