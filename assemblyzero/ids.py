"""Item ids and kinds: validated before an id ever becomes part of a path."""

from __future__ import annotations

import re
from enum import StrEnum

from assemblyzero.constants import ID_PATTERN

_ID_RE = re.compile(ID_PATTERN)


class Kind(StrEnum):
    """The two workflows: a brief becomes an issue, an issue becomes an LLD."""

    ISSUE = "issue"
    LLD = "lld"


class InvalidId(ValueError):
    """An id that must not be used in a path."""


def check_id(raw: str) -> str:
    """Return `raw` if it is a safe id, else raise InvalidId saying why.

    Only ASCII letters, digits, `_` and `-`, 1 to 64 of them: no dots, no
    slashes, no spaces, no unicode look-alikes.
    """
    if _ID_RE.fullmatch(raw) is None:
        shown = raw if len(raw) <= 80 else raw[:77] + "..."
        raise InvalidId(f"invalid id {shown!r}: ids must match ^{ID_PATTERN}$")
    return raw


def is_valid_id(raw: str) -> bool:
    return _ID_RE.fullmatch(raw) is not None


def display_id(item_id: str) -> str:
    """Numeric ids are zero-padded to 3 digits: `42` -> `042`."""
    return f"{int(item_id):03d}" if _numeric(item_id) else item_id


def tag(kind: Kind, item_id: str) -> str:
    """The terminal prefix of an item: `LLD-042`, `ISSUE-receipt-photos`."""
    return f"{kind.value.upper()}-{display_id(item_id)}"


def slug(kind: Kind, item_id: str) -> str:
    """The file-name stem of an item's checkpoint, lock and log: `lld-42`."""
    return f"{kind.value}-{item_id}"


def sort_key(item_id: str) -> tuple[int, int, str]:
    """Numeric ids first, in numeric order, then the others alphabetically."""
    if _numeric(item_id):
        return (0, int(item_id), item_id)
    return (1, 0, item_id)


def _numeric(raw: str) -> bool:
    return raw.isascii() and raw.isdigit()
