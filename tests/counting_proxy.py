"""A counting HTTP proxy in front of pouchdb-server: every request the database server
receives from webpacs passes here and is recorded as (method, path), so a test counts
what CouchDB is asked, on the wire, whichever code path asked it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import httpx

#: Response headers not copied: the proxy sends the body whole, with its own length.
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class CountingProxy:
    """Forwards to ``upstream``; ``calls`` lists (method, path without the database)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                headers.pop("Host", None)
                with proxy._lock:
                    proxy.calls.append((self.command, _short(self.path)))
                r = proxy._http.request(
                    self.command, proxy.upstream + self.path, content=body, headers=headers
                )
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in _HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_COPY = _forward

            def log_message(self, *args: object) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def take(self) -> list[tuple[str, str]]:
        """The calls since the last ``take``."""
        with self._lock:
            calls, self.calls = self.calls, []
        return calls

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()


def _short(path: str) -> str:
    """``/db/_all_docs?x`` -> ``_all_docs``; ``/db/series%3A1.2`` -> ``series:1.2``."""
    parts = urlsplit(path).path.lstrip("/").split("/", 1)
    return unquote(parts[1]) if len(parts) > 1 else ""


@contextmanager
def counting(upstream: str) -> Iterator[CountingProxy]:
    proxy = CountingProxy(upstream)
    try:
        yield proxy
    finally:
        proxy.close()
