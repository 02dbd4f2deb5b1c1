"""Options and helpers shared by the commands."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from webpacs.config import Settings, load
from webpacs.errors import ConfigError

console = Console(stderr=True)


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose < 0 else logging.INFO if verbose == 0 else logging.DEBUG
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
    )
    # pydicom logs every oddity of every file it reads; our own messages say what matters
    logging.getLogger("pydicom").setLevel(logging.DEBUG if verbose > 1 else logging.ERROR)


def config_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``-c FILE`` (repeatable), ``--data-dir`` and ``-v``: on every command."""
    fn = click.option(
        "-c",
        "--config",
        "config_files",
        multiple=True,
        type=click.Path(dir_okay=False),
        help="JSON5 configuration file (repeatable; later files win).",
    )(fn)
    fn = click.option(
        "--data-dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Data directory (index and stored objects). [env WEBPACS_DATADIR]",
    )(fn)
    fn = click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")(fn)
    return fn


def settings_from(config_files: tuple[str, ...], overrides: dict[str, Any]) -> Settings:
    try:
        return load(config_files, overrides)
    except ConfigError as e:
        raise click.UsageError(str(e)) from e


def progress_bar(
    label: str, unit: str, show: bool = True
) -> tuple[Progress, Callable[[int], None], Callable[[], None]]:
    """A rich progress bar with a rate column: returns it, ``start(total)`` and ``step()``."""
    progress = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not show,
    )
    task = progress.add_task(label, total=None, rate="")

    def start(total: int) -> None:
        progress.update(task, total=total)

    def step() -> None:
        t = progress.tasks[0]
        elapsed = t.elapsed or 0
        rate = f"{(t.completed + 1) / elapsed:.0f} {unit}/s" if elapsed > 0 else ""
        progress.update(task, advance=1, rate=rate)

    return progress, start, step
