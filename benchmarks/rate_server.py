"""A loopback model API under rate limits, in both wire formats: for the pacing benchmark.

    with RateServer(Limits(rpm=30, tpm=40_000), latency=0.3) as server:
        server.base_url("openai")     # http://127.0.0.1:PORT/v1 (a credential's base_url)
        server.base_url("anthropic")  # http://127.0.0.1:PORT
        ...
        server.calls(), server.rate_limited(key), server.totals(), server.violations()

    python benchmarks/rate_server.py --port 0 --rpm 30 --tpm 40000 --latency 0.3

It answers OpenAI chat completions (`POST /v1/chat/completions`, key in
`Authorization: Bearer`) and Anthropic messages (`POST /v1/messages`, key in
`x-api-key`, or the Bearer token newer Anthropic SDKs send) with the real reply
shapes. The "model" makes every LLD item take exactly CALLS_PER_ITEM calls: a draft
holding every section of the LLD template says "revision 1 of the design", a review
of revision 1 is REVISE with one finding, the revision says "revision 2", and its
review is APPROVED (decided from the prompt alone, so a call repeated after a 429
gets the same answer). Verdicts come as a forced tool's `tool_use` block or as the
JSON object text.

Limits are per key (each key its own buckets, however many share one Limits):
continuous-refill token buckets holding one minute's allowance and refilled at
limit/60 per second, as Anthropic describes its limiter. A request is admitted when
the requests bucket holds 1, the input and total token buckets its input tokens,
and the output bucket is not in debt; its output is debited when the reply is
sent (the output and total buckets may go below zero: debt). Otherwise: 429 with
`retry-after` (whole seconds, rounded up), `retry-after-ms` and each API's error
body. Every reply, 429s too, carries the API's rate-limit headers for the
configured limits. Tokens are deterministic: input = characters of every message
(and the system prompt) // 4, output = characters of the reply // 4.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WINDOW = 60.0  # seconds: a limit is per minute and its bucket holds a minute's worth
CHARS_PER_TOKEN = 4
CALLS_PER_ITEM = 4  # draft, review (REVISE), revise, review (APPROVED)
APPROVE_AT = 2  # the revision the reviewer approves
EPSILON = 1e-6  # bucket arithmetic slack in the replay
POLL = 0.05  # seconds: how soon serve_forever sees a shutdown
DIMENSIONS = ("requests", "tokens", "input", "output")
SECTIONS = ("Context & Goal", "Proposed Changes", "Data Structures", "Interfaces",
            "Alternatives Considered", "Security", "Performance", "Risks", "Testing",
            "Rollout", "Open Questions", "Definition of Done")  # templates/lld.md
FINDING = {"section": "Security", "severity": "major",
           "text": "Say where the API keys are stored and who can read them."}
_REVISION = re.compile(r"revision (\d+) of the design")
_ITEM = re.compile(r"Feature ([\w-]+)")
# Each API's header names per bucket: OpenAI states requests and total tokens only.
OPENAI_HEADERS = {"requests": "requests", "tokens": "tokens"}
ANTHROPIC_HEADERS = {"requests": "requests", "tokens": "tokens", "input": "input-tokens",
                     "output": "output-tokens"}


@dataclass(frozen=True)
class Limits:
    """Per-minute limits of one key; None: not limited in that dimension."""

    rpm: float | None = None
    tpm: float | None = None  # input and output tokens together
    input_tpm: float | None = None
    output_tpm: float | None = None

    def of(self, dimension: str) -> float | None:
        value: float | None = getattr(self, fields(self)[DIMENSIONS.index(dimension)].name)
        return value


@dataclass(frozen=True)
class Call:
    """One request as the server saw it (`at`, `done`: the server's clock)."""

    at: float  # arrival, which is admission for an accepted call
    key: str
    wire: str  # "openai" or "anthropic"
    status: int  # 200, 429, 400 (too large for a bucket) or 401 (no key)
    input_tokens: int
    output_tokens: int = 0
    done: float | None = None  # when the reply was sent and its output debited
    item: str = ""  # the "Feature N" the prompt is about
    role: str = ""  # draft, revise, review
    seq: tuple[int, int] = (0, 0)  # the server's event order of `at` and `done` (ties)

    @property
    def accepted(self) -> bool:
        return self.status == 200


class Bucket:
    """Continuous refill: holds at most `capacity`, gains capacity/WINDOW per second."""

    def __init__(self, capacity: float, now: float) -> None:
        self.capacity, self.rate = capacity, capacity / WINDOW
        self.level, self.at = capacity, now

    def now(self, now: float) -> float:
        self.level = min(self.capacity, self.level + max(0.0, now - self.at) * self.rate)
        self.at = max(self.at, now)
        return self.level

    def wait(self, need: float, now: float) -> float:
        """Seconds until the bucket holds `need` (0: it does now)."""
        return max(0.0, (need - self.now(now)) / self.rate)

    def until_full(self, now: float) -> float:
        return (self.capacity - self.now(now)) / self.rate


def buckets_for(limits: Limits, now: float) -> dict[str, Bucket]:
    return {d: Bucket(limit, now) for d in DIMENSIONS if (limit := limits.of(d)) is not None}


def needs(input_tokens: int) -> dict[str, float]:
    """What a call must find in each bucket to be admitted (output: no debt)."""
    return {"requests": 1.0, "tokens": float(input_tokens), "input": float(input_tokens),
            "output": 0.0}


def admission_wait(buckets: Mapping[str, Bucket], input_tokens: int,
                   now: float) -> tuple[float, str]:
    """(seconds until admissible, the dimension that waits longest); (0, "") admits."""
    waits = [(b.wait(needs(input_tokens)[d], now), d) for d, b in buckets.items()]
    wait, dimension = max(waits, default=(0.0, ""))
    return (wait, dimension) if wait > 0 else (0.0, "")


def debit(buckets: Mapping[str, Bucket], amounts: Mapping[str, float], now: float) -> None:
    for dimension, amount in amounts.items():
        if dimension in buckets:
            buckets[dimension].now(now)
            buckets[dimension].level -= amount


def replay(calls: Iterable[Call], limits: Limits) -> list[str]:
    """Every admission of the accepted `calls` (one key's) that fresh buckets of `limits`
    would have refused: the requests, input or total bucket short, or output in debt."""
    events: list[tuple[float, int, int, Call]] = []
    for call in calls:
        if call.accepted:
            events.append((call.at, call.seq[0], 1, call))
            events.append((call.done if call.done is not None else call.at, call.seq[1], 0,
                           call))
    # In time order, then the server's; a reply sent at t before an arrival at t.
    events.sort(key=lambda e: e[:3])
    buckets = buckets_for(limits, events[0][0]) if events else {}
    wrong = []
    for at, _, arrival, call in events:
        if not arrival:
            debit(buckets, {"tokens": call.output_tokens, "output": call.output_tokens}, at)
            continue
        for dimension, need in needs(call.input_tokens).items():
            bucket = buckets.get(dimension)
            if bucket is not None and bucket.now(at) < need - EPSILON * bucket.capacity:
                wrong.append(f"{call.key} at {at:.3f}: {dimension} held {bucket.level:.1f}, "
                             f"needed {need:g}")
        debit(buckets, {"requests": 1, "tokens": call.input_tokens,
                        "input": call.input_tokens}, at)
    return wrong


# --- the model ----------------------------------------------------------------------------

def message_text(body: Mapping[str, Any]) -> str:
    """Every message's text and the system prompt, in either wire format."""
    texts: list[str] = []
    for part in [body.get("system"), *[m.get("content") for m in body.get("messages", [])
                                       if isinstance(m, dict)]]:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, list):
            texts += [b["text"] for b in part if isinstance(b, dict)
                      and isinstance(b.get("text"), str)]
    return "\n".join(texts)


