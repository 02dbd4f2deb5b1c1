"""Pixel data: decode, transcode, render and thumbnails, with pydicom's pixel framework,
its codec plugins, numpy and Pillow."""
