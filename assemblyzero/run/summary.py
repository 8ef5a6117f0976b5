"""The end of a run: `summary.json`, and the table and totals printed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from assemblyzero.constants import EXIT_NOT_DONE, EXIT_OK
from assemblyzero.cost import Spend, money
from assemblyzero.fileio import tail_lines
from assemblyzero.ids import sort_key
from assemblyzero.journal import Event
from assemblyzero.results import Status
from assemblyzero.run.record import Outcome, RunRecord
from assemblyzero.ui.console import printable

SUMMARY_VERSION = 1


def finish(record: RunRecord, outcomes: list[Outcome], keys: list[Any], meta: dict[str, Any],
           code: int, say: Callable[[str], None], root: Path) -> int:
    """Write summary.json and the run-end event, print the summary; the exit code, which
    becomes 1 (not done) if the record could not be written whole."""
    if record.broken and code == EXIT_OK:  # done, but the record is not whole
        code = EXIT_NOT_DONE
    summary = summary_data(record, outcomes, keys, meta, code)
    path: Path | None = None
    try:
        path = record.write_summary(summary)
    except OSError as exc:  # a full disk: the summary is still shown, the exit says so
        record.broken = record.broken or (
            f"cannot write {record.dir / 'summary.json'}: {exc.strerror or exc}")
        code = code if code != EXIT_OK else EXIT_NOT_DONE
    record.event(Event.RUN_END, exit_code=code, wall_seconds=meta["wall_seconds"])
    page = draw_report(record.dir, root, say)
    print_summary(say, summary, outcomes, root, path, page)
    if record.broken:
        say(f"error: {record.broken}; this run's record is incomplete (exit {code}): free "
            "some space, then run retry-failed (every unfinished item resumes from its "
            "checkpoint)")
    return code


def summary_data(
    record: RunRecord, outcomes: list[Outcome], keys: list[Any], meta: dict[str, Any],
    exit_code: int,
) -> dict[str, Any]:
    """The content of summary.json (schema version SUMMARY_VERSION)."""
    counts = {s.value: 0 for s in Status}
    for outcome in outcomes:
        counts[outcome.status.value] += 1
    return {
        "version": SUMMARY_VERSION,
        "run_id": record.run_id,
        **meta,
        "exit_code": exit_code,
        "counts": counts,
        "worker_seconds": round(sum(o.duration for o in outcomes), 3),
        "retries": retries(outcomes),
        "cost": total_cost(outcomes).to_json(),
        "items": [o.to_json() for o in sorted(outcomes, key=lambda o: (o.kind, sort_key(o.id)))],
        "credentials": [{**asdict(k), "cooldown_seconds": round(k.cooldown_seconds, 3),
                         "waited_seconds": round(k.waited_seconds, 3),
                         "cost": k.cost.to_json()} for k in keys],
    }


def total_cost(outcomes: Sequence[Outcome]) -> Spend:
    """What the run spent: every item's attempts."""
    total = Spend()
    for o in outcomes:
        total = total.plus(o.cost)
    return total


def draw_report(run_dir: Path, root: Path, say: Callable[[str], None]) -> Path | None:
    """The run's report.html, or None (said) when it could not be drawn: the run's outcome
    stands either way, and `assemblyzero report` can draw it again later."""
    from assemblyzero import report  # only here: a worker never needs it

    try:
        return report.write(run_dir, root)
    except OSError as exc:
        say(f"warning: cannot write {run_dir / report.REPORT_NAME}: {exc.strerror or exc}; "
            f"`assemblyzero report --run={run_dir.name}` draws it again once there is space")
    except Exception as exc:  # a bug in drawing must not cost the run its summary
        say(f"warning: the report of this run could not be drawn ({type(exc).__name__}: "
            f"{exc}); summary.json and the journal are complete")
    return None