def user_text(body: Mapping[str, Any]) -> str:
    return message_text({"messages": [m for m in body.get("messages", [])
                                      if isinstance(m, dict) and m.get("role") == "user"]})


def role_of(body: Mapping[str, Any], prompt: str) -> str:
    if body.get("response_format") or body.get("tools") or prompt.lstrip().startswith("Review"):
        return "review"
    return "revise" if "# Reviewer findings to address" in prompt else "draft"


def revision_in(prompt: str) -> int:
    """The revision number the prompt's (last) draft states; 0 when none."""
    found = _REVISION.findall(prompt)
    return int(found[-1]) if found else 0


def document(item: str, revision: int) -> str:
    lines = [f"# Design: Feature {item}", ""]
    for name in SECTIONS:
        lines += [f"## {name}", f"{name} of feature {item}, as the source asks: this "
                  f"section says what is built, where it lives and how it is checked."]
        if name == SECTIONS[0]:
            lines.append(f"This is revision {revision} of the design.")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def verdict(revision: int) -> dict[str, Any]:
    """REVISE with one finding for a first draft, APPROVED from APPROVE_AT on (or when the
    prompt states no revision: a review this server did not script)."""
    if 0 < revision < APPROVE_AT:
        return {"verdict": "REVISE", "rationale": "One major gap.", "findings": [FINDING]}
    return {"verdict": "APPROVED", "rationale": "The draft covers the source.", "findings": []}


