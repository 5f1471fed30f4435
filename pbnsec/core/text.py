"""Free text people type: which characters no input may hold (pure, no Flask, no database)."""
from __future__ import annotations

import unicodedata

# Control (Cc) and format (Cf) characters: NUL breaks PostgreSQL, ESC drives terminals, bidi overrides and
# zero-width characters make two different strings look alike.
_HIDDEN_CATEGORIES = ("Cc", "Cf")
# What a person types between words in a form or a shell; names and labels fold it into single spaces.
TYPED_WHITESPACE = "\t\n\r"


def is_control(char: str) -> bool:
    """True for a control or invisible formatting character (NUL, ESC, U+202E, U+200B …)."""
    return unicodedata.category(char) in _HIDDEN_CATEGORIES


def _plain(text: str) -> bool:
    """Printable ASCII (space included): no control or formatting character, checked in C (the common case)."""
    return text.isascii() and text.isprintable()


def has_control_characters(text: str, allowed: str = "") -> bool:
    """True when `text` holds a control or invisible formatting character other than those in `allowed`."""
    if not text or _plain(text):
        return False
    return any(is_control(c) and c not in allowed for c in text or "")


def without_control_characters(text: str, allowed: str = "") -> str:
    """`text` with those characters taken out, to show a refused value back without them."""
    if not text or _plain(text):
        return text or ""
    return "".join(c for c in text or "" if c in allowed or not is_control(c))


MAX_ID = 2**63 - 1  # the largest id a database integer column holds


def parse_id(text) -> int | None:
    """An id from a form field or query string, or None when it is not one."""
    text = str(text or "").strip()
    # The length check comes first: int() refuses strings of thousands of digits with an error.
    if 0 < len(text) <= 19 and text.isascii() and text.isdigit() and int(text) <= MAX_ID:
        return int(text)
    return None
