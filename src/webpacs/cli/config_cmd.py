"""``webpacs config``: show the effective configuration and where each value came from."""

from __future__ import annotations

import click
from rich.table import Table

from webpacs.cli.common import config_options, console, settings_from
from webpacs.config import SECRETS, SERVICES, SHARED


@click.group()
def config() -> None:
    """Inspect the layered configuration."""


@config.command()
@config_options
@click.option(
    "--service",
    type=click.Choice(SERVICES),
    default=None,
    help="Show the effective view of one service (its dataDir, index, blobs resolved).",
)
def show(
    config_files: tuple[str, ...], data_dir: str | None, verbose: int, service: str | None
) -> None:
    """Print every setting, its effective value and its source."""
    settings = settings_from(config_files, {"dataDir": data_dir})
    if service is not None:
        settings = settings.for_service(service)
    table = Table("setting", "value", "from")
    for path, source in sorted(settings.sources.items()):
        value = settings.get(*path)
        if value is None and path[-1] in SHARED:
            shown = f"(inherits {path[-1]})"
        elif path in SECRETS:
            shown = "(set, not shown)" if value else "''"
        else:
            shown = repr(value)
        table.add_row(".".join(path), shown, source)
    console.print(table)
