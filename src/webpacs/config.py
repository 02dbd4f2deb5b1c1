"""Layered settings: defaults < ~/.webpacs.json5 < ./webpacs.json5 < -c FILE < WEBPACS_* < flags.

Keys are camelCase, grouped in sections (``server``, ``ingest``, ``dimse``, ...). Every
leaf has an environment variable ``WEBPACS_<SECTION>_<KEY>`` (upper case, e.g.
``WEBPACS_SERVER_PORT``; top-level keys ``WEBPACS_<KEY>``, e.g. ``WEBPACS_DATADIR``).
An unknown key or a value of the wrong type is a ``ConfigError`` naming where it came from.

The service sections ``server``, ``dimse`` and ``static`` may override the shared
settings ``dataDir``, ``index`` and ``blobs``; left unset (or ``null``) they inherit the
top-level value. ``Settings.for_service(name)`` is the effective view of one service.

The ``ae`` table lists known application entities by a free-form name; its entries'
keys are fixed (``AE_KEYS``) and checked like every other setting. The whole table can
also come from the environment as one JSON5 object in ``WEBPACS_AE``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import json5

from webpacs.errors import ConfigError
from webpacs.pixels.families import RECOMPRESS_FAMILIES


def default_data_dir() -> str:
    """The per-user data directory ($XDG_DATA_HOME/webpacs, else ~/.local/share/webpacs)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(base, "webpacs")


#: Every setting, with its default; the types of these defaults are the allowed types.
DEFAULTS: dict[str, Any] = {
    "dataDir": "",  # "" = default_data_dir()
    "index": "sqlite",
    "blobs": "files",
    "server": {
        "host": "127.0.0.1",
        "port": 8042,
        "rootPath": "/dicomweb",
        "publicUrl": "",  # base URL written into BulkDataURI/RetrieveURL; "" = from the request
        "maxBodyBytes": 4 * 1024**3,
        "allowDelete": True,
        "qidoMaxResults": 10000,
        "workers": 0,  # 0 = one per core
        "deriveInterval": 2.0,  # seconds between change-feed polls of the deriver; 0 = off
    },
    "ingest": {
        "conflict": "reject",  # or "overwrite"
        "bulkThreshold": 1024,
        "recompress": [],  # aliases of stored syntaxes to recompress to JPEG-LS lossless
    },
    "dimse": {
        "aeTitle": "WEBPACS",
        "host": "127.0.0.1",
        "port": 11112,  # 0 = any free port (tests)
        "restrictCallingAe": False,  # True: only AEs of the ``ae`` table may associate
        "maxAssociations": 10,
        "acseTimeout": 30.0,
        "dimseTimeout": 60.0,
        "networkTimeout": 60.0,
        "connectionTimeout": 10.0,  # outgoing associations (C-MOVE destinations)
    },
    "static": {},
    "queryAe": "",  # name in the ``ae`` table whose studies QIDO also lists; "" = off
    "proxyAe": "",  # name in the ``ae`` table that missing studies are retrieved from
    "proxy": {
        "retrieve": "move",  # or "get": how studies are fetched from ``proxyAe``
        "timeout": 30.0,  # seconds: association, and each message of the remote
        "cacheMaxBytes": 0,  # 0 = no size limit on retrieved studies
        "cacheMaxAgeHours": 0.0,  # 0 = retrieved studies never expire
    },
    "ae": {},  # free-form name -> AE_KEYS (see _merge_ae)
    "couchdb": {  # index: "couchdb"
        "url": "http://127.0.0.1:5984",
        "database": "webpacs",
        "username": "",
        "password": "",
        "maxConcurrent": 16,
        "allowScan": False,
    },
    "s3": {  # blobs: "s3"
        "bucket": "",
        "prefix": "",
        "endpointUrl": "",  # "" = AWS
        "region": "",
        "accessKeyId": "",  # "" = boto3's usual credential chain
        "secretAccessKey": "",
    },
}

#: Shared settings that each service section may override (``null`` = inherit).
SHARED = ("dataDir", "index", "blobs")
#: Sections of the services that run from one configuration.
SERVICES = ("server", "dimse", "static")
for _service in SERVICES:
    for _key in SHARED:
        DEFAULTS[_service][_key] = None

#: Keys of an entry of the ``ae`` table, and their types.
AE_KEYS: dict[str, type] = {
    "title": str,
    "host": str,
    "port": int,
    "description": str,
    "services": list,
}
#: What an AE may ask of webpacs (``ae.NAME.services``).
AE_SERVICES = ("find", "move", "get", "store")

_CHOICES = {
    ("index",): ("sqlite", "couchdb"),
    ("blobs",): ("files", "s3"),
    ("ingest", "conflict"): ("reject", "overwrite"),
    ("proxy", "retrieve"): ("move", "get"),
    ("ingest", "recompress"): tuple(RECOMPRESS_FAMILIES),  # each item of the list
}
for _service in SERVICES:
    for _key in ("index", "blobs"):
        _CHOICES[(_service, _key)] = _CHOICES[(_key,)]

#: Settings whose default is ``None`` (inherit), with the type a value must have.
_NULLABLE: dict[tuple[str, ...], type] = {(s, k): str for s in SERVICES for k in SHARED}


@dataclass
class Settings:
    """The effective configuration and where each leaf value came from."""

    values: dict[str, Any]
    sources: dict[tuple[str, ...], str] = field(default_factory=dict)

    def get(self, *path: str) -> Any:
        node: Any = self.values
        for p in path:
            node = node[p]
        return node

    @property
    def data_dir(self) -> Path:
        return Path(os.path.expanduser(self.values["dataDir"] or default_data_dir()))

    def section(self, name: str) -> dict[str, Any]:
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

    def ae(self, name: str) -> dict[str, Any]:
        """One entry of the ``ae`` table (``ConfigError`` if there is none)."""
        try:
            return dict(self.values["ae"][name])
        except KeyError:
            raise ConfigError(f"no AE named {name!r} in the ae table") from None

    def ae_by_title(self, title: str) -> dict[str, Any] | None:
        """The entry of the ``ae`` table with this AE title, or None."""
        for entry in self.values["ae"].values():
            if entry["title"] == title.strip():
                return dict(entry)
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
        for key, default in (("description", ""), ("services", list(AE_SERVICES))):
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
    values = copy.deepcopy(DEFAULTS)
    sources = {path: "default" for path in _leaves(DEFAULTS)}
    home_dir = Path(home) if home is not None else Path(os.path.expanduser("~"))
    cwd_dir = Path(cwd) if cwd is not None else Path.cwd()
    for candidate in (home_dir / ".webpacs.json5", cwd_dir / "webpacs.json5"):
        if candidate.is_file():
            _merge(values, load_file(candidate), str(candidate), sources)
    for f in files:
        _merge(values, load_file(f), str(f), sources)
    env = os.environ if environ is None else environ
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
