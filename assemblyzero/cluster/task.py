"""One attempt of one item, as a Dask task on a worker of the cluster (`run_attempt`).

It rebuilds the item's corner of the workspace in a scratch folder (its input, the
template and prompt overrides, its checkpoint), reads the item's keys from this host's
own environment or credentials file (secrets never travel through the scheduler), and
runs the same `python -m assemblyzero.worker` there. While it runs:

- its output goes to the coordinator as `out` events on the run's topic, in order;
- each checkpoint step reaches the scheduler before the worker's next model call (the
  worker waits for it on its link), so a host that dies costs at most the call in flight;
- its pacing asks are served against the cluster's key records (cluster/store.py);
- the coordinator's word (stop, kill, stop after the step) comes through the attempt's
  `distributed.Event` and the scheduler's metadata; without a word from the coordinator for
  ALIVE_TIMEOUT seconds, it is gone, and the worker is stopped;
- `--timeout` (and the grace after it) is enforced here too.

It returns what the worker wrote: its result, its output and lineage files, its LLD index
entry, its checkpoint; the coordinator applies them to the workspace under the item lock.
A task the scheduler runs a second time (its first host died) does nothing: the
coordinator resumes the item itself, from the steps that reached it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from distributed import Event, get_client, get_worker

from assemblyzero.cluster import link
from assemblyzero.cluster.store import ClusterStore
from assemblyzero.constants import (
    ENV_LIFELINE_FD,
    ENV_LINK_FD,
    ENV_RUN_DIR,
    ENV_SECRET_FD,
    ENV_WORKFLOW_DB,
    SECRET_ENV_VARS,
)

HOST = socket.gethostname()
ALIVE_EVERY = 1.0  # seconds between the coordinator's heartbeats (a counter it raises)
ALIVE_TIMEOUT = 5.0  # no heartbeat for this long: the coordinator is gone
GONE_GRACE = 3.0  # then the worker gets this long to save before SIGKILL
LOOK_EVERY = 1.0  # seconds the listener waits on the attempt's event at most
EXIT_POLL = 0.05  # seconds between looks at whether the worker has exited
OUT_CHUNK = 65536
FILE_MAX = 16 << 20  # bytes of one returned file at most
FILES_MAX = 500  # lineage files returned at most


def run_attempt(spec: dict[str, Any]) -> dict[str, Any]:
    """The Dask task: run the attempt `spec` (plain data, no secret) to its end."""
    client = get_client()
    token = spec["token"]
    claim = Event(f"{token}-claim", client=client)
    base = {"host": HOST, "worker": get_worker().address, "pid": os.getpid()}
    if claim.is_set():  # run before, on a host that died: the coordinator resumes the item
        return {**base, "lost": True}
    claim.set()
    if _command(client, spec["words"], token):  # stopped before it began
        return {**base, "code": 130, "sent": 0, "never_ran": True}
    scratch = Path(tempfile.mkdtemp(prefix=f"assemblyzero-{spec['key']}-",
                                    dir=_scratch_root()))
    try:
        return {**base, **Attempt(spec, client, scratch).run()}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


_STORES: dict[str, ClusterStore] = {}  # one per worker process: its Locks live on
_STORES_LOCK = threading.Lock()


def _store_of(client: Any) -> ClusterStore:
    with _STORES_LOCK:
        store = _STORES.get(client.id)
        if store is None:
            store = _STORES[client.id] = ClusterStore(client)
        return store


def _scratch_root() -> str | None:
    try:
        return str(get_worker().local_directory)
    except Exception:
        return None


def _command(client: Any, words: str, token: str) -> str:
    """The coordinator's last word to this attempt: '', 'stop', 'kill' or 'wind:REASON'."""
    try:
        word = client.get_metadata([words, token], default="")
    except Exception:  # the scheduler cannot say: no word
        return ""
    return word if isinstance(word, str) else ""


