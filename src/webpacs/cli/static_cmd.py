"""``webpacs static``: build, serve, deploy and export static DICOMweb trees."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from webpacs.cli.common import (
    UserPath,
    config_options,
    console,
    progress_bar,
    quiet_change_log,
    settings_from,
    setup_logging,
)
from webpacs.config import Settings
from webpacs.errors import WebpacsError
from webpacs.pixels.families import RECOMPRESS_FAMILIES, recompress_syntaxes

DEFAULT_OUT = "~/dicomweb"


def _families(values: tuple[str, ...]) -> tuple[str, ...]:
    """``--recompress`` values (repeated or comma separated), checked."""
    names = tuple(v.strip() for value in values for v in value.split(",") if v.strip())
    unknown = [n for n in names if n not in RECOMPRESS_FAMILIES]
    if unknown:
        raise click.BadParameter(
            f"unknown {', '.join(unknown)}; choose among {', '.join(RECOMPRESS_FAMILIES)}"
        )
    return names


@click.group("static")
def static() -> None:
    """Static DICOMweb trees (static-wado / OHIF layout)."""


@static.command()
@config_options
@click.option(
    "--out",
    "-o",
    default=DEFAULT_OUT,
    show_default=True,
    type=UserPath(file_okay=False),
    help="Tree directory.",
)
@click.option("--study", "studies", multiple=True, help="Only this study (repeatable).")
@click.option(
    "--from",
    "from_files",
    is_flag=True,
    help="Build straight from the Part 10 PATHS (files or directories), not from the store.",
)
@click.argument("from_paths", nargs=-1, type=UserPath(exists=True, path_type=Path))
@click.option("--dedup", is_flag=True, help="Also write the deduplicated metadata form.")
@click.option("--incremental", is_flag=True, help="Only studies changed since the last build.")
@click.option("--watch", is_flag=True, help="Keep following the change feed.")
@click.option("--interval", type=float, default=2.0, show_default=True, help="Watch poll seconds.")
@click.option("--max-seconds", type=float, default=None, help="Stop watching after this long.")
@click.option("--clean", is_flag=True, help="Remove the existing tree first.")
@click.option(
    "-j", "--jobs", type=int, default=None, help="Parallel parsers with --from [default: cores]."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Also print the build's figures as one JSON line."
)
@click.option(
    "-r",
    "--recompress",
    "recompress",
    multiple=True,
    callback=lambda _ctx, _param, values: _families(values),
    metavar="ALIAS",
    help="Write frames of these stored families as JPEG-LS lossless (repeatable,"
    f" or comma separated): {', '.join(RECOMPRESS_FAMILIES)}; as mkdicomweb -r does.",
)
@click.option(
    "--no-recompress",
    is_flag=True,
    help="Keep every frame as stored (the default; overrides --recompress).",
)
@click.option(
    "--max-public-inline",
    type=int,
    default=131074,
    show_default=True,
    help="Longest public binary value kept inline (bytes).",
)
@click.option(
    "--max-private-inline",
    type=int,
    default=64,
    show_default=True,
    help="Longest private binary value kept inline (bytes).",
)
def build(
    config_files: tuple[str, ...],
    data_dir: str | None,
    verbose: int,
    out: str,
    studies: tuple[str, ...],
    from_files: bool,
    from_paths: tuple[Path, ...],
    dedup: bool,
    incremental: bool,
    watch: bool,
    interval: float,
    max_seconds: float | None,
    clean: bool,
    jobs: int | None,
    as_json: bool,
    recompress: tuple[str, ...],
    no_recompress: bool,
    max_public_inline: int,
    max_private_inline: int,
) -> None:
    """Write a static DICOMweb tree from the store, or from Part 10 PATHS with --from.

    The store is the one static.dataDir, static.index and static.blobs name (each
    inheriting the shared setting when unset); --data-dir here sets static.dataDir.

    Ends with the tree's figures: instances/s, size on disk (versus the input with --from)
    and, with --dedup, the deduplicated metadata's size versus the plain series metadata.
    """
    from webpacs.cli.importer import iter_files, run_import
    from webpacs.static import build as b
    from webpacs.static.instance import Thresholds
    from webpacs.static.stats import figures
    from webpacs.static.tree import Tree

    setup_logging(verbose)
    quiet_change_log(verbose)
    if bool(from_paths) != from_files:
        raise click.UsageError("give PATHS with --from (and only with --from)")
    tree = Tree(out)
    if clean:
        tree.clean()
    families = () if no_recompress else recompress
    opts = b.Options(
        Thresholds(max_public_inline, max_private_inline), dedup, recompress_syntaxes(families)
    )
    progress, start, step = progress_bar("static build", "instances")
    try:
        if from_paths:
            files = list(iter_files(list(from_paths)))
            n_jobs = jobs or os.cpu_count() or 1

            def load(settings: Settings, paths: list[Path]) -> list[tuple[str, str]]:
                failures: list[tuple[str, str]] = []
                run_import(settings, paths, n_jobs, failures=failures)
                return failures

            def begin(total: int) -> None:  # the import's progress bar is gone by then
                progress.start()
                start(total)

            try:
                report = b.build_from_files(
                    files, tree, opts, load=load, on_start=begin, on_instance=step
                )
            finally:
                progress.stop()
        else:
            from webpacs.storage.registry import open_store

            # the store static.dataDir/index/blobs name (else the shared ones); --data-dir
            # sets static.dataDir, as it sets dimse.dataDir for `webpacs scp`
            settings = settings_from(config_files, {"static": {"dataDir": data_dir}})
            st = open_store(settings.for_service("static"))
            try:
                with progress:
                    report = b.build(
                        st,
                        tree,
                        opts,
                        studies=list(studies) or None,
                        incremental=incremental or watch,
                        on_start=start,
                        on_instance=step,
                    )
                if watch:
                    console.print(f"watching the change feed (every {interval:g}s)")
                    b.watch(
                        st,
                        tree,
                        opts,
                        interval=interval,
                        max_seconds=max_seconds,
                        on_report=lambda r: _summary(r, verbose),
                    )
            finally:
                st.close()
    except WebpacsError as e:
        raise click.ClickException(str(e)) from e
    _summary(report, verbose)
    for path, reason in report.failures:
        console.print(f"[red]not included[/] {path}: {reason}")
    rc = report.recompressed
    numbers = figures(
        tree.root, report.instances, report.seconds, report.input_bytes, (rc.bytes_in, rc.bytes_out)
    )
    line = f"tree: [bold]{tree.root}[/] {numbers.files} files, {_mb(numbers.tree_bytes)}"
    if numbers.size_ratio is not None:
        line += f" ({numbers.size_ratio:.2f} x the {_mb(numbers.input_bytes)} input)"
    if numbers.dedup_ratio is not None and numbers.dedup_gz_ratio is not None:
        line += (
            f"; deduplicated metadata {numbers.dedup_ratio:.1%} of plain"
            f" ({numbers.dedup_gz_ratio:.1%} gzip'd)"
        )
    if numbers.recompress_ratio is not None:
        line += (
            f"; frames recompressed to JPEG-LS lossless: {_mb(numbers.recompressed_in)}"
            f" -> {_mb(numbers.recompressed_out)} ({numbers.recompress_ratio:.2f} x)"
        )
    console.print(line)
    if as_json:
        click.echo(json.dumps(numbers.as_dict()))
    if report.failures:
        sys.exit(1)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _summary(report: Any, verbose: int) -> None:
    console.print(
        f"{report.studies} studies written, {report.removed} removed, {report.instances} instances,"
        f" {report.files} files in {report.seconds:.2f}s ({report.rate:.0f} instances/s)"
    )


@static.command()
@click.argument("root", type=UserPath(exists=True, file_okay=False), default=DEFAULT_OUT)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=8043, show_default=True, help="HTTP port.")
@config_options
def serve(
    root: str, host: str, port: int, config_files: tuple[str, ...], data_dir: str | None,
    verbose: int,
) -> None:  # fmt: skip
    """Serve the static subset of DICOMweb from a tree (see webpacs.web.static_app); the
    configuration's auth, audit and HTTPS (server.tls) settings apply as for webpacs serve."""
    import uvicorn

    from webpacs.auth import check_exposure
    from webpacs.cli.workers import scheme, tls_options
    from webpacs.errors import ConfigError
    from webpacs.web.protocol import uvicorn_options
    from webpacs.web.static_app import create_static_app

    settings = settings_from(config_files, {"dataDir": data_dir})
    try:
        check_exposure(settings, host)
        app = create_static_app(root, settings)
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    tls = settings.server.tls
    console.print(f"static DICOMweb from {root}: [bold]{scheme(tls)}://{host}:{port}/studies[/]")
    uvicorn.run(
        app, host=host, port=port, log_level="warning",
        **uvicorn_options(settings.server), **tls_options(tls),
    )  # fmt: skip


