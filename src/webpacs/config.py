"""Layered settings: defaults < ~/.webpacs.json5 < ./webpacs.json5 < -c FILE < WEBPACS_* < flags.

Keys are camelCase, grouped in sections (``server``, ``ingest``, ``dimse``, ...). Every
leaf has an environment variable ``WEBPACS_<SECTION>_<KEY>`` (upper case, e.g.
``WEBPACS_SERVER_PORT``; top-level keys ``WEBPACS_<KEY>``, e.g. ``WEBPACS_DATADIR``).
An unknown key or a value of the wrong type is a ``ConfigError`` naming where it came from.

Each section is a frozen dataclass below (``ServerSettings``, ``DimseSettings``, ...): its
fields, in snake_case, are the section's keys, in camelCase, and their defaults are the
defaults (``DEFAULTS`` is derived from them). To add a setting, add a field. ``load``
merges the layers, checks them and builds the typed sections once: code reads
``settings.server.qido_max_results``, never a string key.

The service sections ``server``, ``dimse`` and ``static`` may override the shared
settings ``dataDir``, ``index`` and ``blobs``; left unset (or ``null``) they inherit the
top-level value. ``Settings.for_service(name)`` is the effective view of one service.

The ``ae`` table lists known application entities by a free-form name; its entries'
keys are fixed (``AE_KEYS``) and checked like every other setting. The whole table can
also come from the environment as one JSON5 object in ``WEBPACS_AE``.

The index and blob backend names are those of ``webpacs.storage.registry``.
"""

from __future__ import annotations

import copy
import os
import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import json5

