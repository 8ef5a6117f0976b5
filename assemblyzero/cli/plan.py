"""What a task does, below the invoke layer: plan, print the plan, run a kind."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from assemblyzero import backlog, providers
from assemblyzero.backlog import Plan
from assemblyzero.cli.options import Parallel, Settings, UsageError
from assemblyzero.cli.origin import FILES, Origin
from assemblyzero.constants import EXIT_NO_CREDENTIAL, EXIT_USAGE
from assemblyzero.cost import PRICES_AS_OF, estimate_item, money
from assemblyzero.ids import Kind
from assemblyzero.keys import credentials, pacing
from assemblyzero.keys.credentials import CredentialError
from assemblyzero.keys.leases import LeaseStore
from assemblyzero.keys.pool import NoCredential, Pool
from assemblyzero.keys.redact import Redactor
from assemblyzero.ui.console import Console, for_terminal, printable
from assemblyzero.workflow.prompts import load_prompts
from assemblyzero.workflow.templates import load_template
from assemblyzero.workspace import Workspace

PLAN_VERSION = 1


def workspace(repo: str | Path) -> Workspace:
    ws = Workspace.at(repo)
    if not ws.root.is_dir():
        what = "is a file, not a folder" if ws.root.exists() else "not found"
        raise UsageError(f"workspace {what}: {ws.root} (pass --repo=PATH of the repository "
                         "that holds ideas/ and docs/)")
    return ws


def plan(ws: Workspace, kind: Kind, only: list[str] | None, limit: int | None,
         origin: Origin = FILES) -> tuple[Plan, dict[str, str]]:
    """The items to run, and the GitHub documents to write for them (if any)."""
    if origin.source == "github":
        from assemblyzero import github

        try:
            found, documents = backlog.from_github(ws, origin.label)
        except github.GitHubError as exc:
            raise UsageError(str(exc)) from None
    else:
        found, documents = backlog.scan(ws, kind), {}
    return backlog.select(found, kind, only, limit), documents


def run_kind(
    ws: Workspace, kind: Kind, settings: Settings, parallel: Parallel,
    only: list[str] | None = None, limit: int | None = None, origin: Origin = FILES,
) -> int:
    """Run every pending item of `kind`; the exit code of the run."""
    origin.check(kind)
    if origin.source == "files":
        check_workspace(ws)
    todo, documents = plan(ws, kind, only, limit, origin)
    todo.items = [replace(item, document=documents.get(item.id)) for item in todo.items]
    console = for_terminal(width=len("[COORDINATOR]"))

    def say(text: str) -> None:
        console.say(printable(text))

    if parallel.warning:
        say(f"warning: {parallel.warning}")
    if not todo.items:
        for skipped in todo.skipped:
            say(f"skipped {skipped.name}: {skipped.reason}")
        say(f"nothing to do: no pending {kind.value} items in {ws.root}")
        return 0
    problem = preflight(ws, [kind])
    if problem:
        raise UsageError(problem)
    if settings.cluster and any(m.startswith("cmd:") for m in settings.models):
        raise UsageError("a cmd: model does not run on a cluster (its spec may hold a key, "
                         "and the scheduler keeps what it is sent); run it without --cluster")
    if origin.publish and settings.cluster:
        raise UsageError("--publish=github does not run on a cluster yet (its hosts would "
                         "each need gh and its login); run issue-all --publish=github "
                         "without --cluster")
    with cluster_of(settings) as cluster:
        workers = parallel.workers
        if cluster is not None:
            workers = workers or cluster.slots()
            say(f"cluster {cluster.describe()}; {workers} item(s) at a time")
        creds, pool = credential_pool(settings, say, store=_store(cluster))
        return _run(ws, kind, settings, workers, origin, todo, console, creds, pool, cluster)


def _run(ws: Workspace, kind: Kind, settings: Settings, workers: int, origin: Origin,
         todo: Plan, console: Console, creds: credentials.CredentialFile, pool: Pool | None,
         cluster: Any) -> int:
    # Lazy: dry-run and status, which load this module too, need no scheduler.
    from assemblyzero.run.coordinator import Coordinator
    from assemblyzero.run.jobs import RunOptions

    opts = RunOptions(parallel=workers, drafter=settings.drafter,
                      reviewer=settings.reviewer, max_iterations=settings.max_iterations,
                      timeout=settings.timeout, grace=settings.grace,
                      max_attempts=settings.max_attempts,
                      max_output_tokens=settings.max_output_tokens, publish=origin.publish,
                      source=origin.source, label=origin.label, budget=settings.budget,
                      prices=settings.model_prices, pacing=settings.pacing)
    coordinator = Coordinator(ws, opts, console, pool=pool, creds=creds, cluster=cluster)
    return coordinator.run(todo.items, f"{kind.value}-all", todo.skipped)


def cluster_status(address: str) -> dict[str, Any]:
    """`status --cluster`: the cluster's workers and slots, each listed key's slots held
    and rest there (every run's)."""
    with cluster_of(Settings(cluster=address)) as cluster:
        data = cluster_data(cluster) or {}
        store, now = _store(cluster), time.time()
        assert store is not None
        keys = []
        for cred in load_credentials().entries:
            state = store.peek(cred.name)
            rest = state["cooldown_until"] - now
            keys.append({"name": cred.name, "held": len(state["holders"]),
                         "max_concurrent": cred.max_concurrent,
                         "rests_seconds": round(rest, 1) if rest > 0 else None})
        data["keys"] = keys
        return data


@contextmanager
def cluster_of(settings: Settings) -> Iterator[Any]:
    """The cluster the settings name, connected (None: this machine); closed after."""
    if settings.cluster is None:
        yield None
        return
    from assemblyzero.cluster.connect import ClusterError, connect, parse

    try:
        cluster = connect(parse(settings.cluster))
    except ClusterError as exc:
        raise UsageError(str(exc)) from None
    try:
        yield cluster
    finally:
        cluster.close()


def _store(cluster: Any) -> LeaseStore | None:
    """The lease store: the cluster's (its keys' semaphores and records), else the files."""
    if cluster is None:
        return None
    from assemblyzero.cluster.store import ClusterStore

    return ClusterStore(cluster.client)


def check_workspace(ws: Workspace) -> None:
    """A folder with neither ideas/ nor docs/ is not a workspace (a wrong --repo, most likely)."""
    if not any((ws.root / name).is_dir() for name in ("ideas", "docs")):
        raise UsageError(f"{ws.root} is not an assemblyzero workspace: it has neither ideas/ "
                         "nor docs/; pass --repo=PATH of the repository that holds them "
                         "(see README, The workspace)")


def preflight(ws: Workspace, kinds: list[Kind]) -> str | None:
    """Why every item of these kinds would fail the same way, checked before any worker starts.

    An output folder that leads outside the workspace, or a template or prompt the
    workspace overrides that cannot be used.
    """
    outside = ws.outside_outputs()
    if outside:
        return (f"{'; '.join(outside)}: the run would write there; replace the symlink with "
                "a real folder (or remove it), then run again")
    for kind in kinds:
        try:
            load_template(kind, ws.template_override(kind), ws.root)
        except (ValueError, OSError) as exc:
            return str(exc)
    try:
        load_prompts(ws.prompt_overrides, ws.root)
    except (ValueError, OSError) as exc:
        return str(exc)
    return None


def load_credentials() -> credentials.CredentialFile:
    """The credentials file; a malformed one is a UsageError."""
    try:
        return credentials.load()
    except CredentialError as exc:
        raise UsageError(str(exc)) from None


def credential_pool(
    settings: Settings, warn: Callable[[str], None],
    creds: credentials.CredentialFile | None = None, store: LeaseStore | None = None,
) -> tuple[credentials.CredentialFile, Pool | None]:
    """The credentials file, and the pool the models need (None: no credential needed).

    Checked before any item runs, as each would fail the same way: a model's
    SDK not installed is a UsageError, an empty pool NoCredential, a malformed
    file a UsageError; an entry whose secret is missing is left out with a warning.
    """
    missing = providers.missing_sdk(settings.models)
    if missing:
        raise UsageError(missing)
    creds = creds or load_credentials()
    pool = Pool.for_models(settings.models, store=store, creds=creds)
    for problem in creds.problems_for(pool.providers) if pool else ():
        warn(f"warning: {problem}")
    return creds, pool


def describe(
    ws: Workspace, kinds: list[Kind], settings: Settings, parallel: Parallel,
    only: list[str] | None, limit: int | None, origin: Origin = FILES,
) -> dict[str, Any]:
    """The dry-run plan as data: nothing is written, no model called."""
    if origin.source == "files":
        check_workspace(ws)
    with cluster_of(settings) as cluster:
        return _describe(ws, kinds, settings, parallel, only, limit, origin, cluster)


def _describe(
    ws: Workspace, kinds: list[Kind], settings: Settings, parallel: Parallel,
    only: list[str] | None, limit: int | None, origin: Origin, cluster: Any,
) -> dict[str, Any]:
    checkpoints, creds, scrub = ws.state / "checkpoints", load_credentials(), Redactor()
    sizes: list[int] = []  # each pending item's input size, for the cost estimate
    data: dict[str, Any] = {
        "version": PLAN_VERSION, "repo": str(ws.root),
        "parallel": parallel.workers or (cluster.slots() if cluster else 1),
        "cluster": cluster_data(cluster),
        "drafter": scrub(settings.drafter), "reviewer": scrub(settings.reviewer),
        "max_iterations": settings.max_iterations, "timeout": settings.timeout,
        "max_output_tokens": settings.max_output_tokens,
        "credentials": credential_states(settings, creds, _store(cluster)), "kinds": {},
        "pacing": settings.pacing,
    }
    data["source"], data["publish"] = origin.source, origin.publish
    for kind in kinds:
        if origin.source == "github" and kind is Kind.ISSUE and len(kinds) > 1:
            continue  # --kind all: GitHub issues feed the LLD workflow only
        origin.check(kind)
        todo, documents = plan(ws, kind, only, limit, origin)
        sizes += [backlog.input_size(ws, replace(item, document=documents.get(item.id)))
                  for item in todo.items]
        data["kinds"][kind.value] = {
            "pending": [{
                "id": item.id, "tag": item.tag,
                "input": (f"GitHub issue #{item.id}" if item.source else
                          str(ws.input_file(kind, item.id).relative_to(ws.root))),
                "resumes": (checkpoints / f"{kind.value}-{item.id}.db").exists(),
            } for item in todo.items],
            "skipped": [{"name": s.name, "reason": s.reason} for s in todo.skipped],
        }
    pending = [Kind(kind) for kind, entry in data["kinds"].items() if entry["pending"]]
    data["blocked"] = blocked(settings, creds, ws, pending) if pending else None
    data["cost"] = cost_estimate(settings, sizes)
    return data


def cost_estimate(settings: Settings, sizes: list[int]) -> dict[str, Any]:
    """What the pending items are expected to cost: an estimate (cost.estimate_item), or
    None where a model has no price."""
    drafter, reviewer = settings.model_prices
    each = [estimate_item(drafter, reviewer, size) for size in sizes]
    known = [usd for usd in each if usd is not None]
    unpriced = [Redactor()(spec) if not spec.startswith("cmd:") else "cmd:" for spec, price in
                zip(settings.models, settings.model_prices, strict=True) if price is None]
    total = round(sum(known), 6) if len(known) == len(each) else None
    return {"estimate": True, "prices_as_of": PRICES_AS_OF,
            "per_item_usd": round(total / len(each), 6) if total is not None and each else None,
            "total_usd": total, "unpriced_models": sorted(set(unpriced)),
            "budget": settings.budget}


def blocked(settings: Settings, creds: credentials.CredentialFile,
            ws: Workspace, kinds: list[Kind]) -> dict[str, Any] | None:
    """Why the run would stop before its first item ({exit_code, reason}), or None.

    The run's own checks (`preflight`, `credential_pool`), which take no lease.
    """
    problem = preflight(ws, kinds)
    if problem:
        return {"exit_code": EXIT_USAGE, "reason": problem}
    try:
        credential_pool(settings, lambda warning: None, creds)
    except UsageError as exc:
        return {"exit_code": EXIT_USAGE, "reason": str(exc)}
    except NoCredential as exc:
        return {"exit_code": EXIT_NO_CREDENTIAL, "reason": str(exc)}
    return None


def cluster_data(cluster: Any) -> dict[str, Any] | None:
    """The cluster as the plan and status show it (None: this machine)."""
    if cluster is None:
        return None
    return {"address": cluster.address.text, "workers": len(cluster.client.nthreads()),
            "hosts": cluster.hosts(), "slots": cluster.slots()}


def credential_states(settings: Settings, creds: credentials.CredentialFile,
                      store: LeaseStore | None = None) -> list[dict[str, Any]]:
    """Each credential as dry-run shows it: usable or why not, holders, cooldown."""
    store, now, states = store or LeaseStore(), time.time(), []
    used = {spec.partition(":")[0] for spec in settings.models}
    for cred in creds.entries:
        lease = store.peek(cred.name)
        cooling = lease["cooldown_until"] if lease["cooldown_until"] > now else None
        states.append({
            "name": cred.name, "provider": cred.provider, "max_concurrent": cred.max_concurrent,
            "enabled": cred.enabled, "has_secret": cred.name in creds.secrets,
            "used_by_models": cred.provider in used,
            "holders": [{k: h.get(k) for k in ("pid", "host", "run_id", "item")}
                        for h in lease["holders"]],
            "cooldown_until": cooling,
            # pacing: the per-minute limits in force (configured, tightened by what the
            # provider's headers said) and each bucket's level now
            "limits": pacing.limits_of(lease["pace"], cred.limits).to_json(),
            "budget": {dimension: {"level": round(held, 1), "limit": limit}
                       for dimension, (held, limit) in
                       pacing.levels(lease["pace"], cred.limits, now).items()},
        })
    return states


def _credential_line(c: dict[str, Any], paced: bool = True) -> str:
    if not c["enabled"]:
        state = "disabled"
    elif not c["has_secret"]:
        state = "unusable: its secret is not set"
    elif c["cooldown_until"]:
        state = "cooling down until " + time.strftime("%H:%M:%S",
                                                      time.localtime(c["cooldown_until"]))
    elif c["holders"] and c["holders"][0].get("pid") is None:  # a cluster's: counted only
        state = f"{len(c['holders'])}/{c['max_concurrent']} held on the cluster"
    elif c["holders"]:
        state = f"{len(c['holders'])}/{c['max_concurrent']} held by " + ", ".join(
            f"{h['item']} (pid {h['pid']}, run {h['run_id']})" for h in c["holders"])
    else:
        state = f"free ({c['max_concurrent']} slot(s))"
    unused = "" if c["used_by_models"] else "  [not used by these models]"
    budget = _budget_text(c) if paced else ""
    return f"  {c['name']} ({c['provider']}): {state}{budget}{unused}"


def _budget_text(c: dict[str, Any]) -> str:
    """`; budget now 12/60 requests, 30,000/40,000 tokens per minute` ('' when unlimited)."""
    budget = c.get("budget") or {}
    if not budget:
        return ""
    levels = {dimension: (b["level"], b["limit"]) for dimension, b in budget.items()
              if dimension in pacing.NAMES}
    return f"; budget now {pacing.shown(levels)} per minute"


def render_plan(data: dict[str, Any], warning: str = "") -> str:
    """The plan as text; names and reasons from the workspace made printable, line by line."""
    return "\n".join(printable(line) for line in _plan_lines(data, warning))


def _plan_lines(data: dict[str, Any], warning: str) -> list[str]:
    lines = [f"dry run of {data['repo']}: nothing is written, no model is called"]
    if warning:
        lines.append(f"warning: {warning}")
    workers, cluster = data["parallel"], data.get("cluster")
    if cluster:
        lines.append(f"cluster: {cluster['address']}: {cluster['workers']} worker(s) on "
                     f"{len(cluster['hosts'])} host(s) ({', '.join(cluster['hosts'])}), "
                     f"{cluster['slots']} slot(s); {workers} item(s) at a time")
    else:
        lines.append(f"parallelism: {workers} worker(s)" if workers > 1 else
                     "parallelism: sequential (one at a time; add --parallel for 3)")
    cap = data.get("max_output_tokens")
    lines.append(f"models: drafter {data['drafter']}, reviewer {data['reviewer']}, "
                 f"max {data['max_iterations']} revision(s), timeout {data['timeout']:g}s"
                 + (f", at most {cap} output tokens per reply" if cap else ""))
    if data.get("publish"):
        lines.append(f"publish: each finished issue is also created on {data['publish']}")
    if data["credentials"]:
        lines.append("credentials:" if data.get("pacing", True) else
                     "credentials (pacing off, --no-pacing: only a 429 slows a key down):")
        lines.extend(_credential_line(c, data.get("pacing", True)) for c in data["credentials"])
    else:
        lines.append("credentials: none configured (the offline provider needs none)")
    lines.append(_cost_line(data["cost"], sum(len(e["pending"]) for e in data["kinds"].values())))
    if data["blocked"]:
        lines.append(f"the run would stop before its first item (exit "
                     f"{data['blocked']['exit_code']}): {data['blocked']['reason']}")
    for kind, entry in data["kinds"].items():
        lines.append(f"{kind}: {len(entry['pending'])} pending")
        width = max((len(p["tag"]) for p in entry["pending"]), default=0)
        for p in entry["pending"]:
            note = "  (resumes from its checkpoint)" if p["resumes"] else ""
            lines.append(f"  {p['tag'].ljust(width)}  {p['input']}{note}")
        for s in entry["skipped"]:
            lines.append(f"  skipped {s['name']}: {s['reason']}")
    return lines


def _cost_line(cost: dict[str, Any], items: int) -> str:
    budget = f"; budget {money(cost['budget'])}" if cost["budget"] is not None else ""
    if cost["total_usd"] is None:
        return (f"cost: unknown: no price for {', '.join(cost['unpriced_models'])} (add it to "
                f"[tool.assemblyzero.prices]){budget}")
    return (f"cost: about {money(cost['total_usd'])} for {items} item(s), "
            f"{money(cost['per_item_usd'] or 0)} each (an estimate: one revision per item; "
            f"built-in prices as of {cost['prices_as_of']}){budget}")


def plan_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2)
