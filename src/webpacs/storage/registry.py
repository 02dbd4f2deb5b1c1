"""Backends by name -> ``"module.Class"``, imported lazily with an install hint (fsspec style)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from webpacs.backends import BLOBS, INDEXES
from webpacs.errors import ConfigError
from webpacs.storage.base import Blobs, Index

if TYPE_CHECKING:
    from webpacs.config import Settings


def _load(table: dict[str, tuple[str, str]], name: str, kind: str) -> Any:
    try:
        target, hint = table[name]
    except KeyError:
        raise ConfigError(f"unknown {kind} backend {name!r} (known: {', '.join(table)})") from None
    module, _, cls = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as e:
        raise ConfigError(f"{kind} backend {name!r} needs {hint or e.name}: {e}") from e


@dataclass
class Store:
    """An index and a blob store opened together, plus the ingest options."""

    index: Index
    blobs: Blobs
    overwrite: bool = False
    bulk_threshold: int = 1024
    recompress: tuple[str, ...] = ()  # ``ingest.recompress`` aliases

    def close(self) -> None:
        self.index.close()


def open_store(settings: Settings) -> Store:
    """Open the backends the settings name, under the data directory."""
    data = settings.data_dir
    index_cls = _load(INDEXES, settings.index, "index")
    blobs_cls = _load(BLOBS, settings.blobs, "blobs")
    # remote backends read their own configuration section; local ones live under dataDir
    if hasattr(index_cls, "from_settings"):
        index = index_cls.from_settings(settings)
    else:
        index = index_cls(data / "index.sqlite3")
    if hasattr(blobs_cls, "from_settings"):
        blobs = blobs_cls.from_settings(settings)
    else:
        blobs = blobs_cls(data / "blobs")
    return Store(
        index=index,
        blobs=blobs,
        overwrite=settings.ingest.conflict == "overwrite",
        bulk_threshold=settings.ingest.bulk_threshold,
        recompress=settings.ingest.recompress,
    )
