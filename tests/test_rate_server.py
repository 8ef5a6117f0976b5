"""benchmarks/rate_server.py, the rate-limited loopback model API of the pacing benchmark:
its buckets, headers, replies in both wire formats (read by the real SDKs and by our own
header readers), the scripted LLD item, the replay check; and benchmarks/pacing.py's floor.
Real sockets, in process; one e2e test runs the real CLI against it."""

from __future__ import annotations

import json
import math
import os
import re
import sys
import threading
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, cli, latest_run, make_workspace, summary

sys.path.insert(0, str(ROOT / "benchmarks"))
from pacing import floor
from rate_server import (
    CHARS_PER_TOKEN,
    SECTIONS,
    Call,
    Limits,
    RateServer,
    go_duration,
    replay,
)

from assemblyzero.ids import Kind
from assemblyzero.providers.ratelimits import anthropic_info, openai_info
from assemblyzero.workflow.templates import load_template

PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
DRAFT_PROMPT = "Write the low-level design in markdown ...\n\n# Source\n# Feature 7\n\nShip it."
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def post(server: RateServer, wire: str, key: str, prompt: str = "hi",
         **extra: Any) -> tuple[int, dict[str, str], Any]:
    body = {"model": "m", "messages": [{"role": "user", "content": prompt}], **extra}
    auth = {"Authorization": f"Bearer {key}"} if wire == "openai" else {"x-api-key": key}
    request = urllib.request.Request(server.url + PATHS[wire], json.dumps(body).encode(),
                                     {"Content-Type": "application/json", **auth})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, {k.lower(): v for k, v in reply.headers.items()}, \
                json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, json.loads(exc.read())


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_a_key_is_admitted_up_to_its_bucket_then_429_with_the_wait_rounded_up(wire: str) -> None:
    clock = Clock()
    with RateServer(Limits(rpm=3), clock=clock) as server:
        assert [post(server, wire, "k")[0] for _ in range(3)] == [200, 200, 200]
        clock.now += 0.5  # 0.5 s of 1 request per 20 s refilled
        status, headers, body = post(server, wire, "k")
        assert status == 429
        assert headers["retry-after"] == "20" and headers["retry-after-ms"] == "19500"
        if wire == "openai":
            assert body["error"]["type"] == "requests"
            assert body["error"]["code"] == "rate_limit_exceeded"
        else:
            assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
        assert post(server, wire, "other")[0] == 200  # each key its own buckets
        assert server.calls() == 5 and server.rate_limited() == 1
        assert server.rate_limited("k") == 1 and server.calls("other") == 1
        assert server.totals()["k"]["accepted"] == 3


def test_refill_is_continuous() -> None:
    clock = Clock()
    with RateServer(Limits(rpm=6), clock=clock) as server:  # 1 request per 10 s
        for _ in range(6):
            assert post(server, "openai", "k")[0] == 200
        clock.now += 4.0
        status, headers, _ = post(server, "openai", "k")
        assert status == 429 and headers["retry-after-ms"] == "6000"
        assert headers["x-ratelimit-remaining-requests"] == "0"
        clock.now += 6.0
        assert post(server, "openai", "k")[0] == 200
        clock.now += 25.0  # 2.5 requests' worth: two admitted, the third waits 5 s
        assert [post(server, "openai", "k")[0] for _ in range(2)] == [200, 200]
        status, headers, _ = post(server, "openai", "k")
        assert status == 429 and headers["retry-after-ms"] == "5000"
        assert headers["retry-after"] == "5"


def test_input_tokens_are_debited_at_admission_and_output_debt_blocks_the_next_call() -> None:
    clock = Clock()
    prompt = "x" * 400  # 100 input tokens
    with RateServer(Limits(input_tpm=250, output_tpm=60), clock=clock) as server:
        status, _, first = post(server, "openai", "k", prompt)
        assert status == 200 and first["usage"]["prompt_tokens"] == 100
        out = first["usage"]["completion_tokens"]
        assert out > 60  # the reply drove the output bucket into debt
        status, headers, body = post(server, "openai", "k", prompt)
        assert status == 429 and body["error"]["type"] == "tokens"
        assert int(headers["retry-after-ms"]) == math.ceil((out - 60) * 1000)  # 1 token/s
        clock.now += out - 60
        assert post(server, "openai", "k", prompt)[0] == 200
        clock.now += 1000
        assert post(server, "openai", "k", "y" * 1200)[0] == 400  # 300 > the bucket of 250
        assert server.violations() == []


