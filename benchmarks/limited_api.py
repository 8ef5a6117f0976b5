"""A model API on 127.0.0.1 that enforces per-key rate limits the way the real ones do.

    with LimitedAPI({"sk-a": Limits(rpm=19), "sk-b": Limits(rpm=19)}, latency=0.2) as api:
        api.url            # http://127.0.0.1:PORT (OpenAI: + /v1; Anthropic: as is)
        api.calls(), api.refused()

It speaks OpenAI chat completions (`POST /v1/chat/completions`, the key in
`Authorization: Bearer`) and Anthropic messages (`POST /v1/messages`, the key in `x-api-
key` or `Authorization: Bearer`). Each key has continuous-refill buckets, as Anthropic
documents its limiter: one per configured limit (requests, input+output tokens, input
tokens, output tokens per minute), holding at most a minute's allowance and refilled at
limit/60 per second. A request is admitted when the request bucket holds 1 and the token
buckets hold its input tokens; its output tokens are taken after the reply is written (a
bucket may go below 0: a debt). Otherwise: 429 with `retry-after` (whole seconds,
rounded up), `retry-after-ms` and the API's own error body. Every reply, 429s included,
carries the real rate-limit headers of the configured limits: OpenAI `x-ratelimit-
limit|remaining|reset-requests| tokens` (resets as `1s`, `6m0s`, `120ms`), Anthropic
`anthropic-ratelimit-requests|tokens| input-tokens|output-tokens-limit|remaining|reset`
(resets as RFC 3339 times).

Replies make the LLD workflow take a known path: a draft (every section of the LLD
template), a review that asks for a revision (REVISE with one finding), the revision,
and a review that approves: 4 calls per item. An item is told apart by the "Feature
<id>" of its source. Token counts are the text's characters / 4.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECTIONS = ("Context & Goal", "Proposed Changes", "Data Structures", "Interfaces",
            "Alternatives Considered", "Security", "Performance", "Risks", "Testing",
            "Rollout", "Open Questions", "Definition of Done")
BODY = ("This section is covered here in full, with the reasoning behind each choice "
        "and what the team checks before it ships. ") * 3
DRAFT = "# Design\n\n" + "\n\n".join(f"## {name}\n{BODY}" for name in SECTIONS) + "\n"
REVISE = {"verdict": "REVISE", "rationale": "One gap.",
          "findings": [{"severity": "major", "section": "Security",
                        "text": "say how the session tokens are stored"}]}
APPROVE = {"verdict": "APPROVED", "rationale": "The draft covers the source.", "findings": []}
FEATURE = re.compile(r"Feature (\S+)")
WINDOW = 60.0


@dataclass(frozen=True)
class Limits:
    rpm: float | None = None
    tpm: float | None = None  # input + output
    input_tpm: float | None = None
    output_tpm: float | None = None


@dataclass
class Bucket:
    limit: float
    level: float = math.nan
    at: float = 0.0

    def now(self, t: float) -> float:
        if math.isnan(self.level):
            self.level, self.at = self.limit, t
        self.level = min(self.limit, self.level + (t - self.at) * self.limit / WINDOW)
        self.at = t
        return self.level

    def wait(self, need: float, t: float) -> float:
        short = min(need, self.limit) - self.now(t)
        return max(0.0, short * WINDOW / self.limit)

    def full_in(self, t: float) -> float:
        return max(0.0, (self.limit - self.now(t)) * WINDOW / self.limit)


@dataclass
class Record:
    t: float
    key: str
    admitted: bool
    input: int = 0
    output: int = 0


@dataclass
class _Key:
    buckets: dict[str, Bucket] = field(default_factory=dict)  # requests, tokens, input, output


class LimitedAPI:
    def __init__(self, limits: dict[str, Limits], latency: float = 0.2,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.latency, self.clock = latency, clock
        self.keys = {secret: _Key({name: Bucket(value) for name, value in (
            ("requests", lim.rpm), ("tokens", lim.tpm), ("input", lim.input_tpm),
            ("output", lim.output_tpm)) if value}) for secret, lim in limits.items()}
        self.records: list[Record] = []
        self.reviews: dict[str, int] = {}  # per item: reviews answered
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {}
                wire = "anthropic" if self.path.endswith("/messages") else "openai"
                # Anthropic: x-api-key (this SDK release sends Authorization: Bearer too)
                key = ((self.headers.get("x-api-key") if wire == "anthropic" else None)
                       or (self.headers.get("Authorization") or "").removeprefix("Bearer "))
                status, data, headers = api.serve(wire, key or "", body)
                out = json.dumps(data).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(out)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> LimitedAPI:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- what happened --------------------------------------------------------------
    def calls(self, key: str | None = None) -> int:
        return sum(1 for r in self.records if key is None or r.key == key)

    def refused(self, key: str | None = None) -> int:
        return sum(1 for r in self.records if not r.admitted and (key is None or r.key == key))

    def demand(self) -> dict[str, float]:
        """What the admitted calls took, in every dimension."""
        ok = [r for r in self.records if r.admitted]
        return {"requests": float(len(ok)), "input": float(sum(r.input for r in ok)),
                "output": float(sum(r.output for r in ok)),
                "tokens": float(sum(r.input + r.output for r in ok))}

    # --- one request ------------------------------------------------------------------
    def serve(self, wire: str, key: str, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        if key not in self.keys:
            return 401, _error(wire, "authentication_error", "invalid x-api-key"), {}
        text = _prompt(body)
        tokens_in = len(text) // 4
        with self.lock:
            now, buckets = self.clock(), self.keys[key].buckets
            needs = {"requests": 1.0, "tokens": tokens_in, "input": tokens_in, "output": 0.0}
            wait = max((b.wait(needs[name], now) for name, b in buckets.items()), default=0.0)
            if wait > 0:
                self.records.append(Record(now, key, False))
                headers = {**self._headers(wire, buckets, now),
                           "retry-after": str(math.ceil(wait)),
                           "retry-after-ms": str(math.ceil(wait * 1000))}
                return 429, _error(wire, "rate_limit_error", "rate limit exceeded"), headers
            for name, bucket in buckets.items():
                bucket.now(now)
                bucket.level -= needs[name]
            reply, structured = self._reply(body, text)
        time.sleep(self.latency)  # the model writing, no lock held
        tokens_out = len(reply) // 4
        with self.lock:
            now = self.clock()
            for name in ("tokens", "output"):
                if name in buckets:
                    buckets[name].now(now)
                    buckets[name].level -= tokens_out
            self.records.append(Record(now, key, True, tokens_in, tokens_out))
            headers = self._headers(wire, buckets, now)
        return 200, _answer(wire, body, reply, structured, tokens_in, tokens_out), headers

    def _reply(self, body: dict[str, Any], text: str) -> tuple[str, bool]:
        """The draft, or a review (REVISE first, then APPROVED, per item)."""
        review = ("response_format" in body or "tools" in body
                  or text.lstrip().startswith("Review"))
        if not review:
            return DRAFT, False
        found = FEATURE.search(text)
        item = found.group(1) if found else "?"
        self.reviews[item] = self.reviews.get(item, 0) + 1
        verdict = REVISE if self.reviews[item] == 1 else APPROVE
        structured = "response_format" in body or "tools" in body
        if structured:
            return json.dumps(verdict), True
        return f"VERDICT: {verdict['verdict']}\n\n" + "\n".join(
            f"- {f['section']}: {f['text']}" for f in verdict["findings"]), False

    def _headers(self, wire: str, buckets: dict[str, Bucket], now: float) -> dict[str, str]:
        headers = {}
        for name, bucket in buckets.items():
            left, reset = max(0, math.floor(bucket.now(now))), bucket.full_in(now)
            if wire == "openai" and name in ("requests", "tokens"):
                headers[f"x-ratelimit-limit-{name}"] = f"{bucket.limit:.0f}"
                headers[f"x-ratelimit-remaining-{name}"] = str(left)
                headers[f"x-ratelimit-reset-{name}"] = _go_duration(reset)
            elif wire == "anthropic":
                label = {"input": "input-tokens", "output": "output-tokens"}.get(name, name)
                when = datetime.fromtimestamp(time.time() + reset, UTC)
                headers[f"anthropic-ratelimit-{label}-limit"] = f"{bucket.limit:.0f}"
                headers[f"anthropic-ratelimit-{label}-remaining"] = str(left)
                headers[f"anthropic-ratelimit-{label}-reset"] = when.strftime(
                    "%Y-%m-%dT%H:%M:%SZ")
        return headers


def _prompt(body: dict[str, Any]) -> str:
    parts = [str(body.get("system") or "")]
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else ""
        if isinstance(content, list):
            content = " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
        parts.append(str(content or ""))
    return "\n".join(parts)


def _answer(wire: str, body: dict[str, Any], text: str, structured: bool, tokens_in: int,
            tokens_out: int) -> dict[str, Any]:
    if wire == "openai":
        return {"id": "c", "object": "chat.completion", "created": 1,
                "model": body.get("model", "m"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                          "total_tokens": tokens_in + tokens_out}}
    if structured:
        tool = (body.get("tools") or [{}])[0].get("name", "verdict")
        content: list[dict[str, Any]] = [{"type": "tool_use", "id": "t", "name": tool,
                                          "input": json.loads(text)}]
    else:
        content = [{"type": "text", "text": text}]
    return {"id": "m", "type": "message", "role": "assistant", "model": body.get("model", "m"),
            "content": content, "stop_reason": "tool_use" if structured else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out}}


def _error(wire: str, kind: str, message: str) -> dict[str, Any]:
    if wire == "openai":
        return {"error": {"message": message, "type": kind,
                          "code": "rate_limit_exceeded" if kind == "rate_limit_error" else kind}}
    return {"type": "error", "error": {"type": kind, "message": message}}


def _go_duration(seconds: float) -> str:
    """`120ms`, `1s`, `6m0s`, as OpenAI writes its resets."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.0f}s" if minutes else f"{rest:.3g}s"
