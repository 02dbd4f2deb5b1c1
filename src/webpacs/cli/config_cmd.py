"""``webpacs config``: show the effective configuration and where each value came from."""

from __future__ import annotations

import click
from rich.table import Table

from webpacs.cli.common import config_options, console, settings_from


@click.group()
def config() -> None:
    """Inspect the layered configuration."""


@config.command()
@config_options
def show(config_files: tuple[str, ...], data_dir: str | None, verbose: int) -> None:
    """Print every setting, its effective value and its source."""
    settings = settings_from(config_files, {"dataDir": data_dir})
    table = Table("setting", "value", "from")
    for path, source in sorted(settings.sources.items()):
        table.add_row(".".join(path), repr(settings.get(*path)), source)
    console.print(table)
