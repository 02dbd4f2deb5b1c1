"""Backup and restore of the embedded store (SQLite index + files), while it serves.

A backup directory holds

- ``index.sqlite3``: a snapshot of the index taken with SQLite's online backup API (one
  step, so one consistent state; in WAL mode the server's writers are not held up), and
  ``proxy.sqlite3`` the same way when the store has one;
- ``blobs/objects/...``: every stored object that snapshot names, hard-linked from the
  store (copied when the backup is on another file system, or with ``copy``);
- ``backup.json``: what the backup holds, with its format version.

Objects are content-addressed and never rewritten in place, so linking them after the
snapshot gives the bytes the snapshot names; an object deleted in between makes the
backup take a new snapshot. A second backup into the same directory is incremental:
objects already there are kept, new ones linked, and objects the new snapshot no longer
names are dropped (a backup is one state of the store, not an archive of every state).
Derived documents are not backed up: the restored server builds them again on read.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from webpacs.errors import ConfigError, StorageError
from webpacs.storage import objects

#: The format of a backup directory (``backup.json``'s ``format``).
FORMAT = 1
MANIFEST = "backup.json"
INDEX = "index.sqlite3"
#: Other SQLite databases of a data directory that a backup carries when present.
EXTRA_DATABASES = ("proxy.sqlite3",)
#: Snapshots taken again when objects vanished between a snapshot and their link.
RETRIES = 5

OnStart = Callable[[int], None]
OnObject = Callable[[], None]


@dataclass
class Summary:
    """What a backup or restore did."""

    instances: int = 0
    objects: int = 0  # objects the backup (or restored store) holds
    added: int = 0  # objects linked or copied by this run
    linked: int = 0  # of those, hard links
    kept: int = 0  # already in the backup (incremental)
    dropped: int = 0  # in the backup but no longer in the store
    bytes_added: int = 0
    seconds: float = 0.0


def embedded_only(index: str, blobs: str) -> None:
    """Refuse, with what to use instead, unless the store is SQLite + files."""
    if index == "sqlite" and blobs == "files":
        return
    other = []
    if index == "postgresql":
        other.append("the PostgreSQL index with pg_dump (or continuous archiving)")
    if index == "couchdb":
        other.append("the CouchDB index with CouchDB replication to another database")
    if blobs == "s3":
        other.append("the S3 blobs with bucket versioning or replication")
    raise ConfigError(
        f"backup and restore cover the embedded store (index sqlite, blobs files), not"
        f" index {index!r} with blobs {blobs!r}: back up {' and '.join(other)}"
        " (see the README, 'Backup and restore')"
    )


def _snapshot(source: Path, target: Path) -> None:
    """An online, consistent copy of SQLite database ``source`` at ``target``."""
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        src = sqlite3.connect(source, timeout=60)
        try:
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)  # all pages in one step: one state of the database
                dst.execute("PRAGMA journal_mode=DELETE")  # a self-contained file
            finally:
                dst.close()
        finally:
            src.close()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except sqlite3.Error as e:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot back up {source}: {e}") from e


def _named(index: Path) -> dict[str, int]:
    """Object key -> size of every instance the index at ``index`` names."""
    db = sqlite3.connect(f"file:{index}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT blob_key, size FROM instances").fetchall())
    except sqlite3.Error as e:
        raise StorageError(f"cannot read {index}: {e}") from e
    finally:
        db.close()


def _place(source: Path, target: Path, copy: bool) -> bool:
    """Hard-link (or copy) ``source`` to ``target``; True when linked. Raises
    ``FileNotFoundError`` when ``source`` is gone."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not copy:
        try:
            os.link(source, target)
            return True
        except FileExistsError:
            target.unlink()
            os.link(source, target)
            return True
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)
    return False


def _files(root: Path) -> set[str]:
    out = set()
    for dirpath, _dirs, names in os.walk(root / "blobs" / objects.PREFIX.rstrip("/")):
        out |= {Path(dirpath, n).relative_to(root / "blobs").as_posix() for n in names}
    return out


