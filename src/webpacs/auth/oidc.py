"""Bearer JWTs of an OpenID Connect issuer (``auth.oidc``), checked with joserfc.

The issuer's keys are found through ``{issuer}/.well-known/openid-configuration`` (its
``jwks_uri``), fetched on first use, kept, and fetched again when a token names a ``kid``
they lack (at most once per ``REFRESH_SECONDS``, so that made-up kids cannot hammer the
issuer). A token passes when its signature checks against those keys with an asymmetric
algorithm, ``iss`` is the issuer, ``aud`` holds the audience, and ``exp`` (required) and
``nbf`` hold. Its role is the highest of ``read``/``write``/``admin`` found in the claim
``auth.oidc.rolesClaim`` (a dotted path such as Keycloak's ``realm_access.roles``; a list,
or a space-separated string like ``scope``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from starlette.concurrency import run_in_threadpool

from webpacs.auth import Principal
from webpacs.config import ROLES
from webpacs.errors import Unauthorized

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
REFRESH_SECONDS = 30.0
LEEWAY_SECONDS = 30


class OidcVerifier:
    def __init__(self, issuer: str, audience: str, roles_claim: str) -> None:
        self.issuer = issuer
        self.audience = audience
        self.roles_claim = roles_claim
        self._keys: KeySet | None = None
        self._fetched = 0.0
        self._lock = threading.Lock()

    def _fetch_keys(self) -> KeySet:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        with httpx.Client(timeout=10.0) as client:
            jwks_uri = client.get(url).raise_for_status().json()["jwks_uri"]
            return KeySet.import_key_set(client.get(jwks_uri).raise_for_status().json())

    def keys(self, kid: str | None) -> KeySet:
        """The issuer's keys, fetched again when ``kid`` is not among them."""
        with self._lock:
            known = self._keys is not None and (
                kid is None or any(k.kid == kid for k in self._keys.keys)
            )
            stale = time.monotonic() - self._fetched > REFRESH_SECONDS
            if self._keys is None or (not known and stale):
                self._fetched = time.monotonic()
                self._keys = self._fetch_keys()
            return self._keys

    def verify(self, token: str) -> Principal:
        try:
            kid = jws.extract_compact(token.encode()).headers().get("kid")
            keys = self.keys(kid)
            if kid is not None and not any(k.kid == kid for k in keys.keys):
                raise Unauthorized("token signed with an unknown key")
            decoded = jwt.decode(token, keys, algorithms=list(ALGORITHMS))
            jwt.JWTClaimsRegistry(
                leeway=LEEWAY_SECONDS,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.audience},
                exp={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise Unauthorized(f"invalid token ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise Unauthorized(
                f"the issuer's keys are unavailable ({type(exc).__name__})"
            ) from None
        claims = decoded.claims
        return Principal(
            str(claims.get("preferred_username") or claims.get("sub")), self.role(claims)
        )

    def role(self, claims: dict[str, Any]) -> str | None:
        value: Any = claims
        for part in self.roles_claim.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        names = (
            value.split() if isinstance(value, str) else value if isinstance(value, list) else []
        )
        held = [r for r in ROLES if r in names]
        return held[-1] if held else None

    async def check(self, token: str, challenge: str) -> Principal:
        try:
            return await run_in_threadpool(self.verify, token)
        except Unauthorized as exc:
            exc.details["challenge"] = challenge + ', error="invalid_token"'
            raise
