"""One item, one process: `python -m assemblyzero.worker --kind lld --id 42 ...`.

Everything it needs arrives through argv, the environment and files; it
reports through its output lines, `<run-dir>/results/<kind>-<id>.json` and
its exit code (see results.WORKER_EXIT). Started once per item, so its
imports stay lean: no invoke, no subprocess.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assemblyzero import spendfiles
from assemblyzero.constants import (
    DEFAULT_MAX_ITERATIONS,
    DEFAULT_MODEL,
    ENV_CREDENTIAL,
    ENV_DRAFTER,
    ENV_LIFELINE_FD,
    ENV_LINK_FD,
    ENV_REVIEWER,
    ENV_SECRET_FD,
    ENV_WORKFLOW_DB,
    EXIT_AUTH_FAILED,
    EXIT_RATE_LIMITED,
    EXIT_USAGE,
)
from assemblyzero.cost import PRICE_MAX, Price, Spend, money
from assemblyzero.fileio import atomic_write
from assemblyzero.ids import InvalidId, Kind, check_id, slug
from assemblyzero.keys.pacer import KeyMoved, KeyPlan, Pacer, SharedPacer
from assemblyzero.keys.pacing import daily_reset
from assemblyzero.keys.redact import Redactor
from assemblyzero.providers import (
    AuthFailed,
    Provider,
    ProviderError,
    ProviderKey,
    RateLimited,
    prefetch,
)
from assemblyzero.results import WORKER_EXIT, Status, WorkerResult, retries_of, tokens_by_key
from assemblyzero.workflow.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointUnavailable,
    CheckpointUnusable,
)
from assemblyzero.workflow.interrupt import Interrupted, Stop, StoppedAfterStep, go_quiet
from assemblyzero.workflow.prompts import load_prompts
from assemblyzero.workflow.state import InvalidState, WorkflowState, checked, new_state
from assemblyzero.workspace import Workspace

if TYPE_CHECKING:
    from assemblyzero.cluster.link import Link
    from assemblyzero.workflow.engine import Workflow


scrub = Redactor()  # replaced in main() by one that also knows this worker's secrets


def say(message: str) -> None:
    """One line of ours: names, titles and model text in it are made printable first."""
    try:
        sys.stdout.write(scrub.line(message) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # the tee died: go on (to save the checkpoint) without output
        go_quiet()


def read_keys() -> tuple[dict[str, ProviderKey], list[str], dict[str, KeyPlan] | None]:
    """The leased credentials by provider, every secret to mask, and each key's pacing
    plan (None: no pacing, `--no-pacing`).

    Names come from the environment, secrets from the pipe the coordinator
    passed (never from argv or the environment).
    """
    names = [n for n in os.environ.get(ENV_CREDENTIAL, "").split(",") if n]
    fd = os.environ.get(ENV_SECRET_FD)
    if not names or not fd:
        return {}, [], None
    with os.fdopen(int(fd), "rb") as pipe:
        given = json.loads(pipe.read() or b"{}")
    keys = {entry["provider"]: ProviderKey(name, entry["secret"], entry.get("base_url"),
                                           entry.get("structured") is not False)
            for name, entry in given.get("keys", {}).items() if name in names}
    pace = given.get("pace")
    plans = ({name: KeyPlan.from_json(name, plan) for name, plan in pace.items()
              if name in names} if isinstance(pace, dict) else None)
    return keys, [str(s) for s in given.get("mask", [])], plans


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m assemblyzero.worker",
        description="Run the workflow of one item (started by the coordinator).",
    )
    parser.add_argument("--kind", required=True, choices=[k.value for k in Kind])
    parser.add_argument("--id", required=True, dest="item_id")
    parser.add_argument("--repo", required=True, type=Path, help="the workspace")
    parser.add_argument("--run-dir", required=True, type=Path, help="where the result goes")
    parser.add_argument("--drafter", default=os.environ.get(ENV_DRAFTER) or DEFAULT_MODEL,
                        help=f"the drafting model (default: ${ENV_DRAFTER}, else {DEFAULT_MODEL})")
    parser.add_argument("--reviewer", default=os.environ.get(ENV_REVIEWER) or DEFAULT_MODEL,
                        help=f"the reviewing model (default: ${ENV_REVIEWER}, else "
                             f"{DEFAULT_MODEL})")
    parser.add_argument("--max-iterations", type=int, default=DEFAULT_MAX_ITERATIONS)
    parser.add_argument("--max-output-tokens", type=int, default=None,
                        help="a cap on one model reply (default: each provider's own)")
    parser.add_argument("--input", type=Path, default=None,
                        help="the input document, when not the workspace's own (GitHub)")
    parser.add_argument("--publish", choices=["github"], default=None,
                        help="issue workflow: also create the issue on GitHub")
    parser.add_argument("--drafter-price", type=_price, default=None, metavar="IN,OUT",
                        help="the drafter's price, USD per million input,output tokens "
                             "(default: its cost is unknown)")
    parser.add_argument("--reviewer-price", type=_price, default=None, metavar="IN,OUT",
                        help="the reviewer's price, likewise")
    parser.add_argument("--spend-file", type=Path, default=None,
                        help="where this attempt's spend is kept current, after every call")
    parser.add_argument("--stop-file", type=Path, default=None,
                        help="once this file exists, stop after the current step")
    parser.add_argument("--budget", type=float, default=None, metavar="USD",
                        help="with --spend-file: stop before a model call once the run's "
                             "spend files add up to this")
    return parser.parse_args(argv)


def _price(value: str) -> Price:
    """`IN,OUT` USD per million tokens, as the coordinator passes a model's price."""
    try:
        rates = [float(part) for part in value.split(",")]
    except ValueError:
        rates = []
    if len(rates) != 2 or not all(math.isfinite(r) and 0 <= r <= PRICE_MAX for r in rates):
        raise argparse.ArgumentTypeError(f"not a price IN,OUT in USD per million tokens: "
                                         f"{value!r}")
    return Price(rates[0], rates[1])


