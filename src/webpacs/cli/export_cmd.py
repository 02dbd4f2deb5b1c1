"""``webpacs export``: a cohort (the instances a QIDO query matches) out of the store."""

from __future__ import annotations

from pathlib import Path

import click

from webpacs.cli.common import config_options, console, progress_bar, settings_from, setup_logging
from webpacs.errors import WebpacsError


@click.command()
@config_options
@click.option(
    "--query",
    "-q",
    required=True,
    help='A QIDO-RS instance query, e.g. "Modality=CT&StudyDate=20200101-".',
)
@click.option(
    "--out", "-o", type=click.Path(path_type=Path), help="Output directory (file: --zip)."
)
@click.option("--static", "as_static", is_flag=True, help="Write a static DICOMweb tree.")
@click.option("--zip", "as_zip", is_flag=True, help="Write one ZIP file (OUT is its name).")
@click.option("--dedup", is_flag=True, help="With --static: also the deduplicated metadata.")
@click.option("--dry-run", is_flag=True, help="Only print what matches (counts).")
def export(
    config_files: tuple[str, ...],
    data_dir: str | None,
    verbose: int,
    query: str,
    out: Path | None,
    as_static: bool,
    as_zip: bool,
    dedup: bool,
    dry_run: bool,
) -> None:
    """Export the instances a query matches, with a manifest.csv of them.

    Part 10 files as OUT/<study>/<series>/<sop>.dcm (the layout of `webpacs static
    export`), or --zip (the same in one file), or --static (a static DICOMweb tree of just
    these instances). The query takes every key QIDO-RS /instances takes.
    """
    from webpacs import cohort
    from webpacs.storage.registry import open_store

    setup_logging(verbose)
    if as_static and as_zip:
        raise click.UsageError("choose --static or --zip, not both")
    if out is None and not dry_run:
        raise click.UsageError("name where to write: --out DIR (or FILE with --zip)")
    settings = settings_from(config_files, {"dataDir": data_dir})
    try:
        store = open_store(settings)
        try:
            found = cohort.select(store, query)
            click.echo(
                f"{found.studies} studies, {found.series} series, {len(found.records)} instances"
                f" ({found.bytes / 1e6:.1f} MB) match {query!r}"
            )
            if dry_run or out is None:
                return
            write = cohort.write_zip if as_zip else cohort.write_files if not as_static else None
            progress, start, step = progress_bar("export", "instances")
            with progress:
                start(len(found.records))
                if write is None:
                    n = cohort.write_static(store, found, out, step, dedup=dedup)
                else:
                    n = write(store, found, out, step)
        finally:
            store.close()
    except WebpacsError as e:
        raise click.ClickException(str(e)) from e
    console.print(f"{n} instances written to {out} (with {cohort.MANIFEST})", soft_wrap=True)
