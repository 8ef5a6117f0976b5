"""Which cluster a run uses, and reaching it: `--cluster=tcp://HOST:8786`, `tls://...`, or
`local:N` (a LocalCluster of N worker processes on this machine, 3 threads each;
`local:NxT` for T threads each; at most 10 threads in all, cli/options.py checks).

`parse` needs nothing installed; `connect` imports dask only then, so that a run without
a cluster never does. A missing `cluster` extra or an unreachable scheduler is a
ClusterError naming the fix, raised before any item starts (the CLI exits 2).
"""

from __future__ import annotations

import contextlib
import logging
import re
import resource
import signal
from dataclasses import dataclass
from typing import Any

LOCAL_THREADS = 3  # threads of each local:N worker process
LOCAL_MAX = 64  # local:N at most (a typo would fork hundreds of processes)
CONNECT_TIMEOUT = 10.0  # seconds to reach a scheduler before giving up
_LOCAL = re.compile(r"local:(\d{1,3})(?:x(\d{1,3}))?")
_REMOTE = re.compile(r"(tcp|tls|ucx|inproc|ws|wss)://[^\s/]+")
EXTRA_HINT = ("pip install 'assemblyzero[cluster]' (it brings dask[distributed], and "
              "cryptography for local:N's TLS)")


class ClusterError(Exception):
    """The cluster cannot be used: its address, the extra, the scheduler (exit 2)."""


@dataclass(frozen=True)
class Address:
    text: str  # as given: `tcp://10.0.0.5:8786` or `local:2`
    local_workers: int = 0  # local:N: N worker processes
    local_threads: int = LOCAL_THREADS

    @property
    def local(self) -> bool:
        return self.local_workers > 0


def parse(value: str, source: str = "--cluster") -> Address:
    """A cluster address; a ClusterError says what is wrong with it and where it came from."""
    text = value.strip()
    if match := _LOCAL.fullmatch(text):
        workers, threads = int(match.group(1)), int(match.group(2) or LOCAL_THREADS)
        if not 1 <= workers <= LOCAL_MAX or not 1 <= threads <= LOCAL_MAX:
            raise ClusterError(f"{source}={text}: local:N takes 1 to {LOCAL_MAX} worker "
                               f"processes and threads each; pass e.g. {source}=local:2")
        return Address(text, workers, threads)
    if _REMOTE.fullmatch(text):
        return Address(text)
    shown = text if text.isprintable() and len(text) <= 200 else repr(text[:200])
    raise ClusterError(f"{source}: {shown!r} is not a cluster address; pass the scheduler's, "
                       f"e.g. {source}=tcp://10.0.0.5:8786, or {source}=local:2 to try it "
                       "on this machine")


@dataclass
class Cluster:
    """A connected cluster: the client, and the LocalCluster we started (if we did)."""

    address: Address
    client: Any
    local: Any = None

    def slots(self) -> int:
        """Worker threads across the cluster now: items it can run at once."""
        return int(sum(self.client.nthreads().values()))

    def hosts(self) -> list[str]:
        info = self.client.scheduler_info(n_workers=-1).get("workers", {})
        return sorted({str(w.get("host", "?")) for w in info.values()})

    def describe(self) -> str:
        """`tcp://10.0.0.5:8786: 4 workers on 2 hosts, 12 slots`."""
        workers = len(self.client.nthreads())
        hosts = len(self.hosts())
        return (f"{self.address.text}: {workers} worker(s) on {hosts} host(s), "
                f"{self.slots()} slot(s)")

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.local is not None:
                self.local.close()


def _local(distributed: Any, address: Address) -> Any:
    """The LocalCluster of local:N: TLS with a temporary certificate (no other user of
    this machine can submit to it), no dashboard on a fixed port, and worker processes
    that a Ctrl+C on the terminal does not reach (they stop when the run tells them)."""
    try:
        saved = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the workers
    except ValueError:  # not the main thread: leave signals alone
        saved = None
    try:
        try:
            security = distributed.security.Security.temporary()
        except ImportError as exc:  # cryptography: in the extra, but a hand-made install
            raise ClusterError(f"--cluster={address.text} needs the cryptography package for "
                               f"its TLS ({exc}): {EXTRA_HINT}") from None
        return distributed.LocalCluster(
            n_workers=address.local_workers, threads_per_worker=address.local_threads,
            processes=True, dashboard_address=":0", silence_logs=logging.ERROR,
            security=security, protocol="tls://")
    finally:
        if saved is not None:
            signal.signal(signal.SIGINT, saved)


def _more_files() -> None:
    """A cluster run keeps a socket or two per running item: raise the soft limit on open
    files to the hard one (1024 is the usual soft limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1 << 16 if hard == resource.RLIM_INFINITY else min(hard, 1 << 16)
    if want > soft:  # only ever raised
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def connect(address: Address) -> Cluster:
    """Reach the scheduler (or start the local cluster) and wait for a worker."""
    try:
        import distributed
    except ImportError:
        raise ClusterError(f"--cluster needs the cluster extra: {EXTRA_HINT}") from None
    _more_files()
    if address.local:
        cluster = _local(distributed, address)
        try:
            return Cluster(address, distributed.Client(cluster), cluster)
        except BaseException:
            cluster.close()
            raise
    from dask import config
    from dask.utils import parse_timedelta

    timeout = min(CONNECT_TIMEOUT, parse_timedelta(config.get("distributed.comm.timeouts.connect")))
    try:
        client = distributed.Client(address.text, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address.text}: {exc}; start "
                           f"it there (`dask scheduler`, and `dask worker {address.text}` on "
                           "each worker host), or check the address and the firewall") from None
    except ValueError as exc:  # a tls:// address without certificates, ...
        raise ClusterError(f"cannot use the Dask scheduler at {address.text}: {exc}") from None
    try:
        if not client.nthreads():
            client.wait_for_workers(1, timeout=timeout)
    except (OSError, TimeoutError):
        client.close()
        raise ClusterError(f"the Dask scheduler at {address.text} has no worker: start one "
                           f"on each worker host with `dask worker {address.text}`") from None
    return Cluster(address, client)
