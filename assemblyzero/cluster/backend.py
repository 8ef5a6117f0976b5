"""The cluster backend: each attempt one Dask task (cluster/task.py), this process the one
that owns the workspace.

`start` packs the attempt as plain data: its worker's arguments with the workspace and
run folder as placeholders, the files it reads (its input, the template and prompt
overrides), its last checkpoint step, its keys' names and where each host finds their
secrets (never a secret), and submits it. Everything the task says comes back as events
on the run's topic, in order, to one pump thread here: output (into the item's log and
onto the console, prefixed as a local worker's), each checkpoint step (saved into the
workspace's checkpoint at once), its spend. Its end brings its result and files, which
are checked against the item's own outputs and applied under the item lock (still the
coordinator's), before the coordinator hears of the end. A task whose host died is
reported as lost: the coordinator resumes the item from the steps that reached it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from distributed import Event, Future
from distributed.client import FutureCancelledError

from assemblyzero import spendfiles
from assemblyzero.cluster.connect import Cluster
from assemblyzero.cluster.task import ALIVE_EVERY, FILE_MAX, FILES_MAX, run_attempt
from assemblyzero.cost import Spend
from assemblyzero.fileio import atomic_write, check_inside
from assemblyzero.ids import Kind, slug
from assemblyzero.results import Status, WorkerResult
from assemblyzero.run.backend import Began, Finished, Job, Post
from assemblyzero.ui.console import Console
from assemblyzero.ui.prefix_tee import LinePrefixer, LogLines, format_prefix
from assemblyzero.workflow.checkpoint import Checkpoint, CheckpointUnusable
from assemblyzero.workspace import Workspace

# Variables passed on to the task's worker from ours: the offline model's test knobs (none
# secret). Every other setting is the Dask worker's own environment.
FORWARDED_ENV = ("ASSEMBLYZERO_OFFLINE_", "ASSEMBLYZERO_SIMULATE_")
LATE_EVENTS_WAIT = 5.0  # seconds an end waits for the task's events still on their way
GIVE_UP_AFTER = 10.0  # seconds after a kill with no end from the task: it is over anyway
PUMP_POLL = 0.05  # seconds between the pump's looks while an end waits
CHECK_EVERY = 5.0  # seconds between the pump's looks at whether the cluster has workers
NO_WORKER_SAY = 30.0  # no worker for this long, with items submitted: said
_LINEAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_INDEX_FIELDS = ("iterations", "file", "reason")  # what a worker records beside its status
WRITE_MAX = 4096  # bytes per console write: whole lines, as a tee writes them


@dataclass
class _Remote:
    """One submitted attempt, as the pump sees it."""

    job: Job
    kind: Kind
    item_id: str
    token: str
    relay: Relay
    handle: ClusterHandle
    seen: int = 0  # events applied so far
    ended: bool = False
    last_step: list[str] | None = None  # [step, state JSON] last saved here
    give_up_at: float | None = None  # killed: no answer by then, and it is over anyway
    outcome: dict[str, Any] | None = None  # what its task returned, fetched once


class ClusterHandle:
    """A submitted attempt: the coordinator's stop, kill and wind reach its task."""

    def __init__(self, backend: ClusterBackend, job: Job, token: str) -> None:
        self.backend, self.job, self.token = backend, job, token
        self.future: Future | None = None
        self.host: str | None = None  # the Dask worker's host, once the task started
        self.started = False
        self.queued = True  # until its task begins on a Dask worker (the scheduler's timeout
        self._spent: Spend | None = None  # waits for that)
        self.done = threading.Event()  # its Finished was posted
        self.end: Finished | None = None

    @property
    def pid(self) -> int | None:
        return None  # the worker runs on another host

    def stop(self) -> None:
        """A task still queued is cancelled (should it begin meanwhile, it reads the word
        as it begins, or its listener finds the Event set, and returns)."""
        self.backend.tell(self.token, "stop")
        if not self.started and self.future is not None:
            self.backend.cancelled.add(self.token)
            self.future.cancel()

    def kill(self) -> None:
        """SIGKILL to its worker; if nothing answers (its host is gone and no other took
        the task), the attempt is over anyway once the pump gives up on it."""
        self.backend.tell(self.token, "kill")
        self.backend.give_up(self.token)

    def stop_after_step(self, reason: str) -> None:
        self.backend.tell(self.token, f"wind:{reason}")

    def spent(self) -> Spend | None:
        return self._spent

    def wait(self) -> Finished:
        if self.done.wait(self.backend.grace + LATE_EVENTS_WAIT + GIVE_UP_AFTER) and self.end:
            return self.end
        return Finished(self.job.key, None, 137)


