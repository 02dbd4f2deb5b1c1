"""QIDO row rules shared by every index backend (DESIGN.md: ``storage/rows.py``).

A backend finds the rows; what a row holds beyond the stored attributes is decided here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MODALITIES_IN_STUDY = "00080061"
NUMBER_OF_STUDY_RELATED_SERIES = "00201206"
NUMBER_OF_STUDY_RELATED_INSTANCES = "00201208"
NUMBER_OF_SERIES_RELATED_INSTANCES = "00201209"


def study_aggregates(modalities: Iterable[str], series: int, instances: int) -> dict[str, Any]:
    """The computed attributes of a study row (PS3.18 Table 10.6.3-3).

    ``ModalitiesInStudy`` is left out when no instance of the study has a Modality: the
    viewers (OHIF 2 and 3, ``getModalities``) read ``Value`` of any ``ModalitiesInStudy``
    they get, and an empty attribute (``{"vr": "CS"}``) breaks their whole study list.
    """
    out: dict[str, Any] = {}
    mods = sorted({m for m in modalities if m})
    if mods:
        out[MODALITIES_IN_STUDY] = {"vr": "CS", "Value": mods}
    out[NUMBER_OF_STUDY_RELATED_SERIES] = {"vr": "IS", "Value": [series]}
    out[NUMBER_OF_STUDY_RELATED_INSTANCES] = {"vr": "IS", "Value": [instances]}
    return out
