"""Figures of a static tree: size on disk versus the input, deduplicated metadata ratio, speed.

``webpacs static build`` prints them (``--json`` for one machine-readable line) and ``make
bench`` reports them; :func:`figures` is the one place they are computed.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from webpacs.static.tree import STATE_FILE, TMP_DIR


@dataclass(frozen=True)
class Figures:
    """What a build produced, in numbers."""

    instances: int
    seconds: float
    files: int
    tree_bytes: int
    #: bytes of the Part 10 input (0 when unknown, e.g. a build from the store)
    input_bytes: int
    #: deduplicated metadata / plain series metadata, uncompressed JSON (None without --dedup)
    dedup_ratio: float | None
    #: the same, gzip'd files on disk
    dedup_gz_ratio: float | None
    #: frame bytes before and after ``--recompress`` (0, 0 when nothing was recompressed)
    recompressed_in: int = 0
    recompressed_out: int = 0

    @property
    def rate(self) -> float:
        """Instances per second."""
        return self.instances / self.seconds if self.seconds > 0 else 0.0

    @property
    def size_ratio(self) -> float | None:
        """Tree bytes / input bytes."""
        return self.tree_bytes / self.input_bytes if self.input_bytes else None

    @property
    def recompress_ratio(self) -> float | None:
        """Recompressed frame bytes / the same frames as stored (None: none recompressed)."""
        return self.recompressed_out / self.recompressed_in if self.recompressed_in else None

    def as_dict(self) -> dict[str, Any]:
        """All figures, derived ones included (for ``--json`` and the benchmark)."""
        return {
            **asdict(self),
            "instances_per_s": self.rate,
            "size_ratio": self.size_ratio,
            "recompress_ratio": self.recompress_ratio,
        }


def tree_size(root: str | Path) -> tuple[int, int]:
    """``(files, bytes)`` of the tree's content (not its temp dir or build state)."""
    root = Path(root)
    files = size = 0
    for dirpath, dirs, names in os.walk(root):
        if Path(dirpath) == root:
            dirs[:] = [d for d in dirs if d != TMP_DIR]
            names = [n for n in names if n != STATE_FILE]
        for name in names:
            files += 1
            size += (Path(dirpath) / name).stat().st_size
    return files, size


def dedup_ratios(root: str | Path) -> tuple[float, float] | None:
    """Deduplicated / plain series metadata over every study that has the deduplicated form:
    ``(uncompressed JSON ratio, gzip'd files ratio)``; ``None`` when no study has it.

    Groups shared by several series of a study are counted once, as they are stored once.
    """
    root = Path(root)
    plain_raw = plain_gz = dedup_raw = dedup_gz = 0
    for ddir in sorted(root.glob("studies/*/deduplicated")):
        for f in ddir.rglob("*.json.gz"):
            data = f.read_bytes()
            dedup_gz += len(data)
            dedup_raw += len(gzip.decompress(data))
        for entries in ddir.glob("*.json.gz"):
            series = entries.name.removesuffix(".json.gz")
            plain = ddir.parent / "series" / series / "metadata.gz"
            data = plain.read_bytes()
            plain_gz += len(data)
            plain_raw += len(gzip.decompress(data))
    if not plain_raw:
        return None
    return dedup_raw / plain_raw, dedup_gz / plain_gz


def figures(
    root: str | Path,
    instances: int,
    seconds: float,
    input_bytes: int = 0,
    recompressed: tuple[int, int] = (0, 0),
) -> Figures:
    """The figures of the tree at ``root`` after writing ``instances`` in ``seconds``;
    ``recompressed`` is (frame bytes as stored, as written) of the recompressed frames."""
    files, size = tree_size(root)
    ratios = dedup_ratios(root)
    return Figures(
        instances=instances,
        seconds=seconds,
        files=files,
        tree_bytes=size,
        input_bytes=input_bytes,
        dedup_ratio=ratios[0] if ratios else None,
        dedup_gz_ratio=ratios[1] if ratios else None,
        recompressed_in=recompressed[0],
        recompressed_out=recompressed[1],
    )
