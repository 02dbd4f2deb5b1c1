"""``webpacs static deploy`` to a local S3-compatible endpoint (moto's ThreadedMotoServer)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.static_support import free_port, path
from webpacs.cli.main import main
from webpacs.static.build import Options, build_from_files
from webpacs.static.deploy import deploy, object_key
from webpacs.static.tree import Tree

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for k, v in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="pacs")
    yield client, endpoint
    server.stop()


def test_deploy_uploads_changed_files_with_headers(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client, endpoint = s3
    tree = Tree(tmp_path / "tree")
    build_from_files([path("CT_small.dcm"), path("JPEG2000.dcm")], tree, Options())
    result = CliRunner().invoke(
        main,
        ["static", "deploy", str(tree.root), "s3://pacs/web", "--endpoint-url", endpoint],
    )
    assert result.exit_code == 0, result.output
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="pacs")["Contents"]}
    assert "web/studies/index.json.gz" in keys
    assert not any(".webpacs-static" in k or "/.tmp/" in k for k in keys)
    meta_key = next(k for k in keys if k.endswith("/series/") is False and k.endswith("/metadata"))
    head = client.head_object(Bucket="pacs", Key=meta_key)
    assert head["ContentType"] == "application/dicom+json"
    assert head["ContentEncoding"] == "gzip"
    body = client.get_object(Bucket="pacs", Key=meta_key)["Body"].read()
    assert gzip.decompress(body).startswith(b"[{")
    frame = next(k for k in keys if "/frames/" in k)
    ctype = client.head_object(Bucket="pacs", Key=frame)["ContentType"]
    assert ctype.startswith("multipart/related") and "boundary=" in ctype
    assert "transfer-syntax=" in ctype

    # nothing changed: nothing uploaded
    report = deploy(tree.root, "s3://pacs/web", endpoint_url=endpoint)
    assert report.uploaded == 0 and report.unchanged == len(keys)
    # one more study: only its files and the study list are uploaded
    build_from_files([path("MR_small_RLE.dcm")], tree, Options())
    report = deploy(tree.root, "s3://pacs/web", endpoint_url=endpoint, delete=True)
    new_files = [
        p for p in tree.root.rglob("*") if p.is_file() and "1.3.6.1.4.1.5962.1.2.4." in str(p)
    ]
    assert 0 < report.uploaded <= len(new_files) + 1
    assert report.deleted == 0


def test_object_keys() -> None:
    assert object_key("studies/1/series/2/metadata.gz") == "studies/1/series/2/metadata"
    assert object_key("studies/1/series/2/instances/3/frames/7.mht.gz") == (
        "studies/1/series/2/instances/3/frames/7"
    )
    assert object_key("studies/1/bulkdata/ab/cd/ef.mht.gz") == "studies/1/bulkdata/ab/cd/ef.mht.gz"
