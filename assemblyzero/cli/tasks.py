"""The invoke tasks: `invoke lld-all` in this checkout, `assemblyzero lld-all` anywhere.

Thin on purpose: each task checks its flags and calls into the package.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit, ParseError
from invoke.program import Program
from invoke.tasks import task

from assemblyzero import __version__
from assemblyzero.backlog import Item, is_pending
from assemblyzero.cli import plan
from assemblyzero.cli.options import (
    Flags,
    Parallel,
    UsageError,
    cluster_setting,
    parse_ids,
    parse_int,
    parse_parallel,
    resolve,
)
from assemblyzero.cli.origin import FILES, Origin
from assemblyzero.constants import (
    DEMO_LATENCY,
    ENV_OFFLINE_LATENCY,
    EXIT_INTERRUPTED,
    EXIT_NO_CREDENTIAL,
    EXIT_NOT_DONE,
    EXIT_USAGE,
)
from assemblyzero.fileio import OutsideWorkspace
from assemblyzero.ids import InvalidId, Kind, check_id, tag
from assemblyzero.keys.pool import NoCredential
from assemblyzero.ui.console import printable_lines

_SHARED = {
    "repo": "the workspace to work on (default: the current directory)",
    "only": "comma-separated ids to run, e.g. --only=42,43 (others are left alone)",
    "limit": "run at most N of the pending items (in id order)",
    "timeout": "seconds one workflow may take before its worker is ended "
               "(default 1800, at most 604800 = 7 days)",
    "grace": "seconds a stopped worker gets to save its checkpoint before SIGKILL "
             "(default 5, at most 3600)",
    "drafter": "model that drafts and revises, as provider:model (default offline:default)",
    "reviewer": "model that reviews, as provider:model (default offline:default)",
    "max_iterations": "revisions allowed after the first draft (default 3)",
    "max_attempts": "attempts per item when a key answers 429 or 401/403; each resumes "
                    "from the checkpoint on any free key (default 5)",
    "max_output_tokens": "cap on one model reply's output tokens (default: each provider's "
                         "own); a reply cut at the cap is continued, at most twice",
    "budget": "USD the run may spend, e.g. --budget=5: no item starts once what was spent "
              "plus the running items' estimate reaches it, and running items stop after "
              "their current step once the spend does (exit 1); needs a price for both models",
    "no_pacing": "do not pace calls to each key's requests/tokens-per-minute budget: only a "
                 "429 slows a key down (the behaviour before pacing, for comparison)",
    "cluster": "run the workers on a Dask cluster: its scheduler's address "
               "(tcp://HOST:8786), or local:N to start N worker processes here "
               "(default: $ASSEMBLYZERO_CLUSTER, else this machine); needs "
               "assemblyzero[cluster]",
}
_ONE_HELP = {k: v for k, v in _SHARED.items() if k not in ("only", "limit", "cluster")}
_RUN_HELP = {
    **_SHARED,
    "parallel": "run N workers at once; --parallel alone means 3, at most 10; "
                "without it items run one at a time (on a cluster: no cap, and without it "
                "as many as the cluster has worker threads)",
    "dry_run": "show what would run (same as `dry-run`) and stop",
}
_SOURCE_HELP = {
    "source": "files (default: docs/issues/active) or github (open issues, through the gh CLI)",
    "label": "with --source github: only issues carrying this label",
}
_PUBLISH_HELP = "github: also create each finished issue on GitHub (gh issue create)"
# --parallel: None when left out, True when given alone, else the text after it.
Parallelism = bool | str | None
_KINDS = {"lld": [Kind.LLD], "issue": [Kind.ISSUE], "all": [Kind.ISSUE, Kind.LLD]}


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn what a user can fix into a one-line message and exit code, never a traceback."""
    try:
        yield
    except UsageError as exc:
        raise Exit(printable_lines(f"error: {exc}"), code=EXIT_USAGE) from None
    except NoCredential as exc:
        raise Exit(printable_lines(f"error: {exc}"), code=EXIT_NO_CREDENTIAL) from None
    except OutsideWorkspace as exc:
        raise Exit(printable_lines(f"error: {exc}"), code=EXIT_USAGE) from None
    except OSError as exc:  # a workspace folder that is a file, a read-only disk, ...
        where = f"{exc.filename}: " if exc.filename else ""
        fix = _OS_FIXES.get(exc.errno or 0, "fix that path")
        # A full or failing disk is no usage error: the run could not go on (exit 1).
        code = EXIT_NOT_DONE if exc.errno in DISK_ERRORS else EXIT_USAGE
        raise Exit(printable_lines(f"error: {where}{exc.strerror or exc}; {fix}, then run again"),
                   code=code) from None
    except KeyboardInterrupt:  # Ctrl+C outside a run (planning, between tasks)
        raise Exit("interrupted", code=EXIT_INTERRUPTED) from None


