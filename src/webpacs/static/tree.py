"""Paths, atomic file writes and the one-part multipart (``.mht``) files of a static tree."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import orjson

STATE_FILE = ".webpacs-static.json"
TMP_DIR = ".tmp"
_URI = b'"BulkDataURI":"'

#: The multipart boundary of every ``.mht`` file (see :func:`one_part`).
BOUNDARY = "BOUNDARY_webpacs-static-1f4e9a6c2d8b4f0e"

#: From a series metadata file (``studies/S/series/X/metadata.gz``) to the study directory.
FROM_SERIES = "../../"
#: From an instance metadata file (``.../instances/I/metadata.gz``) to the study directory.
FROM_INSTANCE = "../../../../"


def study_dir(study: str) -> str:
    """``studies/<S>``."""
    return f"studies/{study}"


def series_dir(study: str, series: str) -> str:
    """``studies/<S>/series/<X>``."""
    return f"studies/{study}/series/{series}"


def instance_dir(study: str, series: str, sop: str) -> str:
    """``studies/<S>/series/<X>/instances/<I>``."""
    return f"{series_dir(study, series)}/instances/{sop}"


def bulk_path(digest: str) -> str:
    """Path of a bulk value, relative to the study directory."""
    return f"bulkdata/{digest[0:2]}/{digest[2:4]}/{digest[4:]}.mht.gz"


#: gzip level for pixel data and other binary values: level 6 takes twice as long for ~1%
#: smaller files on CT frames; JSON keeps level 6.
BINARY_LEVEL = 1


def gz(data: bytes, level: int = 6) -> bytes:
    """Deterministic gzip (``mtime=0``), so rebuilding identical content gives identical files."""
    return gzip.compress(data, compresslevel=level, mtime=0)


def gz_json(value: Any) -> bytes:
    """``value`` as gzip'd JSON."""
    return gz(orjson.dumps(value))


def relocate(canonical: bytes, prefix: str) -> bytes:
    """Make study-relative ``BulkDataURI``s relative to a file ``prefix`` away from the study."""
    return canonical.replace(_URI, _URI + prefix.encode())


def one_part(body: bytes, content_type: str) -> bytes:
    """A ``multipart/related`` body with one part (RFC 2046), as static-wado writes them:
    ``--BOUNDARY\r\nContent-Type: ...\r\n\r\nBODY\r\n--BOUNDARY--``.

    The boundary is :data:`BOUNDARY` for every file, so that a plain web server can name it in
    the ``Content-Type`` header it sends (``webpacs static nginx-config``); readers that only
    know static-wado's rule (the boundary is the first line) parse it as well. When the body
    happens to contain that delimiter, the boundary is derived from the content instead (equal
    content still gives equal files, which deploys compare by hash).
    """
    boundary = BOUNDARY
    if b"--" + boundary.encode("ascii") in body:
        boundary = "BOUNDARY_" + hashlib.sha256(body).hexdigest()[:40]
    head = f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode("latin-1")
    return head + body + f"\r\n--{boundary}--\r\n".encode("ascii")


def read_part(data: bytes) -> tuple[str, bytes, str]:
    """Parse a one-part multipart file the way static-wado readers do (boundary on the first
    line): returns ``(boundary, body, part content type)``."""
    first, _, rest = data.partition(b"\r\n")
    if not first.startswith(b"--"):
        raise ValueError("not a multipart body: no boundary on the first line")
    boundary = first[2:].decode("latin-1").strip()
    head, sep, tail = rest.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("multipart part without a header end")
    ctype = ""
    for line in head.split(b"\r\n"):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-type":
            ctype = value.strip()
    end = tail.rfind(b"\r\n--" + boundary.encode("latin-1"))
    if end < 0:
        raise ValueError("multipart body without a closing boundary")
    return boundary, tail[:end], ctype


def read_mht(path: Path) -> bytes:
    """The body of a ``.mht`` or ``.mht.gz`` file."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return read_part(data)[1]


def read_gz_json(path: Path) -> Any:
    """Load a gzip'd JSON file."""
    return orjson.loads(gzip.decompress(path.read_bytes()))


def _file_mode() -> int:
    """What ``open()`` would give a new file: 0666 less the umask (0644 under 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


class Tree:
    """A static DICOMweb tree on disk; writes are temp file + rename.

    Files get the mode a plain ``open()`` would give them (0644 under the usual umask), not
    ``mkstemp``'s 0600: a web server's workers run as another user (nginx's ``nobody``)
    and must read them; directories are 0755 likewise.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        self._mode = _file_mode()
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / TMP_DIR
        self._tmp.mkdir(exist_ok=True)
        self.written = 0
        self._dirs: set[Path] = set()

    def path(self, rel: str) -> Path:
        """The absolute path of ``rel``."""
        return self.root / rel

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def write(self, rel: str, data: bytes) -> None:
        """Write ``rel`` atomically (skipped when the file already holds exactly ``data``)."""
        target = self.root / rel
        with contextlib.suppress(OSError):
            if target.stat().st_size == len(data) and target.read_bytes() == data:
                return
        if target.parent not in self._dirs:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(target.parent)
        fd, tmp = tempfile.mkstemp(dir=self._tmp)
        try:
            os.fchmod(fd, self._mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.written += 1

    def remove_dir(self, rel: str) -> None:
        """Remove a directory (a deleted study or series) if present."""
        shutil.rmtree(self.root / rel, ignore_errors=True)
        self._dirs.clear()

    def prune(self, rel: str, keep: set[str]) -> int:
        """Delete files under ``rel`` whose tree path is not in ``keep``, then empty dirs."""
        base = self.root / rel
        self._dirs.clear()
        removed = 0
        if not base.exists():
            return 0
        for dirpath, _dirs, files in os.walk(base, topdown=False):
            for name in files:
                p = Path(dirpath) / name
                if p.relative_to(self.root).as_posix() not in keep:
                    p.unlink()
                    removed += 1
            with contextlib.suppress(OSError):
                Path(dirpath).rmdir()  # only succeeds when empty
        return removed

    def clean(self) -> None:
        """Remove everything the tree holds (``--clean``)."""
        shutil.rmtree(self.root / "studies", ignore_errors=True)
        self._dirs.clear()
        with contextlib.suppress(FileNotFoundError):
            (self.root / STATE_FILE).unlink()

    def state(self) -> dict[str, Any]:
        """The saved build state (``{"seq": ...}``), empty when there is none."""
        try:
            state: dict[str, Any] = orjson.loads((self.root / STATE_FILE).read_bytes())
            return state
        except (FileNotFoundError, orjson.JSONDecodeError):
            return {}

    def save_state(self, state: dict[str, Any]) -> None:
        self.write(STATE_FILE, orjson.dumps(state, option=orjson.OPT_INDENT_2))
