"""``webpacs backup`` and ``webpacs restore``: the embedded store, while it serves."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from webpacs.cli.common import config_options, console, progress_bar, settings_from, setup_logging
from webpacs.errors import WebpacsError

_COPY = click.option(
    "--copy", is_flag=True, help="Copy objects instead of hard-linking them (e.g. same disk)."
)


@click.command()
@config_options
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@_COPY
def backup(
    config_files: tuple[str, ...], data_dir: str | None, verbose: int, out: Path, copy: bool
) -> None:
    """Back the store up into OUT, while it serves (incremental when OUT holds a backup).

    The index is copied with SQLite's online backup API, stored objects are hard-linked
    (copied across file systems, or with --copy). The embedded store only (index sqlite,
    blobs files): the README says what to use for PostgreSQL, CouchDB and S3.
    """
    from webpacs.backup import backup as run
    from webpacs.backup import embedded_only

    setup_logging(verbose)
    settings = settings_from(config_files, {"dataDir": data_dir})
    progress, start, step = progress_bar("backup", "objects")
    try:
        embedded_only(settings.index, settings.blobs)
        with progress:
            s = run(settings.data_dir, out, copy=copy, on_start=start, on_object=step)
    except WebpacsError as e:
        raise click.ClickException(str(e)) from e
    console.print(
        f"backup in {out}: {s.objects} objects; {s.added} added ({s.linked} hard-linked,"
        f" {s.bytes_added / 1e6:.1f} MB), {s.kept} kept, {s.dropped} dropped"
        f" (deleted from the store) in {s.seconds:.1f}s",
        soft_wrap=True,
    )


@click.command()
@config_options
@click.argument("backup_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("new", required=False, type=click.Path(file_okay=False, path_type=Path))
@_COPY
def restore(
    config_files: tuple[str, ...],
    data_dir: str | None,
    verbose: int,
    backup_dir: Path,
    new: Path | None,
    copy: bool,
) -> None:
    """Restore BACKUP_DIR into a new data directory (--data-dir NEW, or NEW).

    Then checks the restored store (existence and size of every object, as
    `webpacs check --quick`); derived documents are built again on read.
    """
    from webpacs.backup import embedded_only
    from webpacs.backup import restore as run
    from webpacs.integrity.walk import check
    from webpacs.storage.registry import open_store

    setup_logging(verbose)
    if new is not None and data_dir is not None and Path(data_dir) != new:
        raise click.UsageError("give the new data directory once: --data-dir NEW or NEW")
    if new is None and data_dir is None:
        raise click.UsageError("name the new data directory: --data-dir NEW (or NEW)")
    target = str(new if new is not None else data_dir)
    settings = settings_from(config_files, {"dataDir": target})
    progress, start, step = progress_bar("restore", "objects")
    try:
        embedded_only(settings.index, settings.blobs)
        with progress:
            s = run(backup_dir, settings.data_dir, copy=copy, on_start=start, on_object=step)
        store = open_store(settings)
        try:
            report = check(store, full=False)
        finally:
            store.close()
    except WebpacsError as e:
        raise click.ClickException(str(e)) from e
    console.print(
        f"restored {s.objects} objects into {settings.data_dir} ({s.linked} hard-linked)"
        f" in {s.seconds:.1f}s; check: {report.instances} instances,"
        f" {len(report.unresolved())} missing or damaged",
        soft_wrap=True,
    )
    sys.exit(report.exit_status)
