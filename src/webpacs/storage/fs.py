"""Blobs as files under one directory; atomic writes by temp file + rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from webpacs.errors import InvalidRequest, NotFound, StorageError


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
