"""App factory for uvicorn (``--workers`` imports the app in each worker process)."""

from __future__ import annotations

import os

import orjson
from starlette.applications import Starlette

from webpacs.config import isolated, load
from webpacs.web.app import create_app


def app() -> Starlette:
    """The app for the settings ``webpacs serve`` put in the environment (else the defaults)."""
    raw = os.environ.get("WEBPACS_EFFECTIVE_SETTINGS")
    if raw:
        return create_app(isolated(orjson.loads(raw)))
    return create_app(load())
