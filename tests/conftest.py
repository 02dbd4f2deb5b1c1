"""Shared test helpers."""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_SYSTEM_DEPS = os.environ.get("WEBPACS_REQUIRE_SYSTEM_DEPS") == "1"


def require_binary(name: str) -> str:
    """Path of a system program; skip when it is not installed, fail in CI.

    With ``WEBPACS_REQUIRE_SYSTEM_DEPS=1`` a missing program fails the test instead
    of skipping it, so CI cannot pass by skipping.
    """
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed (Debian package needed, e.g. apt-get install dcmtk)"
        if REQUIRE_SYSTEM_DEPS:
            pytest.fail(msg + " and WEBPACS_REQUIRE_SYSTEM_DEPS=1 is set")
        pytest.skip(msg)
    return path
