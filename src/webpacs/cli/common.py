"""Options and helpers shared by the commands."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from webpacs.cli import logs
from webpacs.config import Settings, load
from webpacs.errors import ConfigError

console = Console(stderr=True)


class UserPath(click.Path):
    """``click.Path`` with ``~`` expanded first: every path a command takes (a default such
    as ``~/dicomweb`` too, and ``--opt=~/x``, which the shell leaves alone)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str | Path):
            value = type(value)(os.path.expanduser(value))
        return super().convert(value, param, ctx)


@dataclass
class _Logging:
    verbose: int = 0
    flag: str | None = None  # --log-format, when given
    applied: str = ""


_logging = _Logging()


def setup_logging(verbose: int) -> None:
    """Configure logging for a command: ``--log-format``, else ``WEBPACS_LOG_FORMAT``, else
    text; a configuration file's ``log.format`` is applied by ``settings_from``."""
    _logging.verbose = verbose
    fmt = _logging.flag or os.environ.get("WEBPACS_LOG_FORMAT") or "text"
    _apply(fmt if fmt in logs.FORMATS else "text")


def _apply(fmt: str) -> None:
    logs.configure(_logging.verbose, fmt)
    _logging.applied = fmt


def quiet_change_log(verbose: int) -> None:
    """For commands that store many files and print a summary (and a report) of them: the
    change log's line per stored instance only with ``-v``."""
    if verbose <= 0:
        logging.getLogger("webpacs.ingest").setLevel(logging.WARNING)


def log_format() -> str:
    """The log format in effect (for worker processes that configure their own logging)."""
    return _logging.applied or "text"


def _log_format_option(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    _logging.flag = value


def config_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``-c FILE`` (repeatable), ``--data-dir`` and ``-v``: on every command."""
    fn = click.option(
        "-c",
        "--config",
        "config_files",
        multiple=True,
        type=UserPath(dir_okay=False),
        help="JSON5 configuration file (repeatable; later files win).",
    )(fn)
    fn = click.option(
        "--log-format",
        type=click.Choice(logs.FORMATS),
        default=None,
        expose_value=False,
        is_eager=True,
        callback=_log_format_option,
        help="Log lines as plain text or JSON objects. [setting log.format; default: text]",
    )(fn)
    fn = click.option(
        "--data-dir",
        type=UserPath(file_okay=False),
        default=None,
        help="Data directory (index and stored objects). [env WEBPACS_DATADIR]",
    )(fn)
    fn = click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")(fn)
    return fn


def settings_from(config_files: tuple[str, ...], overrides: dict[str, Any]) -> Settings:
    try:
        settings = load(config_files, overrides)
    except ConfigError as e:
        raise click.UsageError(str(e)) from e
    if _logging.applied and _logging.flag is None and settings.log.format != _logging.applied:
        _apply(settings.log.format)  # log.format from a configuration file
    return settings


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
