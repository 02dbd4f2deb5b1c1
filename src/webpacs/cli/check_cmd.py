"""``webpacs check``: is everything the index names stored and intact, and nothing else?"""

from __future__ import annotations

import json
import sys

import click

from webpacs.cli.common import config_options, console, progress_bar, settings_from, setup_logging
from webpacs.errors import WebpacsError
from webpacs.integrity.findings import SERIOUS, Kind, Report

#: Findings of one kind listed in the readable report (all of them with -v, and in --json).
SHOWN = 20


@click.command()
@config_options
@click.option("--repair", is_flag=True, help="Remove leftovers, re-index, rebuild documents.")
@click.option(
    "--grace-hours",
    type=float,
    default=None,
    help="Remove leftovers only when older than this. [default: check.graceHours, 24]",
)
@click.option("--quick", is_flag=True, help="Check objects' existence and size only (no re-read).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def check(
    config_files: tuple[str, ...],
    data_dir: str | None,
    verbose: int,
    repair: bool,
    grace_hours: float | None,
    quick: bool,
    as_json: bool,
) -> None:
    """Check the store: objects missing or damaged, index rows lost, stale derived
    documents, files nothing references. Runs beside a serving server.

    Exit status 0 when nothing is found or only leftovers (which --repair collects),
    1 when an object is missing or damaged, or the index lost one (until --repair).
    """
    from webpacs.integrity.repair import repair as run_repair
    from webpacs.integrity.walk import check as run_check
    from webpacs.storage.registry import open_store

    setup_logging(verbose)
    overrides = {"dataDir": data_dir, "check": {"graceHours": grace_hours}}
    settings = settings_from(config_files, overrides)
    grace = settings.check.grace_hours * 3600
    progress, start, step = progress_bar("check", "instances", show=not as_json)
    try:
        store = open_store(settings)
        try:
            with progress:
                report = run_check(
                    store, full=not quick, grace_seconds=grace, on_start=start, on_instance=step
                )
            if repair:
                run_repair(store, report)
        finally:
            store.close()
    except WebpacsError as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=1))
    else:
        _print(report, repair, verbose)
    sys.exit(report.exit_status)


def _print(report: Report, repair: bool, verbose: int) -> None:
    how = "re-read and verified" if report.full else "existence and size (--quick)"
    console.print(
        f"checked {report.instances} index records against {report.objects} stored objects"
        f" ({how}; {report.verified_bytes / 1e6:.1f} MB read), {report.derived} derived documents"
    )
    counts = report.counts()
    labels = {
        Kind.MISSING: "objects missing",
        Kind.DAMAGED: "objects damaged",
        Kind.UNINDEXED: "objects the index lost",
        Kind.UNREFERENCED: "files nothing references",
        Kind.STALE: "stale derived documents",
        Kind.SCRAP: "scraps of interrupted writes",
    }
    for kind in Kind:
        found = [f for f in report.findings if f.kind is kind]
        fixed = sum(1 for f in found if f.repaired)
        colour = "red" if kind in SERIOUS and counts[kind] else "green" if not found else "yellow"
        line = f"  [{colour}]{counts[kind]:>7}[/] {labels[kind]}"
        if repair:
            line += f" ({fixed} repaired)"
        elif kind not in SERIOUS and found:
            young = sum(1 for f in found if f.age < report.grace_seconds)
            line += f" ({young} younger than the grace period)" if young else ""
        console.print(line)
        for f in found[: None if verbose else SHOWN]:
            note = f" -> {f.repaired}" if f.repaired else ""
            console.print(f"          {f.key}: {f.detail}{note}", soft_wrap=True, highlight=False)
        if not verbose and len(found) > SHOWN:
            console.print(f"          ... and {len(found) - SHOWN} more (-v lists all)")
    if report.exit_status:
        console.print(
            "[red]data is missing or damaged[/]: restore it from a backup or send it again"
            + ("" if repair else "; --repair re-indexes what the index lost")
        )
    elif any(counts.values()) and not repair:
        console.print("only leftovers: --repair removes them")