class Attempt:
    def __init__(self, spec: dict[str, Any], client: Any, scratch: Path) -> None:
        self.spec, self.client, self.scratch = spec, client, scratch
        self.root, self.run_dir = scratch / "ws", scratch / "run"
        self.topic, self.token = spec["topic"], spec["token"]
        self.outbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.sent = 0
        self.store = _store_of(client)
        self.proc: subprocess.Popen[bytes] | None = None

    # --- the run ----------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        sender = threading.Thread(target=self._send_all, daemon=True)
        sender.start()
        self._post({"kind": "started", "host": HOST, "pid": os.getpid(),
                    "root": str(self.root), "run": str(self.run_dir)})
        try:
            code, result = self._run_worker()
        finally:
            self.outbox.put(None)
            sender.join()
        return {"code": code, "result": result, "sent": self.sent, **self._collect()}

    def _run_worker(self) -> tuple[int, str | None]:
        self._lay_out()
        secrets, missing = self._secrets()
        if missing:
            self._say(f"error: {missing}")
            return 1, json.dumps(self._failed(missing))
        ours, theirs = socket.socketpair()
        life_r, life_w = os.pipe()
        fds = [life_r, theirs.fileno()]
        env = self._env()
        env[ENV_LIFELINE_FD], env[ENV_LINK_FD] = str(life_r), str(theirs.fileno())
        if secrets is not None:
            fds.append(_secret_pipe(secrets))
            env[ENV_SECRET_FD] = str(fds[-1])
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "assemblyzero.worker", *self._args()],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True, env=env, close_fds=True, pass_fds=tuple(fds),
                cwd=self.root)
        finally:
            for fd in fds:
                if fd != theirs.fileno():
                    os.close(fd)
            theirs.close()
        threads = [threading.Thread(target=self._read_output, daemon=True),
                   threading.Thread(target=self._serve, args=(ours,), daemon=True)]
        for thread in threads:
            thread.start()
        try:
            code = self._watch()
        finally:
            os.close(life_w)
            _kill_group(self.proc.pid)
            threads[0].join(5)
            ours.close()
        path = self.run_dir / "results" / f"{self.spec['key']}.json"
        try:
            return code, path.read_text(encoding="utf-8")[:FILE_MAX]
        except OSError:
            return code, None

    def _watch(self) -> int:
        """Until the worker exits: the coordinator's word, its heartbeat, the deadline."""
        assert self.proc is not None
        started = time.monotonic()
        deadline = started + float(self.spec["timeout"]) + float(self.spec["grace"]) + 30
        grace = float(self.spec["grace"])
        words: queue.SimpleQueue[str] = queue.SimpleQueue()
        over = threading.Event()
        listener = threading.Thread(target=self._listen, args=(words, over), daemon=True)
        listener.start()
        beat, beat_seen, next_beat_check = None, time.monotonic(), 0.0
        kill_at: float | None = None
        spend_seen = b""
        try:
            while True:
                try:
                    code = self.proc.wait(timeout=EXIT_POLL)
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = time.monotonic()
                if kill_at is not None and now >= kill_at:
                    _signal_group(self.proc.pid, signal.SIGKILL)
                while not words.empty():
                    word = words.get()
                    if word == "kill":
                        _signal_group(self.proc.pid, signal.SIGKILL)
                    elif word == "stop" and kill_at is None:
                        _signal_group(self.proc.pid, signal.SIGTERM)
                        kill_at = now + grace
                    elif word.startswith("wind:"):
                        self._wind(word[5:])
                if now >= next_beat_check:
                    next_beat_check = now + ALIVE_EVERY
                    try:
                        value = self.client.get_metadata([self.spec["alive"]], default=None)
                    except Exception:
                        value = beat
                    if value != beat:
                        beat, beat_seen = value, now
                    elif now - beat_seen > ALIVE_TIMEOUT and kill_at is None:
                        self._say("the coordinator is gone (no word from it for "
                                  f"{ALIVE_TIMEOUT:g}s): stopping")
                        _signal_group(self.proc.pid, signal.SIGTERM)
                        kill_at = now + GONE_GRACE
                    spend_seen = self._spend(spend_seen)
                if now >= deadline and kill_at is None:
                    self._say(f"timed out after {self.spec['timeout']:g}s (enforced on "
                              f"{HOST})")
                    _signal_group(self.proc.pid, signal.SIGTERM)
                    kill_at = now + grace
        finally:
            over.set()
            with contextlib.suppress(Exception):  # wake the listener: it is done too
                Event(self.token, client=self.client).set()
            listener.join(EXIT_POLL * 10)
        self._spend(spend_seen)
        return code

    def _listen(self, words: queue.SimpleQueue[str], over: threading.Event) -> None:
        """The coordinator's words, as they come: its Event wakes us, its metadata says."""
        look = Event(self.token, client=self.client)
        while not over.is_set():
            try:
                told = look.wait(timeout=LOOK_EVERY)
            except Exception:  # the scheduler is away for a moment
                told = over.wait(LOOK_EVERY) and False
            if told and not over.is_set():
                with contextlib.suppress(Exception):
                    look.clear()
                if word := _command(self.client, self.spec["words"], self.token):
                    words.put(word)

    # --- the scratch workspace ------------------------------------------------------
    def _lay_out(self) -> None:
        for folder in (self.root, self.run_dir / "results", self.run_dir / "spend"):
            folder.mkdir(parents=True, exist_ok=True)
        for rel, data in self.spec["files"].items():
            path = self._inside(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        saved = self.spec.get("checkpoint")
        if saved:
            from assemblyzero.workflow.checkpoint import Checkpoint

            with Checkpoint(self._inside(self.spec["checkpoint_rel"]), self.spec["key"]) as db:
                db.save(saved[0], json.loads(saved[1]))

    def _inside(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root.resolve()) or Path(rel).is_absolute():
            raise ValueError(f"not a path inside the workspace: {rel!r}")
        return path

    def _placed(self, text: str) -> str:
        return text.replace("{root}", str(self.root)).replace("{run}", str(self.run_dir))

    def _args(self) -> list[str]:
        return [self._placed(arg) for arg in self.spec["args"]]

    def _env(self) -> dict[str, str]:
        hidden = set(SECRET_ENV_VARS) | set(self.spec.get("hide", ())) | {
            k["key_env"] for k in self.spec["keys"].values() if k.get("key_env")}
        env = {k: v for k, v in os.environ.items() if k not in hidden}
        env.update({k: self._placed(v) for k, v in self.spec["env"].items()})
        env[ENV_WORKFLOW_DB] = str(self._inside(self.spec["checkpoint_rel"]))
        env[ENV_RUN_DIR] = str(self.run_dir)
        return env

    def _secrets(self) -> tuple[dict[str, Any] | None, str]:
        """The worker's secrets pipe, read on this host; or why a key has none here."""
        keys = self.spec["keys"]
        if not keys:
            return None, ""
        from assemblyzero.keys import credentials

        try:
            creds = credentials.load()
        except credentials.CredentialError as exc:
            creds, problem = None, str(exc)
        else:
            problem = ""
        given: dict[str, Any] = {}
        for name, meta in keys.items():
            secret = creds.secrets.get(name) if creds else None
            variable = meta.get("key_env")
            if secret is None and variable:
                secret = os.environ.get(variable)
            if secret is None and meta.get("keyless"):
                secret = ""
            if secret is None:
                where = (f"{variable} is not set in the Dask worker's environment on host "
                         f"{HOST}" if variable else
                         f"host {HOST}'s credentials file lists no secret for it")
                return None, (f"credential {name}: {where}; export it where `dask worker` "
                              "starts (or list the key in that host's credentials file), "
                              f"then run retry-failed{'; ' + problem if problem else ''}")
            given[name] = {"secret": secret, "provider": meta["provider"],
                           "base_url": meta.get("base_url"),
                           "structured": meta.get("structured", True)}
        mask = [s for s in (creds.secrets.values() if creds else ()) if s]
        mask += [k["secret"] for k in given.values() if k["secret"]]
        out: dict[str, Any] = {"keys": given, "mask": mask}
        if self.spec.get("pace") is not None:
            out["pace"] = self.spec["pace"]
        return out, ""

    def _failed(self, reason: str) -> dict[str, Any]:
        from assemblyzero.results import Status, WorkerResult

        return WorkerResult(self.spec["kind"], self.spec["id"], Status.FAILED,
                            reason=reason).to_json()

    def _wind(self, reason: str) -> None:
        stop_file = self.spec.get("stop_file")
        if stop_file:
            path = Path(self._placed(stop_file))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(reason + "\n", encoding="utf-8")

    def _spend(self, seen: bytes) -> bytes:
        spend_file = self.spec.get("spend_file")
        if not spend_file:
            return seen
        try:
            data = Path(self._placed(spend_file)).read_bytes()[:4096]
        except OSError:
            return seen
        if data and data != seen:
            self._post({"kind": "spend", "data": data})
        return data

    # --- what goes back ------------------------------------------------------------
    def _collect(self) -> dict[str, Any]:
        files: dict[str, bytes] = {}
        out = self.spec["output_rel"]
        if (self.root / out).is_file() and not (self.root / out).is_symlink():
            files[out] = (self.root / out).read_bytes()[:FILE_MAX]
        lineage = self.root / self.spec["lineage_rel"]
        if lineage.is_dir():
            for path in sorted(lineage.iterdir())[:FILES_MAX]:
                if path.is_file() and not path.is_symlink():
                    files[f"{self.spec['lineage_rel']}/{path.name}"] = path.read_bytes()[:FILE_MAX]
        brief = self.spec.get("input_rel")
        removed = [brief] if brief and not os.path.lexists(self.root / brief) else []
        return {"files": files, "removed": removed, "index": self._index_entry(),
                **self._checkpoint()}

    def _index_entry(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.root / "docs" / "lld" / "status.json").read_text())
            entry = data["items"][self.spec["id"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return entry if isinstance(entry, dict) else None

    def _checkpoint(self) -> dict[str, Any]:
        from assemblyzero.workflow.checkpoint import Checkpoint, CheckpointError

        path = self.root / self.spec["checkpoint_rel"]
        if not os.path.lexists(path):
            return {"checkpoint": None, "checkpoint_kept": False}
        try:
            with Checkpoint(path, self.spec["key"]) as db:
                saved = db.load()
        except CheckpointError:
            return {"checkpoint": None, "checkpoint_kept": True}
        return {"checkpoint": [saved[0], json.dumps(saved[1])] if saved else None,
                "checkpoint_kept": True}

    # --- the worker's output and link ------------------------------------------------
    def _read_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while chunk := os.read(fd, OUT_CHUNK):
            self._post({"kind": "out", "data": chunk})

    def _say(self, text: str) -> None:
        """A line of ours in the item's output."""
        self._post({"kind": "out", "data": f"{text}\n".encode()})

    def _serve(self, sock: socket.socket) -> None:
        """The worker's pacing asks and checkpoint steps, one JSON line each."""
        stream = sock.makefile("rwb")
        try:
            while line := stream.readline(link.LINE_MAX):
                try:
                    request = json.loads(line)
                    value = self._answer(request)
                    reply: dict[str, Any] = {"value": value}
                except Exception as exc:
                    reply = {"error": f"{type(exc).__name__}: {exc}"}
                stream.write(json.dumps(reply).encode() + b"\n")
                stream.flush()
        except (OSError, ValueError):  # the worker is gone
            return

    def _answer(self, request: dict[str, Any]) -> Any:
        if request.get("op") == "step":
            done = threading.Event()
            sent = self._post({"kind": "step", "step": str(request["step"]),
                               "state": json.dumps(request["state"])}, done)
            if not done.wait(link.LINK_TIMEOUT):
                raise TimeoutError("the scheduler did not take the step in time")
            if not sent["ok"]:
                raise OSError(f"the scheduler did not take the step: {sent['error']}")
            return None
        return link.serve(self.store, request)

    def _post(self, message: dict[str, Any],
              done: threading.Event | None = None) -> dict[str, Any]:
        """Queue `message` for the coordinator; `done` is set once it was sent (or could not
        be: the returned dict's `ok` and `error` say)."""
        message["token"] = self.token
        sent: dict[str, Any] = {"ok": False, "error": "not sent"}
        if done is not None:
            message["_done"], message["_sent"] = done, sent
        self.outbox.put(message)
        return sent

    def _send_all(self) -> None:
        """Send the outbox in order: output chunks that queued up together as one event."""
        held: dict[str, Any] | None = None
        ending = False
        while not ending:
            message = held if held is not None else self.outbox.get()
            held = None
            if message is None:
                return
            if message["kind"] == "out":
                data = [message["data"]]
                while len(data) < 64:
                    try:
                        more = self.outbox.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        ending = True
                        break
                    if more["kind"] != "out":
                        held = more  # the next one sent, in order
                        break
                    data.append(more["data"])
                message["data"] = b"".join(data)
            done, sent = message.pop("_done", None), message.pop("_sent", {})
            self.sent += 1
            message["seq"] = self.sent
            try:
                self.client.log_event(self.topic, message)
                sent["ok"] = True
            except Exception as exc:  # unreachable: the end says what it can
                sent["error"] = f"{type(exc).__name__}: {exc}"
            if done is not None:
                done.set()


def _secret_pipe(payload: dict[str, Any]) -> int:
    from assemblyzero.run.procs import secret_pipe

    return secret_pipe(payload)


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _kill_group(pid: int) -> None:
    _signal_group(pid, signal.SIGKILL)
