"""A loopback OpenAI-compatible chat server for tests: records every request, answers from a function.

Used to check what a served target, judge or rewriter receives (vLLM and hosted APIs speak this
protocol). Binds 127.0.0.1 only, answers a bounded number of requests, and stops with its context.
A responder returning `BadRequest` gets vLLM's HTTP 400 error body (e.g. a request over the context window).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from inspect_ai.model import GenerateConfig, Model, get_model

MAX_REQUESTS = 2000


@dataclass(frozen=True)
class BadRequest:
    """A stub reply: HTTP 400 with vLLM's error body holding `message`."""

    message: str


Responder = Callable[[dict[str, Any]], "str | BadRequest | None"]


def message_text(message: dict[str, Any]) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def image_parts(message: dict[str, Any]) -> int:
    content = message["content"]
    return 0 if isinstance(content, str) else sum(p.get("type") == "image_url" for p in content)


class StubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, responder: Responder) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.responder = responder
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: StubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests.append(body)
            over = len(self.server.requests) > MAX_REQUESTS
        if over:
            self.send_error(503, "request budget spent")
            return
        text = self.server.responder(body)  # None: a reply with no choices at all
        if isinstance(text, BadRequest):
            error = {"object": "error", "message": text.message, "type": "BadRequestError", "param": None}
            self._send(400, json.dumps(error).encode())
            return
        choices = [
            {"index": i, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
            for i in range(int(body.get("n") or 1) if text is not None else 0)
        ]
        payload = json.dumps(
            {
                "id": "stub",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": choices,
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        ).encode()
        self._send(200, payload)

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@contextmanager
def openai_stub(responder: Responder) -> Iterator[StubServer]:
    server = StubServer(responder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def served(server: StubServer, name: str, api: str = "vllm", **config: Any) -> Model:
    """A model `api/name` of Inspect's served providers, pointed at the stub (a role or a target)."""
    return get_model(
        f"{api}/{name}", base_url=server.base_url, api_key="test", memoize=False, config=GenerateConfig(**config)
    )
