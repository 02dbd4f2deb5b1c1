"""The audit log writer (``audit.path``): one JSON line per access to patient data and per
change, from the HTTP side (``webpacs.web.audit``) and the DIMSE side (``webpacs.dimse.audit``).
The fields are described in those modules and in the README ("Security")."""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime
from typing import Any

import orjson


class AuditLog:
    """Appends JSON lines to a file (or standard output), one write per line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> None:
        line = orjson.dumps({"time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                             **entry}) + b"\n"  # fmt: skip
        with self._lock:
            if self.path == "-":
                sys.stdout.buffer.write(line)
                sys.stdout.buffer.flush()
                return
            with open(self.path, "ab") as out:  # opened per line: rotation-friendly
                out.write(line)
