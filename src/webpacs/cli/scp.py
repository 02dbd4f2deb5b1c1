"""``webpacs scp``: the DIMSE SCP alone (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET)."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click

from webpacs.cli.common import config_options, console, settings_from, setup_logging
from webpacs.cli.workers import cannot_listen
from webpacs.dimse import start_scp
from webpacs.errors import ConfigError


@click.command()
@config_options
@click.option("--host", default=None, help="Address to bind. [default: 127.0.0.1]")
@click.option("--port", type=int, default=None, help="DIMSE port. [default: 11112]")
@click.option("--ae-title", default=None, help="Our AE title. [default: WEBPACS]")
def scp(
    config_files: tuple[str, ...],
    data_dir: str | None,
    verbose: int,
    host: str | None,
    port: int | None,
    ae_title: str | None,
) -> None:
    """Serve DIMSE (PS3.4 Verification, Storage, Query/Retrieve) from the store.

    --data-dir here sets dimse.dataDir (the data directory of this service).
    """
    setup_logging(verbose)
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)
    settings = settings_from(
        config_files,
        {"dimse": {"dataDir": data_dir, "host": host, "port": port, "aeTitle": ae_title}},
    )
    view = settings.for_service("dimse")
    try:
        handle = start_scp(settings)
    except ConfigError as e:
        raise click.UsageError(str(e)) from e
    except OSError as e:
        d = view.dimse
        raise SystemExit(cannot_listen(d.host, d.port, "DIMSE", e)) from None
    console.print(f"[bold]webpacs[/] data in {view.data_dir}")
    console.print(f"DIMSE SCP [bold]{view.dimse.ae_title}[/] on {handle.host}:{handle.port}")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        handle.shutdown()
