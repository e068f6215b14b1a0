"""Served targets: throughput against a local OpenAI-compatible stub with a fixed 200 ms latency.

    python bench/served.py [--latency-ms 200]

A loopback-only stub server (bounded request count, stops by itself) answers chat completions after
a fixed delay. Inspect's `openai-api` provider sends it the SIUO-format samples, images included, at
16, 64 and 256 connections; achieved calls/s (first request to last reply, counted at the server)
is compared with the ideal, connections / latency. Target: >= 85% of ideal at 64. Then `vlmguard`
runs with the rewriter on the same server: it must make exactly 2 calls per sample.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from common import siuo_copy

MAX_REQUESTS = 5000
MAX_SECONDS = 300


class Stub(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, latency: float) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.latency, self.lock = latency, threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.count, self.images, self.first, self.last = 0, 0, None, None


class Handler(BaseHTTPRequestHandler):
    server: Stub

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.count += 1
            self.server.first = self.server.first or time.perf_counter()
            over = self.server.count > MAX_REQUESTS
            self.server.images += sum(
                1
                for m in body["messages"]
                if isinstance(m["content"], list)
                for part in m["content"]
                if part.get("type") == "image_url"
            )
        if over:
            self.send_error(503, "request budget spent")
            return
        time.sleep(self.server.latency)
        reply = json.dumps(
            {
                "id": "stub",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "I'm sorry, I can't help with that."},
                    }
                ],
                "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
        with self.server.lock:
            self.server.last = time.perf_counter()


def main() -> None:
    from inspect_ai import eval as inspect_eval

    from solvers import none, vlmguard
    from tasks.siuo import siuo

    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=float, default=200)
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    server = Stub(latency)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Timer(MAX_SECONDS, server.shutdown).start()  # stops by itself whatever happens
    os.environ.update(STUB_BASE_URL=f"http://127.0.0.1:{server.server_address[1]}/v1", STUB_API_KEY="local")
    model = "openai-api/stub/target"
    try:
        for connections in (16, 64, 256):
            samples = connections * 4
            task = siuo(data_dir=str(siuo_copy(Path(tempfile.mkdtemp()), samples)), epochs=1)
            server.reset()
            inspect_eval(
                task,
                solver=none(),
                model=model,
                max_connections=connections,
                score=False,
                log_dir=tempfile.mkdtemp(),
                display="none",
            )
            achieved = server.count / (server.last - server.first + latency)
            ideal = connections / latency
            print(
                f"{connections:3d} connections: {achieved:6.1f} calls/s of ideal {ideal:6.1f} "
                f"({100 * achieved / ideal:.0f}%), {server.count} calls, {server.images} images sent"
            )
        samples = 64
        task = siuo(data_dir=str(siuo_copy(Path(tempfile.mkdtemp()), samples)), epochs=1)
        server.reset()
        inspect_eval(
            task,
            solver=vlmguard(),
            model=model,
            model_roles={"rewriter": "openai-api/stub/rewriter"},
            max_connections=64,
            score=False,
            log_dir=tempfile.mkdtemp(),
            display="none",
        )
        print(
            f"vlmguard: {server.count} calls for {samples} samples = {server.count / samples:.2f} per sample "
            f"(rewriter + target; judge calls are the scorer's and were not run)"
        )
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