class Relay:
    """One attempt's output: into its log as it came (key shapes masked), onto the console
    as `[TAG] line`, whole lines, exactly as prefix-tee writes a local worker's."""

    def __init__(self, job: Job, console: Console, scrub: Callable[[str], str]) -> None:
        job.log.parent.mkdir(parents=True, exist_ok=True)
        self.path = job.log  # opened for each write: a thousand running items hold no fd
        self.console, self.lines = console, LogLines()
        self.sink = console.sink(job.tag, scrub)
        clean: Callable[[bytes], bytes] = lambda line: scrub(line.decode()).encode()  # noqa: E731
        self.prefixer = None if self.sink else LinePrefixer(
            format_prefix(job.tag, console.width, False, job.hue), transform=clean)
        self.places: list[tuple[bytes, bytes]] = []  # (the task's scratch path, ours)

    def feed(self, data: bytes) -> None:
        self._out(self.lines.feed(data))

    def _out(self, whole: bytes) -> None:
        if not whole:
            return
        for theirs, ours in self.places:
            whole = whole.replace(theirs, ours)
        try:
            with open(self.path, "ab") as log:
                log.write(whole)
        except OSError:  # the log is a copy: the console still gets the lines
            pass
        if self.sink is not None:
            self.sink(whole)
        elif self.prefixer is not None:
            self._write(self.prefixer.feed(whole))

    def _write(self, lines: list[bytes]) -> None:
        block = b""
        for line in lines:
            if block and len(block) + len(line) > WRITE_MAX:
                self._emit(block)
                block = b""
            block += line
        if block:
            self._emit(block)

    def _emit(self, data: bytes) -> None:
        if self.console.fd < 0:
            return
        try:
            os.write(self.console.fd, data)
        except OSError:
            self.console.fd = -1

    def close(self) -> None:
        self._out(self.lines.flush())
        if self.sink is not None:
            self.sink(b"")
        elif self.prefixer is not None:
            self._write(self.prefixer.flush())