from webpacs.backends import BLOBS, INDEXES
from webpacs.errors import ConfigError
from webpacs.pixels.families import DECODE_FAMILIES, RECOMPRESS_FAMILIES

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def default_data_dir() -> str:
    """The per-user data directory ($XDG_DATA_HOME/webpacs, else ~/.local/share/webpacs)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(base, "webpacs")


def secret() -> Any:
    """A secret setting (default ""): left out of reprs and shown masked by ``config show``
    (DESIGN rule 12: secrets appear in no log, message or listing)."""
    return field(default="", repr=False, metadata={"secret": True})


# --------------------------------------------------------------------------- the sections
@dataclass(frozen=True)
class TlsSettings:
    """TLS of a listening service (``server.tls``, ``dimse.tls``): PEM files, ``~`` expanded,
    relative to the current directory. No ``cert`` = no TLS. ``ca`` checks the client
    certificates (and, for DIMSE, the certificates of the AEs webpacs calls with TLS)."""

    cert: str = ""  # our certificate (chain), PEM
    key: str = ""  # its private key, PEM, unencrypted
    ca: str = ""  # CA certificates, PEM; "" = the system's (outgoing) / none (incoming)
    require_client_cert: bool = False  # only clients with a certificate that ``ca`` signed

    @property
    def enabled(self) -> bool:
        return bool(self.cert)


@dataclass(frozen=True)
class TopLevel:
    """The settings outside any section."""

    data_dir: str = ""  # "" = default_data_dir()
    index: str = "sqlite"
    blobs: str = "files"
    query_ae: str = ""  # name in the ``ae`` table whose studies QIDO also lists; "" = off
    proxy_ae: str = ""  # name in the ``ae`` table that missing studies are retrieved from


@dataclass(frozen=True)
class ServiceOverrides:
    """The shared settings a service section may override (``None`` = inherit)."""

    data_dir: str | None = None
    index: str | None = None
    blobs: str | None = None


@dataclass(frozen=True)
class ServerSettings(ServiceOverrides):
    host: str = "127.0.0.1"
    port: int = 8042
    root_path: str = "/dicomweb"
    public_url: str = ""  # base URL written into BulkDataURI/RetrieveURL; "" = from the request
    max_body_bytes: int = 4 * 1024**3
    allow_delete: bool = True
    qido_max_results: int = 10000
    workers: int = 0  # 0 = one per core
    derive_interval: float = 2.0  # seconds between change-feed polls of the deriver; 0 = off
    # stored families (recompress aliases) whose frames go out decoded when any syntax will do
    decode_for_any: tuple[str, ...] = ()
    # Hardening (README "Hardening"): each limit answers a 4xx whose message names it.
    max_header_bytes: int = 64 * 1024  # request line and headers (431; 414 for the line alone)
    max_query_bytes: int = 32 * 1024  # the query string (414)
    max_query_params: int = 200  # query parameters of one request (400)
    max_parts: int = 10000  # parts of one multipart body (400); nested multipart: always 400
    max_part_bytes: int = 2 * 1024**3  # one part of a multipart body (413)
    max_json_bytes: int = 64 * 1024**2  # one JSON body or DICOM JSON metadata part (413)
    max_json_depth: int = 100  # nesting of arrays and objects in one (400)
    header_timeout: float = 30.0  # from a request's first byte to the end of its headers (408)
    body_timeout: float = 60.0  # longest wait for the next piece of a request body (408)
    keep_alive_timeout: float = 5.0  # an idle keep-alive connection is closed after this
    tls: TlsSettings = field(default_factory=TlsSettings)  # HTTPS (uvicorn)


@dataclass(frozen=True)
class ViewerSettings:
    ohif_path: str = ""  # OHIF 3's dist/ served at /viewer/; "" = .npm-tools' copy if any; "off"


@dataclass(frozen=True)
class LogSettings:
    format: str = "text"  # or "json": one JSON object per line (also: --log-format)
    access: bool = True  # one line per HTTP request (logger webpacs.access)


@dataclass(frozen=True)
class AuthSettings:
    """HTTP access control (``webpacs.auth``, ``webpacs.web.access``)."""

    mode: str = "none"  # "basic", "oidc" or "basic+oidc"
    allow_anonymous: bool = False  # "none" on an address other than loopback
    cors_origins: tuple[str, ...] = ()  # () = "*" when mode is "none", else no other origin
    # name -> {"hash": argon2 hash, "role": one of ROLES} (checked by _merge_users)
    users: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)
    oidc: dict[str, str] = field(
        default_factory=lambda: {"issuer": "", "audience": "", "rolesClaim": "roles"}
    )


@dataclass(frozen=True)
class AuditSettings:
    path: str = ""  # one JSON line per access to patient data and per change; "-" = stdout


@dataclass(frozen=True)
class IngestSettings:
    conflict: str = "reject"  # or "overwrite"
    bulk_threshold: int = 1024
    recompress: tuple[str, ...] = ()  # aliases of stored syntaxes to recompress to JPEG-LS lossless


@dataclass(frozen=True)
class DimseSettings(ServiceOverrides):
    ae_title: str = "WEBPACS"
    host: str = "127.0.0.1"
    port: int = 11112  # 0 = any free port (tests)
    # True: only AEs of the ``ae`` table may associate, each only for its ``services``;
    # None (default): true when auth.mode is not "none" or ``host`` is not loopback
    restrict_calling_ae: bool | None = None
    max_associations: int = 10
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0
    connection_timeout: float = 10.0  # outgoing associations (C-MOVE destinations)
    tls: TlsSettings = field(default_factory=TlsSettings)  # the SCP speaks TLS only (PS3.15 B.1)


@dataclass(frozen=True)
class StaticSettings(ServiceOverrides):
    """``webpacs static build`` reads the store these (or the shared settings) name."""


@dataclass(frozen=True)
class ProxySettings:
    retrieve: str = "move"  # or "get": how studies are fetched from ``proxyAe``
    timeout: float = 30.0  # seconds: association, and each message of the remote
    cache_max_bytes: int = 0  # 0 = no size limit on retrieved studies
    cache_max_age_hours: float = 0.0  # 0 = retrieved studies never expire


@dataclass(frozen=True)
class CheckSettings:
    """``webpacs check --repair``: files nothing references are removed after this long
    (longer than any ingest takes between writing an object and committing it)."""

    grace_hours: float = 24.0


@dataclass(frozen=True)
class CouchdbSettings:  # index: "couchdb"
    url: str = "http://127.0.0.1:5984"
    database: str = "webpacs"
    username: str = ""
    password: str = secret()
    max_concurrent: int = 16
    allow_scan: bool = False


@dataclass(frozen=True)
class PostgresqlSettings:  # index: "postgresql"
    url: str = "postgresql://127.0.0.1:5432/webpacs"  # libpq URL; password via PGPASSWORD
    pool_size: int = 8  # connections per process


@dataclass(frozen=True)
class S3Settings:  # blobs: "s3"
    bucket: str = ""
    prefix: str = ""
    endpoint_url: str = ""  # "" = AWS
    region: str = ""
    access_key_id: str = ""  # "" = boto3's usual credential chain
    secret_access_key: str = secret()


@dataclass(frozen=True)
class AeEntry:
    """One entry of the ``ae`` table."""

    title: str
    host: str
    port: int
    description: str = ""
    services: tuple[str, ...] = ()
    tls: bool = False  # webpacs calls it with TLS, checked with dimse.tls.ca, our dimse.tls.cert


#: The sections by key, in the order the configuration lists them.
SECTIONS: dict[str, type[DataclassInstance]] = {
    "server": ServerSettings,
    "viewer": ViewerSettings,
    "log": LogSettings,
    "auth": AuthSettings,
    "audit": AuditSettings,
    "ingest": IngestSettings,
    "dimse": DimseSettings,
    "static": StaticSettings,
    "proxy": ProxySettings,
    "check": CheckSettings,
    "couchdb": CouchdbSettings,
    "postgresql": PostgresqlSettings,
    "s3": S3Settings,
}

_T = TypeVar("_T", bound="DataclassInstance")


def key_of(name: str) -> str:
    """The configuration key of a dataclass field (``qido_max_results`` -> ``qidoMaxResults``)."""
    first, *rest = name.split("_")
    return first + "".join(p.capitalize() for p in rest)


def _default(f: Any) -> Any:
    """A field's default as configuration files write it (tuples as lists, nested
    settings such as ``TlsSettings`` as objects)."""
    if f.default is MISSING and f.default_factory is not MISSING:
        value = f.default_factory()
        if is_dataclass(value) and not isinstance(value, type):
            return _schema(type(value))
        return value
    return list(f.default) if isinstance(f.default, tuple) else f.default


def _schema(cls: type[DataclassInstance]) -> dict[str, Any]:
    """A section's keys and defaults, as configuration files write them."""
    return {key_of(f.name): _default(f) for f in fields(cls)}


