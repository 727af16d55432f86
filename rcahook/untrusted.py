"""Text from the repository or a model server, made safe for where it is shown.

Commit messages, author names, paths, identifiers, incident text and server answers are
written by other people. Pasted into a ticket as Markdown they must not become HTML, links
or images (`<img src=x onerror=...>`, `[click](https://evil.example)`); printed on a
terminal they must not move the cursor, recolour it or rewrite the line (ANSI escapes,
carriage returns, bidirectional overrides). Every renderer passes such text through one of
these functions; text rcahook writes itself (labels, numbers, shas) does not need it.
"""
from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the bidirectional embeddings/overrides/isolates that can make
# a line read differently from what it contains (CVE-2021-42574). Tab and newline are the
# callers' to keep or fold.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# The punctuation that makes inline Markdown (links, images, code, emphasis, strikethrough,
# table cells); what only matters at the start of a line (#, >, -, 1.) is left alone, as
# callers never put untrusted text there. The HTML characters become entities instead.
_MD_PUNCT = re.compile(r"([\\`*_\[\]()!|~])")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def _visible(match: re.Match[str]) -> str:
    ch = match.group()
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def term_text(text: str, *, newlines: bool = False) -> str:
    """For a terminal: control characters and ANSI escapes shown as `\\x1b`, not obeyed.

    Rich markup is not this function's business: print the result as `rich.text.Text` (or
    through `rich.markup.escape`), never as a markup string.
    """
    text = _CONTROL.sub(_visible, text.replace("\r\n", "\n").replace("\t", " "))
    return text if newlines else text.replace("\n", " ")


def md_text(text: str) -> str:
    """Inline Markdown (a paragraph, a heading, a list item, a table cell): the text as
    written, never HTML, a link, an image, emphasis or a cell boundary."""
    text = " ".join(term_text(text, newlines=True).split())  # newlines would end a cell or a list item
    text = _MD_PUNCT.sub(r"\\\1", text)
    return re.sub(r"[&<>]", lambda m: _HTML[m.group()], text)


def md_code(text: str, *, in_table: bool = False) -> str:
    """An inline code span holding `text` literally, whatever backticks it contains.

    Inside a GFM table a `|` still ends the cell, even in a code span, unless escaped.
    """
    text = " ".join(term_text(text, newlines=True).split())
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    span = f"{fence}{pad}{text}{pad}{fence}"
    return span.replace("|", "\\|") if in_table else span


def sarif_text(text: str) -> str:
    """A SARIF plain-text message: `[text](target)` there is an embedded link (SARIF 2.1.0
    §3.11.6), so literal brackets are backslash-escaped, as the standard asks."""
    text = term_text(text, newlines=True)
    return re.sub(r"([\\\[\]])", r"\\\1", text)
