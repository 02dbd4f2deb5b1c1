"""Accept parsing and content negotiation (core.media, PS3.18 section 8.7)."""

from __future__ import annotations

import pytest

from webpacs.core.media import (
    MEDIA_TYPE_FOR_TRANSFER_SYNTAX,
    UNCOMPRESSED,
    Representation,
    frame_media_type,
    negotiate,
    parse_accept,
)
from webpacs.errors import InvalidRequest, NotAcceptable

ELE = "1.2.840.10008.1.2.1"
ILE = "1.2.840.10008.1.2"
JPEG = "1.2.840.10008.1.2.4.50"
JLS = "1.2.840.10008.1.2.4.80"
J2K = "1.2.840.10008.1.2.4.90"

DICOM_ELE = Representation("application/dicom", ELE, multipart=True)
DICOM_JPEG = Representation("application/dicom", JPEG, multipart=True)
FRAME_ELE = Representation("application/octet-stream", ELE, multipart=True)
FRAME_JPEG = Representation("image/jpeg", JPEG, multipart=True)
FRAME_JLS = Representation("image/jls", JLS, multipart=True)
FRAME_J2K = Representation("image/jp2", J2K, multipart=True)
BULK_SINGLE = Representation("application/octet-stream", ELE)
BULK_JPEG_SINGLE = Representation("application/octet-stream", JPEG)
JSON = Representation("application/dicom+json", None)
PLAIN_JSON = Representation("application/json", None)
RENDERED_JPEG = Representation("image/jpeg", None)
RENDERED_PNG = Representation("image/png", None)
MP_JSON = Representation("application/dicom+json", None, multipart=True)

INSTANCE = [DICOM_ELE, DICOM_JPEG]
FRAMES = [FRAME_ELE, FRAME_JPEG, FRAME_JLS]
FRAMES_JPEG_FIRST = [FRAME_JPEG, FRAME_ELE]
METADATA = [JSON, PLAIN_JSON]
RENDERED = [RENDERED_JPEG, RENDERED_PNG]
BULK = [FRAME_ELE, BULK_SINGLE]


# -- parse_accept -------------------------------------------------------------------------


def test_parse_accept_default_and_order() -> None:
    assert parse_accept(None) == [("*/*", {}, 1.0)]
    assert parse_accept("  ") == [("*/*", {}, 1.0)]
    assert parse_accept("a/b;q=0.5, c/d, e/f;q=0.5;x=1, g/h;q=bad, i/j;q=0") == [
        ("c/d", {}, 1.0),
        ("g/h", {}, 1.0),
        ("a/b", {}, 0.5),
        ("e/f", {"x": "1"}, 0.5),
        ("i/j", {}, 0.0),
    ]


def test_parse_accept_quoted_commas_and_case() -> None:
    assert parse_accept('Multipart/Related; TYPE="application/dicom"; X="a,b", */*;Q=0.1') == [
        ("multipart/related", {"type": "application/dicom", "x": "a,b"}, 1.0),
        ("*/*", {}, 0.1),
    ]


