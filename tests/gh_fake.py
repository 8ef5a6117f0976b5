"""A fake `gh` on PATH: answers from a JSON file, records every call (for GitHub tests)."""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

FAKE_GH = r'''#!{python}
import json, os, signal, sys
from pathlib import Path

state = Path({state!r})
stdin = sys.stdin.read()
with open(state / "calls.jsonl", "a", encoding="utf-8") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "stdin": stdin, "cwd": os.getcwd(),
                          "gh_token": os.environ.get("GH_TOKEN")}}) + "\n")

def marker(name):
    path = state / name
    return path.read_text(encoding="utf-8") if path.exists() else None

if marker("hang") is not None:
    signal.pause()
if marker("fail") is not None:
    sys.stderr.write(marker("fail"))
    sys.exit(1)

args, opts = sys.argv[1:], {{}}
command = []
while args:
    arg = args.pop(0)
    if arg.startswith("--"):
        opts.setdefault(arg[2:], []).append(args.pop(0))
    else:
        command.append(arg)
issues = json.loads((state / "issues.json").read_text(encoding="utf-8"))

if command == ["auth", "status"]:
    if (marker("auth") or "").strip() == "logged out":
        sys.stderr.write("You are not logged into any GitHub hosts.\n"
                         "To log in, run: gh auth login\n")
        sys.exit(1)
    sys.stderr.write("github.com\n  Logged in to github.com account octocat\n")
elif marker("stdout") is not None:
    sys.stdout.write(marker("stdout"))
elif command == ["issue", "list"]:
    wanted = opts.get("label", [])
    found = [i for i in issues if all(w in [lab["name"] for lab in i["labels"]] for w in wanted)]
    fields = opts["json"][0].split(",")
    found = found[: int(opts.get("limit", ["30"])[0])]
    print(json.dumps([{{f: i[f] for f in fields}} for i in found]))
elif command == ["issue", "create"]:
    number = max([i["number"] for i in issues], default=0) + 1
    issues.append({{"number": number, "title": opts["title"][0], "body": stdin,
                    "labels": [{{"name": n, "color": "ededed"}} for n in opts.get("label", [])]}})
    (state / "issues.json").write_text(json.dumps(issues), encoding="utf-8")
    sys.stderr.write("\nCreating issue in acme/widgets\n\n")
    print(f"https://github.com/acme/widgets/issues/{{number}}")
else:
    sys.stderr.write(f"unknown command {{command}}\n")
    sys.exit(1)
'''

ISSUES = [
    {"number": 7, "title": "Split bills", "body": "Let people split a bill.",
     "labels": [{"name": "lld", "color": "ededed"}]},
    {"number": 9, "title": "Export CSV", "body": "Export the ledger.",
     "labels": [{"name": "lld", "color": "ededed"}, {"name": "p1", "color": "ff0000"}]},
    {"number": 12, "title": "Dark mode", "body": "",
     "labels": []},
]
HOSTILE = 'It\'s "quoted" `ls` $(rm -rf /) ; echo pwned | cat > /tmp/x & \\n\nline two\t$HOME'


@dataclass
class Fake:
    state: Path
    bin: Path

    def calls(self) -> list[dict[str, Any]]:
        path = self.state / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def mark(self, name: str, text: str) -> None:
        (self.state / name).write_text(text, encoding="utf-8")


@pytest.fixture
def fake_gh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fake:
    state, bin_dir = tmp_path / "gh-state", tmp_path / "bin"
    state.mkdir()
    bin_dir.mkdir()
    (state / "issues.json").write_text(json.dumps(ISSUES), encoding="utf-8")
    script = bin_dir / "gh"
    script.write_text(FAKE_GH.format(python=sys.executable, state=str(state)), encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.delenv("GH_TOKEN", raising=False)
    return Fake(state, bin_dir)
