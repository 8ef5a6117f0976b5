"""prefix-tee: run one command, show its output as ``[TAG] line``, keep a raw log.

Stdlib only and free of ``assemblyzero`` imports: it is run as a plain script
(``python -I -S .../prefix_tee.py``) so that it starts fast.
"""

from __future__ import annotations

import codecs
import os
import re
import select
import signal
import sys
import zlib
from collections.abc import Callable

USAGE = ("usage: prefix-tee [--width N] [--color auto|always|never] [--hue N] "
         "TAG LOGFILE -- COMMAND [ARGS...]")
HELP = f"""{USAGE}

Run COMMAND (stdout and stderr joined), append its output to LOGFILE and
write each line to stdout as "[TAG] line", in writes of whole lines of at most
PIPE_BUF bytes, so parallel prefix-tees can share one terminal. Common API key
shapes (sk-..., sk-ant-..., AIza..., ghp_...) become *** in both. prefix-tee
ignores SIGINT/SIGTERM (COMMAND does not) and exits when COMMAND does (even if
something COMMAND started still holds its output open), with its status:
128+N if it was killed by signal N, 127 if it could not be started, 2 on
usage errors or if LOGFILE cannot be opened.

  --width N     pad "[TAG]" with spaces to at least N characters (default 0)
  --color WHEN  auto (default: if stdout is a tty, NO_COLOR is empty and TERM is
                not "dumb"), always or never
  --hue N       the colour to use, 0-9 (default: one picked from TAG); parallel
                tees given different hues never look alike
  -h, --help    show this help
"""
# Common API key shapes, masked as *** on the terminal and in the log.
# The package's redact module uses the same pattern, plus the known secrets.
KEY_SHAPES = re.compile(  # a bare `sk-` must start a word: "task-management-..." is no key
    rb"sk-ant-[A-Za-z0-9_-]{8,}|(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{16,}"
    rb"|AIza[0-9A-Za-z_-]{30,}|gh[pousr]_[A-Za-z0-9]{30,}"
)
MASK = b"***"
LOG_LINE_LIMIT = 1 << 20  # a log line without newline is written once it gets this long
# SGR foregrounds in hue order (no red: it reads as an error). As many as the
# most workers at once, so that running workers never need to share a colour.
PALETTE = (36, 33, 35, 32, 94, 93, 96, 95, 92, 34)
READ_SIZE = 65536
# After the child's exit, at most this much more is read from a pipe that others still hold
# (a pipe holds at most 1 MiB, see /proc/sys/fs/pipe-max-size).
DRAIN_LIMIT = 1 << 20
EXIT_USAGE = 2
EXIT_NOT_RUN = 127
TEE_IGNORES = (signal.SIGINT, signal.SIGTERM)
CHILD_DEFAULTS = (*TEE_IGNORES, signal.SIGPIPE, signal.SIGXFSZ)


def format_prefix(tag: str, width: int = 0, color: bool = False, hue: int | None = None) -> bytes:
    """``[TAG]`` padded to ``width`` characters plus one space, optionally coloured.

    The colour is ``PALETTE[hue]``, or without a hue one derived from the tag.
    """
    label = f"[{tag}]"
    pad = " " * max(0, width - len(label))
    if color:
        if hue is None:
            hue = zlib.crc32(tag.encode("utf-8", "surrogateescape"))
        code = PALETTE[hue % len(PALETTE)]
        label = f"\x1b[{code}m{label}\x1b[0m"
    return f"{label}{pad} ".encode("utf-8", "surrogateescape")


def mask(data: bytes) -> bytes:
    return KEY_SHAPES.sub(MASK, data)


