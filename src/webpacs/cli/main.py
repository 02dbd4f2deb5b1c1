"""The ``webpacs`` command.

Each subcommand's module is imported when that subcommand runs (or when help lists it),
not at every start: ``webpacs import`` does not load the web server, DIMSE or the static
tree builder it does not use (about half the start-up time of a short run).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping

import click

from webpacs import __version__

#: Subcommand name -> ``module:attribute`` of its click command.
COMMANDS = {
    "serve": "webpacs.cli.serve:serve",
    "import": "webpacs.cli.importer:import_",
    "config": "webpacs.cli.config_cmd:config",
    "static": "webpacs.cli.static_cmd:static",
    "scp": "webpacs.cli.scp:scp",
    "migrate": "webpacs.cli.migrate:migrate",
    "update": "webpacs.cli.update_cmd:update",
    "deidentify": "webpacs.cli.deid_cmd:deidentify",
    "check": "webpacs.cli.check_cmd:check",
    "backup": "webpacs.cli.backup_cmd:backup",
    "restore": "webpacs.cli.backup_cmd:restore",
    "export": "webpacs.cli.export_cmd:export",
    "query": "webpacs.cli.query_cmd:query",
    "viewer": "webpacs.cli.viewer_cmd:viewer",
    "user": "webpacs.cli.user_cmd:user",
}


class LazyCommands(MutableMapping[str, click.Command]):
    """A group's commands, each imported on first access."""

    def __init__(self, specs: dict[str, str]) -> None:
        self._specs = dict(specs)
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            module, _, attr = self._specs[name].partition(":")
            command = getattr(importlib.import_module(module), attr)
            assert isinstance(command, click.Command)
            self._loaded[name] = command
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._specs[name] = ""
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._specs[name]
        self._loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="webpacs")
def main() -> None:
    """webpacs: a web-centric PACS (DICOMweb, DIMSE, static DICOMweb)."""


main.commands = LazyCommands(COMMANDS)
