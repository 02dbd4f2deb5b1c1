"""webpacs: a web-centric PACS (DICOMweb, DIMSE, static DICOMweb)."""

__version__ = "0.1.0"
