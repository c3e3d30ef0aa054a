"""A real HTTP server on 127.0.0.1 for download tests: serves bytes, 404s, stalls, or breaks off.

No test here touches the internet; this stands in for a weights mirror or a TF Hub host.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: The longest a stalling response holds its connection, so no test can hang for long.
STALL_SECONDS = 5


class LocalServer:
    """`files` maps a URL path (query included) to bytes; `stall` and `cut` to misbehave."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.stall: set[str] = set()
        self.cut: set[str] = set()  # announce the full length, send half, close
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                if self.path in server.stall:
                    time.sleep(STALL_SECONDS)
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if self.path in server.cut else body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> LocalServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: as offline as it gets, at once."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
