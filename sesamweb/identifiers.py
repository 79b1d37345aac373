"""Database ids typed by users (query strings, form fields, API bodies), parsed in one place.

`str.isdigit()` is true for "¹" and "²³", which int() refuses, and int() accepts "٣" or " 3 ";
a 30-digit id overflows every database's bigint. parse_id() takes plain ASCII digits within the
bigint range and answers None for anything else, so callers treat it as "not an id"."""
import re

_ASCII_DIGITS = re.compile(r"[0-9]{1,19}")
MAX_DATABASE_ID = 2**63 - 1  # bigint, the widest primary key on SQLite and PostgreSQL


def parse_id(value) -> int | None:
    """The id `value` names (an int, or a string of ASCII digits), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _ASCII_DIGITS.fullmatch(value):
        number = int(value)
    else:
        return None
    return number if 0 <= number <= MAX_DATABASE_ID else None
