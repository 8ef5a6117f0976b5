"""The local backend: each attempt a process group on this machine (run/procs.py).

`prefix-tee TAG LOG -- python -m assemblyzero.worker ARGS`, in a session of
its own, stdin closed. The worker's environment is ours minus every secret
variable, plus the job's; it inherits two fds: the lifeline (its read end;
EOF once the coordinator is gone, even by SIGKILL) and a pipe holding its
secrets. With a live console the tee writes to a pipe of its own, which
the waiting thread drains into the console before it posts the exit.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from assemblyzero import spendfiles
from assemblyzero.constants import ENV_LIFELINE_FD, ENV_SECRET_FD
from assemblyzero.cost import Spend
from assemblyzero.fileio import atomic_write
from assemblyzero.results import WorkerResult
from assemblyzero.run import procs
from assemblyzero.run.backend import Finished, Job, Post
from assemblyzero.ui.console import Console


class LocalHandle:
    def __init__(self, proc: procs.Proc, job: Job) -> None:
        self.proc, self.job = proc, job

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def stop(self) -> None:
        procs.terminate_group(self.proc.pid)

    def kill(self) -> None:
        procs.kill_group(self.proc.pid)

    def stop_after_step(self, reason: str) -> None:
        if self.job.stop_file is not None:
            atomic_write(self.job.stop_file, reason + "\n", fsync=False)

    def spent(self) -> Spend | None:
        return spendfiles.read(self.job.spend_file) if self.job.spend_file else None

    def wait(self) -> Finished:
        return finished(self.job, self.proc.wait())


def finished(job: Job, code: int) -> Finished:
    """The attempt's end: its result file, if it wrote a readable one. Never raises: the
    end is posted whatever the file holds."""
    try:
        result = WorkerResult.read(job.result)
    except Exception:
        result = None
    return Finished(job.key, result, code)


class LocalBackend:
    def __init__(self, post: Post, console: Console, scrub: Callable[[str], str],
                 hidden_env: Iterable[str], grace: float, spawn: procs.Spawn = procs.spawn,
                 ) -> None:
        self.post, self.console, self.scrub, self.spawn = post, console, scrub, spawn
        self.hidden_env, self.grace = frozenset(hidden_env), grace
        self.lifeline, self._keep_alive = procs.lifeline()

    def start(self, job: Job) -> LocalHandle:
        argv = procs.worker_argv(job.tag, self.console.width, job.log, list(job.args),
                                 color=self.console.live, hue=job.hue)
        env = {k: v for k, v in os.environ.items() if k not in self.hidden_env}
        env.update(job.env)
        env[ENV_LIFELINE_FD] = str(self.lifeline)
        fds: tuple[int, ...] = (self.lifeline,)
        if job.secrets is not None:
            fds += (procs.secret_pipe(dict(job.secrets)),)
            env[ENV_SECRET_FD] = str(fds[1])
        sink = self.console.sink(job.tag, self.scrub)
        output = procs.output_pipe() if sink else None
        try:
            if output:
                proc = self.spawn(argv, env, fds, stdout=output[1])
            else:
                proc = self.spawn(argv, env, fds)
        except BaseException:
            if output:
                os.close(output[0])
            raise
        finally:
            # The secrets pipe and the output's write end are the child's alone now.
            for fd in (*fds[1:], *(output[1:] if output else ())):
                os.close(fd)
        try:
            procs.watch(proc, lambda code: self.post(finished(job, code)),
                        (output[0], sink) if output and sink else None, grace=self.grace)
        except BaseException:  # no thread to wait on it (a thread limit): nothing may run on
            procs.kill_group(proc.pid)
            proc.wait()
            if output:
                os.close(output[0])
            raise
        return LocalHandle(proc, job)

    def close(self) -> None:
        os.close(self.lifeline)
        os.close(self._keep_alive)

