"""What ``webpacs check`` reports: findings by kind, counts, and the exit status."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """What is wrong; the first three mean lost or damaged data (exit status 1)."""

    MISSING = "missing"  # the index names an object that is not stored
    DAMAGED = "damaged"  # the stored object is not the one its index record describes
    UNINDEXED = "unindexed"  # a stored object the index lost (the change feed stored it)
    UNREFERENCED = "unreferenced"  # an object file nothing references (a leftover)
    STALE = "stale"  # a derived document of an earlier series version, or of a gone series
    SCRAP = "scrap"  # what an interrupted write left (a temporary file, an upload)


#: Kinds that are data lost or damaged; the others are leftovers ``--repair`` collects.
SERIOUS = (Kind.MISSING, Kind.DAMAGED, Kind.UNINDEXED)


@dataclass
class Finding:
    """One thing ``check`` found."""

    kind: Kind
    key: str  # the blob key it is about
    detail: str
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""
    age: float = 0.0  # seconds since the file was last written (leftovers)
    repaired: str = ""  # what --repair did about it ("" = nothing)


@dataclass
class Report:
    """A check's findings and what it looked at."""

    instances: int = 0  # index records checked
    objects: int = 0  # stored object files listed
    verified_bytes: int = 0  # bytes re-read and hashed
    derived: int = 0  # derived documents looked at
    full: bool = True  # objects re-read (False: --quick, existence and size only)
    grace_seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def counts(self) -> dict[str, int]:
        """Findings per kind (every kind listed, zeros included)."""
        c = Counter(f.kind for f in self.findings)
        return {k.value: c[k] for k in Kind}

    def unresolved(self) -> list[Finding]:
        """Serious findings ``--repair`` did not resolve."""
        return [f for f in self.findings if f.kind in SERIOUS and not f.repaired]

    @property
    def exit_status(self) -> int:
        """0: nothing found, or only leftovers; 1: objects missing, damaged or unindexed."""
        return 1 if self.unresolved() else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "instances": self.instances,
            "objects": self.objects,
            "verifiedBytes": self.verified_bytes,
            "derivedDocuments": self.derived,
            "full": self.full,
            "graceSeconds": self.grace_seconds,
            "counts": self.counts(),
            "repaired": sum(1 for f in self.findings if f.repaired),
            "exitStatus": self.exit_status,
            "findings": [{**asdict(f), "kind": f.kind.value} for f in self.findings],
        }