_OS_FIXES = {  # what to do about a file-system error, by errno
    errno.ENOTDIR: "a part of that path is a file, not a folder: move it away",
    errno.EEXIST: "something is in the way at that path: move it away",
    errno.EISDIR: "a folder stands where that path needs a file: move it away",
    errno.EACCES: "give yourself write access to it (ls -ld shows who owns it)",
    errno.EPERM: "give yourself write access to it (ls -ld shows who owns it)",
    errno.EROFS: "that disk is read-only: work on a writable copy (--repo=PATH)",
    errno.ENOSPC: "the disk is full: free some space",
    errno.EDQUOT: "your disk quota is used up: free some space",
    errno.EFBIG: "a file grew past the size limit (ulimit -f): raise the limit",
    errno.EIO: "the disk reports an I/O error: check it (dmesg)",
}
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)


def _out(text: str) -> None:
    """Print one block; a reader that went away (`| head`) is not an error."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # quiet exit flush


def _parallel(value: Parallelism, cluster: str | None) -> Parallel:
    """--parallel, on this machine or the cluster (only a scheduler's has no cap)."""
    return parse_parallel(value, cluster=cluster is not None,
                          capped=cluster is None or cluster.startswith("local:"))


def _limit(limit: str | None) -> int | None:
    return None if limit is None else parse_int(limit, "--limit", minimum=1, example=10)


def _plan(kinds: list[Kind], as_json: bool, parallel: Parallelism, repo: str, only: str | None,
          limit: str | None, flags: Flags, origin: Origin = FILES) -> None:
    with _user_errors():
        ws = plan.workspace(repo)
        settings = resolve(ws.root, flags)
        workers = _parallel(parallel, settings.cluster)
        data = plan.describe(ws, kinds, settings, workers, parse_ids(only), _limit(limit),
                             origin)
    _out(plan.plan_json(data) if as_json else plan.render_plan(data, workers.warning))
    if data["blocked"]:  # the plan is shown; its exit code is the one the run would have
        raise Exit(code=data["blocked"]["exit_code"])


def _run_all(kind: Kind, parallel: Parallelism, dry_run: bool, repo: str, only: str | None,
             limit: str | None, flags: Flags, origin: Origin = FILES) -> None:
    if dry_run:
        _plan([kind], False, parallel, repo, only, limit, flags, origin)
        return
    with _user_errors():
        ws = plan.workspace(repo)
        settings = resolve(ws.root, flags)
        workers = _parallel(parallel, settings.cluster)
        code = plan.run_kind(ws, kind, settings, workers, parse_ids(only), _limit(limit),
                             origin)
    if code:
        raise Exit(code=code)


@task(optional=["parallel"], help={**_RUN_HELP, **_SOURCE_HELP}, auto_shortflags=False)
def lld_all(c: Context, parallel: Parallelism = None, dry_run: bool = False, repo: str = ".",
            only: str | None = None, limit: str | None = None, timeout: str | None = None,
            grace: str | None = None, drafter: str | None = None, reviewer: str | None = None,
            max_iterations: str | None = None, max_attempts: str | None = None,
            max_output_tokens: str | None = None, budget: str | None = None,
            no_pacing: bool = False, cluster: str | None = None,
            source: str = "files", label: str | None = None) -> None:
    """Write an LLD for every pending issue (docs/issues/active, or open GitHub issues)."""
    flags = Flags(timeout=timeout, grace=grace, drafter=drafter, reviewer=reviewer,
                   max_iterations=max_iterations, max_attempts=max_attempts,
                   max_output_tokens=max_output_tokens, budget=budget, no_pacing=no_pacing,
                   cluster=cluster)
    _run_all(Kind.LLD, parallel, dry_run, repo, only, limit, flags, Origin(source, label))


@task(optional=["parallel"], help={**_RUN_HELP, "publish": _PUBLISH_HELP}, auto_shortflags=False)
def issue_all(c: Context, parallel: Parallelism = None, dry_run: bool = False, repo: str = ".",
              only: str | None = None, limit: str | None = None, timeout: str | None = None,
              grace: str | None = None, drafter: str | None = None, reviewer: str | None = None,
              max_iterations: str | None = None, max_attempts: str | None = None,
              max_output_tokens: str | None = None, budget: str | None = None,
              no_pacing: bool = False, cluster: str | None = None,
              publish: str | None = None) -> None:
    """Write an issue for every pending brief (ideas/active), then move the brief to ideas/done."""
    flags = Flags(timeout=timeout, grace=grace, drafter=drafter, reviewer=reviewer,
                   max_iterations=max_iterations, max_attempts=max_attempts,
                   max_output_tokens=max_output_tokens, budget=budget, no_pacing=no_pacing,
                   cluster=cluster)
    _run_all(Kind.ISSUE, parallel, dry_run, repo, only, limit, flags, Origin(publish=publish))


def _one(kind: Kind, item_id: str | None, repo: str, flags: Flags) -> None:
    """One item in the foreground: a bad id is a usage error, a done one exit 1."""
    folder = "ideas/active" if kind is Kind.ISSUE else "docs/issues/active"
    with _user_errors():
        if not item_id:
            raise UsageError(f"--id is required; pass e.g. `{kind.value} --id=42`, or run "
                             f"`{kind.value}-all` for everything pending")
        try:
            check_id(item_id)
        except InvalidId as exc:
            raise UsageError(f"{exc}; pass the name of a file in {folder} without .md, "
                             f"e.g. --id=42") from None
        ws = plan.workspace(repo)
        plan.check_workspace(ws)
        if not is_pending(ws, Item(kind, item_id)):
            src, out = ws.input_file(kind, item_id), ws.output_file(kind, item_id)
            if out.exists():
                why, fix = f"{out.relative_to(ws.root)} exists", "delete or move it to redo it"
            else:
                why = f"{src.relative_to(ws.root)} not found"
                fix = "check the id (`assemblyzero dry-run` lists what is pending)"
            raise Exit(f"{tag(kind, item_id)}: nothing to do ({why}); {fix}",
                       code=EXIT_NOT_DONE)
    _run_all(kind, None, False, repo, item_id, None, flags)


@task(auto_shortflags=False, help={
    "id": "the id of the issue to design (docs/issues/active/<id>.md)", **_ONE_HELP})
def lld(c: Context, id: str | None = None, repo: str = ".", timeout: str | None = None,
        grace: str | None = None, drafter: str | None = None, reviewer: str | None = None,
        max_iterations: str | None = None, max_attempts: str | None = None,
        max_output_tokens: str | None = None, budget: str | None = None,
        no_pacing: bool = False) -> None:
    """Write the LLD of one issue, in the foreground."""
    _one(Kind.LLD, id, repo, Flags(timeout=timeout, grace=grace, drafter=drafter,
                                    reviewer=reviewer, max_iterations=max_iterations,
                                    max_attempts=max_attempts,
                                    max_output_tokens=max_output_tokens, budget=budget,
                                    no_pacing=no_pacing))


@task(auto_shortflags=False, help={
    "id": "the id of the brief to turn into an issue (ideas/active/<id>.md)", **_ONE_HELP})
def issue(c: Context, id: str | None = None, repo: str = ".", timeout: str | None = None,
          grace: str | None = None, drafter: str | None = None, reviewer: str | None = None,
          max_iterations: str | None = None, max_attempts: str | None = None,
          max_output_tokens: str | None = None, budget: str | None = None,
          no_pacing: bool = False) -> None:
    """Write the issue of one brief, in the foreground."""
    _one(Kind.ISSUE, id, repo, Flags(timeout=timeout, grace=grace, drafter=drafter,
                                      reviewer=reviewer, max_iterations=max_iterations,
                                      max_attempts=max_attempts,
                                      max_output_tokens=max_output_tokens, budget=budget,
                                      no_pacing=no_pacing))


@task(optional=["parallel"], auto_shortflags=False, help={
    "kind": "which workflow: lld, issue or all (default all)",
    "json": "print the plan as JSON (schema version 1) instead of text",
    "parallel": _RUN_HELP["parallel"], **_SHARED, **_SOURCE_HELP,
    "publish": "github: show that issue-all would also create each issue there"})
def dry_run(c: Context, kind: str = "all", json_: bool = False, parallel: Parallelism = None,
            repo: str = ".", only: str | None = None, limit: str | None = None,
            timeout: str | None = None, grace: str | None = None, drafter: str | None = None,
            reviewer: str | None = None, max_iterations: str | None = None,
            max_attempts: str | None = None,
            max_output_tokens: str | None = None, budget: str | None = None,
            no_pacing: bool = False, cluster: str | None = None, source: str = "files",
            label: str | None = None, publish: str | None = None) -> None:
    """Show the plan: pending items, skipped ones and why, parallelism. Writes nothing."""
    if kind not in _KINDS:
        raise Exit(f"error: --kind must be one of lld, issue, all (got {kind!r}); pass e.g. "
                   "--kind=lld, or leave it out for both", code=EXIT_USAGE)
    _plan(_KINDS[kind], json_, parallel, repo, only, limit,
          Flags(timeout=timeout, grace=grace, drafter=drafter, reviewer=reviewer,
                 max_iterations=max_iterations, max_attempts=max_attempts,
                 max_output_tokens=max_output_tokens, budget=budget, no_pacing=no_pacing,
                 cluster=cluster),
          Origin(source, label, publish))


@task(auto_shortflags=False, help={
    "repo": _SHARED["repo"], "json": "print it as JSON (schema version 1) instead of text",
    "cluster": "also show the Dask cluster: its workers and slots, and each key's slots "
               "held and rest there (default: $ASSEMBLYZERO_CLUSTER)"})
def status(c: Context, repo: str = ".", json_: bool = False, cluster: str | None = None) -> None:
    """Show the latest run, and any run still in progress, item by item."""
    from assemblyzero.cli import history

    with _user_errors():
        ws = plan.workspace(repo)
        data = history.overview(ws)
        address = cluster_setting(ws.root, cluster)
        if address:
            data["cluster"] = plan.cluster_status(address)
    _out(json.dumps(data, indent=2) if json_ else history.render(data))


@task(auto_shortflags=False, help={
    "repo": _SHARED["repo"],
    "run": "the run to draw: its folder's name under logs/parallel, e.g. "
           "--run=20261202-101500-lld-all-4242 (default: the latest run)",
    "open": "open the page in the web browser ($BROWSER, else the system's)"})
def report(c: Context, repo: str = ".", run: str | None = None, open_: bool = False) -> None:
    """Draw a run's report.html again from its journal (and summary.json), and print its path.

    Every run writes the page when it ends; this redraws it, for a run that was cut short
    (kill -9) or drawn by an older release, or while a run is still going."""
    from assemblyzero import report as pages
    from assemblyzero.cli import history

    with _user_errors():
        ws = plan.workspace(repo)
        path = pages.write(history.find_run(ws, run), ws.root)
    _out(str(path))
    if open_:
        import webbrowser

        if not webbrowser.open(path.as_uri()):
            _out(f"no web browser found: open {path} in one (or set $BROWSER)")


@task(optional=["parallel"], auto_shortflags=False, help={
    "parallel": _RUN_HELP["parallel"], **_ONE_HELP, "cluster": _SHARED["cluster"]})
def retry_failed(c: Context, parallel: Parallelism = None, repo: str = ".",
                 timeout: str | None = None, grace: str | None = None, drafter: str | None = None,
                 reviewer: str | None = None, max_iterations: str | None = None,
                 max_attempts: str | None = None,
                 max_output_tokens: str | None = None, budget: str | None = None,
                 no_pacing: bool = False, cluster: str | None = None) -> None:
    """Run again what the latest run did not finish, each from its checkpoint."""
    from assemblyzero.cli import history

    with _user_errors():
        kind, ids, origin = history.unfinished(plan.workspace(repo))
    if not ids:
        _out("nothing to retry: the latest run finished every item")
        return
    _out(f"retrying {len(ids)} {kind.value} item(s): {', '.join(ids)}")
    _run_all(kind, parallel, False, repo, ",".join(ids), None,
             Flags(timeout=timeout, grace=grace, drafter=drafter, reviewer=reviewer,
                    max_iterations=max_iterations, max_attempts=max_attempts,
                    max_output_tokens=max_output_tokens, budget=budget,
                    no_pacing=no_pacing, cluster=cluster), origin)


_EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workspace"
_CHECKOUT = "clone the repository, pip install -e . in it and run it there"


@task(auto_shortflags=False, help={
    "dest": "folder to copy the example workspace into (default: a new temp folder)",
    "latency": f"seconds per offline model call (default {DEMO_LATENCY})"})
def demo(c: Context, dest: str | None = None, latency: str | None = None) -> None:
    """Copy examples/workspace to a scratch folder; run issue-all, then lld-all --parallel=3."""
    if not _EXAMPLES.is_dir():
        raise Exit(f"error: example workspace not found at {_EXAMPLES}; the demo runs from a "
                   f"source checkout: {_CHECKOUT}", code=EXIT_USAGE)
    target = Path(dest) if dest else Path(tempfile.mkdtemp(prefix="assemblyzero-demo-"))
    if target.exists() and not target.is_dir():
        raise Exit(f"error: --dest {target} is a file; pick a new or empty folder, or leave "
                   "--dest out for a new temp folder", code=EXIT_USAGE)
    if target.exists() and any(target.iterdir()):
        raise Exit(f"error: {target} is not empty; pick another --dest, or leave it out for "
                   "a new temp folder", code=EXIT_USAGE)
    with _user_errors():
        shutil.copytree(_EXAMPLES, target, dirs_exist_ok=True)
    os.environ.setdefault(ENV_OFFLINE_LATENCY, latency or str(DEMO_LATENCY))
    _out(f"demo workspace: {target}")
    _out("$ assemblyzero issue-all")
    issue_all(c, repo=str(target))
    _out("$ assemblyzero lld-all --parallel=3")
    lld_all(c, parallel="3", repo=str(target))
    _out(f"demo done: LLDs in {target / 'docs/lld/active'}, logs in {target / 'logs/parallel'}")


# The user's commands. The developer tasks (bench, test, lint) live in the checkout's
# tasks.py, which adds them to these.
ns = Collection(lld_all, issue_all, dry_run, status, retry_failed, report, lld, issue, demo)


def _parse_error(exc: ParseError) -> str:
    """invoke's parser messages, saying what to do (`No idea what '--paralel' is!`)."""
    text = str(exc)
    task = exc.context.name if exc.context is not None else None
    flags = f"`assemblyzero --help {task}` lists its flags"
    unknown = re.fullmatch(r"No idea what '(.*)' is!", text)
    if unknown and task:
        token = unknown.group(1)
        if token.startswith("-"):
            return f"error: {task} has no flag '{token}'; {flags}"
        return (f"error: unknown command '{token}' (after {task}); `assemblyzero --list` lists "
                f"the commands, {flags}")
    if unknown:
        token = unknown.group(1)
        if token.startswith("-"):
            return f"error: unknown option '{token}'; `assemblyzero --help` lists the options"
        return f"error: unknown command '{token}'; `assemblyzero --list` lists the commands"
    ambiguous = re.fullmatch(r"'(.*)' is ambiguous when given after an optional-value flag", text)
    if ambiguous:
        return (f"error: '{ambiguous.group(1)}' right after a bare --parallel is ambiguous "
                "(its value, or the next command?); write the number: --parallel=3")
    needs = re.fullmatch(r"Flag <Argument: (\w+).*> needed value and was not given one!", text)
    if needs:
        flag = "--" + needs.group(1).replace("_", "-")
        return f"error: {flag} needs a value, e.g. {flag}=VALUE; {flags}"
    return f"error: {text}; " + (flags if task else "`assemblyzero --help` lists the options")


class _Program(Program):
    """invoke's Program: a bad flag exits 2 (a usage error), with a message saying why."""

    def parse_core(self, argv: list[str] | None) -> None:
        try:
            super().parse_core(argv)
        except ParseError as exc:
            raise Exit(_parse_error(exc), code=EXIT_USAGE) from None

    def parse_tasks(self) -> None:
        try:
            super().parse_tasks()
        except ParseError as exc:
            raise Exit(_parse_error(exc), code=EXIT_USAGE) from None

    def parse_cleanup(self) -> None:  # `--help nosuch`
        try:
            super().parse_cleanup()
        except ParseError as exc:
            raise Exit(_parse_error(exc), code=EXIT_USAGE) from None


program = _Program(namespace=ns, version=__version__, name="assemblyzero", binary="assemblyzero")