def main(argv: list[str] | None = None) -> int:
    global scrub
    stop = Stop()
    stop.install()  # first: a signal from here on is recorded, never a traceback
    stop.watch_output()  # its tee dying stops it too
    if os.environ.get(ENV_LIFELINE_FD):
        stop.watch_lifeline(int(os.environ[ENV_LIFELINE_FD]))
    keys, secrets, plans = read_keys()
    scrub = Redactor(secrets)
    args = parse_args(argv)
    prefetch((args.drafter, args.reviewer))  # the SDKs load while the rest starts up
    stop.stop_file = args.stop_file
    if args.spend_file is not None and args.budget is not None:
        stop.over_budget = partial(_over_budget, args.spend_file.parent, args.budget)
    try:
        item_id = check_id(args.item_id)
    except InvalidId as exc:
        say(f"error: {exc}")
        return EXIT_USAGE
    kind, ws = Kind(args.kind), Workspace.at(args.repo)
    db_path = Path(os.environ.get(ENV_WORKFLOW_DB) or ws.checkpoint(kind, item_id))
    checkpoint = Checkpoint(db_path, slug(kind, item_id))
    link = _cluster_link(checkpoint)  # on a cluster: the task that started us
    pacer: Pacer = Pacer()
    if plans is not None and link is not None:
        from assemblyzero.cluster.link import RemoteStore

        pacer = SharedPacer(store=RemoteStore(link), plans=plans, pause=stop.pause, say=say)
    elif plans is not None:
        pacer = SharedPacer(plans=plans, pause=stop.pause, say=say)
    result = run_item(args, ws, kind, item_id, checkpoint, stop, keys, pacer)
    _write_result(args.run_dir, result)
    if result.retry:
        return EXIT_RATE_LIMITED if result.retry["kind"] == "rate_limited" else EXIT_AUTH_FAILED
    return WORKER_EXIT.get(result.status, 1)


def _cluster_link(checkpoint: Checkpoint) -> Link | None:
    """On a cluster, the line to our task (ENV_LINK_FD): each checkpoint step goes through
    it to the coordinator before the next model call; None when run locally."""
    fd = os.environ.get(ENV_LINK_FD)
    if not fd:
        return None
    from assemblyzero.cluster.link import Link

    link = Link(int(fd))
    broken = False

    def saved(step: str, state: WorkflowState) -> None:
        nonlocal broken
        if broken:
            return
        try:
            link.call("step", step=step, state=state)
        except OSError as exc:
            broken = True
            say(f"warning: checkpoint steps no longer reach the coordinator ({exc}); they "
                "are kept here, and come back when the attempt ends")

    checkpoint.on_saved = saved
    return link


