"""Thumbnails (PS3.18 8.3.5 ``thumbnail`` resources): which frame represents a series, an
instance or a study, and its small rendering.

The representative frame of a series is the middle frame of its middle instance (in
instance number order) among the instances that have pixel data; of an instance, its
middle frame. The image is rendered as the ``rendered`` resources do (the data set's
window, else min/max) and scaled to ``SIZE`` pixels on its long side unless a viewport
says otherwise.
"""

from __future__ import annotations

from dataclasses import replace

from webpacs.errors import NotFound
from webpacs.pixels import render as rd
from webpacs.pixels.frames import decode_frame, frame_count
from webpacs.storage.base import Blobs, InstanceRecord

#: Default size of the long side, in pixels.
SIZE = 128
#: JPEG quality of thumbnails.
QUALITY = 85
DEFAULT = rd.Rendering(rd.JPEG, width=SIZE, height=SIZE, quality=QUALITY)


def middle_frame(rec: InstanceRecord) -> int:
    """The 1-based number of the instance's middle frame (1 for a single frame)."""
    return (frame_count(rec) + 1) // 2


def representative(records: list[InstanceRecord]) -> tuple[InstanceRecord, int]:
    """The middle instance with pixel data of ``records`` (already in instance number
    order) and its middle frame; NotFound when none has pixel data."""
    with_pixels = [rec for rec in records if frame_count(rec) > 0]
    if not with_pixels:
        raise NotFound("no instance of the series has pixel data")
    rec = with_pixels[(len(with_pixels) - 1) // 2]
    return rec, middle_frame(rec)


def thumbnail_rendering(rendering: rd.Rendering | None) -> rd.Rendering:
    """``rendering`` with the default box when it names no viewport; DEFAULT for None."""
    if rendering is None:
        return DEFAULT
    if rendering.width is None and rendering.height is None:
        return replace(rendering, width=SIZE, height=SIZE)
    return rendering


def thumbnail(
    blobs: Blobs, rec: InstanceRecord, number: int, rendering: rd.Rendering | None = None
) -> bytes:
    """Frame ``number`` of ``rec`` as a thumbnail (``DEFAULT`` rendering unless given)."""
    r = thumbnail_rendering(rendering)
    frame = decode_frame(blobs, rec, number)
    return rd.encode([rd.to_image(rd.to_8bit(frame, r.window), r)], r)
