"""Who is calling, and with which role (DESIGN "Access control").

``Authenticator.from_settings(settings)`` checks the ``Authorization`` header of a request
against ``auth.mode``: ``none`` (everyone is ``admin``), ``basic`` (``auth.users``, see
``webpacs.auth.basic``), ``oidc`` (bearer JWTs of ``auth.oidc.issuer``, see
``webpacs.auth.oidc``) or ``basic+oidc``. The route's role is checked in
``webpacs.web.access``; this package only says who the caller is.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from webpacs.config import ROLES, Settings
from webpacs.errors import ConfigError, Unauthorized

log = logging.getLogger("webpacs.auth")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user name (or the token's subject) and its role."""

    name: str
    role: str | None  # None: known, but holding none of ROLES

    def may(self, role: str) -> bool:
        """Whether this caller's role includes ``role`` (read < write < admin)."""
        return self.role is not None and ROLES.index(self.role) >= ROLES.index(role)


ANONYMOUS = Principal("anonymous", "admin")


class Authenticator:
    """The checks ``auth.mode`` names, applied to one ``Authorization`` header value."""

    def __init__(self, settings: Settings) -> None:
        mode = settings.auth.mode
        self.mode = mode
        self.basic = None
        self.oidc = None
        if "basic" in mode:
            from webpacs.auth.basic import BasicUsers

            self.basic = BasicUsers(settings.auth.users)
        if "oidc" in mode:
            from webpacs.auth.oidc import OidcVerifier

            oidc = settings.auth.oidc
            if not oidc["issuer"] or not oidc["audience"]:
                raise ConfigError("auth.mode oidc needs auth.oidc.issuer and auth.oidc.audience")
            self.oidc = OidcVerifier(oidc["issuer"], oidc["audience"], oidc["rolesClaim"])

    @property
    def challenge(self) -> str:
        """The ``WWW-Authenticate`` value of a 401."""
        if self.basic is not None and self.oidc is None:
            return 'Basic realm="webpacs", charset="UTF-8"'
        if self.basic is not None:
            return 'Bearer realm="webpacs", Basic realm="webpacs", charset="UTF-8"'
        return 'Bearer realm="webpacs"'

    async def authenticate(self, authorization: str | None, client: str) -> Principal:
        """The caller of a request with this header; ``Unauthorized`` when it does not check
        out (the message never repeats the credentials)."""
        if self.mode == "none":
            return ANONYMOUS
        scheme, _, value = (authorization or "").partition(" ")
        scheme = scheme.lower()
        if scheme == "basic" and self.basic is not None:
            return await self.basic.check(value.strip(), client, self.challenge)
        if scheme == "bearer" and self.oidc is not None:
            return await self.oidc.check(value.strip(), self.challenge)
        raise Unauthorized("authentication required", challenge=self.challenge)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings, host: str) -> None:
    """Refuse ``auth.mode: none`` on an address other than loopback unless
    ``auth.allowAnonymous`` says so (then warn)."""
    if settings.auth.mode != "none" or is_loopback(host):
        return
    if not settings.auth.allow_anonymous:
        raise ConfigError(
            f"refusing to serve {host} without authentication: set auth.mode (basic, oidc)"
            " or auth.allowAnonymous: true"
        )
    log.warning("serving %s with auth.mode none: anyone who reaches it may read and change"
                " every study (auth.allowAnonymous)", host)  # fmt: skip


def cors_origins(settings: Settings) -> list[str]:
    """``auth.corsOrigins``; unset: ``*`` when ``auth.mode`` is ``none``, else no other origin."""
    origins = list(settings.auth.cors_origins)
    if "*" in origins and settings.auth.mode != "none":
        raise ConfigError("auth.corsOrigins '*' is only allowed with auth.mode none")
    return origins or (["*"] if settings.auth.mode == "none" else [])
