"""Blobs as files under one directory; atomic writes by temp file + rename.

Temporary files live in ``<root>/.tmp`` (same file system, so the rename is atomic);
``collect`` first moves its blob to ``<root>/.tmp/collect/<key>`` and decides there,
so a ``touch`` either reaches the blob before the move (and ``collect`` sees its new
age and puts it back) or finds it gone (and ingest writes it again).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from webpacs.errors import InvalidRequest, NotFound, StorageError
from webpacs.storage.base import BlobEntry

#: Where ``collect`` moves a blob while it decides (under ``.tmp``).
COLLECTING = "collect"


class FileBlobs:
    """``Blobs`` stored as files under ``root`` (one file per key)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / ".tmp"
        self._tmp.mkdir(exist_ok=True)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
            raise InvalidRequest(f"invalid blob key {key!r}")
        return self.root.joinpath(*parts)

    def _write(self, key: str, writer: Callable[[BinaryIO], object]) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._tmp)
            try:
                with os.fdopen(fd, "wb") as f:
                    writer(f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as e:
            raise StorageError(f"cannot write {key}: {e}") from e

    def put(self, key: str, data: bytes) -> None:
        self._write(key, lambda f: f.write(data))

    def put_file(self, key: str, fp: BinaryIO) -> None:
        self._write(key, lambda f: shutil.copyfileobj(fp, f, 1 << 20))

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as e:
            raise NotFound(f"blob {key} not found") from e
        except OSError as e:
            raise StorageError(f"cannot read {key}: {e}") from e

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                f.seek(offset)
                return f.read(length)
        except FileNotFoundError as e:
            raise NotFound(f"blob {key} not found") from e
        except OSError as e:
            raise StorageError(f"cannot read {key}: {e}") from e

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError as e:
            raise NotFound(f"blob {key} not found") from e

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as e:
            raise NotFound(f"blob {key} not found") from e

    def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(OSError):
            path.unlink()
        # prune empty parent directories up to root
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def keys(self, prefix: str = "") -> Iterator[str]:
        # Walk only below the deepest directory the prefix names, not the whole store.
        top = self.root
        parts = prefix.split("/")[:-1]
        if parts and all(p not in ("", ".", "..") and "\\" not in p for p in parts):
            top = self.root.joinpath(*parts)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if d != ".tmp"]
            rel = os.path.relpath(dirpath, self.root)
            for name in filenames:
                key = name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}"
                if key.startswith(prefix):
                    yield key

    def local_path(self, key: str) -> str | None:
        return str(self._path(key))

    # -- what `webpacs check` needs --------------------------------------------------------
    def entries(self, prefix: str = "") -> Iterator[BlobEntry]:
        for key in self.keys(prefix):
            try:
                st = self._path(key).stat()
            except FileNotFoundError:
                continue  # deleted since the listing
            yield BlobEntry(key, st.st_size, st.st_mtime)

    def touch(self, key: str) -> bool:
        try:
            os.utime(self._path(key))
        except FileNotFoundError:
            return False
        except OSError as e:
            raise StorageError(f"cannot touch {key}: {e}") from e
        return True

    def collect(self, key: str, older_than: float, referenced: Callable[[str], bool]) -> bool:
        path = self._path(key)
        held = self._tmp.joinpath(COLLECTING, *key.split("/"))
        try:
            held.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, held)
        except FileNotFoundError:
            return False
        except OSError as e:
            raise StorageError(f"cannot collect {key}: {e}") from e
        try:
            keep = held.stat().st_mtime >= older_than or referenced(key)
        except BaseException:
            self._put_back(held, path)
            raise
        if keep:
            self._put_back(held, path)
            return False
        held.unlink()
        self._prune(held.parent, self._tmp)
        self._prune(path.parent, self.root)
        return True

    def _put_back(self, held: Path, path: Path) -> None:
        """Return a blob ``collect`` moved aside (unless a new copy was written meanwhile)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(held, path)
        except FileExistsError:
            pass  # written again (same content: the key is its digest)
        except OSError as e:
            raise StorageError(f"cannot put back {path}: {e}") from e
        held.unlink()
        self._prune(held.parent, self._tmp)

    @staticmethod
    def _prune(parent: Path, top: Path) -> None:
        while parent != top and top in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def scraps(self) -> Iterator[BlobEntry]:
        for dirpath, _dirnames, filenames in os.walk(self._tmp):
            for name in filenames:
                path = Path(dirpath, name)
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                rel = path.relative_to(self._tmp).as_posix()
                yield BlobEntry(rel, st.st_size, st.st_mtime)

    def remove_scrap(self, key: str) -> None:
        parts = key.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise InvalidRequest(f"invalid scrap {key!r}")
        path = self._tmp.joinpath(*parts)
        if parts[0] == COLLECTING and len(parts) > 1:
            if path.exists():  # a collection cut short: the blob goes back where it was
                self._put_back(path, self._path("/".join(parts[1:])))
            return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