#: Every setting, with its default; the types of these defaults are the allowed types.
DEFAULTS: dict[str, Any] = {
    **_schema(TopLevel),
    **{name: _schema(cls) for name, cls in SECTIONS.items()},
    "ae": {},  # free-form name -> AE_KEYS (see _merge_ae)
}
#: The roles, each including the ones before it (DESIGN "Access control").
ROLES = ("read", "write", "admin")

#: Key paths of the secret settings (see ``secret``).
SECRETS = frozenset(
    (name, key_of(f.name))
    for name, cls in SECTIONS.items()
    for f in fields(cls)
    if f.metadata.get("secret")
)

#: Shared settings that each service section may override (``null`` = inherit).
SHARED = tuple(key_of(f.name) for f in fields(ServiceOverrides))
#: Sections of the services that run from one configuration.
SERVICES = tuple(n for n, cls in SECTIONS.items() if issubclass(cls, ServiceOverrides))

#: Keys of an entry of the ``ae`` table, and their types.
AE_KEYS: dict[str, type] = {
    "title": str,
    "host": str,
    "port": int,
    "description": str,
    "services": list,
    "tls": bool,
}
#: What an AE may ask of webpacs (``ae.NAME.services``).
AE_SERVICES = ("find", "move", "get", "store")

_CHOICES = {
    ("index",): tuple(INDEXES),
    ("blobs",): tuple(BLOBS),
    ("ingest", "conflict"): ("reject", "overwrite"),
    ("proxy", "retrieve"): ("move", "get"),
    ("log", "format"): ("text", "json"),
    ("auth", "mode"): ("none", "basic", "oidc", "basic+oidc"),
    ("ingest", "recompress"): tuple(RECOMPRESS_FAMILIES),  # each item of the list
    ("server", "decodeForAny"): tuple(DECODE_FAMILIES),
}
for _service in SERVICES:
    for _key in ("index", "blobs"):
        _CHOICES[(_service, _key)] = _CHOICES[(_key,)]

