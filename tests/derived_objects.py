"""Real derived objects for the reference tests, built with highdicom over a small CT series
made from pydicom's CT_small.dcm: a segmentation, a Comprehensive SR with image references,
a key object selection and a grayscale softcopy presentation state."""

from __future__ import annotations

import copy
import io
import warnings
from dataclasses import dataclass

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from tests.conftest import data_file

hd = pytest.importorskip("highdicom")

DEVICE = {
    "manufacturer": "webpacs tests",
    "manufacturer_model_name": "derived_objects",
    "software_versions": "1",
    "device_serial_number": "1",
}


def part10(ds: Dataset) -> bytes:
    """``ds`` as Part 10 bytes."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def ct_series(n: int = 3, study_uid: str | None = None) -> list[Dataset]:
    """``n`` CT slices of one new series (CT_small.dcm with new UIDs and positions)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = pydicom.dcmread(data_file("CT_small.dcm"))
    study = study_uid or generate_uid()
    series = generate_uid()
    frame_of_ref = generate_uid()
    out = []
    for i in range(n):
        ds = copy.deepcopy(base)
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.FrameOfReferenceUID = frame_of_ref
        ds.InstanceNumber = i + 1
        x, y, z = (float(v) for v in base.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 5.0 * i]
        ds.SliceLocation = z + 5.0 * i
        for kw in ("SourceImageSequence", "ReferencedImageSequence"):
            if kw in ds:
                del ds[kw]  # the template's own references would blur the tests
        out.append(ds)
    return out


def segmentation(images: list[Dataset]) -> Dataset:
    """A binary SEG with one segment on every slice of ``images``."""
    mask = np.zeros((len(images), images[0].Rows, images[0].Columns), dtype=bool)
    mask[:, 20:40, 20:40] = True
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="lesion",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hd.seg.Segmentation(
            source_images=images,
            pixel_array=mask,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[description],
            series_instance_uid=generate_uid(),
            series_number=100,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            **DEVICE,
        )


def comprehensive_sr(images: list[Dataset]) -> Dataset:
    """A Comprehensive SR whose content names the first image (an IMAGE content item)
    and whose evidence lists every image."""
    image_item = hd.sr.ImageContentItem(
        name=codes.DCM.SourceImageForSegmentation,
        referenced_sop_class_uid=images[0].SOPClassUID,
        referenced_sop_instance_uid=images[0].SOPInstanceUID,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    container = hd.sr.ContainerContentItem(
        name=codes.DCM.ImagingMeasurementReport, template_id="1500"
    )
    container.ContentSequence = [image_item]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hd.sr.ComprehensiveSR(
            evidence=images,
            content=container,
            series_instance_uid=generate_uid(),
            series_number=200,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer=DEVICE["manufacturer"],
        )


def key_objects(images: list[Dataset]) -> Dataset:
    """A key object selection of ``images``."""
    content = hd.ko.KeyObjectSelection(document_title=codes.DCM.Manifest, referenced_objects=images)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hd.ko.KeyObjectSelectionDocument(
            evidence=images,
            content=content,
            series_instance_uid=generate_uid(),
            series_number=300,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer=DEVICE["manufacturer"],
        )


def presentation_state(images: list[Dataset]) -> Dataset:
    """A grayscale softcopy presentation state over ``images``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hd.pr.GrayscaleSoftcopyPresentationState(
            referenced_images=images,
            series_instance_uid=generate_uid(),
            series_number=400,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            content_label="WINDOW",
            **DEVICE,
        )


@dataclass
class Derived:
    """A CT series and the derived objects over it, all in one study."""

    images: list[Dataset]
    seg: Dataset
    sr: Dataset
    ko: Dataset
    pr: Dataset

    @property
    def study(self) -> str:
        return str(self.images[0].StudyInstanceUID)

    @property
    def series(self) -> str:
        return str(self.images[0].SeriesInstanceUID)

    def objects(self) -> list[Dataset]:
        return [self.seg, self.sr, self.ko, self.pr]


def derived(n: int = 3) -> Derived:
    images = ct_series(n)
    return Derived(
        images, segmentation(images), comprehensive_sr(images), key_objects(images),
        presentation_state(images),
    )  # fmt: skip
