"""``webpacs import``: store Part 10 files from disk, in parallel, through ingest."""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import click

from webpacs.cli.common import (
    UserPath,
    config_options,
    console,
    progress_bar,
    quiet_change_log,
    settings_from,
    setup_logging,
)
from webpacs.config import Settings, isolated
from webpacs.errors import Conflict, WebpacsError
from webpacs.ingest import IngestResult, Prepared, commit_many, prepare
from webpacs.storage.base import Blobs, Outcome
from webpacs.storage.registry import open_store

_blobs: Blobs | None = None
_threshold = 1024
_recompress: tuple[str, ...] = ()


def sample_paths() -> list[Path]:
    """The sample studies bundled with pydicom (and pydicom-data, when installed)."""
    import pydicom.data

    roots = [Path(pydicom.data.__file__).parent / "test_files"]
    try:
        import data_store  # the pydicom-data package (untyped; ignore_missing_imports)

        roots.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    return roots


def iter_files(paths: list[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            for dirpath, _dirs, files in os.walk(p):
                for name in sorted(files):
                    yield Path(dirpath) / name
        elif p.is_file():
            yield p
        else:
            raise click.BadParameter(f"{p} does not exist")


def _init_worker(values: dict[str, Any]) -> None:
    global _blobs, _threshold, _recompress
    st = open_store(isolated(values))
    _blobs = st.blobs
    _threshold = st.bulk_threshold
    _recompress = st.recompress
    st.index.close()


#: Instances committed to the index in one transaction (one sync of its log).
IMPORT_BATCH = 64


def _prepare(path: str) -> tuple[str, Prepared | None, str | None]:
    assert _blobs is not None
    try:
        data = Path(path).read_bytes()
        prepared = prepare(data, _blobs, bulk_threshold=_threshold, recompress=_recompress)
        return path, prepared, None
    except WebpacsError as e:
        return path, None, str(e)
    except OSError as e:
        return path, None, f"cannot read: {e}"


#: Failures listed on the terminal; with more, the report file names them all.
MAX_LISTED = 10
#: Where ``webpacs import`` writes every file's outcome when it does not list them all.
REPORT_NAME = "import-report.tsv"


def run_import(
    settings: Settings,
    files: list[Path],
    jobs: int,
    show: bool = True,
    failures: list[tuple[str, str]] | None = None,
    report: list[tuple[str, str, str]] | None = None,
) -> Counter[str]:
    """Import ``files`` (parsed by ``jobs`` processes, committed here); returns counts by
    outcome: ``stored``, ``replaced``, ``duplicate`` (stored before this import), ``repeated``
    (the same instance as a file earlier in this import), ``conflict``, ``failed``.

    Failures (path, reason) are appended to ``failures`` and every file's (path, outcome,
    reason) to ``report`` when they are given.
    """
    st = open_store(settings)
    counts: Counter[str] = Counter()
    failures = failures if failures is not None else []
    report = report if report is not None else []
    stored_now: set[str] = set()  # SOP Instance UIDs this import stored
    progress, start, step = progress_bar("import", "files", show)
    try:
        with (
            progress,
            ProcessPoolExecutor(
                max_workers=jobs, initializer=_init_worker, initargs=(settings.values,)
            ) as pool,
        ):
            start(len(files))
            batch: list[tuple[str, Prepared | WebpacsError]] = []

            def flush() -> None:
                results = commit_many(
                    st.index, st.blobs, [p for _, p in batch], overwrite=st.overwrite
                )
                for (path, _), result in zip(batch, results, strict=True):
                    if isinstance(result, IngestResult):
                        outcome = result.outcome.value
                        if result.outcome is Outcome.DUPLICATE and result.sop_uid in stored_now:
                            outcome = "repeated"
                        stored_now.add(result.sop_uid)
                        reason = ""
                    else:
                        outcome = "conflict" if isinstance(result, Conflict) else "failed"
                        reason = str(result)
                        failures.append((path, reason))
                    counts[outcome] += 1
                    report.append((path, outcome, reason))
                    step()
                batch.clear()

            for path, prepared, error in pool.map(_prepare, [str(f) for f in files], chunksize=4):
                batch.append((path, prepared or WebpacsError(error or "unknown error")))
                if len(batch) >= IMPORT_BATCH:
                    flush()
            flush()
    finally:
        st.close()
    return counts


def write_report(path: Path, report: list[tuple[str, str, str]]) -> None:
    """Every file's outcome, one per line: ``path<TAB>outcome<TAB>reason`` (with a header)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["path\toutcome\treason"]
    lines += ["\t".join(" ".join(f.split()) for f in row) for row in report]
    path.write_text("\n".join(lines) + "\n")


@click.command("import")
@config_options
@click.argument("paths", nargs=-1, type=UserPath(path_type=Path))
@click.option("--samples", is_flag=True, help="Import the sample studies bundled with pydicom.")
@click.option("-j", "--jobs", type=int, default=None, help="Parallel parsers [default: cores].")
@click.option(
    "--report",
    "report_file",
    type=UserPath(dir_okay=False, path_type=Path),
    default=None,
    help=f"Write every file's outcome here (TSV). [default: DATADIR/{REPORT_NAME} when more"
    f" than {MAX_LISTED} files are not stored]",
)
def import_(
    config_files: tuple[str, ...],
    data_dir: str | None,
    verbose: int,
    paths: tuple[Path, ...],
    samples: bool,
    jobs: int | None,
    report_file: Path | None,
) -> None:
    """Store DICOM files (recursively) through the one write path.

    Prints a summary of stored / already present / failed files. Up to ten failures are
    listed with their reason; with more, the summary names the report file that lists
    every file's outcome (--report chooses it, and writes it in any case). Exits 1 when
    something failed (with --samples, only when nothing was stored, since the sample set
    holds deliberately invalid files and same-UID variants).
    """
    setup_logging(verbose)
    quiet_change_log(verbose)
    settings = settings_from(config_files, {"dataDir": data_dir})
    roots = list(paths) + (sample_paths() if samples else [])
    if not roots:
        raise click.UsageError("give PATH(s) to import, or --samples")
    files = list(iter_files(roots))
    report: list[tuple[str, str, str]] = []
    counts = run_import(settings, files, jobs or os.cpu_count() or 1, show=True, report=report)
    stored = counts["stored"] + counts["replaced"]
    failed = counts["failed"] + counts["conflict"]
    if report_file is None and failed > MAX_LISTED:
        report_file = settings.data_dir / REPORT_NAME
    if failed <= MAX_LISTED:
        for path, outcome, reason in report:
            if outcome in ("failed", "conflict"):
                console.print(
                    f"[red]not stored[/] {path}: {reason}", soft_wrap=True, highlight=False
                )
    repeated = f", {counts['repeated']} repeated in the input" if counts["repeated"] else ""
    console.print(
        f"[bold]{len(files)}[/] files: [green]{stored} stored[/],"
        f" {counts['duplicate']} already present{repeated}, [red]{failed} not stored[/]"
        f" ({counts['conflict']} conflicting with a stored instance)",
        soft_wrap=True,
    )
    if report_file is not None:
        write_report(report_file, report)
        console.print(f"every file's outcome and reason: {report_file}", soft_wrap=True)
    if (failed and not samples) or (samples and stored + counts["duplicate"] == 0):
        sys.exit(1)