def _prune_dirs(top: Path) -> None:
    for dirpath, _dirs, _names in sorted(os.walk(top), key=lambda w: -len(w[0])):
        if Path(dirpath) != top:
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


def _mirror(
    source: Path,
    target: Path,
    index: Path,
    *,
    copy: bool,
    on_start: OnStart | None,
    on_object: OnObject | None,
    summary: Summary,
) -> dict[str, int] | None:
    """Make ``target/blobs`` hold exactly the objects ``index`` names, from ``source``;
    None when some of them vanished from ``source`` meanwhile."""
    named = _named(index)
    have = _files(target)
    if on_start is not None:
        on_start(len(named))
    vanished = False
    for key, size in named.items():
        dst = target / "blobs" / key
        if key in have and dst.stat().st_size == size:
            summary.kept += 1
        else:
            try:
                summary.linked += _place(source / "blobs" / key, dst, copy)
            except FileNotFoundError:
                vanished = True
                continue
            summary.added += 1
            summary.bytes_added += size
        if on_object is not None:
            on_object()
    for key in have - set(named):
        (target / "blobs" / key).unlink()
        summary.dropped += 1
    _prune_dirs(target / "blobs")
    return None if vanished else named


def backup(
    data_dir: Path,
    out: Path,
    *,
    copy: bool = False,
    on_start: OnStart | None = None,
    on_object: OnObject | None = None,
) -> Summary:
    """Back the store in ``data_dir`` up into ``out`` (incrementally when it holds one)."""
    t0 = time.perf_counter()
    source = data_dir / INDEX
    if not source.is_file():
        raise ConfigError(f"no index at {source}: nothing to back up")
    out.mkdir(parents=True, exist_ok=True)
    named: dict[str, int] | None = None
    for _attempt in range(RETRIES):
        summary = Summary()
        _snapshot(source, out / INDEX)
        named = _mirror(data_dir, out, out / INDEX, copy=copy, on_start=on_start,
                        on_object=on_object, summary=summary)  # fmt: skip
        if named is not None:
            break
    if named is None:
        raise StorageError("objects kept vanishing during the backup (deletes?); try again")
    for name in EXTRA_DATABASES:
        if (data_dir / name).is_file():
            _snapshot(data_dir / name, out / name)
    summary.objects = len(named)
    summary.instances = len(named)
    summary.seconds = time.perf_counter() - t0
    manifest = {"format": FORMAT, "time": time.time(), "source": str(data_dir), **asdict(summary)}
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / MANIFEST)
    return summary


def restore(
    backup_dir: Path,
    data_dir: Path,
    *,
    copy: bool = False,
    on_start: OnStart | None = None,
    on_object: OnObject | None = None,
) -> Summary:
    """Restore the backup in ``backup_dir`` into ``data_dir``, a new data directory."""
    t0 = time.perf_counter()
    try:
        manifest = json.loads((backup_dir / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{backup_dir} is not a webpacs backup ({MANIFEST}: {e})") from e
    if manifest.get("format") != FORMAT:
        raise ConfigError(
            f"{backup_dir} is a backup of format {manifest.get('format')!r};"
            f" this webpacs reads format {FORMAT}"
        )
    if (data_dir / INDEX).exists() or (data_dir / "blobs").exists():
        raise ConfigError(f"{data_dir} already holds a store: restore into a new data directory")
    data_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    named = _mirror(backup_dir, data_dir, backup_dir / INDEX, copy=copy, on_start=on_start,
                    on_object=on_object, summary=summary)  # fmt: skip
    if named is None:
        raise StorageError(f"{backup_dir} lacks objects its index names: it is damaged")
    for name in (INDEX, *EXTRA_DATABASES):
        if (backup_dir / name).is_file():
            _snapshot(backup_dir / name, data_dir / name)
    summary.objects = summary.instances = len(named)
    summary.seconds = time.perf_counter() - t0
    return summary
