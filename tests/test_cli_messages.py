"""Errors a user can act on: each message names what was wrong and says what to do next.

The first half runs the real CLI into each kind of error. The second half
keeps docs/troubleshooting.md keyed by the messages the package can print.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from conftest import ROOT, cli, make_workspace
from gh_fake import Fake

SECRET = "sk-ant-literal-secret-0123456789"


@dataclass
class Case:
    args: list[str]
    code: int
    names: list[str]  # what was wrong: the flag, value, file or entry (<CREDS>: its path)
    hint: str  # the next step
    setup: Callable[[Path, Path], None] = lambda ws, creds: None
    env: dict[str, str] = field(default_factory=dict)
    repo: bool = True  # add --repo=WS (else: run in WS)


def _write(text: str, mode: int = 0o600) -> Callable[[Path, Path], None]:
    def setup(ws: Path, creds: Path) -> None:
        creds.write_text(text, encoding="utf-8")
        creds.chmod(mode)
    return setup


def _pyproject(text: str) -> Callable[[Path, Path], None]:
    return lambda ws, creds: (ws / "pyproject.toml").write_text(text, encoding="utf-8")


ANTHROPIC = ["--drafter=anthropic:claude-sonnet-4-5", "--reviewer=anthropic:claude-sonnet-4-5"]

CASES = {
    "parallel-zero": Case(["lld-all", "--parallel=0"], 2, ["--parallel", "(got 0)"],
                          "pass e.g. --parallel=3"),
    "parallel-word": Case(["lld-all", "--parallel=lots"], 2, ["--parallel", "'lots'"],
                          "pass e.g. --parallel=3"),
    "kind": Case(["dry-run", "--kind=llds"], 2, ["--kind", "'llds'"], "pass e.g. --kind=lld"),
    "limit": Case(["lld-all", "--limit=0"], 2, ["--limit", "(got 0)"], "pass e.g. --limit="),
    "only-empty": Case(["lld-all", "--only=,"], 2, ["--only", "','"], "pass e.g. --only=101,103"),
    "timeout-env": Case(["lld-all"], 2, ["ASSEMBLYZERO_TIMEOUT", "'0'"],
                        "set e.g. ASSEMBLYZERO_TIMEOUT=1800, or unset it",
                        env={"ASSEMBLYZERO_TIMEOUT": "0"}),
    "timeout-pyproject": Case(["lld-all"], 2, ["[tool.assemblyzero] timeout", "pyproject.toml",
                                               "'soon'"], "write e.g. timeout = 1800 there",
                              setup=_pyproject('[tool.assemblyzero]\ntimeout = "soon"\n')),
    "max-iterations-hyphen-key": Case(
        ["lld-all"], 2, ["[tool.assemblyzero] max-iterations", "(got -2)"],
        "write e.g. max-iterations = 3 there",
        setup=_pyproject("[tool.assemblyzero]\nmax-iterations = -2\n")),
    "pyproject-toml": Case(["lld-all"], 2, ["pyproject.toml", "line 1"],
                           "fix the TOML there", setup=_pyproject("[tool.assemblyzero\n")),
    "drafter-provider": Case(["lld-all", "--drafter=claude:sonnet"], 2,
                             ["--drafter", "unknown provider 'claude'", "known: anthropic"],
                             "pass e.g. --drafter=anthropic:claude-sonnet-4-5"),
    "drafter-shape": Case(["lld-all", "--reviewer=gpt4"], 2, ["--reviewer", "'gpt4'"],
                          "pass e.g. --reviewer=anthropic:"),
    "drafter-env": Case(["dry-run"], 2, ["ASSEMBLYZERO_DRAFTER", "'nosuch:x'"],
                        "set e.g. ASSEMBLYZERO_DRAFTER=anthropic:claude-sonnet-4-5, or unset it",
                        env={"ASSEMBLYZERO_DRAFTER": "nosuch:x"}),
    "id-bad": Case(["lld", "--id=../secrets"], 2, ["invalid id '../secrets'"],
                   "pass the name of a file in docs/issues/active without .md"),
    "id-missing": Case(["issue"], 2, ["--id is required"], "`issue --id=42`"),
    "id-nothing-to-do": Case(["lld", "--id=999"], 1, ["LLD-999", "docs/issues/active/999.md"],
                             "check the id"),
    "unknown-flag": Case(["lld-all", "--paralel"], 2, ["'--paralel'", "lld-all"],
                         "`assemblyzero --help lld-all` lists its flags"),
    "unknown-command": Case(["lld-al"], 2, ["'lld-al'"], "`assemblyzero --list`", repo=False),
    "flag-without-value": Case(["lld-all", "--repo"], 2, ["--repo needs a value"],
                               "--repo=VALUE", repo=False),
    "ambiguous": Case(["lld-all", "--parallel", "issue-all"], 2, ["'issue-all'", "--parallel"],
                      "write the number: --parallel=3", repo=False),
    "label-alone": Case(["lld-all", "--label=p1"], 2, ["--label"], "add --source github"),
    "source-bad": Case(["lld-all", "--source=gitlab"], 2, ["--source", "'gitlab'"],
                       "pass --source=github, or leave it out"),
    "retry-no-run": Case(["retry-failed"], 2, ["no run to retry", "logs/parallel holds none"],
                         "run lld-all or issue-all"),
    "logs-is-a-file": Case(["lld-all"], 2, ["logs/parallel", "Not a directory"],
                           "move it away, then run again",
                           setup=lambda ws, creds: (ws / "logs").write_text("a file")),
    "creds-unreadable": Case(["lld-all"], 2, ["cannot read credentials file <CREDS>"],
                             "point ASSEMBLYZERO_CREDENTIALS at one",
                             setup=lambda ws, creds: creds.mkdir()),
    "creds-not-utf8": Case(["dry-run"], 2, ["<CREDS>: not UTF-8 text"],
                           "make it a readable JSON file",
                           setup=lambda ws, creds: creds.write_bytes(b"\xff\xfe{")),
    "creds-corrupt": Case(["lld-all"], 2, ["<CREDS> is not valid JSON", "line 1 column"],
                          "fix the file at that position",
                          setup=_write('{"credentials": [{"name": "a",}]}')),
    "creds-shape": Case(["lld-all"], 2, ['<CREDS>: expected {"credentials": [...]}',
                                         "(got a list)"],
                        'write it as {"credentials": [', setup=_write("[]")),
    "creds-unknown-field": Case(
        ["lld-all"], 2, ["<CREDS>, entry 1", "max_concurent"], "fix or remove them",
        setup=_write('{"credentials": [{"name": "a", "provider": "offline", '
                     '"max_concurent": 2}]}')),
    "creds-no-key-source": Case(
        ["lld-all"], 2, ["<CREDS>, entry 1", "needs 'key_env'"],
        '"key_env": "ANTHROPIC_API_KEY" and export ANTHROPIC_API_KEY=<key>',
        setup=_write('{"credentials": [{"name": "a", "provider": "anthropic"}]}')),
    "creds-duplicate": Case(
        ["dry-run"], 2, ["<CREDS>: entries 1 and 2 have the same name"],
        "rename one of the two entries",
        setup=_write('{"credentials": [{"name": "a", "provider": "offline"}, '
                     '{"name": "a", "provider": "offline"}]}')),
    "creds-max-concurrent": Case(
        ["lld-all"], 2, ["<CREDS>, entry 1", "'max_concurrent'", "(got 0)"],
        '"max_concurrent": 2',
        setup=_write('{"credentials": [{"name": "a", "provider": "offline", '
                     '"max_concurrent": 0}]}')),
    "literal-key-group-readable": Case(
        ["lld-all"], 2, ["<CREDS> holds literal keys", "(mode 640)"], "chmod 600 <CREDS>",
        setup=_write('{"credentials": [{"name": "lit", "provider": "anthropic", '
                     f'"key": "{SECRET}"}}]}}', mode=0o640)),
    "no-credential-env-unset": Case(
        ["lld-all", *ANTHROPIC], 75,
        ["provider 'anthropic' in <CREDS>", "credential 'team-a'", "ANTHROPIC_KEY_A is not set"],
        "export ANTHROPIC_KEY_A=<key>",
        setup=_write('{"credentials": [{"name": "team-a", "provider": "anthropic", '
                     '"key_env": "ANTHROPIC_KEY_A"}]}')),
    "no-credential-disabled": Case(
        ["lld-all", *ANTHROPIC], 75, ["credential 'team-a' is disabled"],
        'set "enabled": true',
        setup=_write('{"credentials": [{"name": "team-a", "provider": "anthropic", '
                     '"key_env": "ANTHROPIC_KEY_A", "enabled": false}]}'),
        env={"ANTHROPIC_KEY_A": "sk-ant-unused-here-0123"}),
    "no-credential-none-listed": Case(
        ["lld-all", "--drafter=openai:gpt-4o"], 75, ["provider 'openai'", "lists no 'openai'"],
        "and export OPENAI_API_KEY=<key>", setup=_write('{"credentials": []}')),
    "no-credential-no-file": Case(
        ["lld-all", *ANTHROPIC], 75, ["provider 'anthropic'", "there is no such file"],
        'create it as {"credentials": ['),
}


@pytest.mark.e2e
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_error_names_the_problem_and_the_next_step(tmp_path: Path, case: Case,
                                                        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("ANTHROPIC_KEY_A", raising=False)
    ws = make_workspace(tmp_path / "ws", issues=["101"])
    creds = Path(os.environ["ASSEMBLYZERO_CREDENTIALS"])
    case.setup(ws, creds)
    args = [*case.args, f"--repo={ws}"] if case.repo else case.args
    run = cli(*args, cwd=ws, env=case.env)
    assert run.code == case.code, run.out + run.err
    assert "Traceback" not in run.out + run.err
    assert run.out == ""  # nothing ran: the message is all there is
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err  # one line
    message = lines[0]
    for name in case.names:
        assert name.replace("<CREDS>", str(creds)) in message, message
    assert case.hint.replace("<CREDS>", str(creds)) in message, message
    assert SECRET not in message
    assert not (ws / "logs/parallel").exists()


@pytest.mark.e2e
def test_a_usage_error_starts_with_error_and_exits_before_anything_is_written(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["101"])
    run = cli("lld-all", "--parallel=0", "--repo", str(ws))
    assert run.err.startswith("error: --parallel must be at least 1 (got 0); ")
    assert not (ws / ".assemblyzero").exists()


@pytest.mark.e2e
def test_a_missing_workspace_is_named_with_the_flag_to_pass(tmp_path: Path):
    missing = tmp_path / "nope"
    run = cli("lld-all", "--repo", str(missing))
    assert run.code == 2 and "Traceback" not in run.err
    assert f"workspace not found: {missing} (pass --repo=PATH" in run.err
    afile = tmp_path / "file"
    afile.write_text("x")
    run = cli("dry-run", "--repo", str(afile))
    assert run.code == 2 and f"workspace is a file, not a folder: {afile}" in run.err


@pytest.mark.e2e
def test_demo_into_a_file_or_a_full_folder_says_to_pick_another_dest(tmp_path: Path):
    afile = tmp_path / "file"
    afile.write_text("x")
    run = cli("demo", f"--dest={afile}")
    assert run.code == 2 and "Traceback" not in run.err
    assert f"--dest {afile} is a file" in run.err and "leave --dest out" in run.err
    run = cli("demo", f"--dest={tmp_path}")
    assert run.code == 2 and f"{tmp_path} is not empty; pick another --dest" in run.err


@pytest.mark.e2e
def test_help_for_an_unknown_command_is_a_usage_error(tmp_path: Path):
    run = cli("--help", "nosuch")
    assert run.code == 2 and "Traceback" not in run.err
    assert "unknown command 'nosuch'; `assemblyzero --list` lists the commands" in run.err


@pytest.mark.e2e
def test_a_corrupt_run_summary_is_named_with_the_way_out(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", issues=["101"])
    assert cli("lld-all", "--repo", str(ws), env={"ASSEMBLYZERO_OFFLINE_LATENCY": "0"}).code == 0
    summary = (ws / "logs/parallel/latest").resolve() / "summary.json"
    summary.write_text('{"items": [')
    retry = cli("retry-failed", "--repo", str(ws))
    assert retry.code == 2 and "Traceback" not in retry.err
    assert f"cannot read {summary}" in retry.err and "delete it" in retry.err
    status = cli("status", "--repo", str(ws))
    assert status.code == 0 and f"problem: cannot read {summary}" in status.out
    summary.unlink()  # the way out the message gives
    assert cli("status", "--repo", str(ws)).code == 0
    assert cli("retry-failed", "--repo", str(ws)).code == 0


@pytest.mark.e2e
@pytest.mark.parametrize(("setup", "names", "hint"), [
    ("missing", ["gh CLI is not on PATH"], "install it from https://cli.github.com"),
    ("logged out", ["gh is not logged in"], "run `gh auth login`, or set GH_TOKEN"),
])
def test_github_errors_name_gh_and_the_next_step(fake_gh: Fake, tmp_path: Path, setup: str,
                                                 names: list[str], hint: str):
    ws = make_workspace(tmp_path / "ws", briefs=["x"])
    if setup == "missing":
        (fake_gh.bin / "gh").unlink()
    else:
        fake_gh.mark("auth", "logged out")
    run = cli("issue-all", "--publish=github", "--repo", str(ws))
    assert run.code == 2 and "Traceback" not in run.out + run.err
    assert all(name in run.err for name in names) and hint in run.err


@pytest.mark.e2e
def test_a_failing_gh_names_the_command_and_what_to_check(fake_gh: Fake, tmp_path: Path):
    ws = make_workspace(tmp_path / "ws")
    gh = fake_gh.bin / "gh"  # logged in, but the repository is not found
    gh.write_text(f"#!{sys.executable}\nimport sys\nif sys.argv[1:3] == ['auth', 'status']:\n"
                  "    sys.exit(0)\nsys.stderr.write('HTTP 404: Not Found "
                  "(https://api.github.com/repos/acme/app/issues)\\n')\nsys.exit(1)\n")
    run = cli("lld-all", "--source=github", "--repo", str(ws))
    assert run.code == 2 and "Traceback" not in run.err
    first, *rest = run.err.strip().splitlines()
    assert "`gh issue list" in first and "exit code 1" in first
    assert "check that `gh repo view` works in the workspace" in first
    assert rest == ["HTTP 404: Not Found (https://api.github.com/repos/acme/app/issues)"]


# --- docs/troubleshooting.md is keyed by messages the package prints ---------------------
#
# Every message quoted as a `####` heading, and every key of a "message (after `...`)"
# table, must be printable by the package: it has to match, as a whole, one string
# template of the package's source, an f-string's fields standing for any text. The
# prefixes other layers add come off first (`[LLD-101] `, `error: `, `skipped NAME: `,
# ...). A template must have 12 or more characters of its own wording, so that glue
# such as f"{a}: {b}" explains nothing. Run-specific values in the page (paths, ids,
# numbers) fall in the fields, so they need no care; changing a message's wording in
# the source without updating the page fails here. The limit: a field also matches
# wording, so text that a message gets from a field (an exception's text, or a
# trailing `{fix}`) is not checked against its own source.

DOC = ROOT / "docs" / "troubleshooting.md"
PACKAGE = ROOT / "assemblyzero"
MIN_WORDING = 12
_HEADING = re.compile(r"^#### (`+) ?(.+?) ?\1\s*$")
_TABLE = re.compile(r"^\| message \(after `([^`]+)`\)")
_KEY = re.compile(r"^\| `([^`]+)` \|")
_PREFIXES = [
    re.compile(r"^\[[A-Z][A-Z0-9_-]*\] +"),  # [COORDINATOR], [LLD-101]: the console, prefix-tee
    re.compile(r"^(error|warning|problem): "),  # cli.py, the console, status.render
    re.compile(r"^skipped .+?: "),  # a skipped file or --only id, and its reason
    re.compile(r"^[A-Z]+-\S+ skipped: "),  # the coordinator's skip line
    re.compile(r"^(--[a-z-]+|ASSEMBLYZERO_[A-Z_]+|\[tool\.assemblyzero\] \S+ in \S+): "),
]


def doc_messages(text: str) -> list[str]:
    """The messages the page is keyed by: headings, and the keys of message tables."""
    found, table = [], None
    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            found.append(heading.group(2))
        elif _TABLE.match(line):
            table = _TABLE.match(line).group(1)  # type: ignore[union-attr]
        elif table and _KEY.match(line):
            found.append(table + _KEY.match(line).group(1))  # type: ignore[union-attr]
        elif not line.startswith("|"):
            table = None
    return found


def _field(node: ast.expr) -> str:
    """What an f-string field may stand for: one value for a `!r`, formatted or computed
    one (`{name!r}`, `{rest:.1f}`, `{index + 1}`), else any text (`{exc}`, `{path}`)."""
    assert isinstance(node, ast.FormattedValue)
    if node.conversion == ord("r"):
        return r"('[^']*'|\"[^\"]*\"|\S+)"
    if node.format_spec is not None or isinstance(node.value, (ast.BinOp, ast.UnaryOp)):
        return r"(\s*\S+)"
    return "(.*?)"


@cache
def templates() -> tuple[re.Pattern[str], ...]:
    """Every string literal and f-string of the package with 12+ characters of wording."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                parts = [re.escape(v.value) if isinstance(v, ast.Constant) else _field(v)
                         for v in node.values]
                wording = sum(len(v.value) for v in node.values if isinstance(v, ast.Constant))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                parts, wording = [re.escape(node.value)], len(node.value)
            else:
                continue
            if wording >= MIN_WORDING:
                found.append(re.compile("".join(parts), re.S))
    return tuple(found)


