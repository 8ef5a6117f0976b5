"""benchmarks/lease_rate.py runs, reports its JSON line and finds no double lease."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "lease_rate.py"
KEYS = {"mode", "procs", "seconds", "cycles", "per_second", "double_leases"}


def bench(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    proc = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True,
                          timeout=120, check=False)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, (proc.stdout, proc.stderr)
    return proc.returncode, json.loads(lines[0])


@pytest.mark.e2e
def test_bench_reports_cycles_and_no_double_lease(tmp_path: Path) -> None:
    state = tmp_path / "bench-state"
    code, result = bench("--procs", "2", "--seconds", "0.3", "--state-dir", str(state))
    assert code == 0
    assert set(result) == KEYS
    assert result["mode"] == "ours"
    assert result["procs"] == 2
    assert result["double_leases"] == 0
    assert result["cycles"] > 0
    record = json.loads((state / "leases" / "bench-key.json").read_text())
    assert record["holders"] == []
    assert record["generation"] == result["cycles"]  # every cycle took one lease


@pytest.mark.e2e
def test_floor_mode_does_the_bare_locked_write_with_no_double_lease(tmp_path: Path) -> None:
    state = tmp_path / "floor-state"
    code, result = bench("--procs", "2", "--seconds", "0.3", "--state-dir", str(state),
                         "--floor")
    assert code == 0
    assert set(result) == KEYS and result["mode"] == "floor"
    assert result["double_leases"] == 0 and result["cycles"] > 0
    record = json.loads((state / "bench-key.json").read_text())  # the last cycle's write
    assert record["generation"] >= 0 and len(record["holders"]) == 1
    assert (state / "bench-key.lock").exists()  # the lock file stays
    assert not list(state.glob("*.tmp"))  # every temp file was replaced over the record
    assert not (state / "leases").exists()  # the lease store was not used


@pytest.mark.e2e
def test_bench_default_state_dir_is_its_own(isolated_home: Path) -> None:
    code, result = bench("--procs", "2", "--seconds", "0.3")
    assert code == 0
    assert result["double_leases"] == 0
    state = Path(os.environ["ASSEMBLYZERO_STATE_DIR"])
    assert not state.exists()
    assert not (isolated_home / ".assemblyzero").exists()


def test_bench_overlap_detector_counts_double_leases(tmp_path: Path) -> None:
    """So that `double_leases: 0` means something."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lease_rate", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    log = tmp_path / "holders.log"
    log.write_text("+1\n-1\n+2\n-2\n")
    assert module.double_leases(log) == 0
    log.write_text("+1\n+2\n-1\n-2\n+3\n+1\n-1\n")
    assert module.double_leases(log) == 2
