"""``webpacs migrate``: bring the configured store's formats to this release's versions.

Opening a store creates what is missing and migrates what an earlier release wrote (the
SQLite index's ``PRAGMA user_version`` steps, ``storage.sqlschema``; CouchDB's design
documents; the PostgreSQL schema), including the reference graph of instances stored
before it existed, read from their stored metadata; ``serve`` does it on
start too. This command does it alone, e.g. before starting several nodes, and is the
one a node names when it refuses to start on a store it cannot read.
"""

from __future__ import annotations

import click

from webpacs.cli.common import config_options, console, settings_from, setup_logging
from webpacs.errors import WebpacsError
from webpacs.storage.registry import open_store


@click.command()
@config_options
def migrate(config_files: tuple[str, ...], data_dir: str | None, verbose: int) -> None:
    """Create or migrate the index and blob store the settings name."""
    setup_logging(max(verbose, 1))
    settings = settings_from(config_files, {"dataDir": data_dir})
    try:
        store = open_store(settings)
    except WebpacsError as e:
        raise click.ClickException(str(e)) from e
    version = getattr(store.index, "schema_version", None)  # what the index is at now
    store.close()
    at = f" (schema version {version})" if version is not None else ""
    console.print(f"{settings.index} index{at} and {settings.blobs} blobs are current")
