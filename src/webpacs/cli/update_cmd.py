"""``webpacs update``: correct stored attributes, move a series, on the configured store."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from webpacs.cli.common import UserPath, config_options, console, settings_from, setup_logging
from webpacs.core import modify
from webpacs.errors import WebpacsError
from webpacs.update import Change


@click.command("update")
@config_options
@click.option("--patient", help="Every study of this Patient ID.")
@click.option("--study", help="This study (with --series/--instance: where to look).")
@click.option("--series", help="This series.")
@click.option("--instance", help="This instance (SOP Instance UID).")
@click.option("--remove", "removes", multiple=True, metavar="KEYWORD", help="Remove (repeatable).")
@click.option("--move-to", metavar="STUDY", help="Move the --series to this study.")
@click.option(
    "--reason",
    type=click.Choice(modify.REASONS),
    default=modify.DEFAULT_REASON,
    show_default=True,
    help="ReasonForTheAttributeModification recorded with the original values.",
)
@click.option(
    "--file",
    "spec",
    type=UserPath(exists=True, dir_okay=False, path_type=Path),
    help="Several updates from a JSON5 or CSV file (see the README).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@click.argument("assignments", nargs=-1)
def update(
    config_files: tuple[str, ...],
    data_dir: str | None,
    verbose: int,
    patient: str | None,
    study: str | None,
    series: str | None,
    instance: str | None,
    removes: tuple[str, ...],
    move_to: str | None,
    reason: str,
    spec: Path | None,
    as_json: bool,
    assignments: tuple[str, ...],
) -> None:
    """Set, replace or remove attributes of stored instances: KEYWORD=VALUE ...

    \b
      webpacs update --study 1.2.3 PatientName=Doe^Jane
      webpacs update --patient OLD PatientID=NEW            (merge or rename a patient)
      webpacs update --series 1.2.3.4 SeriesDescription="AX T1" --remove ProtocolName
      webpacs update --series 1.2.3.4 --move-to 1.2.5       (the series joins that study)
      webpacs update --file corrections.csv

    UIDs stay; the previous values are kept in OriginalAttributesSequence. Each study is
    rewritten as one unit, through the same write path as every stored instance.
    """
    from webpacs.storage.registry import open_store
    from webpacs.update import update as run

    setup_logging(verbose)
    settings = settings_from(config_files, {"dataDir": data_dir})
    try:
        changes = _changes(
            patient, study, series, instance, assignments, removes, move_to, reason, spec
        )
        st = open_store(settings)
        try:
            report = run(st, changes)
        finally:
            st.close()
    except WebpacsError as e:
        console.print(f"[red]update failed:[/] {e}")
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(report.as_json()))
    console.print(
        f"{report.rewritten} instance(s) rewritten in {len(report.studies)} study(ies),"
        f" {report.unchanged} already as asked"
    )


def _changes(
    patient: str | None,
    study: str | None,
    series: str | None,
    instance: str | None,
    assignments: tuple[str, ...],
    removes: tuple[str, ...],
    move_to: str | None,
    reason: str,
    spec: Path | None,
) -> list[Change]:
    from webpacs import update_spec

    named = {"patient": patient, "study": study, "series": series, "instance": instance}
    if spec is not None:
        if any(named.values()) or assignments or removes or move_to:
            raise click.UsageError("--file takes the targets and values from the file")
        return update_spec.from_file(spec)
    obj = {k: v for k, v in named.items() if v}
    if not obj:
        raise click.UsageError("name a --patient, --study, --series or --instance (or --file)")
    if patient and len(obj) > 1:
        raise click.UsageError("--patient goes alone")
    values: dict[str, str | None] = dict(update_spec.assignment(a) for a in assignments)
    values |= {k: None for k in removes}
    level, uid, in_study = update_spec.target(obj)
    return [update_spec.change(level, uid, values, move_to=move_to, reason=reason, study=in_study)]
