"""Decode one frame of a stored instance to a numpy array (pydicom's pixel framework).

:func:`decode_frame` hands the stored Part 10 object to ``pydicom.pixels.pixel_array``
with ``index=``, so only the asked frame is decoded (for native pixel data, only its
bytes are read; for encapsulated data, only its fragments). The image pixel module
(group 0028: rescale, window, VOI and palette LUTs) comes back in a small data set
alongside, which is all the rendering needs.
"""

from __future__ import annotations

import io
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pixel_array

from webpacs.core.framemap import FrameMap, frame_numbers
from webpacs.errors import NotFound, NotImplementedFeature, StorageError
from webpacs.pixels.codecs import codec_panics
from webpacs.storage.base import Blobs, InstanceRecord

#: Bytes per range read of a remote stored object (the header takes one or two).
READ_AHEAD = 256 << 10


@dataclass
class Frame:
    """One decoded frame and the image pixel module of its instance."""

    pixels: np.ndarray  # (rows, columns) or (rows, columns, samples); YBR already RGB
    ds: Dataset  # group 0028 (and file meta) of the instance
    number: int  # 1-based


def frame_count(rec: InstanceRecord) -> int:
    """How many frames the instance's pixel data holds (0: no pixel data)."""
    return len(FrameMap.from_json(rec.framemap).frames)


def check_frame_number(rec: InstanceRecord, number: int) -> None:
    """Raise NotFound unless frame ``number`` (1-based) exists in ``rec``."""
    count = frame_count(rec)
    if count == 0:
        raise NotFound(f"instance {rec.sop_uid} has no pixel data")
    if not 1 <= number <= count:
        raise NotFound(f"frame {number} does not exist (the instance has {count} frame(s))")


class _RangeReader(io.RawIOBase):
    """A stored object as a seekable file over ``Blobs.get_range`` (remote blobs: S3), so
    pydicom reads the header and the one frame it needs, not the whole object."""

    def __init__(self, blobs: Blobs, key: str) -> None:
        self._blobs, self._key = blobs, key
        self._size = blobs.size(key)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        data = self._blobs.get_range(self._key, self._pos, n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _source(stack: ExitStack, blobs: Blobs, key: str) -> str | BinaryIO:
    """A seekable source for pydicom: the file itself, or range reads of a remote object."""
    path = blobs.local_path(key)
    if path is not None:
        return path
    return stack.enter_context(io.BufferedReader(_RangeReader(blobs, key), READ_AHEAD))


def decode_frame(blobs: Blobs, rec: InstanceRecord, number: int) -> Frame:
    """Frame ``number`` (1-based) of the stored instance ``rec``, decoded.

    Raises NotFound when the instance has no pixel data or no such frame, and
    NotImplementedFeature when no installed codec can decode it.
    """
    check_frame_number(rec, number)
    ds = Dataset()
    with ExitStack() as stack:
        src = _source(stack, blobs, rec.blob_key)
        try:
            with warnings.catch_warnings(), codec_panics():
                warnings.simplefilter("ignore")  # odd values in old files are not our business
                arr = pixel_array(src, ds_out=ds, index=number - 1)
        except FileNotFoundError as e:  # the local file is gone (as a remote read says)
            raise NotFound(f"blob {rec.blob_key} not found") from e
        except OSError as e:
            raise StorageError(f"cannot read {rec.blob_key}: {e}") from e
        except (NotImplementedError, RuntimeError, ValueError, KeyError, AttributeError) as e:
            raise NotImplementedFeature(
                f"cannot decode the pixel data of instance {rec.sop_uid} (transfer syntax"
                f" {rec.transfer_syntax}): {e}"
            ) from e
    if arr.ndim == 3 and int(ds.get("SamplesPerPixel", 1) or 1) == 1:
        arr = arr[0]  # a single-frame array with a leading frame axis
    return Frame(arr, ds, number)


def parse_frame_numbers(text: str, rec: InstanceRecord) -> list[int]:
    """``1,3,5`` from a frames path segment, each checked against the instance."""
    count = frame_count(rec)
    if count == 0:
        raise NotFound(f"instance {rec.sop_uid} has no pixel data")
    return frame_numbers(text, count)