#: Settings whose default is ``None`` (inherit), with the type a value must have.
_NULLABLE: dict[tuple[str, ...], type] = {
    **{(s, k): str for s in SERVICES for k in SHARED},
    ("dimse", "restrictCallingAe"): bool,
}


def _typed(cls: type[_T], values: Mapping[str, Any]) -> _T:
    """A section's dataclass from its checked values (ints given for floats made floats)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        value = values[key_of(f.name)]
        if is_dataclass(hints[f.name]):
            value = _typed(hints[f.name], value)
        elif hints[f.name] is float:
            value = float(value)
        elif isinstance(value, list):
            value = tuple(value)  # frozen settings hold tuples
        kwargs[f.name] = value
    return cls(**kwargs)


@dataclass
class Settings:
    """The effective configuration, typed by section, and where each leaf value came from.

    ``values`` (the merged layers, keyed as in the files) and ``sources`` serve
    ``config show`` and hand the configuration to worker processes; code reads the
    typed sections.
    """

    values: dict[str, Any] = field(repr=False)  # secrets included: no repr
    sources: dict[tuple[str, ...], str] = field(default_factory=dict, repr=False)
    index: str = field(init=False)
    blobs: str = field(init=False)
    query_ae: str = field(init=False)
    proxy_ae: str = field(init=False)
    server: ServerSettings = field(init=False)
    viewer: ViewerSettings = field(init=False)
    log: LogSettings = field(init=False)
    auth: AuthSettings = field(init=False)
    audit: AuditSettings = field(init=False)
    ingest: IngestSettings = field(init=False)
    dimse: DimseSettings = field(init=False)
    static: StaticSettings = field(init=False)
    proxy: ProxySettings = field(init=False)
    check: CheckSettings = field(init=False)
    couchdb: CouchdbSettings = field(init=False)
    postgresql: PostgresqlSettings = field(init=False)
    s3: S3Settings = field(init=False)
    ae_table: dict[str, AeEntry] = field(init=False)

    def __post_init__(self) -> None:
        top = _typed(TopLevel, self.values)
        self.index, self.blobs = top.index, top.blobs
        self.query_ae, self.proxy_ae = top.query_ae, top.proxy_ae
        for name, cls in SECTIONS.items():
            setattr(self, name, _typed(cls, self.values[name]))
        self.ae_table = {
            name: AeEntry(
                title=entry["title"],
                host=entry["host"],
                port=entry["port"],
                description=entry.get("description", ""),
                services=tuple(entry.get("services", AE_SERVICES)),
                tls=entry.get("tls", False),
            )
            for name, entry in self.values["ae"].items()
        }

    def get(self, *path: str) -> Any:
        """The value at a key path, untyped (for ``config show``; code reads the sections)."""
        node: Any = self.values
        for p in path:
            node = node[p]
        return node

    @property
    def data_dir(self) -> Path:
        return Path(os.path.expanduser(self.values["dataDir"] or default_data_dir()))

    def section(self, name: str) -> dict[str, Any]:
        """One section as a dict, untyped (prefer the typed attribute of the same name)."""
        return dict(self.values[name])

    def for_service(self, name: str) -> Settings:
        """The effective settings of one service (``server``, ``dimse`` or ``static``).

        The shared settings (``SHARED``) that the service's section sets replace the
        top-level ones; those it leaves unset are filled into the section from the top
        level, with a source that says so.
        """
        if name not in SERVICES:
            raise ValueError(f"unknown service {name!r} (known: {', '.join(SERVICES)})")
        values = copy.deepcopy(self.values)
        sources = dict(self.sources)
        for key in SHARED:
            own = values[name].get(key)
            if own is not None:
                values[key] = own
                sources[(key,)] = f"{self.sources[(name, key)]} (as {name}.{key})"
            else:
                values[name][key] = values[key]
                sources[(name, key)] = f"{self.sources[(key,)]} (inherited from {key})"
        return Settings(values, sources)

    def ae(self, name: str) -> AeEntry:
        """One entry of the ``ae`` table (``ConfigError`` if there is none)."""
        try:
            return self.ae_table[name]
        except KeyError:
            raise ConfigError(f"no AE named {name!r} in the ae table") from None

    def ae_by_title(self, title: str) -> AeEntry | None:
        """The entry of the ``ae`` table with this AE title, or None."""
        for entry in self.ae_table.values():
            if entry.title == title.strip():
                return entry
        return None


def _leaves(d: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterable[tuple[str, ...]]:
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, prefix + (k,))
        else:
            yield prefix + (k,)


def env_name(path: tuple[str, ...]) -> str:
    """The environment variable for a setting path."""
    return "WEBPACS_" + "_".join(p.upper() for p in path)


def _type_of(path: tuple[str, ...]) -> type:
    if path in _NULLABLE:
        return _NULLABLE[path]
    default: Any = DEFAULTS
    for p in path:
        default = default[p]
    return type(default)


def _check(path: tuple[str, ...], value: Any, origin: str) -> Any:
    if value is None and path in _NULLABLE:
        return value
    want = _type_of(path)
    ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise ConfigError(
            f"{origin}: {'.'.join(path)} must be {want.__name__}, not {type(value).__name__}"
            f" ({value!r})"
        )
    choices = _CHOICES.get(path)
    if choices and isinstance(value, list):
        if any(v not in choices for v in value):
            raise ConfigError(
                f"{origin}: {'.'.join(path)} items must be among {', '.join(choices)}"
            )
    elif choices and value not in choices:
        raise ConfigError(f"{origin}: {'.'.join(path)} must be one of {', '.join(choices)}")
    return value


def _merge(
    into: dict[str, Any],
    layer: Mapping[str, Any],
    origin: str,
    sources: dict[tuple[str, ...], str],
    prefix: tuple[str, ...] = (),
) -> None:
    schema: Any = DEFAULTS
    for p in prefix:
        schema = schema[p]
    for key, value in layer.items():
        path = prefix + (key,)
        if key not in schema:
            raise ConfigError(f"{origin}: unknown key {'.'.join(path)!r}")
        if path == ("ae",):
            _merge_ae(into["ae"], value, origin, sources)
        elif path == ("auth", "users"):
            _merge_users(into["users"], value, origin, sources)
        elif isinstance(schema[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: {'.'.join(path)} must be an object")
            _merge(into[key], value, origin, sources, path)
        else:
            into[key] = _check(path, value, origin)
            sources[path] = origin


def _ae_title_error(title: str) -> str | None:
    """Why ``title`` is not a valid AE title (PS3.5 6.2, VR AE), or None."""
    if not title.strip():
        return "must not be empty"
    if len(title) > 16:
        return "must be at most 16 characters"
    if "\\" in title or any(ord(c) < 0x20 or ord(c) > 0x7E for c in title):
        return "must be printable ASCII without backslash"
    return None


def _merge_ae(
    into: dict[str, Any], layer: Any, origin: str, sources: dict[tuple[str, ...], str]
) -> None:
    """Merge a layer's ``ae`` table: entries by name, keys of an entry one by one."""
    if not isinstance(layer, dict):
        raise ConfigError(
            f"{origin}: ae must be an object (name -> AE), not {type(layer).__name__}"
        )
    for name, entry in layer.items():
        where = f"ae.{name}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{origin}: {where} must be an object, not {type(entry).__name__}")
        target = into.setdefault(name, {})
        value: Any
        for key, value in entry.items():
            if key not in AE_KEYS:
                raise ConfigError(
                    f"{origin}: unknown key {where + '.' + key!r} (known: {', '.join(AE_KEYS)})"
                )
            want = AE_KEYS[key]
            typed = isinstance(value, want) and not (want is int and isinstance(value, bool))
            if not typed:
                raise ConfigError(
                    f"{origin}: {where}.{key} must be {want.__name__}, not"
                    f" {type(value).__name__} ({value!r})"
                )
            if key == "port" and not 0 < value < 65536:
                raise ConfigError(f"{origin}: {where}.port must be 1..65535, not {value}")
            if key == "title" and (why := _ae_title_error(value)):
                raise ConfigError(f"{origin}: {where}.title {value!r} {why}")
            if key == "services":
                bad = [s for s in value if s not in AE_SERVICES]
                if bad:
                    raise ConfigError(
                        f"{origin}: {where}.services must be a list of"
                        f" {', '.join(AE_SERVICES)}; not {bad!r}"
                    )
            target[key] = list(value) if key == "services" else value
            sources[("ae", name, key)] = origin