def run_item(
    args: argparse.Namespace, ws: Workspace, kind: Kind, item_id: str, checkpoint: Checkpoint,
    stop: Stop, keys: dict[str, ProviderKey], pacer: Pacer | None = None,
) -> WorkerResult:
    """Run the workflow and turn every outcome into a WorkerResult."""
    pacer = pacer or Pacer()
    workflow: Workflow | None = None

    def ended(status: Status, reason: str, retry: dict[str, Any] | None = None) -> WorkerResult:
        state = workflow.state if workflow else new_state()
        return WorkerResult(kind.value, item_id, status, reason=scrub(reason),
                            iterations=state.get("iteration", 0),
                            model_calls=state.get("model_calls", 0),
                            tokens=list(state.get("tokens", [0, 0])),
                            tokens_by_key=tokens_by_key(state), retry=retry,
                            retries=retries_of(state),
                            spent=workflow.spend.pair() if workflow else [0.0, 0],
                            spent_by_key=workflow.spent_by_key() if workflow else {})

    try:
        checkpoint.root = ws.root  # its folder must not lead outside the workspace
        state = _load_state(checkpoint)
        workflow = _build(args, ws, kind, item_id, checkpoint, stop, keys, pacer)
        result = workflow.run(state)
    except (RateLimited, AuthFailed) as exc:  # the coordinator retries on another key
        limited = isinstance(exc, RateLimited)
        wait = exc.retry_after if isinstance(exc, RateLimited) else None
        if isinstance(exc, RateLimited) and exc.limits and exc.limits.daily_quota:
            wait = daily_reset(time.time())  # the key is out until its quota is reset
        where = exc.credential or "a call made without a credential"
        if isinstance(exc, KeyMoved):
            say(f"moving to another key: {exc}")
        else:
            say(f"{'rate limited' if limited else 'credential refused'} on {where}: {exc}")
        result = ended(Status.FAILED, str(exc), {
            "kind": "rate_limited" if limited else "auth", "credential": exc.credential,
            "retry_after": wait,
            # the pacer rested the key for every process already: the coordinator need not
            "rested": limited and isinstance(pacer, SharedPacer) and pacer.rested,
            "moved": isinstance(exc, KeyMoved)})  # left the key before a call: no 429
    except Interrupted as why:
        say(f"interrupted by {why}")
        result = ended(Status.INTERRUPTED, f"interrupted by {why}")
    except StoppedAfterStep as why:  # the run's budget was reached
        say(f"{why}; checkpoint kept, a rerun resumes after it")
        result = ended(Status.INTERRUPTED, str(why))
    except CheckpointError as exc:  # mid-run, or the disk cannot serve it at all
        result = ended(Status.FAILED, _checkpoint_failed(checkpoint, exc))
    except FileNotFoundError as exc:
        say(f"error: file not found: {exc.filename}")
        result = ended(Status.FAILED, f"file not found: {exc.filename}")
    except Exception as exc:  # the item fails; the run goes on
        reason = str(exc) if isinstance(exc, ProviderError) else f"{type(exc).__name__}: {exc}"
        say(f"error: {reason}")
        result = ended(Status.FAILED, reason)
    finally:
        checkpoint.close()
    # What each key did, and when the attempt waited for one, however it ended.
    result = replace(result, key_use=pacer.use_json(), waits=pacer.waits_json())
    _settle(ws, kind, checkpoint, result)
    return result


def _load_state(checkpoint: Checkpoint) -> WorkflowState | None:
    """The state to resume from, or None to start over.

    A checkpoint that can never be used (corrupt, foreign, another version, a
    symlink, a state the workflow cannot run from) is set aside with a warning.
    CheckpointUnavailable (the disk, not the file) goes to the caller: the
    checkpoint stays where it is.
    """
    try:
        loaded = checkpoint.load()
        if loaded is None:
            return None
        step, state = loaded
        try:
            return checked(state)
        except InvalidState as problem:
            raise CheckpointUnusable(f"{checkpoint.path}: the state after step "
                                     f"{step!r} cannot be resumed: {problem}") from None
    except CheckpointUnusable as exc:
        aside = checkpoint.set_aside()
        say(f"warning: checkpoint unusable: {exc}; {_moved(aside)}; the item starts over")
        return None