def test_openai_headers_have_the_real_names_and_go_durations() -> None:
    clock = Clock()
    with RateServer(Limits(rpm=60, tpm=6000), clock=clock) as server:
        _, headers, body = post(server, "openai", "k", "z" * 80)
        limits = {k: v for k, v in headers.items() if k.startswith("x-ratelimit")}
        used = body["usage"]["total_tokens"]
        assert limits == {"x-ratelimit-limit-requests": "60",
                          "x-ratelimit-remaining-requests": "59",
                          "x-ratelimit-reset-requests": "1s",
                          "x-ratelimit-limit-tokens": "6000",
                          "x-ratelimit-remaining-tokens": str(6000 - used),
                          "x-ratelimit-reset-tokens": go_duration(used / 100)}
        info = openai_info(headers)
        assert info is not None and info.requests is not None and info.tokens is not None
        assert (info.requests.limit, info.requests.remaining, info.requests.reset) == (60, 59, 1)
        assert info.tokens.remaining == 6000 - used
    with RateServer(Limits(rpm=60)) as server:  # only what is configured
        _, headers, _ = post(server, "openai", "k")
        assert not any("tokens" in k for k in headers if k.startswith("x-ratelimit"))


def test_go_durations_as_openai_writes_them() -> None:
    assert [go_duration(s) for s in (0, 0.12, 0.0001, 1, 59.5, 360, 3723.5)] == [
        "0s", "120ms", "1ms", "1s", "59.5s", "6m0s", "1h2m3.5s"]


def test_anthropic_headers_have_the_real_names_and_rfc3339_resets_also_on_a_429() -> None:
    clock, wall = Clock(), 1_800_000_000.0
    limits = Limits(rpm=2, tpm=10_000, input_tpm=8000, output_tpm=3000)
    with RateServer(limits, clock=clock, wall=lambda: wall) as server:
        post(server, "anthropic", "k")
        post(server, "anthropic", "k")
        status, headers, _ = post(server, "anthropic", "k")
        assert status == 429
        names = {k for k in headers if k.startswith("anthropic-ratelimit-")}
        assert names == {f"anthropic-ratelimit-{d}-{f}"
                         for d in ("requests", "tokens", "input-tokens", "output-tokens")
                         for f in ("limit", "remaining", "reset")}
        assert headers["anthropic-ratelimit-requests-remaining"] == "0"
        reset = headers["anthropic-ratelimit-requests-reset"]
        assert RFC3339.fullmatch(reset)
        assert datetime.fromisoformat(reset).timestamp() == wall + 60  # empty: a minute
        info = anthropic_info(headers, now=wall)
        assert info is not None and info.requests is not None and info.output_tokens is not None
        assert info.requests.reset == 60 and info.output_tokens.limit == 3000
        assert info.retry_after == 30  # retry-after-ms: half a minute for one request


def test_unknown_keys_are_refused_when_the_server_lists_its_keys() -> None:
    with RateServer(keys={"a": Limits(rpm=1), "b": Limits(rpm=1)}) as server:
        assert post(server, "openai", "a")[0] == 200
        assert post(server, "openai", "b")[0] == 200  # same Limits, its own bucket
        status, _, body = post(server, "openai", "c")
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        assert post(server, "anthropic", "")[0] == 401
        assert server.calls() == 2


