"""A local stand-in for the Anthropic Messages API (loopback only), told to answer,
fail, rate-limit or stall. The official SDK talks to it through ``base_url``."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeAnthropic:
    def __init__(self) -> None:
        self.mode = "ok"  # ok | fail | rate_limit | stall
        self.stall_s = 5.0
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                fake.requests.append(body)
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                if fake.mode == "stall":
                    time.sleep(fake.stall_s)
                if fake.mode == "rate_limit":
                    self._send(
                        429,
                        {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
                        {"retry-after-ms": "10"},
                    )
                    return
                if fake.mode == "fail":
                    self._send(500, {"type": "error", "error": {"type": "api_error", "message": "boom"}})
                    return
                facts = body["messages"][0]["content"]
                text = (
                    "This payment was flagged because it came from a blocked country shortly after "
                    "normal activity. Check the cardholder's recent travel before releasing it."
                )
                if "ANSWER_WITH_CONTROL_CHARS" in facts:
                    text = "Flagged.\x1b[31m Check\u202e it.\n\n" + "x" * 2000
                self._send(
                    200,
                    {
                        "id": f"msg_{len(fake.requests)}",
                        "type": "message",
                        "role": "assistant",
                        "model": body["model"],
                        "content": [{"type": "text", "text": text}],
                        "stop_reason": "end_turn",
                        "stop_sequence": None,
                        "usage": {"input_tokens": 180, "output_tokens": 40},
                    },
                )

            def _send(
                self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
