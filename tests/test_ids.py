"""Ids are checked before they become part of a path; tags and ordering of ids."""

from __future__ import annotations

import pytest

from assemblyzero.ids import InvalidId, Kind, check_id, display_id, is_valid_id, sort_key, tag

VALID = ["1", "42", "007", "receipt-photos", "weekly_digest", "A-Z_09", "x" * 64]
INVALID = [
    "..",
    "../../etc/passwd",
    "a b",
    "",
    "x" * 65,
    "café",
    "１２",  # fullwidth digits: str.isdigit() is True, but they are not ASCII
    "a.b",
    "a/b",
    "42\n",
]


@pytest.mark.parametrize("raw", VALID)
def test_valid_ids_are_returned_unchanged(raw: str):
    assert check_id(raw) == raw
    assert is_valid_id(raw)


@pytest.mark.parametrize("raw", INVALID, ids=repr)
def test_invalid_ids_raise_invalid_id_showing_the_id(raw: str):
    with pytest.raises(InvalidId) as caught:
        check_id(raw)
    assert repr(raw) in str(caught.value)
    assert not is_valid_id(raw)


def test_invalid_id_is_a_value_error():
    with pytest.raises(ValueError):
        check_id("a/b")


def test_very_long_invalid_id_is_shown_shortened():
    raw = "y" * 200
    with pytest.raises(InvalidId) as caught:
        check_id(raw)
    message = str(caught.value)
    assert "y" * 77 + "..." in message
    assert raw not in message


@pytest.mark.parametrize(
    ("raw", "shown"),
    [("1", "001"), ("42", "042"), ("999", "999"), ("1234", "1234"), ("007", "007"),
     ("auth", "auth"), ("42a", "42a")],
)
def test_display_id_zero_pads_numeric_ids_to_three(raw: str, shown: str):
    assert display_id(raw) == shown


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [(Kind.LLD, "42", "LLD-042"), (Kind.LLD, "1234", "LLD-1234"),
     (Kind.ISSUE, "receipt-photos", "ISSUE-receipt-photos"), (Kind.ISSUE, "7", "ISSUE-007")],
)
def test_tag_is_kind_in_capitals_and_display_id(kind: Kind, raw: str, expected: str):
    assert tag(kind, raw) == expected


def test_sort_key_puts_numeric_ids_first_in_numeric_order_then_others_alphabetically():
    ids = ["beta", "100", "9", "alpha", "10", "1", "Zed", "a-1"]
    assert sorted(ids, key=sort_key) == ["1", "9", "10", "100", "Zed", "a-1", "alpha", "beta"]


def test_sort_key_is_total_for_numerically_equal_ids():
    assert sorted(["07", "7", "007"], key=sort_key) == ["007", "07", "7"]