def print_summary(say: Callable[[str], None], summary: dict[str, Any], outcomes: list[Outcome],
                  root: Path, path: Path | None, page: Path | None = None) -> None:
    """The table, failed items' last log lines, keys and totals (`path`: summary.json, if
    it could be written; `page`: report.html, if it could be drawn)."""
    say(f"summary of run {summary['run_id']}:")
    for line in table(outcomes, root):
        say("  " + line)
    for o in outcomes:  # what a failed item last said, so nobody has to open its log first
        if o.status in (Status.FAILED, Status.TIMEOUT, Status.HALTED) and o.log:
            for line in tail_lines(Path(o.log), TAIL_LINES):
                say(f"  {o.tag} | {line}")
    if summary["credentials"]:
        rows = [("KEY", "PROVIDER", "STARTS", "REQUESTS", "TOKENS", "COST", "429S", "WAITED",
                 "RESTED", "DISABLED")]
        rows += [(k["name"], k["provider"], str(k["attempts"]), str(k["requests"]),
                  f"{k['tokens'][0]}/{k['tokens'][1]}", _cost(k["cost"]), str(k["rate_limited"]),
                  f"{k['waited_seconds']:.1f}s", f"{k['cooldown_seconds']:.1f}s",
                  k["disabled"] or "-")
                 for k in summary["credentials"]]
        for line in _aligned(rows):
            say("  " + line)
    retried = retries(outcomes)
    if retried:  # what the calls needed besides their answers, so nobody has to read logs
        say("  retried: " + ", ".join(f"{label} x{n}" for label, n in retried.items()))
    budget = summary.get("budget")
    if budget:
        say("  " + _budget_line(budget))
    counts = ", ".join(f"{n} {s}" for s, n in summary["counts"].items() if n)
    wall, work = summary["wall_seconds"], summary["worker_seconds"]
    speed = f" ({work / wall:.1f}x)" if wall > 0 else ""
    say(f"{counts or 'nothing run'}; wall {wall:.1f}s, worker time {work:.1f}s{speed}; "
        f"cost {_cost(summary['cost'])}; "
        f"{_rel(str(path), root) if path else 'summary.json not written'}"
        + (f"; report {_rel(str(page), root)}" if page else ""))


def _cost(data: dict[str, Any]) -> str:
    """A summary.json cost as the table shows it (unknown is never shown as 0)."""
    return Spend(data["priced_usd"], data["unpriced_calls"]).shown()


def _budget_line(budget: dict[str, Any]) -> str:
    spent, limit = money(budget["spent_usd"]), money(budget["usd"], exact=True)
    if not budget["reached"]:
        return f"budget {limit}: {spent} spent"
    left = [f"{n} item(s) {what}" for n, what in (
        (budget["not_started"], "not started"),
        (budget["stopped"], "stopped after their current step")) if n]
    return (f"budget reached: {spent} of {limit} spent"
            + (f"; {', '.join(left)}: raise --budget and run retry-failed to go on (each "
               f"resumes from its checkpoint)" if left else ""))


def retries(outcomes: Sequence[Outcome]) -> dict[str, int]:
    """Every item's retries, summed by label, most frequent first."""
    total: dict[str, int] = {}
    for o in outcomes:
        for label, n in o.retries.items():
            total[label] = total.get(label, 0) + n
    return dict(sorted(total.items(), key=lambda kv: (-kv[1], kv[0])))


TAIL_LINES = 3  # lines of a failed item's log shown under the summary


_ORDER = {Status.FAILED: 0, Status.TIMEOUT: 1, Status.HALTED: 2, Status.INTERRUPTED: 3,
          Status.SKIPPED: 4, Status.DONE: 5}


def table(outcomes: list[Outcome], root: Path) -> list[str]:
    """The items as aligned rows, failures first."""
    hosts = any(o.host for o in outcomes)  # a cluster run: where each ran
    rows = [("ITEM", "STATUS", "TIME", "ITER", "CALLS", "TOKENS", "COST", "TRIES", "429S",
             "KEY", *(("HOST",) if hosts else ()), "LOG / REASON")]
    for o in sorted(outcomes, key=lambda o: (_ORDER[o.status], o.tag)):
        note = o.reason if o.status is not Status.DONE else ""
        where = _rel(o.log, root) if o.log else ""
        rows.append((o.tag, o.status.value, f"{o.duration:.1f}s", str(o.iterations),
                     str(o.model_calls), f"{o.tokens[0]}/{o.tokens[1]}", o.cost.shown(),
                     str(o.attempts),
                     str(o.rate_limited),
                     o.credential or "-", *((printable(o.host or "-"),) if hosts else ()),
                     "  ".join(filter(None, (where, note)))))
    return _aligned(rows)


def _aligned(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Columns padded to their widest cell; the last column is left as it is."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
            for row in rows]


def _rel(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path
