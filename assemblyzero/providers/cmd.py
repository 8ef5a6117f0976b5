"""`cmd:<command>`: any command line that reads a prompt on stdin and answers on stdout.

`cmd:claude -p`, `cmd:llm -m gpt-4o`, `cmd:ollama run llama3`: the model part
is split like a shell would (shlex, no shell runs). The child inherits the
worker's environment and stays in the worker's process group, so whatever
ends the worker's group (Ctrl+C, a timeout, the coordinator making sure no
process of an item outlives it) ends the command too; a call that times out
or is abandoned kills the command and every process it started. It is never
retried: a failing command fails the call with its exit code and the tail of
its stderr. A command has no structured mode: a schema changes nothing (the
prompt asks for the verdict in text), and a system message goes first on
stdin, a blank line before the prompt.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shlex
import signal
import subprocess
import threading

from assemblyzero.providers import ModelReply, ModelRequest, ProviderError, ProviderKey
from assemblyzero.providers._common import call_timeout

STDERR_LINES = 10  # how much of a failing command's stderr the error quotes
STDERR_CHARS = 1000

_running: set[int] = set()  # pids of commands still running, killed (with their tree) at exit
_lock = threading.Lock()


class CmdProvider:
    name = "cmd"

    def __init__(self, command: str, key: ProviderKey | None = None) -> None:
        try:
            self.argv = shlex.split(command)
        except ValueError as exc:
            raise ProviderError(f"cmd:{command}: cannot parse the command line ({exc})") from None
        if not self.argv:
            raise ProviderError("cmd: needs a command, e.g. cmd:claude -p")
        self.command, self.key = command, key  # the key is accepted and not used

    def complete(self, request: ModelRequest) -> ModelReply:
        timeout = call_timeout()
        try:
            child = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
            )
        except FileNotFoundError:
            raise ProviderError(f"cmd: command not found: {self.argv[0]}") from None
        except OSError as exc:
            raise ProviderError(f"cmd: cannot run {self.argv[0]}: {exc.strerror}") from None
        with _lock:
            _running.add(child.pid)
        try:
            out, err = child.communicate(_stdin(request), timeout=timeout)
        except BaseException as exc:  # a timeout, or the worker stopping mid-call
            _kill_tree(child.pid)  # the command and whatever it started
            child.wait()
            for pipe in (child.stdin, child.stdout, child.stderr):
                if pipe:
                    with contextlib.suppress(OSError):
                        pipe.close()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise ProviderError(f"cmd:{self.command} timed out after {timeout:g}s "
                                    "(ASSEMBLYZERO_CALL_TIMEOUT)") from None
            raise
        finally:
            with _lock:
                _running.discard(child.pid)
        code = child.returncode
        if code < 0:
            raise ProviderError(f"cmd:{self.command} was killed by signal {-code}{_tail(err)}")
        if code != 0:
            raise ProviderError(f"cmd:{self.command} exited with code {code}{_tail(err)}")
        return ModelReply(out)


def create(model: str, key: ProviderKey | None = None) -> CmdProvider:
    return CmdProvider(model, key)


def _stdin(request: ModelRequest) -> str:
    """What the command reads: the system message, a blank line, the prompt."""
    return f"{request.system}\n\n{request.prompt}" if request.system else request.prompt


def _tail(stderr: str) -> str:
    lines = stderr.rstrip().splitlines()[-STDERR_LINES:]
    text = "\n".join(lines)[-STDERR_CHARS:]
    return f"; stderr:\n{text}" if text else " (no stderr)"


def _kill_tree(pid: int) -> None:
    """SIGKILL `pid` and every process it started (its descendants, found through /proc).

    Stopped first, so that it forks no more while its tree is read; a process
    that left the tree (a daemon) is still in the worker's group.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGSTOP)
    for victim in (pid, *_descendants(pid)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(victim, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if not name.isdecimal():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as handle:
                    parent = int(handle.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@atexit.register
def _kill_running() -> None:
    """A worker that exits (stopped mid-call) takes its commands with it."""
    with _lock:
        for pid in list(_running):
            _kill_tree(pid)
