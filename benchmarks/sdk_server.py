"""A loopback model server for the bench's `sdk_start` rows: just enough of three wire formats.

    server = SdkServer()      # 127.0.0.1, a free port, served from a daemon thread
    server.url_for("openai")  # the base_url a worker's credential names
    server.calls              # every request: arrival (time.monotonic()), method, path
    server.close()

It answers any POST by its path: `.../chat/completions` as OpenAI chat
completions, `.../messages` as Anthropic messages, `...:generateContent` as
Gemini; anything else is a 404 (and recorded, so a request the bench did not
expect shows in its JSON). A review (the request asks for a structured
reply, or its text asks for a VERDICT) is approved, natively when asked
(JSON content, Anthropic's forced `verdict` tool, Gemini's JSON text);
anything else is answered with a draft holding every LLD section. So one
worker runs its item to the end: draft, review, done.

Arrival is stamped with `time.monotonic()` when the request line and headers
are read, on the clock a launcher (bench.py's launch.py) stamps the spawn
with: CLOCK_MONOTONIC, the same in every process of this machine.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECTIONS = ("Context & Goal", "Proposed Changes", "Data Structures", "Interfaces",
            "Alternatives Considered", "Security", "Performance", "Risks", "Testing",
            "Rollout", "Open Questions", "Definition of Done")
DRAFT = "# Design\n\n" + "\n\n".join(f"## {name}\n{name} is covered here." for name in SECTIONS)
APPROVE = {"verdict": "APPROVED", "rationale": "The draft covers the source.", "findings": []}
APPROVE_TEXT = "VERDICT: APPROVED\n\nAll good."
# What a request asking for a structured reply carries, in each wire format.
STRUCTURED = (b'"response_format"', b'"tools"', b'"responseJsonSchema"', b'"responseSchema"',
              b'"responseMimeType": "application/json"', b'"responseMimeType":"application/json"')
PROVIDERS = ("openai", "anthropic", "gemini")


@dataclass(frozen=True)
class Call:
    arrived: float  # time.monotonic() when its headers were read
    method: str
    path: str
    wire: str  # "openai", "anthropic", "gemini" or "" (not a model call)
    review: bool


def wire_of(path: str) -> str:
    path = path.split("?", 1)[0]
    if path.endswith("/chat/completions"):
        return "openai"
    if path.endswith("/messages"):
        return "anthropic"
    if path.endswith(":generateContent"):
        return "gemini"
    return ""


def reply(wire: str, review: bool, structured: bool, model: str) -> dict[str, Any]:
    """The body of a successful answer in `wire`'s format."""
    text = (json.dumps(APPROVE) if structured else APPROVE_TEXT) if review else DRAFT
    usage_in, usage_out = 120, 60
    if wire == "openai":
        return {"id": "chatcmpl-bench", "object": "chat.completion", "created": 1,
                "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": usage_in, "completion_tokens": usage_out,
                          "total_tokens": usage_in + usage_out}}
    if wire == "anthropic":
        block: dict[str, Any] = (
            {"type": "tool_use", "id": "toolu_bench", "name": "verdict", "input": APPROVE}
            if review and structured else {"type": "text", "text": text})
        return {"id": "msg_bench", "type": "message", "role": "assistant", "model": model,
                "content": [block], "stop_sequence": None,
                "stop_reason": "tool_use" if block["type"] == "tool_use" else "end_turn",
                "usage": {"input_tokens": usage_in, "output_tokens": usage_out}}
    return {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": usage_in, "candidatesTokenCount": usage_out,
                              "totalTokenCount": usage_in + usage_out},
            "modelVersion": model}


class SdkServer:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.first = threading.Event()  # set at the first model call
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs

            def do_POST(self) -> None:
                arrived = time.monotonic()
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                wire = wire_of(self.path)
                structured = any(marker in raw for marker in STRUCTURED)
                review = structured or b"VERDICT" in raw
                with server.lock:
                    server.calls.append(Call(arrived, self.command, self.path, wire, review))
                if not wire:
                    self._send(404, {"error": {"message": f"no such endpoint: {self.path}"}})
                    return
                server.first.set()
                try:
                    model = str(json.loads(raw).get("model") or "bench-model")
                except (ValueError, AttributeError):
                    model = "bench-model"
                self._send(200, reply(wire, review, structured, model))

            do_GET = do_POST

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, name="sdk-server", daemon=True).start()

    def url_for(self, provider: str) -> str:
        """The base URL a credential of `provider` names (OpenAI's SDK wants the /v1)."""
        return f"http://127.0.0.1:{self.port}" + ("/v1" if provider == "openai" else "")

    def reset(self) -> None:
        with self.lock:
            self.calls = []
            self.first.clear()

    def first_call(self) -> Call | None:
        with self.lock:
            return next((c for c in self.calls if c.wire), None)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
