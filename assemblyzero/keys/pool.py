"""The coordinator's view of the credential pool: which key an item runs on.

Each worker needs one lease per provider its models use (drafter and
reviewer may differ). Leases come from the shared LeaseStore, so the
limits hold across concurrent runs; keys refused with 401/403 are disabled
for this run only. A local OpenAI-compatible server reached without a
credential (`OPENAI_BASE_URL`) is a key too, named for its host, so its 429s
rest and retry like a leased key's.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from assemblyzero.constants import LEASE_RECHECK, MAX_PARALLEL
from assemblyzero.cost import Spend
from assemblyzero.keys import credentials, pacing
from assemblyzero.keys.credentials import Credential, CredentialFile
from assemblyzero.keys.leases import Busy, Lease, LeaseStore
from assemblyzero.keys.pacer import KeyPlan, Other
from assemblyzero.keys.pacing import Need
from assemblyzero.providers import KEYLESS


class NoCredential(Exception):
    """No usable credential for a provider the models need (exit 75)."""


@dataclass
class KeyStats:
    """What one credential did in this run (for the summary)."""

    name: str
    provider: str
    attempts: int = 0
    requests: int = 0  # model calls sent with it (429s included)
    waited_seconds: float = 0.0  # its workers' waits for its budget or its rest
    rate_limited: int = 0
    tokens: list[int] = field(default_factory=lambda: [0, 0])  # input, output
    cost: Spend = field(default_factory=Spend)  # what its calls cost in this run
    cooldown_seconds: float = 0.0
    disabled: str = ""


@dataclass(frozen=True)
class Grant:
    """The leases one worker runs on: one per provider."""

    leases: tuple[Lease, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(lease.name for lease in self.leases)


@dataclass
class Pool:
    creds: CredentialFile
    providers: tuple[str, ...]
    store: LeaseStore
    clock: Callable[[], float] = time.time
    run_id: str = ""
    stats: dict[str, KeyStats] = field(default_factory=dict)
    paced: bool = True  # give an item the key whose budget frees up first (pacing is on)
    _turn: dict[str, int] = field(default_factory=dict)

    @classmethod
    def for_models(cls, specs: tuple[str, ...], store: LeaseStore | None = None,
                   creds: CredentialFile | None = None) -> Pool | None:
        """The pool the models need, or None when none needs a credential.

        The offline and cmd providers need none, but lease their entries when
        the file lists some (that is how demos and tests exercise leasing).
        """
        creds = with_local_server(creds or credentials.load(), specs)
        needed = tuple(p for p in dict.fromkeys(s.partition(":")[0] for s in specs)
                       if creds.listed(p) or not _keyless(p))
        if not needed:
            return None
        for provider in needed:
            if not creds.usable(provider):
                raise NoCredential(_explain(creds, provider))
        stats = {c.name: KeyStats(c.name, c.provider) for c in creds.entries
                 if c.provider in needed}
        return cls(creds, needed, store or LeaseStore(), stats=stats)

    def take(self, item: str) -> Grant | Busy:
        """Leases for every provider, or the reason (and time) to wait."""
        taken: list[Lease] = []
        try:
            for provider in self.providers:
                got = self._take_one(provider, item)
                if isinstance(got, Busy):
                    break
                taken.append(got)
        except BaseException:  # NoCredential for a later provider: give back the earlier
            got = None
            raise
        finally:
            if not isinstance(got, Lease) or len(taken) < len(self.providers):
                for lease in taken:
                    self.store.release(lease)
        if isinstance(got, Busy):
            return got
        for lease in taken:
            self.stats[lease.name].attempts += 1
        return Grant(tuple(taken))

    def _take_one(self, provider: str, item: str) -> Lease | Busy:
        candidates = [c for c in self.creds.usable(provider) if not self.stats[c.name].disabled]
        if not candidates:
            raise NoCredential(f"no usable {provider} credential left: every one was "
                               "refused (401/403) in this run; replace the keys, then run "
                               "retry-failed")
        turn = self._turn.get(provider, 0)
        self._turn[provider] = turn + 1
        order = [candidates[(turn + k) % len(candidates)] for k in range(len(candidates))]
        if self.paced and len(order) > 1:  # the key whose budget has a request soonest
            order.sort(key=self._ready_in)  # stable: round-robin among equals
        waits: list[Busy] = []
        for cred in order:
            got = self.store.acquire(cred.name, cred.max_concurrent, self.run_id, item)
            if isinstance(got, Lease):
                return got
            waits.append(got)
        # Held slots free up when a holder ends: ours wake us, others' we look at again soon.
        until = min(w.until if w.until is not None else self.clock() + LEASE_RECHECK
                    for w in waits)
        return Busy(provider, f"every {provider} credential is held or cooling down", until)

    def _ready_in(self, cred: Credential) -> float:
        """Seconds until `cred`'s shared budget allows a request (0: now, or unlimited)."""
        try:
            state = self.store.peek(cred.name)
        except OSError:
            return 0.0
        return pacing.wait_for(state["pace"], cred.limits, Need(), self.store.clock())

    def give_back(self, grant: Grant, succeeded: bool) -> None:
        """Release every lease of the grant, even if one release fails."""
        errors: list[BaseException] = []
        for lease in grant.leases:
            try:
                self.store.release(lease, succeeded)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def rate_limited(self, name: str, retry_after: float | None, rested: bool = False) -> float:
        """A 429 on `name`: cool it down for every process; the end time. `rested`: the
        worker's pacer did so (and counted the 429) already."""
        if rested:
            until = max(self.clock(), float(self.store.peek(name)["cooldown_until"]))
        else:
            until = self.store.cool_down(name, retry_after)
            self.stats[name].rate_limited += 1
        self.stats[name].cooldown_seconds += max(0.0, until - self.clock())
        return until

    def plan(self, name: str) -> KeyPlan:
        """What the worker holding `name` is told for pacing: its limits, and the other
        usable keys of its provider (where it would move after a 429)."""
        cred = self.credential(name)
        others = tuple(Other(c.name, c.max_concurrent, c.limits)
                       for c in self.creds.usable(cred.provider)
                       if c.name != name and not self.stats[c.name].disabled)
        return KeyPlan(name, cred.limits, others)

    def disable(self, name: str, reason: str) -> None:
        self.stats[name].disabled = reason

    def heartbeat(self, grants: list[Grant]) -> None:
        self.store.heartbeat([lease for grant in grants for lease in grant.leases])

    def secrets(self, grant: Grant) -> dict[str, str]:
        return {name: self.creds.secrets[name] for name in grant.names}

    def credential(self, name: str) -> Credential:
        return next(c for c in self.creds.entries if c.name == name)


