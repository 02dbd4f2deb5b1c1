"""App factory for uvicorn (``--workers`` imports the app in each worker process).

The supervisor of ``webpacs serve --workers N`` imports this module for ``layers`` only:
the app's modules (pydicom, numpy, Starlette, the codecs) are imported by ``app``, in the
workers, so that the supervisor stays small (about 30 MB instead of 80)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from starlette.applications import Starlette

#: Where ``webpacs serve`` leaves its configuration layers for the worker processes: the
#: ``-c`` files and the command-line flags. Each worker loads the same layers again (the
#: home and current directory files, its inherited environment), so the effective values,
#: passwords and keys among them, never travel in the environment (DESIGN rule 12).
LAYERS_ENV = "WEBPACS_SERVE_LAYERS"


def layers(files: tuple[str, ...], flags: dict[str, Any]) -> str:
    """The value of ``LAYERS_ENV`` for these ``-c`` files and flags."""
    return orjson.dumps({"files": [os.path.abspath(f) for f in files], "flags": flags}).decode()


def app() -> Starlette:
    """The app for the layers ``webpacs serve`` put in the environment (else the defaults)."""
    from webpacs.config import load
    from webpacs.web.app import create_app

    raw = os.environ.get(LAYERS_ENV)
    given = orjson.loads(raw) if raw else {"files": [], "flags": {}}
    return create_app(load(given["files"], given["flags"]))