@static.command("nginx-config")
@click.argument("root", type=UserPath(exists=True, file_okay=False), default=DEFAULT_OUT)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8080, show_default=True, help="HTTP port.")
@click.option(
    "--server-only", is_flag=True, help="Only the server block (for an existing nginx.conf)."
)
def nginx_config(root: str, host: str, port: int, server_only: bool) -> None:
    """Print an nginx configuration that serves the tree at ROOT as OHIF reads it."""
    from webpacs.static import nginx

    text = (
        nginx.server_block(root, host, port)
        if server_only
        else nginx.nginx_config(root, host, port)
    )
    click.echo(text, nl=False)


@static.command()
@click.argument("root", type=UserPath(exists=True, file_okay=False))
@click.argument("url")
@click.option("--endpoint-url", default=None, help="S3-compatible endpoint (default: AWS).")
@click.option("--delete", is_flag=True, help="Remove remote objects the tree no longer has.")
def deploy(root: str, url: str, endpoint_url: str | None, delete: bool) -> None:
    """Upload a tree to s3://bucket/prefix (only changed files)."""
    from webpacs.static.deploy import deploy as run

    progress, start, step = progress_bar("deploy", "files")
    try:
        with progress:
            r = run(
                root, url, endpoint_url=endpoint_url, delete=delete, on_start=start, on_file=step
            )
    except WebpacsError as e:
        raise click.ClickException(str(e)) from e
    console.print(
        f"{r.uploaded} uploaded ({r.bytes} bytes), {r.unchanged} unchanged, {r.deleted} deleted"
    )


@static.command()
@click.argument("root", type=UserPath(exists=True, file_okay=False))
@click.option("--study", required=True, help="Study Instance UID.")
@click.option("--series", default=None, help="Only this series.")
@click.option("--out", "-o", required=True, type=UserPath(file_okay=False), help="Output dir.")
def export(root: str, study: str, series: str | None, out: str) -> None:
    """Rebuild Part 10 files (OUT/<study>/<series>/<sop>.dcm) from a tree."""
    from webpacs.static.export import export as run

    try:
        files = run(root, study, out, series=series)
    except WebpacsError as e:
        raise click.ClickException(str(e)) from e
    console.print(f"{len(files)} instance(s) written under {out}")
