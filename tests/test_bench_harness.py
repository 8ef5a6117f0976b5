"""benchmarks/bench.py runs its fast figures, prints them and records them as JSON.

A smoke test of the harness only: the figures themselves are measured by
`invoke bench`, never asserted here (no timing assertions).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # every test here starts real processes

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "bench.py"
FAST = "first_worker,dry_run,rss"
ROWS = ["first_worker", "first_worker.python_bare", "first_worker.import_cli",
        "first_worker.worker_help", "first_worker.tee_alone", "first_worker.line",
        "dry_run_1000", "rss_worker", "rss_coordinator"]


def test_quick_bench_records_every_figure(tmp_path: Path, isolated_home: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--only", FAST,
                           "--json-out", str(out)], capture_output=True, text=True,
                          timeout=90, stdin=subprocess.DEVNULL, cwd=tmp_path, check=False)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["repeat"] == 1
    assert data["errors"] == {}
    assert set(data["figures"]) == set(ROWS)
    for name in ROWS:
        figure = data["figures"][name]
        assert isinstance(figure["measured"], (int, float)), (name, figure)
        assert figure["samples"] and all(isinstance(s, (int, float)) for s in figure["samples"])
        assert figure["result"] in ("PASS", "FAIL", "info"), (name, figure)
        assert name in proc.stdout
    for name in ("first_worker", "dry_run_1000", "rss_worker"):
        assert data["figures"][name]["goal"], name  # these have a goal to pass or fail
    machine = data["machine"]
    assert machine["cores"] >= 1 and machine["python"] and machine["platform"]
    assert data["date"]
    # the bench kept to its sandbox: the test's home is untouched
    assert not (isolated_home / ".assemblyzero").exists()
    assert not Path(os.environ["ASSEMBLYZERO_STATE_DIR"]).exists()


def test_unknown_figure_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BENCH), "--only", "no_such_figure",
                           "--json-out", str(tmp_path / "x.json")], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 2
    assert "no_such_figure" in proc.stderr
    assert not (tmp_path / "x.json").exists()
