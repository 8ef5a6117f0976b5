"""Masking secrets: the Redactor, the tee's log copy, and the real tee process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from assemblyzero.keys.redact import Redactor
from assemblyzero.ui.prefix_tee import LogLines, format_prefix, mask

ROOT = Path(__file__).resolve().parent.parent
TEE = ROOT / "assemblyzero" / "ui" / "prefix_tee.py"
TIMEOUT = 60

SHAPES = {
    "anthropic": "sk-ant-api03-AbCdEfGh_12-xyz",
    "anthropic-shortest": "sk-ant-" + "a" * 8,
    "openai": "sk-" + "A1b2" * 4,
    "openai-proj": "sk-proj-" + "Z9_-" * 5,
    "google": "AIza" + "Sy0123456789abcdefghijklmnopqr",
    "github-pat": "ghp_" + "x" * 36,
    "github-oauth": "gho_" + "Y" * 30,
    "github-server": "ghs_" + "7" * 30,
}
NOT_SHAPES = {
    "anthropic-too-short": "sk-ant-abcdefg",
    "openai-15": "sk-" + "a" * 15,
    "google-29": "AIza" + "b" * 29,
    "github-29": "ghp_" + "c" * 29,
    "github-unknown-letter": "ghx_" + "d" * 30,
}


# --------------------------------------------------------------------------- Redactor


def test_known_secret_is_masked() -> None:
    scrub = Redactor(["hunter2-secret", "0123456789"])
    assert scrub("pw=hunter2-secret; pin 0123456789.") == "pw=***; pin ***."


def test_secret_shorter_than_six_is_not_masked() -> None:
    scrub = Redactor(["abc12", "abc123", ""])
    assert scrub("abc12 and abc123 and abc1234") == "abc12 and *** and ***4"


def test_longest_known_secret_wins() -> None:
    scrub = Redactor(["abcdef", "abcdefgh"])
    assert scrub("[abcdefgh] [abcdef]") == "[***] [***]"


def test_known_secret_is_matched_literally() -> None:
    scrub = Redactor(["a.b*c+d?"])
    assert scrub("x a.b*c+d? y aXbbbcd") == "x *** y aXbbbcd"


@pytest.mark.parametrize("key", SHAPES.values(), ids=SHAPES.keys())
def test_key_shapes_are_masked(key: str) -> None:
    scrub = Redactor()
    assert scrub(f"key={key} end") == "key=*** end"
    assert scrub(f'"{key}"\n') == '"***"\n'


@pytest.mark.parametrize("text", NOT_SHAPES.values(), ids=NOT_SHAPES.keys())
def test_near_misses_are_left_alone(text: str) -> None:
    assert Redactor()(f"x {text} y") == f"x {text} y"


def test_ordinary_text_is_left_alone() -> None:
    text = ("# Issue 41\n\nAs a house-share member I want receipts so that settling up takes "
            "minutes. Store each entry in SQLite; `GET /api/groups/<id>/entries` returns "
            "JSON. Ask the desk; sk-learn, AIza, ghp_ and sk-ant- alone are fine.\n")
    assert Redactor(["not-in-the-text"])(text) == text


@pytest.mark.parametrize("word", ["task-management-dashboard", "risk-assessment-framework",
                                  "disk-usage-monitoring"])
def test_kebab_case_words_ending_in_sk_are_left_alone(word: str) -> None:
    text = f"Build the {word} first."
    assert Redactor()(text) == text


# --------------------------------------------------------------------------- prefix_tee


def test_mask_bytes() -> None:
    assert mask(b"a sk-ant-abcdefgh1 b \xff") == b"a *** b \xff"


def test_log_lines_masks_line_by_line() -> None:
    lines = LogLines()
    assert lines.feed(b"plain one\nkey sk-ant-abcdefghij here\nrest") == (
        b"plain one\nkey *** here\n")
    assert lines.feed(b" of it " + b"ghp_" + b"e" * 30 + b"\n") == b"rest of it ***\n"
    assert lines.flush() == b""


def test_log_lines_masks_a_key_split_across_feeds() -> None:
    lines = LogLines()
    assert lines.feed(b"key: sk-ant-abc") == b""  # held back: the line is not complete
    assert lines.feed(b"defghijkl\n") == b"key: ***\n"


def test_log_lines_flush_masks_the_partial_last_line() -> None:
    lines = LogLines()
    assert lines.feed(b"done\nsk-" + b"q" * 20) == b"done\n"
    assert lines.flush() == b"***"
    assert lines.flush() == b""


def test_log_lines_keeps_other_bytes_as_they_came() -> None:
    raw = b"\xff\xfe bad utf-8\r\n\ttabs and CRLF\r\n"
    lines = LogLines()
    assert lines.feed(raw) == raw


@pytest.mark.e2e
def test_tee_process_masks_terminal_and_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "T.log"
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(TEE), "T", str(log), "--",
         sys.executable, "-c", "print('key sk-ant-REDACTME1234567890')"],
        capture_output=True, timeout=TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert b"REDACTME" not in proc.stdout
    assert b"REDACTME" not in proc.stderr
    assert proc.stdout == b"[T] key ***\n"
    assert log.read_bytes() == b"key ***\n"


@pytest.mark.e2e
def test_tee_masks_a_key_at_the_cut_of_a_long_terminal_line(tmp_path: Path) -> None:
    log = tmp_path / "T.log"
    room = 3800 - len(format_prefix("T")) - 1  # text bytes per terminal line
    line = "x" * (room - 10) + "sk-ant-REDACTME1234567890"
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(TEE), "T", str(log), "--",
         sys.executable, "-c", f"print({line!r})"],
        capture_output=True, timeout=TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert b"REDACTME" not in log.read_bytes()  # holds today
    terminal = proc.stdout.decode()
    joined = "".join(piece.removeprefix("[T] ") for piece in terminal.splitlines())
    assert "ACTME1234567890" not in joined
    assert "sk-ant-RED" not in joined


@pytest.mark.parametrize("before", ["\n", "\r", "\r\n", "\x1b[2J", "\t", "\x07"])
@pytest.mark.parametrize("key", list(SHAPES.values()))
def test_a_line_hides_a_key_whatever_control_precedes_it(before: str, key: str) -> None:
    shown = Redactor().line(f"error{before}{key} is not valid")
    assert key not in shown and "***" in shown
    assert not any(ord(c) < 0x20 for c in shown)  # and the line stays one printable line


def test_a_line_hides_a_known_secret_split_by_a_control_character() -> None:
    secret = "correct-horse-battery-staple"
    for hidden in ("correct-horse-\x07battery-staple", "correct-\x1b[31mhorse-battery-staple"):
        shown = Redactor([secret]).line(f"token {hidden} here")
        assert shown == "token *** here", shown
        assert "battery" not in shown and "horse" not in shown


def test_a_line_shows_control_characters_as_escapes_and_drops_sequences() -> None:
    shown = Redactor().line("a\nb\rc\x07d\x9be \u202eevil\u2066 \x1b]0;title\x07\x1b[2Jend")
    assert shown == "a\\nb\\rc\\x07d\\x9be \\u202eevil\\u2066 end"