@pytest.mark.parametrize("header", ["text", "a/b, ;", "*/b", "a/b; c"])
def test_parse_accept_malformed(header: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_accept(header)


# -- negotiate ----------------------------------------------------------------------------

CASES: list[tuple[str | None, list[Representation], Representation]] = [
    # no header / */*: the server's first choice
    (None, INSTANCE, DICOM_ELE),
    ("", METADATA, JSON),
    ("*/*", FRAMES_JPEG_FIRST, FRAME_JPEG),
    # multipart/related with type
    ('multipart/related; type="application/dicom"', INSTANCE, DICOM_ELE),
    ("multipart/related; type=application/dicom", INSTANCE, DICOM_ELE),
    ("multipart/related", FRAMES_JPEG_FIRST, FRAME_JPEG),  # missing type = any
    ('multipart/related; type="*/*"', FRAMES, FRAME_ELE),
    ('multipart/related; type="image/*"', FRAMES, FRAME_JPEG),
    ('multipart/related; type="image/jls"', FRAMES, FRAME_JLS),
    ('MULTIPART/RELATED; Type="IMAGE/JLS"', FRAMES, FRAME_JLS),
    ("multipart/*", FRAMES_JPEG_FIRST, FRAME_JPEG),
    ('multipart/related; type="application/dicom+json"', [JSON, MP_JSON], MP_JSON),
    # transfer-syntax parameter
    (f'multipart/related; type="application/dicom"; transfer-syntax={JPEG}', INSTANCE, DICOM_JPEG),
    (
        f'multipart/related; type="application/dicom"; transfer-syntax="{JPEG}"',
        INSTANCE,
        DICOM_JPEG,
    ),
    ('multipart/related; type="application/dicom"; transfer-syntax=*', INSTANCE, DICOM_ELE),
    ("multipart/related; type=application/dicom; Transfer-Syntax=*", INSTANCE, DICOM_ELE),
    (f'multipart/related; type="image/jpeg"; transfer-syntax={JPEG}', FRAMES, FRAME_JPEG),
    # transfer-syntax=* = as stored, whatever type names (what cornerstone's loader sends)
    ("multipart/related; type=application/octet-stream; transfer-syntax=*", [FRAME_J2K], FRAME_J2K),
    ('multipart/related; type="image/jpeg"; transfer-syntax=*', [FRAME_JLS], FRAME_JLS),
    ('multipart/related; type="application/octet-stream"; transfer-syntax=*', INSTANCE, DICOM_ELE),
    ("image/jpeg; transfer-syntax=*", [FRAME_J2K, BULK_JPEG_SINGLE], BULK_JPEG_SINGLE),
    # octet-stream without transfer-syntax = uncompressed (PS3.18 Table 8.7.3-2)
    ("multipart/related; type=application/octet-stream", [FRAME_JPEG, FRAME_ELE], FRAME_ELE),
    ("application/octet-stream", [BULK_JPEG_SINGLE, BULK_SINGLE], BULK_SINGLE),
    (
        "application/octet-stream",
        [Representation("application/octet-stream")],
        Representation("application/octet-stream"),
    ),
    (
        "application/octet-stream; transfer-syntax=*",
        [BULK_JPEG_SINGLE, BULK_SINGLE],
        BULK_JPEG_SINGLE,
    ),
    (
        f"application/octet-stream; transfer-syntax={JPEG}",
        [BULK_SINGLE, BULK_JPEG_SINGLE],
        BULK_JPEG_SINGLE,
    ),
    # single-part ranges match single-part offers only
    ("application/octet-stream", BULK, BULK_SINGLE),
    ('multipart/related; type="application/octet-stream"', BULK, FRAME_ELE),
    ("application/dicom+json", METADATA, JSON),
    ("application/json", METADATA, PLAIN_JSON),
    ("Application/JSON", METADATA, PLAIN_JSON),
    ("image/png", RENDERED, RENDERED_PNG),
    ("image/*", RENDERED, RENDERED_JPEG),
    ("application/*", METADATA, JSON),
    ("image/*", [FRAME_ELE, FRAME_J2K], FRAME_J2K),  # type/* also sees multipart part types
    # q ordering: client's preference first, then the server's order among equals
    ("application/json, application/dicom+json", METADATA, PLAIN_JSON),
    ("application/json;q=0.5, application/dicom+json", METADATA, JSON),
    ("application/json;q=0.9, application/dicom+json;q=0.9", METADATA, PLAIN_JSON),
    ("image/png;q=0.9, image/jpeg;q=0.8", RENDERED, RENDERED_PNG),
    (
        'multipart/related; type="image/jpeg"; q=0.5, multipart/related; type="image/jls"',
        FRAMES,
        FRAME_JLS,
    ),
    # several ranges: the first acceptable one wins, unmatched ones are skipped
    ('multipart/related; type="image/jp2", multipart/related; type="image/jls"', FRAMES, FRAME_JLS),
    # q=0 refuses what it matches, unless a more specific positive range accepts it
    ("*/*, image/jpeg;q=0", RENDERED, RENDERED_PNG),
    ("*/*;q=0, image/png", RENDERED, RENDERED_PNG),
    (
        f'multipart/related; type="application/dicom"; transfer-syntax={ELE};q=0, */*',
        INSTANCE,
        DICOM_JPEG,
    ),
]


@pytest.mark.parametrize(("accept", "offers", "expected"), CASES)
def test_negotiate(
    accept: str | None, offers: list[Representation], expected: Representation
) -> None:
    assert negotiate(accept, offers) == expected


NOT_ACCEPTABLE: list[tuple[str, list[Representation]]] = [
    # "*" keeps the range's shape: multipart asks multipart, and JSON has no transfer syntax
    ("application/octet-stream; transfer-syntax=*", [FRAME_J2K]),
    ("multipart/related; type=application/octet-stream; transfer-syntax=*", [BULK_JPEG_SINGLE]),
    ("multipart/related; type=application/octet-stream; transfer-syntax=*", [MP_JSON]),
    (f'multipart/related; type="application/dicom"; transfer-syntax={JPEG}', [DICOM_ELE]),
    ('multipart/related; type="application/dicom"', [JSON]),
    ("application/dicom", INSTANCE),  # single-part range vs multipart-only offers
    ("application/dicom+json", [MP_JSON]),
    ("application/octet-stream", [BULK_JPEG_SINGLE]),
    ("multipart/related; type=application/octet-stream", [FRAME_JPEG]),
    (f"multipart/related; type=application/octet-stream; transfer-syntax={ELE}", [FRAME_JPEG]),
    ('multipart/related; type="image/*"', [FRAME_ELE]),
    ("image/*", METADATA),
    ("application/dicom+json;q=0", METADATA),
    ("*/*;q=0", METADATA),
    ("text/html", RENDERED),
    (f"image/jpeg; transfer-syntax={JPEG}", [RENDERED_JPEG]),  # rendered: no transfer syntax
    ("*/*", []),
]


@pytest.mark.parametrize(("accept", "offers"), NOT_ACCEPTABLE)
def test_not_acceptable(accept: str, offers: list[Representation]) -> None:
    with pytest.raises(NotAcceptable):
        negotiate(accept, offers)


def test_not_acceptable_message_names_request_and_offers() -> None:
    accept = f'multipart/related; type="application/dicom"; transfer-syntax={JPEG}'
    with pytest.raises(NotAcceptable) as info:
        negotiate(accept, [DICOM_ELE])
    message = str(info.value)
    assert accept in message
    assert f'multipart/related; type="application/dicom"; transfer-syntax={ELE}' in message


def test_query_accept_takes_precedence() -> None:
    assert negotiate("application/json", METADATA, query_accept="application/dicom+json") == JSON
    assert negotiate("image/png", RENDERED, query_accept="image/jpeg,image/png") == RENDERED_JPEG
    with pytest.raises(NotAcceptable):
        negotiate("application/dicom+json", METADATA, query_accept="text/html")
    # empty or absent parameter: the header decides
    assert negotiate("application/json", METADATA, query_accept="") == PLAIN_JSON
    assert negotiate("application/json", METADATA, query_accept=None) == PLAIN_JSON


def test_frame_media_types() -> None:
    assert frame_media_type(ELE) == "application/octet-stream"
    assert frame_media_type("1.2.840.10008.1.2.1.99") == "application/octet-stream"
    assert frame_media_type(JPEG) == "image/jpeg"
    assert frame_media_type("1.2.840.10008.1.2.4.57") == "image/jpeg"
    assert frame_media_type("1.2.840.10008.1.2.4.70") == "image/jpeg"
    assert frame_media_type("1.2.840.10008.1.2.4.81") == "image/jls"
    assert frame_media_type("1.2.840.10008.1.2.4.91") == "image/jp2"
    assert frame_media_type("1.2.840.10008.1.2.4.93") == "image/jpx"
    assert frame_media_type("1.2.840.10008.1.2.5") == "image/dicom-rle"
    assert frame_media_type("1.2.840.10008.1.2.4.101") == "video/mpeg"
    assert frame_media_type("1.2.840.10008.1.2.4.106") == "video/mp4"
    assert frame_media_type("1.2.840.10008.1.2.4.108") == "video/H265"
    assert frame_media_type("1.2.840.10008.1.2.4.203") == "image/jphc"
    assert frame_media_type("1.2.3.4.unknown") == "application/octet-stream"
    assert {ILE, ELE, "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"} == UNCOMPRESSED
    assert all(
        MEDIA_TYPE_FOR_TRANSFER_SYNTAX[ts] == "application/octet-stream" for ts in UNCOMPRESSED
    )


def test_frame_media_types_negotiate_for_every_syntax() -> None:
    """A frames offer built from the table is accepted by the range a client would send."""
    for ts, media_type in MEDIA_TYPE_FOR_TRANSFER_SYNTAX.items():
        offer = Representation(media_type, ts, multipart=True)
        accept = f'multipart/related; type="{media_type}"; transfer-syntax={ts}'
        assert negotiate(accept, [offer]) == offer


def test_named_only_offers_need_their_transfer_syntax_named() -> None:
    """Lossy re-encodings are chosen only by a range naming their syntax."""
    lossy = Representation("image/jls", "1.2.840.10008.1.2.4.81", True, named_only=True)
    for accept in (
        "*/*",
        "multipart/related; type=image/jls",
        "multipart/related; type=image/*",
        "multipart/related; type=image/jls; transfer-syntax=*",
    ):
        with pytest.raises(NotAcceptable):
            negotiate(accept, [lossy])
    named = "multipart/related; type=image/jls; transfer-syntax=1.2.840.10008.1.2.4.81"
    assert negotiate(named, [lossy]) == lossy
