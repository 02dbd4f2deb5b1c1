"""DIMSE services on pynetdicom: the SCP (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET)."""

from __future__ import annotations

from webpacs.dimse.scp import ScpHandle, start_scp

__all__ = ["ScpHandle", "start_scp"]