def _drafts_and_reviews(ask: Any) -> list[str]:
    """Draft, review, revise, review for one item through `ask(role, prompt) -> text`."""
    first = ask("draft", DRAFT_PROMPT)
    review1 = ask("review", f"Review this low-level design draft ...\n# Source\n# Feature 7\n"
                            f"\n# Draft\n{first}")
    second = ask("draft", f"{DRAFT_PROMPT}\n\n# Previous draft\n{first}\n\n# Reviewer "
                          f"findings to address\n1. {json.loads(review1)['findings'][0]['text']}"
                          "\n\nReturn the whole revised document.")
    review2 = ask("review", f"Review this low-level design draft ...\n# Source\n# Feature 7\n"
                            f"\n# Draft\n{second}")
    return [first, review1, second, review2]


def _check_script(replies: list[str]) -> None:
    first, review1, second, review2 = replies
    template = load_template(Kind.LLD)
    assert template.sections == SECTIONS
    for draft in (first, second):
        assert all(f"\n## {name}\n" in draft for name in template.sections)
    assert "revision 1 of the design" in first and "revision 2 of the design" in second
    assert json.loads(review1)["verdict"] == "REVISE" and json.loads(review1)["findings"]
    assert json.loads(review2) == {"verdict": "APPROVED",
                                   "rationale": "The draft covers the source.", "findings": []}


def test_the_openai_sdk_reads_every_reply_and_an_item_is_revise_then_approved() -> None:
    import openai  # the SDKs take a second to import: only where a test uses them

    with RateServer(Limits(rpm=100, tpm=100_000)) as server:
        client = openai.OpenAI(api_key="sk-test", base_url=server.base_url("openai"),
                               max_retries=0)

        def ask(role: str, prompt: str) -> str:
            extra: dict[str, Any] = {}
            if role == "review":
                extra["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": "verdict", "schema": {"type": "object"}, "strict": True}}
            messages = [{"role": "system", "content": "You write."},
                        {"role": "user", "content": prompt}]
            reply = client.chat.completions.create(model="bench-model", messages=messages,
                                                   **extra)
            text = reply.choices[0].message.content or ""
            assert reply.choices[0].finish_reason == "stop"
            assert reply.usage is not None
            assert reply.usage.prompt_tokens == len("You write.\n" + prompt) // CHARS_PER_TOKEN
            assert reply.usage.completion_tokens == len(text) // CHARS_PER_TOKEN
            return text

        _check_script(_drafts_and_reviews(ask))
        assert [c.role for c in server.records()] == ["draft", "review", "revise", "review"]
        assert {c.item for c in server.records()} == {"7"}


def test_the_anthropic_sdk_reads_every_reply_and_a_forced_tool_gets_a_tool_use_block() -> None:
    import anthropic

    with RateServer(Limits(rpm=5, input_tpm=100_000, output_tpm=100_000)) as server:
        client = anthropic.Anthropic(api_key="sk-ant-test", base_url=server.base_url("anthropic"),
                                     max_retries=0)

        def ask(role: str, prompt: str) -> str:
            extra: dict[str, Any] = {}
            if role == "review":
                extra = {"tools": [{"name": "verdict", "input_schema": {"type": "object"}}],
                         "tool_choice": {"type": "tool", "name": "verdict"}}
            message = client.messages.create(model="bench-model", max_tokens=4096,
                                             system="You write.",
                                             messages=[{"role": "user", "content": prompt}],
                                             **extra)
            block = message.content[0]
            if role == "review":
                assert block.type == "tool_use" and block.name == "verdict"
                assert message.stop_reason == "tool_use"
                text = json.dumps(block.input)
            else:
                assert block.type == "text" and message.stop_reason == "end_turn"
                text = block.text
            assert message.usage.input_tokens == len("You write.\n" + prompt) // CHARS_PER_TOKEN
            assert message.usage.output_tokens == len(text) // CHARS_PER_TOKEN
            return text

        _check_script(_drafts_and_reviews(ask))
        with pytest.raises(anthropic.RateLimitError):
            for _ in range(2):  # the fifth call is the last of the bucket
                ask("draft", DRAFT_PROMPT)