def _merge_users(
    into: dict[str, Any], layer: Any, origin: str, sources: dict[tuple[str, ...], str]
) -> None:
    """Merge a layer's ``auth.users``: whole entries by name, each a hash and a role."""
    if not isinstance(layer, dict):
        raise ConfigError(f"{origin}: auth.users must be an object (name -> user)")
    for name, entry in layer.items():
        ok = isinstance(entry, dict) and set(entry) == {"hash", "role"}
        if not ok or not isinstance(entry["hash"], str) or entry["role"] not in ROLES:
            raise ConfigError(
                f"{origin}: auth.users.{name} must be {{hash: ..., role: {'|'.join(ROLES)}}}"
            )
        if not entry["hash"].startswith("$argon2"):
            raise ConfigError(f"{origin}: auth.users.{name}.hash is not an argon2 hash")
        into[name] = dict(entry)
        sources[("auth", "users", name)] = origin


def _finish(values: dict[str, Any], sources: dict[tuple[str, ...], str]) -> None:
    """Checks across keys and layers, once every layer is merged."""
    title = values["dimse"]["aeTitle"]
    if why := _ae_title_error(title):
        raise ConfigError(f"{sources[('dimse', 'aeTitle')]}: dimse.aeTitle {title!r} {why}")
    seen: dict[str, str] = {}
    for name, entry in values["ae"].items():
        for key in ("host", "port"):
            if key not in entry:
                origin = next(v for k, v in sources.items() if k[:2] == ("ae", name))
                raise ConfigError(f"{origin}: ae.{name} needs {key!r}")
        if "title" not in entry:
            if why := _ae_title_error(name):
                origin = sources[("ae", name, "host")]
                raise ConfigError(f"{origin}: ae.{name} needs a 'title' (the name {why})")
            entry["title"] = name
            sources[("ae", name, "title")] = "default (the entry's name)"
        for key, default in (("description", ""), ("services", list(AE_SERVICES)), ("tls", False)):
            if key not in entry:
                entry[key] = default
                sources[("ae", name, key)] = "default"
        if entry["title"] in seen:
            raise ConfigError(
                f"{sources[('ae', name, 'title')]}: ae.{name}.title {entry['title']!r}"
                f" is also the title of ae.{seen[entry['title']]}"
            )
        seen[entry["title"]] = name
    for key in ("queryAe", "proxyAe"):
        if values[key] and values[key] not in values["ae"]:
            raise ConfigError(
                f"{sources[(key,)]}: {key} {values[key]!r} is not a name in the ae table"
            )
    for section in ("server", "dimse"):
        _check_tls(section, values[section]["tls"], sources)