def printable(message: str) -> bool:
    forms = {message}
    for prefix in _PREFIXES:
        forms |= {prefix.sub("", form, count=1) for form in forms}
    return any(t.fullmatch(form) for form in forms for t in templates())


def test_the_page_quotes_enough_messages_to_check():
    messages = doc_messages(DOC.read_text(encoding="utf-8"))
    assert len(messages) >= 50
    assert any(m.startswith("error: credentials file /tmp/azdoc/ccreds.json, entry")
               for m in messages)  # the table keys, completed with the table's prefix


def test_every_message_the_page_is_keyed_by_is_printed_by_the_package():
    stale = [m for m in doc_messages(DOC.read_text(encoding="utf-8")) if not printable(m)]
    assert stale == [], "docs/troubleshooting.md quotes messages the package no longer prints"


@pytest.mark.parametrize("old", [  # wordings this page had before the messages said what to do
    "error: --parallel must be at least 1 (got 0)",
    "No idea what '--paralel' is!",
    "error: workspace not found: /tmp/work/nope (pass --repo=PATH)",
    "error: credentials file /tmp/azdoc/ccreds.json, entry 'team-a': unknown field(s) x",
    "error: no run to retry in /tmp/w (/tmp/w/logs/parallel/latest not found)",
    "error: run 20261124-141858-lld-all-17494 is still in progress; wait for it or stop it",
    "error: --only needs at least one id (got ',')",
])
def test_a_reworded_message_is_caught(old: str):
    assert not printable(old)


