"""What an attempt is made of: the run's options, and an item turned into a `Job`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assemblyzero.backlog import Item
from assemblyzero.constants import (
    DEFAULT_GRACE,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_ITERATIONS,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    ENV_CREDENTIAL,
    ENV_DRAFTER,
    ENV_REVIEWER,
    ENV_RUN_DIR,
    ENV_WORKFLOW_DB,
    PROGRESS_EVERY,
)
from assemblyzero.cost import Price
from assemblyzero.ids import Kind, slug
from assemblyzero.keys.pool import Grant
from assemblyzero.run.backend import Job
from assemblyzero.run.record import RunRecord
from assemblyzero.workspace import Workspace


@dataclass(frozen=True)
class RunOptions:
    parallel: int = 1
    drafter: str = DEFAULT_MODEL
    reviewer: str = DEFAULT_MODEL
    max_iterations: int = DEFAULT_MAX_ITERATIONS
    max_output_tokens: int | None = None  # a cap on one reply; None: each provider's default
    timeout: float = DEFAULT_TIMEOUT
    grace: float = DEFAULT_GRACE
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    publish: str | None = None  # "github": the issue workflow also creates the issue there
    source: str = "files"  # recorded so that retry-failed reruns from the same place
    label: str | None = None
    progress_every: float = PROGRESS_EVERY  # seconds between progress lines
    budget: float | None = None  # USD the run may spend; None: no limit
    prices: tuple[Price | None, Price | None] = (None, None)  # drafter's, reviewer's
    pacing: bool = True  # workers pace their calls to each key's budget (keys/pacer.py)


def job_for(item: Item, ws: Workspace, record: RunRecord, opts: RunOptions,
            grant: Grant | None, secrets: dict[str, Any] | None, hue: int) -> Job:
    """The attempt as data. No secret in its environment: its keys go in `secrets`."""
    key = slug(item.kind, item.id)
    env = {ENV_WORKFLOW_DB: str(ws.checkpoint(item.kind, item.id)),
           ENV_RUN_DIR: str(record.dir),
           ENV_DRAFTER: opts.drafter, ENV_REVIEWER: opts.reviewer}
    if grant is not None:
        env[ENV_CREDENTIAL] = ",".join(grant.names)
    spend, stop = ((record.spend_path(key), record.stop_path(key)) if opts.budget is not None
                   else (None, None))
    args = worker_args(item, ws.root, record.dir, opts)
    if spend and stop:
        args += [f"--spend-file={spend}", f"--stop-file={stop}", f"--budget={opts.budget!r}"]
    return Job(key, item.tag, tuple(args), env, secrets, record.log_path(key),
               record.result_path(key), hue, spend, stop)


def worker_args(item: Item, root: Path, run_dir: Path, opts: RunOptions) -> list[str]:
    """Every value as `--opt=value`: an id such as `--help` or `-x` stays a value.

    The model specs go in the environment instead (ENV_DRAFTER/ENV_REVIEWER):
    a spec may carry a key (`cmd:tool --key ...`), and argv is public.
    """
    args = [f"--kind={item.kind.value}", f"--id={item.id}", f"--repo={root}",
            f"--run-dir={run_dir}", f"--max-iterations={opts.max_iterations}"]
    if opts.max_output_tokens is not None:
        args.append(f"--max-output-tokens={opts.max_output_tokens}")
    for role, price in zip(("drafter", "reviewer"), opts.prices, strict=True):
        if price is not None:  # repr: the float exactly, as the worker parses it back
            args.append(f"--{role}-price={price.input!r},{price.output!r}")
    if item.source:
        args.append(f"--input={item.source}")
    if opts.publish and item.kind is Kind.ISSUE:
        args.append(f"--publish={opts.publish}")
    return args
