"""Pixel data: decoding, transcoding, rendering and thumbnails, on pydicom's pixel framework."""
