"""The cmd provider: any command that reads the prompt on stdin and answers on stdout."""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli, group_alive, make_workspace

from assemblyzero.providers import ModelRequest, ProviderError, ProviderKey, load_provider
from assemblyzero.providers.cmd import CmdProvider, create
from assemblyzero.workflow.templates import split_sections

UPPER = "import sys\nsys.stdout.write(sys.stdin.read().upper())\n"
ECHO_BYTES = "import sys\nsys.stdout.buffer.write(sys.stdin.buffer.read())\n"
FAIL = """import sys
sys.stdin.read()
for n in range(1, 16):
    print(f"err-{n:02d}: something broke", file=sys.stderr)
sys.exit(3)
"""
HANG = """import os, subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open(sys.argv[1], "w") as out:
    out.write(f"{os.getpid()} {grandchild.pid}")
time.sleep(60)
"""
DRAFTER = """import re, sys
prompt = sys.stdin.read()
outline = prompt.split("\\n# Source\\n")[0]
sections = re.findall(r"^## (.+)$", outline, re.M)
if len(sections) != 12:
    sys.exit(f"expected the 12 LLD sections in the prompt, got {sections}")
print("# A design\\n")
for name in sections:
    print(f"## {name}\\n{name} for this issue, written by the cmd drafter.\\n")
"""
REVIEWER = "import sys\nsys.stdin.read()\nprint('VERDICT: APPROVED')\nprint('Looks complete.')\n"


def request(prompt: str = "make this loud") -> ModelRequest:
    return ModelRequest(role="draft", kind="lld", item_id="42", title="t", source="s",
                        sections=("A",), prompt=prompt)


def script(tmp_path: Path, name: str, code: str, *args: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(code, encoding="utf-8")
    return shlex.join([sys.executable, str(path), *args])


@pytest.mark.e2e
def test_the_prompt_goes_to_stdin_and_stdout_is_the_reply(tmp_path: Path) -> None:
    provider = create(script(tmp_path, "upper", UPPER))
    reply = provider.complete(request("make this loud\nplease"))
    assert reply.text == "MAKE THIS LOUD\nPLEASE"
    assert reply.input_tokens is None and reply.output_tokens is None


@pytest.mark.e2e
def test_the_registry_loads_it_and_ignores_a_key(tmp_path: Path) -> None:
    provider = load_provider("cmd:" + script(tmp_path, "upper", UPPER),
                             ProviderKey("local", "unused-secret"))
    assert provider.name == "cmd" and isinstance(provider, CmdProvider)
    assert provider.complete(request("abc")).text == "ABC"


@pytest.mark.e2e
def test_unicode_round_trips(tmp_path: Path) -> None:
    prompt = "Grüße, 世界 — naïve café ✓ 🚀\n"
    assert create(script(tmp_path, "echo", ECHO_BYTES)).complete(request(prompt)).text == prompt


@pytest.mark.e2e
def test_a_failing_command_reports_its_exit_code_and_stderr_tail(tmp_path: Path) -> None:
    with pytest.raises(ProviderError) as caught:
        create(script(tmp_path, "fail", FAIL)).complete(request())
    message = str(caught.value)
    assert "exited with code 3" in message
    assert "err-06" in message and "err-15" in message
    assert "err-05" not in message and "err-01" not in message
    assert len(message) < 1500


@pytest.mark.e2e
def test_a_missing_command_is_named(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match="command not found: no-such-model-cli-xyz"):
        create("no-such-model-cli-xyz --flag").complete(request())


@pytest.mark.parametrize("spec", ["", "   ", "llm 'unterminated"])
def test_an_unusable_command_line_is_refused(spec: str) -> None:
    with pytest.raises(ProviderError, match="cmd"):
        create(spec)


@pytest.mark.e2e
def test_a_timeout_kills_the_command_and_what_it_started(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSEMBLYZERO_CALL_TIMEOUT", "0.5")
    pids = tmp_path / "pids"
    provider = create(script(tmp_path, "hang", HANG, str(pids)))
    started = time.monotonic()
    with pytest.raises(ProviderError, match=r"timed out after 0.5s"):
        provider.complete(request())
    assert time.monotonic() - started < 5
    child, grandchild = map(int, pids.read_text().split())
    deadline = time.monotonic() + 5
    while (group_alive(child) or _alive(grandchild)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not group_alive(child) and not _alive(grandchild)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


@pytest.mark.e2e
def test_lld_all_end_to_end_with_cmd_models(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", issues=["41", "42", "43"])
    drafter = script(tmp_path, "drafter", DRAFTER)
    reviewer = script(tmp_path, "reviewer", REVIEWER)
    run = cli("lld-all", "--parallel=2", f"--drafter=cmd:{drafter}",
              f"--reviewer=cmd:{reviewer}", "--repo", str(ws), timeout=60)
    assert run.code == 0, run.out + run.err
    for item_id in ("41", "42", "43"):
        lld = ws / f"docs/lld/active/LLD-0{item_id}.md"
        sections = split_sections(lld.read_text(encoding="utf-8"))
        assert len(sections) == 12 and all(v.strip() for v in sections.values()), lld
        assert "written by the cmd drafter" in sections["Risks"]
        review = ws / f"docs/lineage/lld-{item_id}/001-review.md"
        assert "Looks complete." in review.read_text(encoding="utf-8")


SLOW = """import os, signal, sys, time
with open(sys.argv[1], "w") as out:
    out.write(f"{os.getpid()} {os.getppid()}")
time.sleep(60)
"""


@pytest.mark.e2e
def test_a_killed_workers_command_ends_before_its_item_is_released(tmp_path: Path) -> None:
    """kill -9 of a worker mid-call (OOM, say): its command is in the worker's group, so the
    coordinator ends it before it releases the item; nothing of the item runs on."""
    ws = make_workspace(tmp_path / "ws", issues=["41"])
    pids = tmp_path / "pids"
    drafter = script(tmp_path, "slow", SLOW, str(pids))
    proc = subprocess.Popen(
        [sys.executable, "-m", "assemblyzero", "lld-all", f"--drafter=cmd:{drafter}",
         "--repo", str(ws), "--grace=1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 30
    while not (pids.exists() and len(pids.read_text().split()) == 2):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    command, worker = map(int, pids.read_text().split())
    os.kill(worker, signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1, out
    assert not _alive(command), out  # ended by the coordinator, not left running
    assert "LLD-041 failed" in out


@pytest.mark.e2e
def test_a_system_message_goes_first_on_stdin_and_a_schema_is_not_structured(
        tmp_path: Path) -> None:
    provider = create(script(tmp_path, "echo", ECHO_BYTES))
    schema = {"type": "object", "properties": {"verdict": {"type": "string"}}}
    asked = dataclasses.replace(request("review this"), role="review", schema=schema,
                                system="You review designs.", max_output_tokens=50)
    reply = provider.complete(asked)
    assert reply.text == "You review designs.\n\nreview this"
    assert (reply.structured, reply.truncated, reply.retries) == (False, False, ())
    assert provider.complete(request("no system")).text == "no system"
