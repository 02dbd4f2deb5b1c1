"""``webpacs user add NAME --role ROLE``: a user of ``auth.users`` in a configuration file.

The password is read from standard input (never an argument: it would show in the process
list and the shell history) and only its argon2id hash is written. The file is rewritten as
JSON5 from its parsed values (comments in it are not kept).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import json5

from webpacs.auth.basic import hash_password
from webpacs.config import ROLES, load_file


@click.group()
def user() -> None:
    """Users of HTTP basic authentication (auth.users)."""


@user.command()
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the user may do.")
@click.option(
    "-c",
    "--config",
    "config_file",
    default="webpacs.json5",
    show_default=True,
    help="The JSON5 configuration file to write the user into (created if missing).",
)
def add(name: str, role: str, config_file: str) -> None:
    """Add (or replace) user NAME; the password is read from standard input."""
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise click.UsageError("no password on standard input")
    path = Path(config_file)
    values = load_file(path) if path.exists() else {}
    auth = values.setdefault("auth", {})
    auth.setdefault("users", {})[name] = {"hash": hash_password(password), "role": role}
    text = json5.dumps(values, indent=2, quote_keys=False, trailing_commas=True) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    click.echo(f"user {name} ({role}) written to {path}")
    if auth.get("mode", "none") == "none":
        click.echo('auth.mode is "none" there: set it to "basic" for the user to matter')