def answer(body: Mapping[str, Any]) -> tuple[str, str, str | dict[str, Any]]:
    """(item, role, reply): the document text, or the verdict object."""
    prompt = user_text(body)
    found = _ITEM.search(prompt)
    item = found.group(1) if found else "?"
    role = role_of(body, prompt)
    if role == "review":
        return item, role, verdict(revision_in(prompt))
    return item, role, document(item, revision_in(prompt) + 1 if role == "revise" else 1)


# --- the wire -----------------------------------------------------------------------------

def go_duration(seconds: float) -> str:
    """A wait as OpenAI writes resets (Go's time.Duration): `120ms`, `1s`, `6m0s`."""
    millis = max(0, math.ceil(seconds * 1000))
    if millis < 1000:
        return f"{millis}ms" if millis else "0s"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def rfc3339(epoch: float) -> str:
    """A UTC time in whole seconds, rounded up: `2026-12-02T09:00:31Z`."""
    return datetime.fromtimestamp(math.ceil(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def limit_headers(wire: str, buckets: Mapping[str, Bucket], now: float,
                  wall: float) -> dict[str, str]:
    headers: dict[str, str] = {}
    names = OPENAI_HEADERS if wire == "openai" else ANTHROPIC_HEADERS
    for dimension, name in names.items():
        bucket = buckets.get(dimension)
        if bucket is None:
            continue
        limit, left = f"{bucket.capacity:g}", str(max(0, math.floor(bucket.now(now))))
        full = bucket.until_full(now)
        if wire == "openai":
            headers |= {f"x-ratelimit-limit-{name}": limit,
                        f"x-ratelimit-remaining-{name}": left,
                        f"x-ratelimit-reset-{name}": go_duration(full)}
        else:
            headers |= {f"anthropic-ratelimit-{name}-limit": limit,
                        f"anthropic-ratelimit-{name}-remaining": left,
                        f"anthropic-ratelimit-{name}-reset": rfc3339(wall + full)}
    return headers


def error_body(wire: str, status: int, message: str, dimension: str = "") -> dict[str, Any]:
    if wire == "openai":
        kinds = {429: ("tokens" if dimension in ("tokens", "input", "output") else "requests",
                       "rate_limit_exceeded"), 401: ("invalid_request_error", "invalid_api_key")}
        kind, code = kinds.get(status, ("invalid_request_error", "request_too_large"))
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}
    kind = {429: "rate_limit_error", 401: "authentication_error"}.get(
        status, "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def reply_body(wire: str, body: Mapping[str, Any], reply: str | dict[str, Any], n: int,
               input_tokens: int) -> tuple[dict[str, Any], int]:
    """(the API's reply JSON, its output tokens)."""
    model = str(body.get("model", "bench-model"))
    choice = body.get("tool_choice")
    tool = choice.get("name") if isinstance(choice, dict) and choice.get("type") == "tool" else None
    text = reply if isinstance(reply, str) else json.dumps(reply)
    output = len(text) // CHARS_PER_TOKEN
    if wire == "openai":
        return {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
                "model": model, "system_fingerprint": None,
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": text,
                                         "refusal": None}}],
                "usage": {"prompt_tokens": input_tokens, "completion_tokens": output,
                          "total_tokens": input_tokens + output}}, output
    block: dict[str, Any] = {"type": "text", "text": text}
    if tool and isinstance(reply, dict):
        block = {"type": "tool_use", "id": f"toolu_{n}", "name": tool, "input": reply}
    return {"id": f"msg_{n}", "type": "message", "role": "assistant", "model": model,
            "content": [block], "stop_reason": "tool_use" if tool else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output}}, output


