"""Replies as real models write them, end to end through the CLI, in both wire formats:
every shape of tests/reply_shapes.py ends the way it must (done with a clean LLD, or the
failure or halt that names what happened). A draft shape and a review shape that must both
end done share an item (`pair=True`: fewer workers, each with its SDK to load); each shape
is judged on its own terms."""

from __future__ import annotations

from pathlib import Path

import pytest
from reply_shapes import SHAPES, WIRE_SHAPES, probe

pytestmark = pytest.mark.e2e  # the CLI and its workers are real processes


def _right(rows: list[tuple[str, str, str]]) -> None:
    wrong = [f"{name}: {outcome}" for name, _, outcome in rows if outcome != "1/1 right"]
    assert not wrong, "\n".join(wrong)


def test_every_reply_shape_ends_right_on_an_openai_compatible_server(tmp_path: Path) -> None:
    rows = probe(tmp_path, "openai", repeat=1, pair=True)
    assert [name for name, _, _ in rows] == [s.name for s in SHAPES]
    _right(rows)


def test_cut_empty_and_native_replies_end_right_on_the_anthropic_wire(tmp_path: Path) -> None:
    """The shapes whose wire format differs (python tests/reply_shapes.py runs them all)."""
    rows = probe(tmp_path, "anthropic", repeat=1, names=WIRE_SHAPES, pair=True)
    assert sorted(name for name, _, _ in rows) == sorted(WIRE_SHAPES)
    _right(rows)