def _checkpoint_failed(checkpoint: Checkpoint, exc: CheckpointError) -> str:
    """Say what becomes of a checkpoint that failed; the item's reason."""
    if isinstance(exc, CheckpointUnusable):
        try:
            aside = checkpoint.set_aside()
        except CheckpointUnavailable as why:
            exc = why
        else:
            say(f"error: checkpoint unusable: {exc}; {_moved(aside)}; "
                "the next run starts this item over")
            return f"checkpoint unusable: {exc}"
    hint = exc.hint if isinstance(exc, CheckpointUnavailable) else "run retry-failed"
    say(f"error: {exc}; the checkpoint is left in place; {hint}")
    return str(exc)


def _moved(aside: Path | None) -> str:
    return f"moved to {aside.name}" if aside else "nothing was left at its path"


def _build(
    args: argparse.Namespace, ws: Workspace, kind: Kind, item_id: str, checkpoint: Checkpoint,
    stop: Stop, keys: dict[str, ProviderKey], pacer: Pacer,
) -> Workflow:
    from assemblyzero.providers import LazyProvider
    from assemblyzero.workflow.engine import Workflow
    from assemblyzero.workflow.templates import load_template

    def provider(spec: str) -> Provider:
        return LazyProvider(spec, keys.get(spec.partition(":")[0]))

    drafter = provider(args.drafter)
    reviewer = drafter if args.reviewer == args.drafter else provider(args.reviewer)
    return Workflow(
        ws=ws, kind=kind, item_id=item_id,
        template=load_template(kind, ws.template_override(kind), ws.root),
        drafter=drafter, reviewer=reviewer, models=(args.drafter, args.reviewer),
        max_iterations=args.max_iterations, checkpoint=checkpoint, say=say, stop=stop,
        scrub=scrub, source_path=args.input, publish=args.publish,
        max_output_tokens=args.max_output_tokens,
        prompts=load_prompts(ws.prompt_overrides, ws.root),  # a bad override: no call made
        prices=(args.drafter_price, args.reviewer_price),
        on_spend=partial(_write_spend, args.spend_file) if args.spend_file else None,
        pacer=pacer,
    )


def _over_budget(folder: Path, limit: float) -> str | None:
    """Why to stop before the next model call: the run's spend files reach its budget."""
    spent = spendfiles.total(folder)
    if spent < limit:
        return None
    return f"the run's budget ({money(limit, exact=True)}) was reached ({money(spent)} spent)"


def _write_spend(path: Path, spend: Spend) -> None:
    """This attempt's spend so far, for the run's budget (read while it runs)."""
    try:
        spendfiles.write(path, spend)
    except OSError as exc:
        say(f"warning: could not write {path}: {exc.strerror or exc}")


def _settle(ws: Workspace, kind: Kind, checkpoint: Checkpoint, result: WorkerResult) -> None:
    """Success deletes the checkpoint; anything else keeps it for the rerun."""
    if result.status is Status.DONE:
        try:
            checkpoint.delete()
        except OSError as exc:
            say(f"warning: could not delete checkpoint {checkpoint.path}: {exc.strerror or exc}")
    elif os.path.lexists(checkpoint.path):
        say(f"checkpoint kept: {checkpoint.path}")
    if kind is Kind.LLD and result.status is not Status.DONE and not result.retry:
        from assemblyzero.workflow.lld_index import record_or_warn

        record_or_warn(ws, result.id, result.status.value, say, reason=result.reason)
    if result.status is Status.HALTED:
        say(f"halted: {result.reason} (needs a human: edit the input and run again)")


def _write_result(run_dir: Path, result: WorkerResult) -> None:
    path = run_dir / "results" / f"{slug(Kind(result.kind), result.id)}.json"
    try:
        atomic_write(path, json.dumps(result.to_json(), indent=2) + "\n")
    except OSError as exc:
        say(f"warning: could not write {path}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
