"""A real HTTP receiver on loopback for the sensors that post (alerting webhook, case management): it records
every POST (path, headers, JSON body) and answers what `answer(request, seen)` returns."""

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Answer = Callable[[dict, list[dict]], tuple[int, dict[str, str], bytes]]


def ok(request: dict, seen: list[dict]) -> tuple[int, dict[str, str], bytes]:
    return 200, {}, b"ok"


class Receiver:
    """Serves on 127.0.0.1:`port` (0 = any free port) until stop(); `requests` holds what it received."""

    def __init__(self, port: int = 0, answer: Answer = ok, path: str = "/"):
        seen = self.requests = []
        self.path = path

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                request = {"path": self.path, "headers": dict(self.headers), "body": json.loads(self.rfile.read(length))}
                seen.append(request)
                status, headers, body = answer(request, seen)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str | None = None) -> str:
        return f"http://127.0.0.1:{self.port}{self.path if path is None else path}"

    @property
    def posts(self) -> list[tuple[str, dict]]:
        """(path, JSON body) of every POST, in order."""
        return [(r["path"], r["body"]) for r in self.requests]

    def keys(self) -> list[str]:
        """The Idempotency-Key header of every POST, in order."""
        return [r["headers"].get("Idempotency-Key") for r in self.requests]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
