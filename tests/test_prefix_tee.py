"""Tests for assemblyzero.ui.prefix_tee: the pure line prefixer and the real tee process."""

from __future__ import annotations

import inspect
import os
import pty
import random
import re
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assemblyzero.ui.prefix_tee import (  # noqa: E402
    PALETTE,
    LinePrefixer,
    LogLines,
    format_prefix,
    main,
)

TEE = ROOT / "assemblyzero" / "ui" / "prefix_tee.py"
WRAPPER = ROOT / "scripts" / "prefix-tee"
LAUNCHERS = ["script", "wrapper"]
TIMEOUT = 60


# --------------------------------------------------------------------------- helpers


def tee_cmd(*args: str, launcher: str = "script") -> list[str]:
    if launcher == "wrapper":
        return [str(WRAPPER), *args]
    return [sys.executable, "-I", "-S", str(TEE), *args]


def tee_env() -> dict[str, str]:
    """Environment in which the wrapper's ``/usr/bin/env python3`` finds this Python."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def py(code: str, *args: str) -> list[str]:
    return [sys.executable, "-I", "-S", "-c", code, *args]


def run_tee(
    tmp_path: Path, code: str, *, launcher: str = "script", env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[bytes], Path]:
    log = tmp_path / "logs" / "nested" / "T.log"
    cmd = tee_cmd("T", str(log), "--", *py(code), launcher=launcher)
    proc = subprocess.run(
        cmd, capture_output=True, timeout=TIMEOUT, env=env or tee_env(), check=False
    )
    return proc, log


def read_until(stream: IO[bytes], marker: bytes) -> bytes:
    seen = b""
    while marker not in seen:
        line = stream.readline()
        assert line, f"EOF before {marker!r}; got {seen!r}"
        seen += line
    return seen


def check_pieces(out: list[bytes], prefix: bytes, max_line: int) -> str:
    """Every output line is a prefixed, bounded, valid UTF-8 piece; return the joined text."""
    texts = []
    for line in out:
        assert line.startswith(prefix) and line.endswith(b"\n")
        assert len(line) <= max_line
        texts.append(line[len(prefix) : -1].decode("utf-8"))  # strict: no split characters
    return "".join(texts)


# --------------------------------------------------------------------------- format_prefix


def test_format_prefix_plain() -> None:
    assert format_prefix("LLD-042") == b"[LLD-042] "
    assert format_prefix("A", width=6) == b"[A]    "  # 3 chars + 3 pad + separator
    assert format_prefix("LONG", width=2) == b"[LONG] "
    assert b"\x1b" not in format_prefix("A", width=6)


def test_format_prefix_color() -> None:
    got = format_prefix("A", width=6, color=True)
    code = PALETTE[zlib.crc32(b"A") % len(PALETTE)]
    assert got == f"\x1b[{code}m[A]\x1b[0m    ".encode()
    assert got == format_prefix("A", width=6, color=True)  # deterministic
    codes = {format_prefix(f"LLD-{i:03d}", color=True)[2:4] for i in range(30)}
    assert len(codes) > 1 and codes <= {str(c).encode() for c in PALETTE}


def test_a_hue_picks_the_colour_and_ten_hues_are_ten_colours() -> None:
    assert format_prefix("A", color=True, hue=0) == f"\x1b[{PALETTE[0]}m[A]\x1b[0m ".encode()
    assert len({format_prefix("A", color=True, hue=h) for h in range(10)}) == 10
    assert format_prefix("A", hue=3) == b"[A] "  # no colour asked, none given
    assert b"\x1b[31m" not in b"".join(format_prefix("A", color=True, hue=h) for h in range(10))


@pytest.mark.e2e
def test_hue_on_the_command_line(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    cmd = tee_cmd("--color=always", "--hue", "2", "T", str(log), "--", *py("print('hi')"))
    proc = subprocess.run(cmd, capture_output=True, timeout=30)
    assert proc.stdout == format_prefix("T", color=True, hue=2) + b"hi\n"
    bad = subprocess.run(tee_cmd("--hue", "10", "T", str(log), "--", "true"),
                         capture_output=True, timeout=30)
    assert bad.returncode == 2 and b"--hue must be a number from 0 to 9" in bad.stderr


# --------------------------------------------------------------------------- LinePrefixer

P = b"[A] "


def test_lines_split_across_feeds() -> None:
    lp = LinePrefixer(P)
    assert lp.feed(b"") == []
    assert lp.feed(b"he") == []
    assert lp.feed(b"llo\nwor") == [b"[A] hello\n"]
    assert lp.feed(b"ld\n\nlast\n") == [b"[A] world\n", b"[A] \n", b"[A] last\n"]
    assert lp.flush() == []


def test_empty_feed_and_flush_give_nothing() -> None:
    lp = LinePrefixer(P)
    assert lp.feed(b"") == []
    assert lp.flush() == []


def test_crlf() -> None:
    lp = LinePrefixer(P)
    assert lp.feed(b"a\r\nb\r\r\nc\r") == [b"[A] a\n", b"[A] b\n"]
    assert lp.feed(b"\n") == [b"[A] c\n"]
    assert lp.feed(b"d\r") == []
    assert lp.flush() == [b"[A] d\n"]


def test_a_line_redrawn_with_cr_keeps_its_last_state_and_its_prefix() -> None:
    lp = LinePrefixer(P)
    assert lp.feed(b"get 10%\rget 55%\rget 100%\n") == [b"[A] get 100%\n"]
    assert lp.feed(b"\r\rdone\r\n") == [b"[A] done\n"]
    assert LogLines().feed(b"get 10%\rget 100%\n") == b"get 10%\rget 100%\n"  # the log keeps all


def test_invalid_utf8_replaced() -> None:
    lp = LinePrefixer(P)
    assert lp.feed(b"\xffok\xe2\x82\n") == [P + "\ufffdok\ufffd\n".encode()]
    assert lp.feed(b"\xe2\x82") == []  # a split character is completed by the next feed
    assert lp.feed(b"\xac\n") == [P + "\u20ac\n".encode()]
    assert lp.feed(b"x\xe2\x82") == []
    assert lp.flush() == [P + "x\ufffd\n".encode()]


def test_partial_last_line_flushed_once() -> None:
    lp = LinePrefixer(P)
    assert lp.feed(b"one\ntwo") == [b"[A] one\n"]
    assert lp.flush() == [b"[A] two\n"]
    assert lp.flush() == []


def test_long_line_split_on_character_boundaries() -> None:
    text = "a\u00e9\u20ac\U0001f600" * 40  # 1-, 2-, 3- and 4-byte characters
    lp = LinePrefixer(P, max_line=20)
    out = lp.feed(text.encode() + b"\n")
    assert len(out) > 10
    assert check_pieces(out, P, 20) == text
    assert any(len(line) == 20 for line in out)


def test_default_max_line() -> None:
    prefix = format_prefix("LLD-042")
    out = LinePrefixer(prefix).feed(b"x" * 10000 + b"\n")
    assert [len(line) for line in out] == [3800, 3800, 10000 - 2 * 3789 + len(prefix) + 1]
    assert check_pieces(out, prefix, 3800) == "x" * 10000


def test_a_partial_line_is_held_whole_up_to_hold_bytes() -> None:
    lp = LinePrefixer(P, max_line=20, hold=400)
    assert lp.feed(b"x" * 300) == []  # no newline yet, under `hold`: kept to be cut whole
    assert check_pieces(lp.feed(b"\n"), P, 20) == "x" * 300


def test_long_partial_line_is_not_buffered() -> None:
    lp = LinePrefixer(P, max_line=20, hold=40)
    out = lp.feed("\u20ac".encode() * 100)  # no newline yet
    assert len(out) >= 19
    rest = lp.flush()
    assert len(rest) == 1
    assert check_pieces(out + rest, P, 20) == "\u20ac" * 100


def test_chunking_does_not_change_output() -> None:
    rng = random.Random(42)
    parts = [b"short\n", b"crlf\r\n", b"\xff\xfebad\n", "\u00e9\u20ac\U0001f600".encode() * 30]
    parts += [b"x" * 137 + b"\r\n", b"\n", b"tail\r"]
    stream = b"".join(rng.choice(parts) for _ in range(300))
    whole = LinePrefixer(P, max_line=40)
    expected = whole.feed(stream) + whole.flush()
    for _ in range(5):
        lp, got, pos = LinePrefixer(P, max_line=40), [], 0
        while pos < len(stream):
            step = rng.randint(1, 50)
            got += lp.feed(stream[pos : pos + step])
            pos += step
        assert got + lp.flush() == expected
    check_pieces(expected, P, 40)


# --------------------------------------------------------------------------- CLI parsing


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "TAG LOGFILE -- COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["T", "log"],
        ["T", "log", "--"],
        ["T", "--", "true"],
        ["--color", "sometimes", "T", "log", "--", "true"],
        ["--width", "x", "T", "log", "--", "true"],
        ["--width", "T", "log", "--", "true"],
        ["--bogus", "T", "log", "--", "true"],
    ],
)
def test_usage_errors(
    argv: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "usage: prefix-tee" in captured.err
    assert list(cwd.iterdir()) == []  # no log file was created


@pytest.mark.e2e
def test_usage_error_process(tmp_path: Path) -> None:
    proc = subprocess.run(tee_cmd("T", str(tmp_path / "x.log")), capture_output=True, check=False)
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert b"usage: prefix-tee" in proc.stderr


# --------------------------------------------------------------------------- real processes

RAW_CHILD = r"""
import sys
o, e = sys.stdout.buffer, sys.stderr.buffer
for stream, data in [(o, b"out1\n"), (e, b"err1\n"), (o, b"crlf\r\n\xff\xfe\n"), (e, b"err2\n"),
                     (o, b"partial")]:
    stream.write(data)
    stream.flush()