class LogLines:
    """The log copy: the child's bytes as they came, key shapes masked line by line."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        cut = self._buf.rfind(b"\n") + 1
        if not cut and len(self._buf) > LOG_LINE_LIMIT:
            cut = len(self._buf)
        done, self._buf = self._buf[:cut], self._buf[cut:]
        return mask(done)

    def flush(self) -> bytes:
        done, self._buf = self._buf, b""
        return mask(done)


class LinePrefixer:
    """Bytes in, prefixed lines out: each line is ``prefix + text + b"\\n"``.

    Text is re-encoded UTF-8 (invalid bytes become U+FFFD); trailing CRs are
    dropped and of a line that holds CRs (a progress meter redrawing itself)
    only what follows the last one is kept, which is what a terminal would
    show, so the prefix is never overwritten. No output line is longer than
    ``max_line`` bytes: longer lines are cut, on character boundaries, into
    several prefixed pieces.
    """

    def __init__(self, prefix: bytes, max_line: int = 3800,
                 transform: Callable[[bytes], bytes] = bytes, hold: int = 1 << 16) -> None:
        self.prefix = prefix
        self.transform = transform  # applied to each whole line before it is cut
        self.hold = hold  # a line without newline is kept back up to this many bytes
        self.max_line = max_line
        # Text bytes per output line; at least 4 so that any character fits.
        self._room = max(4, max_line - len(prefix) - 1)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = b""  # partial last line, always valid UTF-8

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the output lines completed by it."""
        text = self._buf + self._decoder.decode(data).encode()
        *lines, partial = text.split(b"\n")
        out: list[bytes] = []
        for line in lines:
            out += self._pieces(line)
        # A line is cut (and transformed) whole, so keep a partial one back; only
        # past `hold` bytes emit its full pieces now (a trailing CR may be half a CRLF).
        if len(partial) <= self.hold:
            self._buf = partial
            return out
        cr = partial.endswith(b"\r")
        full, rest = self._cut(self.transform(_after_cr(partial)))
        self._buf = rest + b"\r" if cr else rest
        return out + full

    def flush(self) -> list[bytes]:
        """Return the partial last line (if any) as output lines; empty the buffer."""
        text = self._buf + self._decoder.decode(b"", final=True).encode()
        self._buf = b""
        return self._pieces(text) if text else []

    def _pieces(self, line: bytes) -> list[bytes]:
        full, rest = self._cut(self.transform(_after_cr(line)))
        return [*full, self.prefix + rest + b"\n"]

    def _cut(self, text: bytes) -> tuple[list[bytes], bytes]:
        """Split off full-size pieces while more than one piece's worth remains."""
        out: list[bytes] = []
        start = 0
        while len(text) - start > self._room:
            end = start + self._room
            while text[end] & 0xC0 == 0x80:  # never cut inside a UTF-8 sequence
                end -= 1
            out.append(self.prefix + text[start:end] + b"\n")
            start = end
        return out, text[start:]


def _after_cr(line: bytes) -> bytes:
    """What a terminal shows of `line`: trailing CRs dropped, then the text after the last CR."""
    line = line.rstrip(b"\r")
    return line[line.rfind(b"\r") + 1 :]


def _batches(lines: list[bytes], limit: int) -> list[bytes]:
    """Join whole lines into blocks of at most ``limit`` bytes (a longer line stands alone)."""
    blocks: list[bytes] = []
    block: list[bytes] = []
    size = 0
    for line in lines:
        if block and size + len(line) > limit:
            blocks.append(b"".join(block))
            block, size = [], 0
        block.append(line)
        size += len(line)
    if block:
        blocks.append(b"".join(block))
    return blocks


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:  # someone made the shared file non-blocking
            select.select([], [fd], [])


class _Sink:
    """A file descriptor that stops being written (quietly unless named) after an error."""

    def __init__(self, fd: int, name: str = "") -> None:
        self.fd, self.name, self.alive = fd, name, True

    def write(self, data: bytes) -> None:
        if not self.alive:
            return
        try:
            _write_all(self.fd, data)
        except OSError as exc:
            self.alive = False
            if self.name:
                print(f"prefix-tee: cannot write {self.name}: {exc}", file=sys.stderr)

    def write_lines(self, lines: list[bytes]) -> None:
        for block in _batches(lines, select.PIPE_BUF):
            self.write(block)


def _parse_args(argv: list[str]) -> tuple[str, str, int, str, int | None, list[str]] | None:
    """Return (tag, logfile, width, color, hue, command), or None for --help."""
    cut = argv.index("--") if "--" in argv else len(argv)
    head, command = argv[:cut], argv[cut + 1 :]
    if "-h" in head or "--help" in head:
        return None
    values = {"--width": "0", "--color": "auto", "--hue": ""}
    rest: list[str] = []
    args = iter(head)
    for arg in args:
        name, eq, value = arg.partition("=")
        if name in values:
            values[name] = value if eq else next(args, "")
        elif arg.startswith("-") and arg != "-":
            raise ValueError(f"unknown option {arg!r}")
        else:
            rest.append(arg)
    if len(rest) != 2 or not command:
        raise ValueError("expected TAG LOGFILE -- COMMAND")
    if values["--color"] not in ("auto", "always", "never"):
        raise ValueError("--color must be auto, always or never")
    if not values["--width"].isdecimal():
        raise ValueError("--width must be a non-negative integer")
    hue = values["--hue"]
    if hue and not (hue.isdecimal() and int(hue) < len(PALETTE)):
        raise ValueError(f"--hue must be a number from 0 to {len(PALETTE) - 1}")
    return (rest[0], rest[1], int(values["--width"]), values["--color"],
            int(hue) if hue else None, command)


