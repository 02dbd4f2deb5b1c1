"""``webpacs config``: show the effective configuration and where each value came from."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
            shown = "***" if value else "''"
        elif path[:2] == ("auth", "users"):  # a password hash is a secret too
            shown = repr({"hash": "***", "role": value["role"]})
        elif path == ("dataDir",):
            shown = repr(str(settings.data_dir))  # "" and "~" resolved: the directory used
        else:
            shown = repr(masked(value))
        table.add_row(".".join(path), shown, source)
    console.print(table)


def masked(value: Any) -> Any:
    """A URL's password as ``***`` (``postgresql://u:***@host/db``); other values as they are."""
    if not isinstance(value, str) or "@" not in value or "://" not in value:
        return value
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return value
    if not password:
        return value
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))
