"""A small synchronous client for the CouchDB 3.x HTTP API (httpx, pooled, bounded).

Every call goes through one ``httpx.Client`` (a connection pool) and a semaphore that
bounds the number of calls in flight (``couchdb.maxConcurrent``). Transport errors and
unexpected statuses become ``StorageError`` here; callers look at the statuses they
expect (``404``, ``409``, ``412``) themselves.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from webpacs.errors import StorageError


class CouchClient:
    """HTTP calls to one CouchDB database."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        username: str = "",
        password: str = "",
        max_concurrent: int = 16,
        timeout: float = 60.0,
    ) -> None:
        self.server = url.rstrip("/")
        self.database = database
        self._sem = threading.BoundedSemaphore(max(1, max_concurrent))
        auth = httpx.BasicAuth(username, password) if username else None
        self._http = httpx.Client(
            auth=auth,
            timeout=timeout,
            limits=httpx.Limits(max_connections=max(1, max_concurrent)),
            headers={"Accept": "application/json"},
        )

    def db_path(self, path: str = "") -> str:
        """The URL of ``path`` inside the database (``path`` already quoted)."""
        base = f"{self.server}/{quote(self.database, safe='')}"
        return f"{base}/{path}" if path else base

    @staticmethod
    def doc_path(doc_id: str) -> str:
        """A document's path; design documents keep their ``_design/`` slash."""
        if doc_id.startswith("_design/"):
            return "_design/" + quote(doc_id[len("_design/") :], safe="")
        return quote(doc_id, safe="")

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        ok: tuple[int, ...] = (200, 201, 202),
        server_level: bool = False,
    ) -> tuple[int, Any]:
        """One request; returns (status, decoded JSON) for the statuses in ``ok``."""
        url = f"{self.server}/{path}" if server_level else self.db_path(path)
        content = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        query = None
        if params:
            query = {
                k: (v if isinstance(v, str) else orjson.dumps(v).decode())
                for k, v in params.items()
            }
        try:
            with self._sem:
                resp = self._http.request(
                    method, url, content=content, params=query, headers=headers
                )
        except httpx.HTTPError as e:
            raise StorageError(f"CouchDB {method} {path}: {e}") from e
        try:
            data = orjson.loads(resp.content) if resp.content else None
        except orjson.JSONDecodeError:
            data = None
        if resp.status_code not in ok:
            reason = data.get("reason") if isinstance(data, dict) else resp.text[:200]
            raise StorageError(f"CouchDB {method} {path}: {resp.status_code} {reason}")
        return resp.status_code, data

    def close(self) -> None:
        self._http.close()