"""
RAW_OUTPUT = b"out1\nerr1\ncrlf\r\n\xff\xfe\nerr2\npartial"


@pytest.mark.e2e
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_log_holds_raw_output(tmp_path: Path, launcher: str) -> None:
    proc, log = run_tee(tmp_path, RAW_CHILD, launcher=launcher)
    assert proc.returncode == 0
    assert proc.stderr == b""
    assert log.read_bytes() == RAW_OUTPUT
    bad = "\ufffd\ufffd".encode()
    lines = [b"out1", b"err1", b"crlf", bad, b"err2", b"partial"]
    assert proc.stdout == b"".join(b"[T] " + line + b"\n" for line in lines)
    proc, log = run_tee(tmp_path, RAW_CHILD, launcher=launcher)  # the log is appended to
    assert log.read_bytes() == RAW_OUTPUT * 2


@pytest.mark.e2e
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_exit_code_propagates(tmp_path: Path, launcher: str) -> None:
    proc, _ = run_tee(tmp_path, "print('x'); raise SystemExit(3)", launcher=launcher)
    assert (proc.returncode, proc.stdout) == (3, b"[T] x\n")


@pytest.mark.e2e
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_killed_child_gives_128_plus_signal(tmp_path: Path, launcher: str) -> None:
    code = "import os, signal; print('x', flush=True); os.kill(os.getpid(), signal.SIGKILL)"
    proc, _ = run_tee(tmp_path, code, launcher=launcher)
    assert (proc.returncode, proc.stdout) == (137, b"[T] x\n")


@pytest.mark.e2e
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_command_not_found(tmp_path: Path, launcher: str) -> None:
    log = tmp_path / "sub" / "nf.log"
    cmd = tee_cmd("NF", str(log), "--", "no-such-command-xyz", "arg", launcher=launcher)
    proc = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT, env=tee_env(), check=False)
    msg = b"prefix-tee: cannot run no-such-command-xyz: No such file or directory\n"
    assert proc.returncode == 127
    assert proc.stdout == b"[NF] " + msg
    assert log.read_bytes() == msg


@pytest.mark.e2e
def test_command_not_executable(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("echo hi\n")
    script.chmod(0o644)
    proc = subprocess.run(
        tee_cmd("T", str(tmp_path / "t.log"), "--", str(script)), capture_output=True, check=False
    )
    assert proc.returncode == 127
    assert proc.stdout.startswith(f"[T] prefix-tee: cannot run {script}: ".encode())


@pytest.mark.e2e
def test_path_lookup_and_stdin_inherited(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    cmd = tee_cmd("T", str(log), "--", "sh", "-c", "tr a-z A-Z")
    proc = subprocess.run(cmd, input=b"abc\ndef", capture_output=True, timeout=TIMEOUT, check=False)
    assert (proc.returncode, proc.stdout) == (0, b"[T] ABC\n[T] DEF\n")
    assert log.read_bytes() == b"ABC\nDEF"


@pytest.mark.e2e
def test_width_and_color_always(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    cmd = tee_cmd("--width", "8", "--color=always", "T", str(log), "--", *py("print('hi')"))
    proc = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT, check=False)
    assert proc.stdout == format_prefix("T", 8, color=True) + b"hi\n"
    assert log.read_bytes() == b"hi\n"


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("extra_env", "colored"),
    [({}, True), ({"NO_COLOR": "1"}, False), ({"NO_COLOR": ""}, True), ({"TERM": "dumb"}, False)],
)
def test_color_auto_on_a_terminal(tmp_path: Path, extra_env: dict[str, str], colored: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update({"TERM": "xterm", **extra_env})
    master, slave = pty.openpty()
    cmd = tee_cmd("T", str(tmp_path / "t.log"), "--", *py("print('hi')"))
    proc = subprocess.Popen(cmd, stdout=slave, env=env)
    os.close(slave)
    out = b""
    try:
        while chunk := os.read(master, 4096):
            out += chunk
    except OSError:  # EIO once the tee (the last holder of the slave) is gone
        pass
    finally:
        os.close(master)
    assert proc.wait(timeout=TIMEOUT) == 0
    assert out.replace(b"\r\n", b"\n") == format_prefix("T", color=colored) + b"hi\n"


@pytest.mark.e2e
def test_color_auto_off_on_a_pipe(tmp_path: Path) -> None:
    proc, _ = run_tee(tmp_path, "print('hi')", env={**tee_env(), "TERM": "xterm"})
    assert proc.stdout == b"[T] hi\n"


@pytest.mark.e2e
def test_broken_stdout_keeps_draining_into_log(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    log = tmp_path / "t.log"
    cmd = tee_cmd("T", str(log), "--", *py("for i in range(20000): print(i)"))
    try:
        proc = subprocess.run(
            cmd, stdout=write_end, stderr=subprocess.PIPE, timeout=TIMEOUT, check=False
        )
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert log.read_bytes() == b"".join(f"{i}\n".encode() for i in range(20000))


TRAP_CHILD = r"""
import os, signal, sys
def bye(signum, frame):
    os.write(1, b"bye\n")  # not print(): the signal may land inside print("ready")
    sys.exit(0)
