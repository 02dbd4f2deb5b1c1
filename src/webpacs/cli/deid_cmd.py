"""``webpacs deidentify``: PS3.15 Annex E de-identification of a stored study."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from webpacs.cli.common import UserPath, config_options, console, settings_from, setup_logging
from webpacs.deid.profile import OPTIONS
from webpacs.errors import WebpacsError


@click.command("deidentify")
@config_options
@click.option("--study", required=True, help="The study to de-identify.")
@click.option(
    "--profile",
    "profiles",
    multiple=True,
    type=click.Choice(list(OPTIONS)),
    help="Profile options besides the Basic Profile (repeatable): retain-dates, retain-uids.",
)
@click.option("--new-study", is_flag=True, help="Store a de-identified copy; keep the original.")
@click.option(
    "--out",
    type=UserPath(file_okay=False, path_type=Path),
    help="Write Part 10 files under this directory; the store is untouched.",
)
@click.option(
    "--static",
    "static_root",
    type=UserPath(file_okay=False, path_type=Path),
    help="Write a static DICOMweb tree here; the store is untouched.",
)
@click.option("--patient-id", help="The pseudonym for PatientID and PatientName.")
@click.option("--force", is_flag=True, help="Also de-identify BurnedInAnnotation=YES instances.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def deidentify(
    config_files: tuple[str, ...],
    data_dir: str | None,
    verbose: int,
    study: str,
    profiles: tuple[str, ...],
    new_study: bool,
    out: Path | None,
    static_root: Path | None,
    patient_id: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """De-identify a study (PS3.15 Annex E, Basic Profile and options).

    By default in place: the de-identified study (new UIDs throughout) replaces the
    original, which is removed with its stored objects and derived documents.
    """
    from webpacs.deid import run
    from webpacs.storage.registry import open_store

    setup_logging(verbose)
    if sum(bool(x) for x in (new_study, out, static_root)) > 1:
        raise click.UsageError("choose one of --new-study, --out and --static")
    settings = settings_from(config_files, {"dataDir": data_dir})
    try:
        st = open_store(settings)
        try:
            if out is not None:
                result = run.to_files(st, study, profiles, out, force=force, patient_id=patient_id)
            elif static_root is not None:
                result = run.to_static(
                    st, study, profiles, static_root, force=force, patient_id=patient_id
                )
            else:
                result = run.into_store(
                    st, study, profiles, in_place=not new_study, force=force, patient_id=patient_id
                )
        finally:
            st.close()
    except WebpacsError as e:
        console.print(f"[red]deidentify failed:[/] {e}")
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(result.as_json()))
    console.print(f"de-identified study {result.study}: {result.instances} instance(s)")