class ClusterBackend:
    def __init__(self, cluster: Cluster, post: Post, console: Console,
                 scrub: Callable[[str], str], ws: Workspace, run_id: str,
                 key_env: Mapping[str, str | None], grace: float, timeout: float,
                 say: Callable[[str], None]) -> None:
        self.client, self.post, self.console, self.scrub = cluster.client, post, console, scrub
        self.ws, self.run_id, self.key_env = ws, run_id, dict(key_env)
        self.grace, self.timeout, self.say = grace, timeout, say
        # Every name on the scheduler carries a random part: two machines' runs may share a
        # run id (the same second, the same pid in two containers).
        self.scope = f"assemblyzero-{run_id}-{uuid.uuid4().hex[:8]}"
        self.topic = self.scope
        self.alive_name = f"{self.scope}-alive"
        self.words = f"{self.scope}-words"  # the coordinator's words, by attempt (metadata)
        self.remotes: dict[str, _Remote] = {}
        self.cancelled: set[str] = set()  # attempts whose future we cancelled (queued, stopped)
        self._no_worker_since: float | None = None
        self._next_check = 0.0
        self._numbers: dict[str, int] = {}
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._control = ThreadPoolExecutor(1, thread_name_prefix="assemblyzero-control")
        self._closing = threading.Event()
        self.client.subscribe_topic(self.topic, lambda event: self._inbox.put(("event",
                                                                               event[1])))
        self._pump = threading.Thread(target=self._run_pump, name="assemblyzero-pump",
                                      daemon=True)
        self._pump.start()
        self._alive = threading.Thread(target=self._beat, name="assemblyzero-alive",
                                       daemon=True)
        self._alive.start()

    # --- starting an attempt ------------------------------------------------------------
    def start(self, job: Job) -> ClusterHandle:
        opts = dict(arg[2:].split("=", 1) for arg in job.args if "=" in arg)
        kind, item_id = Kind(opts["kind"]), opts["id"]
        number = self._numbers[job.key] = self._numbers.get(job.key, 0) + 1
        token = f"{self.scope}-{job.key}-{number}"
        spec = self._spec(job, kind, item_id, opts, token)
        handle = ClusterHandle(self, job, token)
        relay = Relay(job, self.console, self.scrub)
        remote = _Remote(job, kind, item_id, token, relay, handle,
                         last_step=spec["checkpoint"])
        self.remotes[token] = remote
        try:
            future = self.client.submit(run_attempt, spec, key=token, pure=False)
        except BaseException:
            self.remotes.pop(token, None)
            relay.close()
            raise
        handle.future = future
        future.add_done_callback(lambda f: self._inbox.put(("done", token)))
        return handle

    def _spec(self, job: Job, kind: Kind, item_id: str, opts: dict[str, str],
              token: str) -> dict[str, Any]:
        ws, root = self.ws, str(self.ws.root)
        run_dir = str(job.result.parent.parent)

        def place(value: str) -> str:
            for local, mark in ((run_dir, "{run}"), (root, "{root}")):
                if value == local or value.startswith(local + os.sep):
                    return mark + value[len(local):]
            return value

        args = []
        for arg in job.args:
            name, eq, value = arg.partition("=")
            args.append(f"{name}={place(value)}" if eq else arg)
        files: dict[str, bytes] = {}
        source = Path(opts["input"]) if "input" in opts else ws.input_file(kind, item_id)
        files[self._rel(source)] = ws.read_text(source).encode()
        if os.path.lexists(ws.template_override(kind)):
            override = ws.template_override(kind)
            files[self._rel(override)] = ws.read_text(override).encode()
        if ws.prompt_overrides.is_dir():
            check_inside(ws.root, ws.prompt_overrides, "read")
            for path in sorted(ws.prompt_overrides.glob("*.md")):
                files[self._rel(path)] = ws.read_text(path).encode()
        secrets = dict(job.secrets or {})
        keys = {name: {"provider": entry.get("provider"), "base_url": entry.get("base_url"),
                       "structured": entry.get("structured", True),
                       "key_env": self.key_env.get(name),
                       "keyless": entry.get("secret") == ""}
                for name, entry in (secrets.get("keys") or {}).items()}
        env = {k: place(v) for k, v in job.env.items()}
        env.update({k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)})
        urls = [str(k["base_url"]) for k in keys.values() if k.get("base_url")]
        for value in (*args, *env.values(), *urls):  # the scheduler keeps the spec: no secret
            if self.scrub(value) != value:
                raise ValueError("its arguments or settings hold a secret (a key in a model "
                                 "spec?), which must not go through the scheduler")
        return {
            "token": token, "topic": self.topic, "alive": self.alive_name, "words": self.words,
            "key": job.key,
            "kind": kind.value, "id": item_id, "args": args, "env": env, "files": files,
            "keys": keys, "pace": secrets.get("pace"),
            # every credential's variable (names only): hidden from the worker, as locally
            "hide": sorted({v for v in self.key_env.values() if v}),
            "checkpoint": self._last_step(kind, item_id),
            "checkpoint_rel": self._rel(ws.checkpoint(kind, item_id)),
            "output_rel": self._rel(ws.output_file(kind, item_id)),
            "lineage_rel": self._rel(ws.lineage_dir(kind, item_id)),
            "input_rel": (self._rel(ws.input_file(kind, item_id))
                          if kind is Kind.ISSUE and "input" not in opts else None),
            "timeout": self.timeout, "grace": self.grace,
            "spend_file": place(str(job.spend_file)) if job.spend_file else None,
            "stop_file": place(str(job.stop_file)) if job.stop_file else None,
        }

    def _rel(self, path: Path) -> str:
        """`path` relative to the workspace, as written (not resolved: a folder that is a
        link inside the workspace stays the name the worker writes to)."""
        rel = os.path.relpath(path, self.ws.root)
        if rel.startswith(".."):
            raise ValueError(f"{path} is not inside the workspace {self.ws.root}")
        return rel

    def _last_step(self, kind: Kind, item_id: str) -> list[str] | None:
        """[step, state JSON] of the item's checkpoint here; an unusable one is set aside."""
        path = self.ws.checkpoint(kind, item_id)
        if not os.path.lexists(path):
            return None
        with Checkpoint(path, slug(kind, item_id), self.ws.root) as db:
            try:
                saved = db.load()
            except CheckpointUnusable as exc:
                db.close()
                aside = db.set_aside()
                self.say(f"warning: checkpoint unusable: {exc}; "
                         f"{'moved to ' + aside.name if aside else 'removed'}; the item "
                         "starts over")
                return None
        return [saved[0], json.dumps(saved[1])] if saved else None

    # --- words to the tasks -------------------------------------------------------------
    def tell(self, token: str, word: str) -> None:
        """Without blocking the caller: the word in the scheduler's metadata, then the
        attempt's Event (which its task waits on)."""

        def send() -> None:
            try:
                self.client.set_metadata([self.words, token], word)
                Event(token, client=self.client).set()
            except Exception as exc:
                self.say(f"warning: cannot reach the task of {token}: {exc}")

        self._control.submit(send)

    def _beat(self) -> None:
        """The heartbeat the tasks watch: a counter, raised every ALIVE_EVERY seconds."""
        count = 0
        while not self._closing.wait(ALIVE_EVERY if count else 0):
            count += 1
            try:
                self.client.set_metadata([self.alive_name], count)
            except Exception:
                if self._closing.is_set():
                    return

    # --- the pump -----------------------------------------------------------------------
    def give_up(self, token: str) -> None:
        """After a kill: if its task does not end by then, end the attempt here."""
        remote = self.remotes.get(token)
        if remote is not None and remote.give_up_at is None:
            remote.give_up_at = time.monotonic() + self.grace + GIVE_UP_AFTER
            self._inbox.put(("look", None))

    def _run_pump(self) -> None:
        later: list[tuple[float, str]] = []  # ends waiting for their last events
        while True:
            waiting = later or any(r.give_up_at for r in list(self.remotes.values()))
            try:
                kind, value = self._inbox.get(timeout=PUMP_POLL if waiting else CHECK_EVERY)
            except queue.Empty:
                kind, value = "", None
            if kind == "stop":
                return
            try:
                self._check_workers()
                if kind == "event":
                    self._event(value)
                elif kind == "done":
                    later.append((time.monotonic() + LATE_EVENTS_WAIT, value))
                for entry in list(later):
                    if self._try_end(*entry):
                        later.remove(entry)
                now = time.monotonic()
                for token, remote in list(self.remotes.items()):
                    if remote.give_up_at is not None and now >= remote.give_up_at:
                        self._abandoned(token, remote)
            except Exception as exc:  # one bad message must not stop the others' relay
                self.say(f"warning: cluster backend: {type(exc).__name__}: {exc}")

    def _check_workers(self) -> None:
        """Say once when the cluster has had no worker for a while: the items wait."""
        now = time.monotonic()
        if now < self._next_check or not self.remotes:
            return
        self._next_check = now + CHECK_EVERY
        try:
            workers = len(self.client.nthreads())
        except Exception:
            return
        if workers:
            self._no_worker_since = None
        elif self._no_worker_since is None:
            self._no_worker_since = now
        elif now - self._no_worker_since >= NO_WORKER_SAY and self._no_worker_since > 0:
            self._no_worker_since = -1.0  # said
            self.say(f"warning: the cluster has had no worker for {NO_WORKER_SAY:g}s; "
                     f"{len(self.remotes)} item(s) wait for one (start `dask worker`, or "
                     "Ctrl+C: their checkpoints are kept)")

    def _abandoned(self, token: str, remote: _Remote) -> None:
        """Killed, and nothing came back: its host is gone and no other took the task."""
        if remote.handle.future is not None:
            with contextlib.suppress(Exception):
                remote.handle.future.cancel()
        self.say(f"warning: {remote.job.tag}: its task did not answer the kill within "
                 f"{self.grace + GIVE_UP_AFTER:g}s (is its Dask worker gone?); the "
                 "attempt is over, its checkpoint as the steps that reached us left it")
        self._finish(token, remote, Finished(remote.job.key, None, 137))

    def _event(self, message: Any) -> None:
        if not isinstance(message, dict):
            return
        remote = self.remotes.get(str(message.get("token")))
        if remote is None or remote.ended:
            return  # not ours, or too late: its end was applied (its lock may be gone)
        seq = message.get("seq")
        remote.seen = max(remote.seen, seq if isinstance(seq, int) else 0)
        what = message.get("kind")
        if what == "out" and isinstance(message.get("data"), bytes):
            remote.relay.feed(message["data"])
        elif what == "step" and isinstance(message.get("state"), str):
            step = [str(message.get("step"))[:100], message["state"]]
            with Checkpoint(self.ws.checkpoint(remote.kind, remote.item_id),
                            slug(remote.kind, remote.item_id), self.ws.root) as db:
                db.save(step[0], json.loads(step[1]))
            remote.last_step = step
        elif what == "spend" and isinstance(message.get("data"), bytes):
            remote.handle._spent = spendfiles.parse(message["data"])
        elif what == "started":
            remote.handle.started = True
            remote.handle.host = _text(message.get("host")) or "?"
            ours = (str(remote.job.result.parent.parent), str(self.ws.root))
            theirs = (message.get("run"), message.get("root"))
            remote.relay.places = [(t.encode(), o.encode()) for t, o in zip(theirs, ours,
                                                                            strict=True)
                                   if isinstance(t, str) and len(t) > 1]
            self.post(Began(remote.job.key, remote.handle.host))

    def _try_end(self, deadline: float, token: str) -> bool:
        """The task is done: once its events are in (or LATE_EVENTS_WAIT passed), apply
        its end and post it. True: nothing more to wait for."""
        remote = self.remotes.get(token)
        if remote is None or remote.ended:
            return True
        if remote.outcome is None:
            future = remote.handle.future
            remote.outcome = _outcome(future) if future is not None else {"error": "lost"}
            ours = remote.give_up_at is not None or token in self.cancelled
            if remote.outcome.get("cancelled") and not ours:
                # not cancelled by us: the client lost the scheduler for a moment, and Dask
                # cancels every future then; the task may run on: it is told to stop
                self.tell(token, "kill")
                remote.outcome = {"error": "the connection to the scheduler was lost; its "
                                           "task was told to stop", "sent": 0}
            remote.handle.future = None  # its result leaves the cluster's memory with it
        sent = remote.outcome.get("sent")
        if isinstance(sent, int) and sent > remote.seen and time.monotonic() < deadline:
            return False
        end = Finished(remote.job.key, None, 1)
        try:
            end = self._end(remote, remote.outcome)
        except Exception as exc:
            self.say(f"warning: {remote.job.tag}: its end could not be applied: "
                     f"{type(exc).__name__}: {exc}")
        finally:
            self._finish(token, remote, end)
        return True

    def _finish(self, token: str, remote: _Remote, end: Finished) -> None:
        """The one place an attempt's end is posted: whatever failed before, it is."""
        remote.ended = True
        try:
            with contextlib.suppress(Exception):
                remote.relay.close()
            with contextlib.suppress(Exception):
                self._forget(token)
        finally:
            self.remotes.pop(token, None)
            remote.handle.end = end
            remote.handle.done.set()
            self.post(end)

    def _end(self, remote: _Remote, outcome: dict[str, Any]) -> Finished:
        job = remote.job
        host = remote.handle.host or _text(outcome.get("host")) or "?"
        remote.handle.host = host
        live = remote.handle.spent() or Spend()
        spent = [live.usd, live.unpriced + 1]  # what it said it spent, and a call in flight
        if outcome.get("lost"):
            result = WorkerResult(remote.kind.value, remote.item_id, Status.FAILED,
                                  reason=f"its Dask worker on {host} was lost mid-item",
                                  retry={"kind": "lost", "credential": None,
                                         "retry_after": None, "host": host}, spent=spent)
            atomic_write(job.result, json.dumps(result.to_json(), indent=2) + "\n")
            return Finished(job.key, result, 1)
        if "error" in outcome:
            result = WorkerResult(remote.kind.value, remote.item_id, Status.FAILED,
                                  reason=f"its cluster task failed: {_text(outcome['error'])}",
                                  spent=spent)
            atomic_write(job.result, json.dumps(result.to_json(), indent=2) + "\n")
            return Finished(job.key, result, 1)
        code = outcome.get("code")
        code = code if isinstance(code, int) and not isinstance(code, bool) else 1
        code = 128 - code if code < 0 else code  # killed by signal N: 128+N, as locally
        text = outcome.get("result")
        if isinstance(text, str):
            atomic_write(job.result, text)
        read = WorkerResult.read(job.result) if isinstance(text, str) else None
        read = self._apply(remote, outcome, read)
        return Finished(job.key, read, code)

    def _apply(self, remote: _Remote, outcome: dict[str, Any],
               result: WorkerResult | None) -> WorkerResult | None:
        """The task's files, into the workspace: only the item's own outputs; the result,
        as it stands once they are there (a done item whose output did not come back is
        failed, its checkpoint kept)."""
        ws, kind, item_id = self.ws, remote.kind, remote.item_id
        output = self._rel(ws.output_file(kind, item_id))
        lineage = self._rel(ws.lineage_dir(kind, item_id))
        files = outcome.get("files")
        for rel, data in list(files.items() if isinstance(files, dict) else ())[:FILES_MAX + 1]:
            name = rel[len(lineage) + 1:] if rel.startswith(lineage + "/") else None
            if not isinstance(data, bytes) or len(data) > FILE_MAX or (
                    rel != output and not (name and _LINEAGE_NAME.fullmatch(name))):
                self.say(f"warning: {remote.job.tag}: ignored {_text(rel)!r} from its task: "
                         "not one of the item's outputs")
                continue
            path = ws.root / rel
            check_inside(ws.root, path.parent)
            path.parent.mkdir(parents=True, exist_ok=True)
            ws.write_text(path, data.decode("utf-8", "replace"))
        done, converted = result is not None and result.status is Status.DONE, False
        if done and (not isinstance(files, dict) or output not in files):
            assert result is not None
            result = replace(result, status=Status.FAILED,
                             reason=f"its task reported it done, but {output} did not come "
                                    "back; run retry-failed")
            atomic_write(remote.job.result, json.dumps(result.to_json(), indent=2) + "\n")
            done, converted = False, True
        if done and kind is Kind.ISSUE and outcome.get("removed"):
            from assemblyzero.workflow.kinds import retire_brief

            retire_brief(ws, item_id)
        entry = outcome.get("index") if result is None or result.status is not Status.FAILED \
            or not converted else None
        if kind is Kind.LLD and isinstance(entry, dict) and isinstance(entry.get("status"), str):
            from assemblyzero.workflow import lld_index

            fields = {k: v for k, v in entry.items() if k in _INDEX_FIELDS
                      and isinstance(v, (str, int, float)) and not isinstance(v, bool)}
            lld_index.record_or_warn(ws, item_id, entry["status"][:40], self.say, **fields)
        path = ws.checkpoint(kind, item_id)
        saved = outcome.get("checkpoint")
        if done and not outcome.get("checkpoint_kept"):
            Checkpoint(path, slug(kind, item_id), ws.root).delete()
        elif (isinstance(saved, list) and len(saved) == 2
              and all(isinstance(x, str) for x in saved) and saved != remote.last_step):
            with Checkpoint(path, slug(kind, item_id), ws.root) as db:
                db.save(saved[0][:100], json.loads(saved[1]))
        return result

    def _forget(self, token: str) -> None:
        """The attempt's Events go (its word in the metadata goes with its task)."""

        names = (f"{token}-claim",) if token in self.cancelled else (token, f"{token}-claim")

        def clean() -> None:
            for name in names:
                with contextlib.suppress(Exception):
                    Event(name, client=self.client).clear()

        self._control.submit(clean)

    def close(self) -> None:
        self._closing.set()
        self._inbox.put(("stop", None))
        self._pump.join(5)
        self._alive.join(5)
        self._control.shutdown(wait=True)
        # Not unsubscribe_topic: that message would reach the scheduler after forget_run
        # and make the topic anew; the topic goes with its subscription.
        self.client._event_handlers.pop(self.topic, None)

        def forget_run(dask_scheduler: Any, topic: str = self.topic,
                       names: tuple[str, ...] = (self.alive_name, self.words)) -> None:
            """On the scheduler: the run's topic (its events), heartbeat and words go."""
            topics = getattr(getattr(dask_scheduler, "_broker", None), "_topics", None)
            if isinstance(topics, dict):
                topics.pop(topic, None)
            for name in names:
                dask_scheduler.task_metadata.pop(name, None)

        with contextlib.suppress(Exception):  # best effort: an older scheduler keeps them
            self.client.run_on_scheduler(forget_run)


def _text(value: Any, limit: int = 200) -> str:
    """A string from a task's answer, bounded (it may be hostile)."""
    return value[:limit] if isinstance(value, str) else ""


def _outcome(future: Future) -> dict[str, Any]:
    """What the task returned; its failure said as `error`, its host's loss as `lost`."""
    if future.cancelled():
        return {"code": 130, "sent": 0, "cancelled": True}
    try:
        value = future.result(timeout=30)
    except FutureCancelledError:
        return {"code": 130, "sent": 0, "cancelled": True}
    except Exception as exc:
        if type(exc).__name__ == "KilledWorker":
            return {"lost": True, "sent": 0}
        return {"error": f"{type(exc).__name__}: {str(exc)[:500]}", "sent": 0}
    return value if isinstance(value, dict) else {"error": "it returned no outcome", "sent": 0}