def with_local_server(creds: CredentialFile, specs: tuple[str, ...]) -> CredentialFile:
    """`creds`, plus a key for the local server that `OPENAI_BASE_URL` names when the models
    use openai and the file lists no openai credential: no secret, as many slots as a run
    has workers, named `local.<host>-<port>` (a credential's own name has no dot, so none
    can be taken for it)."""
    url = os.environ.get("OPENAI_BASE_URL", "")
    if not url or creds.listed("openai") or "openai" not in {s.partition(":")[0] for s in specs}:
        return creds
    local = Credential(local_server_name(url), "openai", max_concurrent=MAX_PARALLEL,
                       base_url=url)
    return replace(creds, entries=(*creds.entries, local),
                   secrets={**creds.secrets, local.name: ""})


def local_server_name(url: str) -> str:
    """`local.127.0.0.1-8080` for `http://127.0.0.1:8080/v1`: the host (IPv6 colons as `_`,
    user and password never) and the port, safe as a lease file's name."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a port number: the server's own error says so when called
        port = None
    host = re.sub(r"[^a-z0-9.-]", "_", (parts.hostname or "").lower()).strip(".")[:48]
    return f"local.{host or 'server'}" + (f"-{port}" if port is not None else "")


def _keyless(provider: str) -> bool:
    """offline and cmd; openai too when OPENAI_BASE_URL names a local server that needs no key."""
    return provider in KEYLESS or (provider == "openai" and bool(os.environ.get("OPENAI_BASE_URL")))


def _explain(creds: CredentialFile, provider: str) -> str:
    """Why `provider` has no usable entry, each entry named with its fix."""
    why = []
    for c in creds.entries:
        if c.provider == provider and not c.enabled:
            why.append(f"credential {c.name!r} is disabled (set \"enabled\": true)")
        elif c.provider == provider and c.name not in creds.secrets and c.key_env:
            why.append(f"credential {c.name!r}: environment variable {c.key_env} is not set "
                       f"(export {c.key_env}=<key>)")
    if why:
        return (f"no usable credential for provider {provider!r} in {creds.path}: "
                f"{'; '.join(why)}; or add another {provider!r} entry (see README, Credentials)")
    variable = f"{provider.upper()}_API_KEY"
    entry = f'{{"name": "{provider}-a", "provider": "{provider}", "key_env": "{variable}"}}'
    local = ("; for a local server that needs no key, set OPENAI_BASE_URL instead"
             if provider == "openai" else "")
    if not creds.path.exists():
        return (f"no usable credential for provider {provider!r} in {creds.path}: there is no "
                f"such file; create it as {{\"credentials\": [{entry}]}} and export "
                f"{variable}=<key>{local}")
    return (f"no usable credential for provider {provider!r} in {creds.path}: the file lists "
            f"no {provider!r} credential; add one, e.g. {entry}, and export "
            f"{variable}=<key>{local}")