def _check_tls(section: str, tls: dict[str, Any], sources: dict[tuple[str, ...], str]) -> None:
    """``cert`` and ``key`` come together, ``requireClientCert`` needs ``ca``, and the
    files named exist (a missing one fails here, not at the first connection)."""

    def origin(key: str) -> str:
        return sources[(section, "tls", key)]

    where = f"{section}.tls"
    if bool(tls["cert"]) != bool(tls["key"]):
        given = "cert" if tls["cert"] else "key"
        raise ConfigError(f"{origin(given)}: {where} needs both cert and key, not only {given}")
    if tls["requireClientCert"] and not tls["ca"]:
        raise ConfigError(f"{origin('requireClientCert')}: {where}.requireClientCert needs ca")
    if (tls["ca"] or tls["requireClientCert"]) and not tls["cert"] and section == "server":
        raise ConfigError(f"{origin('ca')}: {where}.ca without cert: HTTPS needs cert and key")
    for key in ("cert", "key", "ca"):
        if tls[key] and not os.path.isfile(os.path.expanduser(tls[key])):
            raise ConfigError(f"{origin(key)}: {where}.{key}: no such file {tls[key]!r}")


def _parse_env(path: tuple[str, ...], raw: str, origin: str) -> Any:
    if _type_of(path) is str:
        return raw
    try:
        return json5.loads(raw)
    except ValueError as e:
        raise ConfigError(f"{origin}: cannot parse {raw!r}: {e}") from e