# --- the server ---------------------------------------------------------------------------

class RateServer:
    """The API on 127.0.0.1: `limits` for any key, or only the keys of `keys` (others 401)."""

    def __init__(self, limits: Limits | None = None, keys: Mapping[str, Limits] | None = None,
                 latency: float = 0.0, port: int = 0,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if limits is None and not keys:
            limits = Limits()
        self.limits, self.keys = limits, dict(keys or {})
        self.latency, self.clock, self.wall, self.sleep = latency, clock, wall, sleep
        self._lock = threading.Lock()
        self._buckets: dict[str, dict[str, Bucket]] = {}
        self._calls: list[Call] = []
        self._events = 0  # admissions and replies so far (the lock held)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(POLL,),
                                        daemon=True)
        self._thread.start()

    def __enter__(self) -> RateServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def base_url(self, wire: str) -> str:
        """What a client's base_url is: OpenAI's SDK appends /chat/completions, Anthropic's
        /v1/messages."""
        return self.url + "/v1" if wire == "openai" else self.url

    def limits_of(self, key: str) -> Limits | None:
        return self.keys.get(key, self.limits)

    # --- what happened ----------------------------------------------------------------------
    def records(self, key: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if key is None or c.key == key]

    def calls(self, key: str | None = None) -> int:
        """Model calls received (401s aside), 429s included."""
        return sum(c.status != 401 for c in self.records(key))

    def rate_limited(self, key: str | None = None) -> int:
        return sum(c.status == 429 for c in self.records(key))

    def totals(self) -> dict[str, dict[str, int]]:
        """Per key: calls, accepted, rate_limited, input_tokens, output_tokens."""
        out: dict[str, dict[str, int]] = {}
        for c in self.records():
            row = out.setdefault(c.key, dict.fromkeys(
                ("calls", "accepted", "rate_limited", "input_tokens", "output_tokens"), 0))
            row["calls"] += c.status != 401
            row["accepted"] += c.accepted
            row["rate_limited"] += c.status == 429
            row["input_tokens"] += c.input_tokens if c.accepted else 0
            row["output_tokens"] += c.output_tokens
        return out

    def violations(self, limits: Limits | Mapping[str, Limits] | None = None) -> list[str]:
        """The accepted traffic replayed per key through fresh buckets (each key's own limits,
        or those given): every admission they would have refused."""
        calls = self.records()
        wrong = []
        for key in sorted({c.key for c in calls}):
            chosen = limits.get(key) if isinstance(limits, Mapping) else limits
            chosen = chosen or self.limits_of(key)
            if chosen is not None:
                wrong += replay([c for c in calls if c.key == key], chosen)
        return wrong

    def exceeded(self) -> bool:
        return bool(self.violations())

    def _next(self) -> int:
        self._events += 1
        return self._events

    # --- one request ------------------------------------------------------------------------
    def handle(self, wire: str, key: str, body: Mapping[str, Any]
               ) -> tuple[int, dict[str, Any], dict[str, str]]:
        input_tokens = len(message_text(body)) // CHARS_PER_TOKEN
        item, role, reply = answer(body)
        with self._lock:
            now, limits = self.clock(), self.limits_of(key) if key else None
            call = Call(now, key, wire, 200, input_tokens, item=item, role=role)
            if limits is None:
                self._calls.append(replace(call, status=401))
                return 401, error_body(wire, 401, "invalid API key"), {}
            buckets = self._buckets.setdefault(key, buckets_for(limits, now))
            too_big = [d for d in ("tokens", "input") if d in buckets
                       and buckets[d].capacity < input_tokens]
            wait, dimension = admission_wait(buckets, input_tokens, now)
            if too_big or wait:
                status = 400 if too_big else 429
                self._calls.append(replace(call, status=status))
                headers = limit_headers(wire, buckets, now, self.wall())
                if too_big:
                    return 400, error_body(wire, 400, f"{input_tokens} input tokens is more "
                                           f"than the per-minute limit"), headers
                headers |= {"retry-after": str(math.ceil(wait)),
                            "retry-after-ms": str(math.ceil(wait * 1000))}
                message = (f"Rate limit reached for {dimension} on this key; try again in "
                           f"{wait:.3f}s")
                return 429, error_body(wire, 429, message, dimension), headers
            debit(buckets, {"requests": 1, "tokens": input_tokens, "input": input_tokens}, now)
            index, arrived = len(self._calls), self._next()
            self._calls.append(call)
        if self.latency:
            self.sleep(self.latency)  # no lock held: calls in flight overlap
        data, output = reply_body(wire, body, reply, index, input_tokens)
        with self._lock:
            done = self.clock()
            debit(buckets, {"tokens": output, "output": output}, done)
            self._calls[index] = replace(call, output_tokens=output, done=done,
                                         seq=(arrived, self._next()))
            return 200, data, limit_headers(wire, buckets, done, self.wall())


