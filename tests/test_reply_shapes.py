"""Replies as real models write them, end to end through the CLI, in both wire formats:
every shape of tests/reply_shapes.py ends the way it must (done with a clean LLD, or the
failure or halt that names what happened)."""

from __future__ import annotations

from pathlib import Path

import pytest
from reply_shapes import SHAPES, probe

pytestmark = pytest.mark.e2e  # the CLI and its workers are real processes


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_every_reply_shape_ends_right(tmp_path: Path, wire: str) -> None:
    rows = probe(tmp_path, wire, repeat=1)
    assert [name for name, _, _ in rows] == [s.name for s in SHAPES]
    wrong = [f"{name}: {outcome}" for name, _, outcome in rows if outcome != "1/1 right"]
    assert not wrong, "\n".join(wrong)
