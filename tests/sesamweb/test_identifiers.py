"""parse_id: ASCII digits within the bigint range are ids; everything else is not."""
import pytest

from sesamweb.identifiers import MAX_DATABASE_ID, parse_id


@pytest.mark.parametrize("value, expected", [
    ("0", 0), ("42", 42), (42, 42), ("007", 7), (str(MAX_DATABASE_ID), MAX_DATABASE_ID),
])
def test_plain_ascii_digits_are_ids(value, expected):
    assert parse_id(value) == expected


@pytest.mark.parametrize("value", [
    "¹", "²³", "٣", "１", " 3", "3 ", "+3", "-1", "1.5", "1e3", "", "abc", "1_000",
    str(MAX_DATABASE_ID + 1), "9" * 30, -1, 2**64, True, None, 1.0, b"3",
])
def test_anything_else_is_not_an_id(value):
    assert parse_id(value) is None
