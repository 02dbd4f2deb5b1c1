"""Crashes the fuzz tests found, each with its input written out: now a typed 4xx error.

(``test_fuzz_parsers`` and ``test_fuzz_server`` find them; each is fixed where it crashed
and kept here, so that it cannot come back unnoticed.)
"""

from __future__ import annotations

import pytest

from tests.fuzz_support import refused
from webpacs.core import part10
from webpacs.errors import InvalidDicom

MR = "1.2.840.10008.5.1.4.1.1.4"


def test_empty_compressed_pixel_data_part() -> None:
    """DICOM JSON STOW whose pixel data part is a JPEG of no bytes: pydicom's
    ``encapsulate([b""])`` raised ValueError ("Too many fragments requested")."""
    obj = {
        "00080016": {"vr": "UI", "Value": [MR]},
        "00080018": {"vr": "UI", "Value": ["1.2.3.4"]},
        "7FE00010": {"vr": "OW", "BulkDataURI": "bulk/7FE00010"},
    }
    bulk = {"bulk/7FE00010": part10.BulkPart("image/jpeg", {"transfer-syntax": "0"}, lambda: b"")}
    with pytest.raises(InvalidDicom) as caught:
        part10.from_json(obj, bulk)
    assert refused(caught.value) is None and "pixel data part is empty" in str(caught.value)
