"""Where log records go, and in what form: one line per record, never wrapped.

Two forms (``log.format``, ``--log-format``):

* ``text``: on a terminal, rich's handler (colours, aligned columns); written to a file or a
  pipe, plain lines (``2025-01-02T03:04:05.678+01:00 INFO webpacs.access: GET ...``) that
  are never wrapped, so a UID is never split and ``grep`` finds whole records;
* ``json``: one JSON object per line with ``time``, ``level``, ``logger``, ``message`` and
  the record's structured fields (``extra=``: e.g. the access log's ``method``, ``path``,
  ``status``, ``bytes``, ``ms``, ``client``; a change's ``study``, ``series``, ``sop``).

The same configuration is applied in each worker process of ``webpacs serve`` (they are
spawned, so they inherit no handler), and uvicorn is told to leave logging alone
(``log_config=None``): its messages go through the same handler.
"""

from __future__ import annotations

import datetime
import logging
import sys
from typing import Any, TextIO

import orjson

FORMATS = ("text", "json")
#: The attributes every LogRecord has; the others were given with ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def _time(record: logging.LogRecord) -> str:
    t = datetime.datetime.fromtimestamp(record.created).astimezone()
    return t.isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class PlainFormatter(logging.Formatter):
    """``TIME LEVEL logger: message``, on one line (tracebacks follow on their own lines)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_time(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def handler(fmt: str, stream: TextIO | None = None) -> logging.Handler:
    """The handler for ``fmt``: JSON lines, plain lines, or rich's on a terminal."""
    out = stream if stream is not None else sys.stderr
    if fmt == "json":
        h: logging.Handler = logging.StreamHandler(out)
        h.setFormatter(JsonFormatter())
    elif out.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        h = RichHandler(console=Console(file=out), show_path=False)
        h.setFormatter(logging.Formatter("%(message)s"))
    else:
        h = logging.StreamHandler(out)
        h.setFormatter(PlainFormatter())
    return h


def configure(verbose: int, fmt: str = "text") -> None:
    """Set up the root logger for a command (``-v`` count; ``-q`` would be negative)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: choose among {', '.join(FORMATS)}")
    level = logging.WARNING if verbose < 0 else logging.INFO if verbose == 0 else logging.DEBUG
    logging.basicConfig(level=level, handlers=[handler(fmt)], force=True)
    # pydicom logs every oddity of every file it reads; our own messages say what matters
    logging.getLogger("pydicom").setLevel(logging.DEBUG if verbose > 1 else logging.ERROR)
    # uvicorn's start-up chatter only with -v (the access log is ours: webpacs.access)
    logging.getLogger("uvicorn.error").setLevel(logging.INFO if verbose > 0 else logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
