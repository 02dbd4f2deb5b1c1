"""The webpacs query keys for research queries (issue 13 points 2 and 5; README "Research
queries"): by reference, by what a study or series has, and by label.

=========================  =====================  =================================================
key                        levels                 matches
=========================  =====================  =================================================
``webpacsReferences=U``    study, series,         instances whose reference sequences name ``U``
                           instance               (a study, series or SOP Instance UID); a series
                                                  or study holding such an instance
``webpacsReferencedBy=U``  study, series,         what the instances with ``U`` as their SOP
                           instance               Instance, series or study UID name: those
                                                  instances; the series and studies named or
                                                  holding a named instance
``webpacsHas=X``           study, series          a study holding an instance of Modality or SOP
                                                  Class ``X``; a series that such an instance
                                                  references (by its UID or one of its instances')
``webpacsLacks=X``         study, series          the converse of ``webpacsHas``
``webpacsLabel=L``         study, series          studies (series) with label ``L``; ``!L``:
                                                  without it
=========================  =====================  =================================================

UID keys take a list (``U1\\U2`` or ``U1,U2``: any of them); ``webpacsHas`` takes a list
(any of them), ``webpacsLacks`` too (none of them). A key given twice must hold both times.
``includefield=webpacsLabels`` adds each study's or series' labels to the rows, as a JSON
array of strings under the key ``webpacsLabels``. Labels are 1-64 letters, digits, ``-``,
``_`` and ``.`` (``check_label``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from webpacs.core.attributes import Level
from webpacs.core.uids import check_uid
from webpacs.errors import InvalidRequest

__all__ = [
    "KEYS",
    "LABELS_FIELD",
    "ResearchKey",
    "check_label",
    "is_research_key",
    "parse_research_key",
]

REFERENCES = "references"
REFERENCED_BY = "referencedby"
HAS = "has"
LABEL = "label"

#: query key -> (kind, negated)
KEYS: dict[str, tuple[str, bool]] = {
    "webpacsReferences": (REFERENCES, False),
    "webpacsReferencedBy": (REFERENCED_BY, False),
    "webpacsHas": (HAS, False),
    "webpacsLacks": (HAS, True),
    "webpacsLabel": (LABEL, False),
}
#: The ``includefield`` value that asks for labels, and the row key that holds them.
LABELS_FIELD = "webpacsLabels"
#: Levels where a kind of key may be used.
_LEVELS = {
    REFERENCES: (Level.STUDY, Level.SERIES, Level.INSTANCE),
    REFERENCED_BY: (Level.STUDY, Level.SERIES, Level.INSTANCE),
    HAS: (Level.STUDY, Level.SERIES),
    LABEL: (Level.STUDY, Level.SERIES),
}
_LABEL_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_MODALITY_RE = re.compile(r"[A-Z0-9_ ]{1,16}")
_UID_LIKE = re.compile(r"[0-9]+(\.[0-9]+)+")


@dataclass(frozen=True)
class ResearchKey:
    """One research key of a query.

    ``kind`` is ``references`` or ``referencedby`` (``values``: UIDs, any of them), ``has``
    (``values``: modalities and SOP Class UIDs, any of them; ``negated`` for
    ``webpacsLacks``: none of them) or ``label`` (``values``: one label; ``negated``:
    without it).
    """

    kind: str
    values: tuple[str, ...]
    negated: bool = False

    @property
    def modalities(self) -> tuple[str, ...]:
        """The Modality values of a ``has`` key."""
        return tuple(v for v in self.values if not _UID_LIKE.fullmatch(v))

    @property
    def sop_classes(self) -> tuple[str, ...]:
        """The SOP Class UIDs of a ``has`` key."""
        return tuple(v for v in self.values if _UID_LIKE.fullmatch(v))


def check_label(label: str, name: str = "label") -> str:
    """``label`` if it is a valid label (1-64 letters, digits, ``-``, ``_``, ``.``), else
    ``InvalidRequest`` naming ``name``."""
    if not _LABEL_RE.fullmatch(label):
        shown = label[:80] + "..." if len(label) > 80 else label
        raise InvalidRequest(
            f"{name}: invalid label {shown!r} (1 to 64 letters, digits, '-', '_' and '.')"
        )
    return label


def is_research_key(key: str) -> bool:
    return key in KEYS


def _items(key: str, value: str) -> list[str]:
    items = [p.strip() for p in re.split(r"[\\,]", value)]
    if not value.strip() or any(not i for i in items):
        raise InvalidRequest(f"{key}: needs a value (empty items are not allowed)")
    return items


def parse_research_key(level: Level, key: str, value: str) -> ResearchKey:
    """The ``ResearchKey`` for one query parameter ``key=value`` at ``level``; raises
    ``InvalidRequest`` naming the key for a level it does not apply to or a bad value."""
    kind, negated = KEYS[key]
    if level not in _LEVELS[kind]:
        where = ", ".join(lv.value for lv in _LEVELS[kind])
        raise InvalidRequest(f"{key}: not a {level.value}-level key (only at {where} level)")
    if kind in (REFERENCES, REFERENCED_BY):
        uids = tuple(dict.fromkeys(check_uid(u, key) for u in _items(key, value)))
        return ResearchKey(kind, uids)
    if kind == HAS:
        items = tuple(dict.fromkeys(_items(key, value)))
        for item in items:
            if _UID_LIKE.fullmatch(item):
                check_uid(item, key)
            elif not _MODALITY_RE.fullmatch(item):
                raise InvalidRequest(
                    f"{key}: {item!r} is neither a Modality (upper-case code string) nor a"
                    " SOP Class UID"
                )
        return ResearchKey(kind, items, negated)
    text = value.strip()
    negated = text.startswith("!")
    return ResearchKey(LABEL, (check_label(text.removeprefix("!"), key),), negated)
