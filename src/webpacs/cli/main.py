"""The ``webpacs`` command."""

from __future__ import annotations

import click

from webpacs import __version__
from webpacs.cli.backup_cmd import backup, restore
from webpacs.cli.check_cmd import check
from webpacs.cli.config_cmd import config
from webpacs.cli.deid_cmd import deidentify
from webpacs.cli.export_cmd import export
from webpacs.cli.importer import import_
from webpacs.cli.migrate import migrate
from webpacs.cli.query_cmd import query
from webpacs.cli.scp import scp
from webpacs.cli.serve import serve
from webpacs.cli.static_cmd import static
from webpacs.cli.update_cmd import update
from webpacs.cli.user_cmd import user
from webpacs.cli.viewer_cmd import viewer


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="webpacs")
def main() -> None:
    """webpacs: a web-centric PACS (DICOMweb, DIMSE, static DICOMweb)."""


main.add_command(serve)
main.add_command(import_)
main.add_command(config)
main.add_command(static)
main.add_command(scp)
main.add_command(migrate)
main.add_command(update)
main.add_command(deidentify)
main.add_command(check)
main.add_command(backup)
main.add_command(restore)
main.add_command(export)
main.add_command(query)
main.add_command(viewer)
main.add_command(user)
