"""A local stand-in for an OpenAI-compatible chat-completions server (tests only)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: A stub answer: (status, body) or a callable that may sleep first.
Reply = tuple[int, Any]


class StubServer:
    """A chat-completions stub that answers from a queue and records each request."""

    def __init__(self) -> None:
        self.replies: list[Reply | Callable[[], Reply]] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                stub.requests.append(json.loads(self.rfile.read(length)))
                stub.headers.append(dict(self.headers))
                stub.paths.append(self.path)
                reply = stub.replies.pop(0) if stub.replies else (500, {"error": "no reply"})
                status, body = reply() if callable(reply) else reply
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.paths: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


def completion(content: str) -> Reply:
    return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}


def good_reply(caption_data: dict[str, Any]) -> str:
    data = dict(caption_data)
    del data["category"]
    return json.dumps(data)
