"""Layered settings: defaults < ~/.webpacs.json5 < ./webpacs.json5 < -c FILE < WEBPACS_* < flags.

Keys are camelCase, grouped in sections (``server``, ``ingest``, ``dimse``, ...). Every
leaf has an environment variable ``WEBPACS_<SECTION>_<KEY>`` (upper case, e.g.
``WEBPACS_SERVER_PORT``; top-level keys ``WEBPACS_<KEY>``, e.g. ``WEBPACS_DATADIR``).
An unknown key or a value of the wrong type is a ``ConfigError`` naming where it came from.
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
        "workers": 1,
    },
    "ingest": {
        "conflict": "reject",  # or "overwrite"
        "bulkThreshold": 1024,
    },
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

_CHOICES = {
    ("index",): ("sqlite", "couchdb"),
    ("blobs",): ("files", "s3"),
    ("ingest", "conflict"): ("reject", "overwrite"),
}

_NULLABLE: set[tuple[str, ...]] = set()


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


def _leaves(d: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterable[tuple[str, ...]]:
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, prefix + (k,))
        else:
            yield prefix + (k,)


def env_name(path: tuple[str, ...]) -> str:
    """The environment variable for a setting path."""
    return "WEBPACS_" + "_".join(p.upper() for p in path)


def _check(path: tuple[str, ...], value: Any, origin: str) -> Any:
    default: Any = DEFAULTS
    for p in path:
        default = default[p]
    if value is None and path in _NULLABLE:
        return value
    want = type(default)
    ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise ConfigError(
            f"{origin}: {'.'.join(path)} must be {want.__name__}, not {type(value).__name__}"
            f" ({value!r})"
        )
    choices = _CHOICES.get(path)
    if choices and value not in choices:
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
        if isinstance(schema[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: {'.'.join(path)} must be an object")
            _merge(into[key], value, origin, sources, path)
        else:
            into[key] = _check(path, value, origin)
            sources[path] = origin


def _parse_env(path: tuple[str, ...], raw: str, origin: str) -> Any:
    default: Any = DEFAULTS
    for p in path:
        default = default[p]
    if isinstance(default, str):
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
    if overrides:
        _merge(values, _drop_none(overrides), "command line", sources)
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
