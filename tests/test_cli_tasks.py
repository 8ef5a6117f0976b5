"""The task layer as a newcomer meets it: `invoke demo`, `--help`, usage errors."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, cli
from invoke.collection import Collection

from assemblyzero.cli.tasks import ns

DEVELOPER_TASKS = ("bench", "test", "lint")


def checkout_tasks() -> Collection:
    """The collection of the checkout's tasks.py, as `invoke` loads it."""
    spec = importlib.util.spec_from_file_location("checkout_tasks", ROOT / "tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    collection: Collection = module.ns
    return collection


def listed(text: str) -> set[str]:
    """The command names of a `--list` output (wrapped docstrings are indented deeper)."""
    return set(re.findall(r"^  (\S+)", text, re.M))


@pytest.mark.e2e
def test_invoke_demo_runs_issue_all_then_lld_all_in_a_scratch_copy(tmp_path: Path):
    dest = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "demo", "--dest", str(dest),
         "--latency", "0"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
        stdin=subprocess.DEVNULL, env=os.environ,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    llds = sorted(p.name for p in (dest / "docs/lld/active").glob("LLD-*.md"))
    issues = sorted(p.name for p in (dest / "docs/issues/active").glob("*.md"))
    assert len(issues) >= 9 and len(llds) == len(issues)
    assert not list((dest / "ideas/active").glob("*.md"))
    assert "$ assemblyzero lld-all --parallel=3" in proc.stdout
    assert re.search(r"^\[LLD-101\] +finalize: wrote", proc.stdout, re.M)
    assert (ROOT / "examples/workspace/ideas/active/receipt-photos.md").exists()


@pytest.mark.e2e
def test_demo_refuses_a_non_empty_destination(tmp_path: Path):
    (tmp_path / "keep.txt").write_text("mine")
    run = cli("demo", "--dest", str(tmp_path))
    assert run.code == 2 and "is not empty" in run.err
    assert [p.name for p in tmp_path.iterdir() if p.name != "home"] == ["keep.txt"]


def test_every_flag_of_every_task_has_help():
    tasks = checkout_tasks()  # the user's commands and the developer tasks
    assert set(ns.task_names) < set(tasks.task_names)
    for name in tasks.task_names:
        task = tasks[name]
        params = [p for p in task.body.__code__.co_varnames[:task.body.__code__.co_argcount]
                  if p != "c"]
        helped = {key.strip("_") for key in task.help}
        missing = [p for p in params if p.strip("_") not in helped]
        assert not missing, f"{name}: no --help text for {missing}"
        assert task.__doc__ or task.body.__doc__, f"{name} has no docstring"


@pytest.mark.e2e
def test_developer_tasks_are_in_the_checkout_only():
    user = cli("--list")
    assert user.code == 0, user.out + user.err
    assert listed(user.out) == set(ns.task_names)
    assert not listed(user.out) & set(DEVELOPER_TASKS)
    for name in DEVELOPER_TASKS:
        run = cli(name)
        assert run.code == 2, (name, run.out, run.err)
        assert (f"unknown command '{name}'; `assemblyzero --list` lists the commands"
                in run.err)
    checkout = subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "--list"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env=os.environ)
    assert checkout.returncode == 0, checkout.stdout + checkout.stderr
    assert listed(checkout.stdout) == set(ns.task_names) | set(DEVELOPER_TASKS)


@pytest.mark.e2e
def test_help_output_explains_the_parallel_flag():
    run = cli("--help", "lld-all")
    assert run.code == 0
    assert "--parallel alone means 3, at most 10" in " ".join(run.out.split())


@pytest.mark.e2e
def test_one_item_task_runs_just_that_item(tmp_path: Path):
    from conftest import make_workspace

    ws = make_workspace(tmp_path / "ws", issues=["5", "6"])
    run = cli("lld", "--id=5", "--repo", str(ws), env={"ASSEMBLYZERO_OFFLINE_LATENCY": "0"})
    assert run.code == 0, run.out + run.err
    assert (ws / "docs/lld/active/LLD-005.md").exists()
    assert not (ws / "docs/lld/active/LLD-006.md").exists()
    missing = cli("lld", "--repo", str(ws))
    assert missing.code == 2 and "--id is required" in missing.err


@pytest.mark.e2e
def test_an_unknown_flag_is_a_usage_error_exit_2():
    run = cli("lld-all", "--no-such-flag")
    assert run.code == 2 and "--no-such-flag" in run.err