def _handler(server: RateServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' httpx clients expect

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?", 1)[0]
            wire = {"/v1/chat/completions": "openai", "/v1/messages": "anthropic"}.get(path)
            if wire is None:
                self._send(404, {"error": {"message": f"no route {path}"}}, {})
                return
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            if not isinstance(body, dict):
                self._send(400, error_body(wire, 400, "the body is not a JSON object"), {})
                return
            # OpenAI: a Bearer token; Anthropic: x-api-key (its newer SDKs send a Bearer too)
            bearer = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            key = bearer if wire == "openai" else self.headers.get("x-api-key", bearer).strip()
            self._send(*server.handle(wire, key, body))

        def _send(self, status: int, data: dict[str, Any], headers: dict[str, str]) -> None:
            raw = json.dumps(data).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its call timed out, or it was stopped)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    for name in ("rpm", "tpm", "input-tpm", "output-tpm"):
        parser.add_argument(f"--{name}", type=float, default=None,
                            help=f"per-minute limit of each key ({name}); default none")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per accepted call")
    args = parser.parse_args(argv)
    limits = Limits(args.rpm, args.tpm, args.input_tpm, args.output_tpm)
    with RateServer(limits, latency=args.latency, port=args.port) as server:
        print(f"{server.url} (OpenAI base_url {server.base_url('openai')}, Anthropic "
              f"{server.base_url('anthropic')}); Ctrl+C stops", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
        print(json.dumps({"totals": server.totals(), "violations": server.violations()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