def load_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one JSON5 configuration file (an object at the top)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e}") from e
    try:
        data = json5.loads(text)
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON5: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be an object")
    return data


def load(
    files: Iterable[str | os.PathLike[str]] = (),
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    home: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Settings:
    """Build the effective settings from every layer, lowest first.

    ``overrides`` are command-line flags as a nested dict (``{"server": {"port": 9000}}``);
    ``None`` values in it mean "flag not given".
    """
    home_dir = Path(home) if home is not None else Path(os.path.expanduser("~"))
    cwd_dir = Path(cwd) if cwd is not None else Path.cwd()
    found = [c for c in (home_dir / ".webpacs.json5", cwd_dir / "webpacs.json5") if c.is_file()]
    return _layered([*found, *files], os.environ if environ is None else environ, overrides)


def isolated(values: Mapping[str, Any] | None = None) -> Settings:
    """The defaults with ``values`` over them, and nothing else: no file of the home or
    current directory, no environment. For worker processes handed the parent's
    ``Settings.values``, throw-away stores and tests."""
    return _layered([], {}, values)


def _layered(
    files: Iterable[str | os.PathLike[str]],
    env: Mapping[str, str],
    overrides: Mapping[str, Any] | None,
) -> Settings:
    values = copy.deepcopy(DEFAULTS)
    sources = {path: "default" for path in _leaves(DEFAULTS)}
    for f in files:
        _merge(values, load_file(f), str(f), sources)
    for path in _leaves(DEFAULTS):
        name = env_name(path)
        if name in env:
            layer: dict[str, Any] = {}
            node = layer
            for p in path[:-1]:
                node = node.setdefault(p, {})
            node[path[-1]] = _parse_env(path, env[name], f"environment {name}")
            _merge(values, layer, f"environment {name}", sources)
    if "WEBPACS_AE" in env:
        origin = "environment WEBPACS_AE"
        _merge(values, {"ae": _parse_env(("ae",), env["WEBPACS_AE"], origin)}, origin, sources)
    if overrides:
        _merge(values, _drop_none(overrides), "command line", sources)
    _finish(values, sources)
    return Settings(values, sources)


def _drop_none(d: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            sub = _drop_none(v)
            if sub:
                out[k] = sub
        elif v is not None:
            out[k] = v
    return out
