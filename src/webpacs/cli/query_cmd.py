"""``webpacs query``: a QIDO-RS query on the configured store, from the command line.

The query is what follows ``?`` in a QIDO-RS URL (standard keys, ``includefield``,
``limit``/``offset``, ``fuzzymatching`` and the research keys of README "Research
queries"), answered from the index of the store named by ``--data-dir``/the settings, as
the server would answer it. Printed as a table, or as the QIDO-RS JSON with ``--json``.
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import parse_qsl

import click
import orjson
from pydicom.uid import UID
from rich.console import Console
from rich.table import Table

from webpacs.cli.common import config_options, settings_from, setup_logging
from webpacs.core.attributes import Level
from webpacs.core.query import parse_qido
from webpacs.core.research import LABELS_FIELD
from webpacs.errors import WebpacsError
from webpacs.storage.registry import open_store

LEVELS = {"studies": Level.STUDY, "series": Level.SERIES, "instances": Level.INSTANCE}
#: Per level: (column title, DICOM JSON key) of the table.
COLUMNS: dict[Level, list[tuple[str, str]]] = {
    Level.STUDY: [
        ("Study Instance UID", "0020000D"), ("Patient ID", "00100020"),
        ("Patient name", "00100010"), ("Date", "00080020"), ("Modalities", "00080061"),
        ("Description", "00081030"), ("Series", "00201206"), ("Instances", "00201208"),
    ],
    Level.SERIES: [
        ("Series Instance UID", "0020000E"), ("Modality", "00080060"), ("Number", "00200011"),
        ("Description", "0008103E"), ("Instances", "00201209"),
        ("Study Instance UID", "0020000D"),
    ],
    Level.INSTANCE: [
        ("SOP Instance UID", "00080018"), ("SOP Class", "00080016"), ("Modality", "00080060"),
        ("Number", "00200013"), ("Series Instance UID", "0020000E"),
    ],
}  # fmt: skip


def cell(row: dict[str, Any], key: str) -> str:
    """A DICOM JSON value as table text: several values joined with ``\\``, person names
    by their alphabetic group, SOP classes by name."""
    values = row.get(key, {}).get("Value") or []
    out = []
    for v in values:
        if isinstance(v, dict):
            v = v.get("Alphabetic", "")
        elif key == "00080016":
            v = UID(str(v)).name
        out.append(str(v))
    return "\\".join(out)


def table(level: Level, rows: list[dict[str, Any]]) -> Table:
    t = Table(title=f"{len(rows)} {next(k for k, v in LEVELS.items() if v is level)}")
    columns = list(COLUMNS[level])
    for title, key in columns:
        t.add_column(title, overflow="fold", no_wrap=key in ("0020000D", "0020000E", "00080018"))
    labels = any(LABELS_FIELD in r for r in rows)
    if labels:
        t.add_column("Labels", overflow="fold")
    for r in rows:
        extra = [", ".join(r.get(LABELS_FIELD, []))] if labels else []
        t.add_row(*[cell(r, key) for _, key in columns], *extra)
    return t


@click.command()
@click.argument("query", default="")
@click.option(
    "--level",
    type=click.Choice(list(LEVELS)),
    default="studies",
    show_default=True,
    help="What to search for.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the QIDO-RS JSON rows instead.")
@config_options
def query(
    query: str,
    level: str,
    as_json: bool,
    config_files: tuple[str, ...],
    data_dir: str | None,
    verbose: int,
) -> None:
    """Search the store like QIDO-RS: QUERY is a URL query string, for example
    "webpacsReferences=1.2.3&Modality=SEG" or "ModalitiesInStudy=CT&webpacsLacks=SEG"."""
    setup_logging(verbose - 1)
    settings = settings_from(config_files, {"dataDir": data_dir})
    params = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    try:
        parsed = parse_qido(LEVELS[level], params)
        store = open_store(settings)
    except WebpacsError as e:
        raise click.ClickException(str(e)) from e
    try:
        result = store.index.search(parsed)
    except WebpacsError as e:
        raise click.ClickException(str(e)) from e
    finally:
        store.close()
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(result.rows) + b"\n")
        return
    Console(width=None if sys.stdout.isatty() else 200).print(table(parsed.level, result.rows))
    if result.truncated:
        click.echo(f"(more results: ask with offset={parsed.offset + len(result.rows)})")