BLOCK_SDK = """
import sys


class Missing:
    \"\"\"Makes one SDK look uninstalled, as on a machine without the extra.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name == "anthropic" or name.startswith("anthropic."):
            raise ModuleNotFoundError(name)
        return None


sys.meta_path.insert(0, Missing())
"""


@pytest.mark.e2e
def test_a_missing_sdk_stops_the_run_before_any_item_with_the_extra_to_install(
        tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["1", "2"])
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(BLOCK_SDK)
    run = cli("lld-all", "--parallel=2", "--drafter=anthropic:claude-x", "--repo", str(ws),
              env={"PYTHONPATH": str(hook)})
    assert run.code == 2, run.out + run.err
    assert run.err.strip() == ('error: the anthropic provider needs its SDK, which is not '
                               'installed in this Python: pip install "assemblyzero[anthropic]", '
                               'then run again')
    assert not (ws / "logs/parallel").exists()  # no run was started, no item failed
    plan = cli("dry-run", "--drafter=anthropic:claude-x", "--repo", str(ws),
               env={"PYTHONPATH": str(hook)})
    assert plan.code == 2  # the plan still shows, with the reason the run would stop
    assert "lld: 2 pending" in plan.out
    assert "would stop before its first item (exit 2): the anthropic provider needs" in plan.out