def test_the_latency_is_slept_outside_the_lock() -> None:
    """Three calls in flight at once reach the sleep together (else the barrier breaks)."""
    barrier = threading.Barrier(3, timeout=10)
    with RateServer(Limits(rpm=100), latency=1.0, sleep=lambda _: barrier.wait()) as server:
        threads = [threading.Thread(target=post, args=(server, "openai", "k")) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not barrier.broken and server.totals()["k"]["accepted"] == 3


def test_the_replay_finds_traffic_over_a_limit_and_none_in_what_the_server_admitted() -> None:
    clock = Clock()
    with RateServer(Limits(rpm=4, output_tpm=10_000), clock=clock) as server:
        for _ in range(6):
            post(server, "openai", "k")
            clock.now += 1
        assert server.rate_limited() == 2 and not server.exceeded()
        wrong = server.violations(Limits(rpm=2))
        assert len(wrong) == 2 and all("requests held" in w for w in wrong)
        assert server.violations({"k": Limits(rpm=4)}) == []
    over = [Call(at=float(t), key="k", wire="openai", status=200, input_tokens=10,
                 output_tokens=0, done=t + 0.1) for t in range(4)]
    assert replay(over, Limits(rpm=4)) == []
    assert len(replay(over, Limits(rpm=3))) == 1  # the fourth within 3 s: 0.15 requests in
    debt = [Call(0.0, "k", "openai", 200, 10, output_tokens=90, done=1.0),
            Call(2.0, "k", "openai", 200, 10, output_tokens=5, done=3.0)]
    assert replay(debt, Limits(output_tpm=60)) != []  # admitted while 29 tokens in debt
    assert replay(debt, Limits(output_tpm=60, rpm=10)) != []
    assert replay([*debt[:1], Call(31.0, "k", "openai", 200, 10, 5, 32.0)],
                  Limits(output_tpm=60)) == []  # the debt was refilled by then


def test_the_floor_is_the_tightest_limit_plus_the_last_call_and_at_least_one_chain() -> None:
    calls = [Call(0.0, "a", "openai", 200, 100, 50, 0.3) for _ in range(48)]
    keys = {"a": Limits(rpm=18), "b": Limits(rpm=18)}
    assert floor(calls, keys, 0.3) == pytest.approx((12 / 0.6 + 0.3, "requests"))
    tokens = {"a": Limits(rpm=18, input_tpm=1200), "b": Limits(rpm=18, input_tpm=1200)}
    # 4,800 input tokens on 2 x 1,200: 2,400 left at 40/s = 60 s
    assert floor(calls, tokens, 0.3) == pytest.approx((60.3, "input"))
    assert floor(calls[:4], keys, 0.3) == pytest.approx((1.2, "latency"))
    unlimited = {"a": Limits(rpm=18), "b": Limits()}
    assert floor(calls, unlimited, 0.3) == pytest.approx((1.2, "latency"))


@pytest.mark.e2e
def test_the_real_cli_runs_an_item_in_four_calls_within_the_limits(tmp_path: Path) -> None:
    secret = "sk-bench-e2e-000000000000000000"
    limits = Limits(rpm=60, tpm=100_000)
    with RateServer(keys={secret: limits}) as server:
        creds = Path(os.environ["ASSEMBLYZERO_CREDENTIALS"])
        creds.write_text(json.dumps({"credentials": [
            {"name": "bench", "provider": "openai", "key": secret, "rpm": 60, "tpm": 100_000,
             "base_url": server.base_url("openai"), "max_concurrent": 2}]}))
        creds.chmod(0o600)
        ws = make_workspace(tmp_path / "ws", issues=["1"])
        run = cli("lld-all", "--parallel=2", "--drafter=openai:bench-model",
                  "--reviewer=openai:bench-model", "--repo", str(ws), timeout=60,
                  env={"ASSEMBLYZERO_CALL_TIMEOUT": "10"})
        assert run.code == 0, run.out + run.err
        assert [c.role for c in server.records()] == ["draft", "review", "revise", "review"]
        assert server.violations() == [] and server.rate_limited() == 0
    item = summary(latest_run(ws))["items"][0]
    assert item["status"] == "done" and item["iterations"] == 2
    assert (ws / "docs/lld/active/LLD-001.md").is_file()