def color_ok(fd: int = 1) -> bool:
    """`fd` is a terminal that takes colour: NO_COLOR is empty and TERM is not "dumb"."""
    env = os.environ
    return os.isatty(fd) and not env.get("NO_COLOR") and env.get("TERM") != "dumb"


def _want_color(mode: str) -> bool:
    return color_ok() if mode == "auto" else mode == "always"


def _spawn(command: list[str]) -> tuple[int, int]:
    """Start ``command`` with stdout+stderr on a new pipe; return (pid, read end)."""
    rfd, wfd = os.pipe()  # both close-on-exec; dup2 gives the child inheritable copies
    actions = [(os.POSIX_SPAWN_DUP2, wfd, 1), (os.POSIX_SPAWN_DUP2, wfd, 2)]
    spawn = os.posix_spawn if "/" in command[0] else os.posix_spawnp
    try:
        pid = spawn(command[0], command, os.environ, file_actions=actions, setsigdef=CHILD_DEFAULTS)
    except BaseException:
        os.close(rfd)
        raise
    finally:
        os.close(wfd)
    return pid, rfd


def _run(command: list[str], prefix: bytes, log: _Sink) -> int:
    """Run `command`; its lines to the terminal (prefixed) and the log, key shapes masked."""
    out, prefixer = _Sink(1), LinePrefixer(prefix, transform=mask)
    try:
        pid, rfd = _spawn(command)
    except OSError as exc:
        msg = f"prefix-tee: cannot run {command[0]}: {exc.strerror or exc}\n"
        raw = msg.encode("utf-8", "surrogateescape")
        log.write(raw)
        out.write_lines(prefixer.feed(raw))
        return EXIT_NOT_RUN
    log_lines = LogLines()

    def show(chunk: bytes) -> None:
        log.write(log_lines.feed(chunk))
        out.write_lines(prefixer.feed(chunk))

    try:
        status = _copy(pid, rfd, show)
        log.write(log_lines.flush())
        out.write_lines(prefixer.flush())
    finally:
        os.close(rfd)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _copy(pid: int, rfd: int, show: Callable[[bytes], None]) -> int:
    """Hand `rfd`'s bytes to `show` until end-of-file or the child's exit; its wait status.

    The reads block while the child lives. Whatever the child started may keep
    the pipe open after it died (even killed by SIGKILL), so end-of-file alone
    cannot say it ended: SIGCHLD makes the pipe non-blocking, a read that finds
    it empty asks waitpid, and once the child is gone what it wrote is drained
    without waiting. Non-blocking from the start too: the child may end before
    the handler is there.
    """
    saved = signal.signal(signal.SIGCHLD, lambda signum, frame: os.set_blocking(rfd, False))
    os.set_blocking(rfd, False)
    try:
        while True:
            try:
                chunk = os.read(rfd, READ_SIZE)
            except BlockingIOError:  # empty and a SIGCHLD came (or the start): did it end?
                os.set_blocking(rfd, True)  # first: a SIGCHLD from now on undoes it
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    _drain(rfd, show)
                    return status
                continue
            if not chunk:
                return os.waitpid(pid, 0)[1]
            show(chunk)
    finally:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL if saved is None else saved)


def _drain(rfd: int, show: Callable[[bytes], None]) -> None:
    """What is already in the pipe, without waiting (whoever else holds it may write on)."""
    os.set_blocking(rfd, False)
    left = DRAIN_LIMIT
    while left > 0:
        try:
            chunk = os.read(rfd, READ_SIZE)
        except BlockingIOError:
            return
        if not chunk:
            return
        show(chunk)
        left -= len(chunk)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    try:
        parsed = _parse_args(sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        print(f"prefix-tee: {exc}\n{USAGE}", file=sys.stderr)
        return EXIT_USAGE
    if parsed is None:
        print(HELP, end="")
        return 0
    tag, logfile, width, color, hue, command = parsed
    try:
        os.makedirs(os.path.dirname(logfile) or ".", exist_ok=True)
        log_fd = os.open(logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        print(f"prefix-tee: cannot open log {logfile}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in TEE_IGNORES}
    try:
        prefix = format_prefix(tag, width, _want_color(color), hue)
        return _run(command, prefix, _Sink(log_fd, logfile))
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)
        os.close(log_fd)


if __name__ == "__main__":
    sys.exit(main())
