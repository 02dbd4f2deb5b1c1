"""HTTP basic authentication against ``auth.users`` (argon2id hashes, never passwords).

A check is constant-time in the password (argon2's verify) and in whether the user exists
(an unknown name is checked against a dummy hash). A client (by address) that failed
``FAILURES_BEFORE_DELAY`` times waits before each further check, doubling up to
``MAX_DELAY`` seconds, until it succeeds. Checked headers are remembered for ``CACHE_SECONDS``
under a keyed hash, so that a viewer's many requests do not each pay argon2's cost.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from starlette.concurrency import run_in_threadpool

from webpacs.auth import Principal
from webpacs.errors import Unauthorized

FAILURES_BEFORE_DELAY = 5
MAX_DELAY = 8.0
CACHE_SECONDS = 60.0
_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    """The argon2id hash that ``auth.users.NAME.hash`` holds."""
    return _HASHER.hash(password)


class BasicUsers:
    def __init__(self, users: dict[str, dict[str, str]]) -> None:
        self.users = users
        self._dummy = _HASHER.hash(os.urandom(16).hex())
        self._key = os.urandom(32)
        self._checked: dict[bytes, tuple[float, Principal]] = {}
        self._failures: dict[str, int] = {}

    def _verify(self, name: str, password: str) -> Principal | None:
        user = self.users.get(name)
        try:
            _HASHER.verify(user["hash"] if user else self._dummy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return Principal(name, user["role"]) if user else None

    async def check(self, value: str, client: str, challenge: str) -> Principal:
        key = hmac.new(self._key, value.encode(), hashlib.sha256).digest()
        hit = self._checked.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        failures = self._failures.get(client, 0)
        if failures >= FAILURES_BEFORE_DELAY:
            await asyncio.sleep(min(MAX_DELAY, 0.5 * 2 ** (failures - FAILURES_BEFORE_DELAY)))
        try:
            name, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            name, sep, password = "", "", ""
        principal = await run_in_threadpool(self._verify, name, password) if sep else None
        if principal is None:
            if len(self._failures) > 10000:
                self._failures.clear()
            self._failures[client] = failures + 1
            raise Unauthorized("wrong user name or password", challenge=challenge)
        self._failures.pop(client, None)
        if len(self._checked) > 10000:
            self._checked.clear()
        self._checked[key] = (time.monotonic() + CACHE_SECONDS, principal)
        return principal