if sys.argv[1] == "trap":
    signal.signal(signal.SIGTERM, bye)
    signal.signal(signal.SIGINT, bye)
os.write(1, b"ready\n")
while True:
    signal.pause()
"""


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("mode", "sig", "rc", "tail"),
    [
        ("trap", signal.SIGTERM, 0, b"[T] bye\n"),
        ("trap", signal.SIGINT, 0, b"[T] bye\n"),
        ("default", signal.SIGTERM, 128 + signal.SIGTERM, b""),
    ],
)
def test_signal_to_process_group(
    tmp_path: Path, mode: str, sig: signal.Signals, rc: int, tail: bytes
) -> None:
    """The tee ignores the signal and outlives its child; the child gets default dispositions."""
    log = tmp_path / "t.log"
    cmd = tee_cmd("T", str(log), "--", *py(TRAP_CHILD, mode))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    with proc:
        assert read_until(proc.stdout, b"\n") == b"[T] ready\n"
        os.killpg(proc.pid, sig)
        assert proc.stdout.read() == tail
        assert proc.wait(timeout=TIMEOUT) == rc
    assert log.read_bytes() == b"ready\n" + tail[len(b"[T] ") :]


HOLDING_CHILD = r"""
import subprocess, sys
keeper = subprocess.Popen(["sleep", "300"], start_new_session=True)  # holds the output open
print(f"keeper {keeper.pid}", flush=True)
sys.exit(3)
"""


@pytest.mark.e2e
def test_the_tee_ends_with_its_child_while_a_grandchild_holds_the_output(tmp_path: Path) -> None:
    cmd = tee_cmd("T", str(tmp_path / "t.log"), "--", *py(HOLDING_CHILD))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    keeper = 0
    with proc:
        try:
            keeper = int(read_until(proc.stdout, b"\n").split()[-1])
            assert proc.wait(timeout=TIMEOUT) == 3  # not when `sleep 300` ends
            assert Path(f"/proc/{keeper}").exists()
        finally:
            if keeper:
                os.kill(keeper, signal.SIGKILL)


STOPPING_CHILD = r"""
import os, signal
print(f"stopping {os.getpid()}", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
print("continued", flush=True)
"""


def _state(pid: int) -> bytes:
    return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]


@pytest.mark.e2e
def test_a_stopped_and_continued_child_does_not_end_the_tee(tmp_path: Path) -> None:
    cmd = tee_cmd("T", str(tmp_path / "t.log"), "--", *py(STOPPING_CHILD))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    with proc:
        child = int(read_until(proc.stdout, b"\n").split()[-1])
        while _state(child) != b"T":  # stopped: the tee got a SIGCHLD that is no exit
            time.sleep(0.005)
        os.kill(child, signal.SIGCONT)
        assert proc.stdout.read() == b"[T] continued\n"
        assert proc.wait(timeout=TIMEOUT) == 0


# --------------------------------------------------------------------------- stress


def worker_lines(n: int) -> list[str]:
    long_tail = "".join(f"{k:04d}\u20ac," for k in range(850))  # 5100 chars, 6800 bytes
    return [
        f"w{n} line {i:04d} " + (long_tail if i % 50 == 7 else "x" * (i % 40)) for i in range(2000)
    ]


WORKER = inspect.getsource(worker_lines) + (
    "import sys\n"
    "out = sys.stdout.buffer\n"
    "for line in worker_lines(int(sys.argv[1])):\n"
    "    out.write(line.encode() + b'\\n')\n"
)


@pytest.mark.e2e
def test_six_tees_share_one_pipe(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    chunks: list[bytes] = []

    def drain() -> None:
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        procs = [
            subprocess.Popen(
                tee_cmd(f"W{n}", str(tmp_path / f"w{n}.log"), "--", *py(WORKER, str(n))),
                stdout=write_end,
                stderr=subprocess.PIPE,
            )
            for n in range(6)
        ]
    finally:
        os.close(write_end)
    for proc in procs:
        _, err = proc.communicate(timeout=TIMEOUT)
        assert err == b""
        assert proc.returncode == 0
    reader.join(timeout=TIMEOUT)
    os.close(read_end)
    data = b"".join(chunks)

    pieces: dict[int, list[str]] = {n: [] for n in range(6)}
    assert data.endswith(b"\n")
    for line in data.split(b"\n")[:-1]:
        assert len(line) < 3800
        match = re.fullmatch(rb"\[W(\d)\] (.*)", line, re.DOTALL)
        assert match, line[:100]
        pieces[int(match[1])].append(match[2].decode("utf-8"))
    for n in range(6):
        expected = worker_lines(n)
        assert len(pieces[n]) >= len(expected) + 40  # long lines came out in pieces
        rebuilt: list[str] = []
        for text in pieces[n]:
            if text.startswith("w"):
                assert text.startswith(f"w{n} line ")
                rebuilt.append(text)
            else:
                rebuilt[-1] += text
        assert rebuilt == expected
        log = (tmp_path / f"w{n}.log").read_bytes()
        assert log == "".join(line + "\n" for line in expected).encode()
