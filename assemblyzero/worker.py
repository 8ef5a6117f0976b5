"""One item, one process: `python -m assemblyzero.worker --kind lld --id 42 ...`.

Everything it needs arrives through argv, the environment and files; it
reports through its output lines, `<run-dir>/results/<kind>-<id>.json` and
its exit code (see results.WORKER_EXIT). Started once per item, so its
imports stay lean: no invoke, no subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from assemblyzero.checkpoint import Checkpoint, CheckpointError
from assemblyzero.constants import (
    DEFAULT_MAX_ITERATIONS,
    DEFAULT_MODEL,
    ENV_WORKFLOW_DB,
    EXIT_USAGE,
)
from assemblyzero.fileio import atomic_write
from assemblyzero.ids import InvalidId, Kind, check_id, slug
from assemblyzero.interrupt import Interrupted, Stop
from assemblyzero.providers import ProviderError
from assemblyzero.results import WORKER_EXIT, Status, WorkerResult
from assemblyzero.workspace import Workspace

if TYPE_CHECKING:
    from assemblyzero.engine import Workflow


def say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m assemblyzero.worker",
        description="Run the workflow of one item (started by the coordinator).",
    )
    parser.add_argument("--kind", required=True, choices=[k.value for k in Kind])
    parser.add_argument("--id", required=True, dest="item_id")
    parser.add_argument("--repo", required=True, type=Path, help="the workspace")
    parser.add_argument("--run-dir", required=True, type=Path, help="where the result goes")
    parser.add_argument("--drafter", default=DEFAULT_MODEL)
    parser.add_argument("--reviewer", default=DEFAULT_MODEL)
    parser.add_argument("--max-iterations", type=int, default=DEFAULT_MAX_ITERATIONS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    stop = Stop()
    stop.install()  # first: a signal from here on is recorded, never a traceback
    args = parse_args(argv)
    try:
        item_id = check_id(args.item_id)
    except InvalidId as exc:
        say(f"error: {exc}")
        return EXIT_USAGE
    kind, ws = Kind(args.kind), Workspace.at(args.repo)
    db_path = Path(os.environ.get(ENV_WORKFLOW_DB) or ws.checkpoint(kind, item_id))
    result = run_item(args, ws, kind, item_id, Checkpoint(db_path, slug(kind, item_id)), stop)
    _write_result(args.run_dir, result)
    return WORKER_EXIT.get(result.status, 1)


def run_item(
    args: argparse.Namespace, ws: Workspace, kind: Kind, item_id: str, checkpoint: Checkpoint,
    stop: Stop,
) -> WorkerResult:
    """Run the workflow and turn every outcome into a WorkerResult."""
    workflow: Workflow | None = None

    def ended(status: Status, reason: str) -> WorkerResult:
        state = workflow.state if workflow else {}
        return WorkerResult(kind.value, item_id, status, reason=reason,
                            iterations=state.get("iteration", 0),
                            model_calls=state.get("model_calls", 0))

    try:
        state = _load_state(checkpoint)
        workflow = _build(args, ws, kind, item_id, checkpoint, stop)
        result = workflow.run(state)
    except Interrupted as why:
        say(f"interrupted by {why}")
        result = ended(Status.INTERRUPTED, f"interrupted by {why}")
    except CheckpointError as exc:  # unusable mid-run: the next run starts this item afresh
        aside = checkpoint.set_aside()
        say(f"error: checkpoint unusable ({exc}); moved to {aside.name}, "
            "the next run restarts this item from the beginning")
        result = ended(Status.FAILED, f"checkpoint unusable: {exc}")
    except FileNotFoundError as exc:
        say(f"error: file not found: {exc.filename}")
        result = ended(Status.FAILED, f"file not found: {exc.filename}")
    except Exception as exc:  # the item fails; the run goes on
        reason = str(exc) if isinstance(exc, ProviderError) else f"{type(exc).__name__}: {exc}"
        say(f"error: {reason}")
        result = ended(Status.FAILED, reason)
    finally:
        checkpoint.close()
    _settle(ws, kind, checkpoint, result)
    return result


def _load_state(checkpoint: Checkpoint) -> dict[str, object] | None:
    try:
        loaded = checkpoint.load()
    except CheckpointError as exc:
        aside = checkpoint.set_aside()
        say(f"warning: checkpoint unreadable ({exc}); moved to {aside.name}, "
            "restarting this item from the beginning")
        return None
    return loaded[1] if loaded else None


def _build(
    args: argparse.Namespace, ws: Workspace, kind: Kind, item_id: str, checkpoint: Checkpoint,
    stop: Stop,
) -> Workflow:
    from assemblyzero.engine import Workflow
    from assemblyzero.providers import load_provider
    from assemblyzero.templates import load_template

    drafter = load_provider(args.drafter)
    reviewer = drafter if args.reviewer == args.drafter else load_provider(args.reviewer)
    return Workflow(
        ws=ws, kind=kind, item_id=item_id,
        template=load_template(kind, ws.template_override(kind)),
        drafter=drafter, reviewer=reviewer, models=(args.drafter, args.reviewer),
        max_iterations=args.max_iterations, checkpoint=checkpoint, say=say, stop=stop,
    )


def _settle(ws: Workspace, kind: Kind, checkpoint: Checkpoint, result: WorkerResult) -> None:
    """Success deletes the checkpoint; anything else keeps it for the rerun."""
    if result.status is Status.DONE:
        checkpoint.delete()
    elif checkpoint.path.exists():
        say(f"checkpoint kept: {checkpoint.path}")
    if kind is Kind.LLD and result.status is not Status.DONE:
        from assemblyzero.engine import record_status

        record_status(ws, result.id, result.status.value, say, reason=result.reason)
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
