"""STOW-RS, WADO-RS and DELETE edge cases through a tiny app: media types, limits, study mismatch,
conflicts and overwrite, 406s, deletes that remove files and index entries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from archive.service import Archive, ArchiveConfig
from tests.dicomweb_helpers import failure_reasons, multipart_body
from tests.qido_cases import STUDIES, make_instance, series_uid, sop_uid, study_uid
from web.app import create_app
from web.settings import Settings

S1, S2 = STUDIES[0], STUDIES[1]
DICOM_STAR = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def make_client(root: Path, **settings: object) -> TestClient:
    config = ArchiveConfig(durable=False, overwrite=bool(settings.get("overwrite", False)))
    return TestClient(create_app(Settings(data=root, anonymous_role="admin", **settings), Archive(root, config)), client=("127.0.0.1", 50000))  # type: ignore[arg-type]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path) as c:
        yield c


def post(client: TestClient, blobs: list[bytes], path: str = "/dicomweb/studies", part_type: str = "application/dicom"):  # type: ignore[no-untyped-def]
    body, content_type = multipart_body(blobs, part_type)
    return client.post(path, content=body, headers={"Content-Type": content_type})


def blob_files(root: Path) -> list[Path]:
    return [p for p in (root / "objects").rglob("*") if p.is_file()]


def test_store_then_retrieve(client: TestClient) -> None:
    blob = make_instance(S1, 1, "CT", 1)
    response = post(client, [blob])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom+json"
    body = response.json()
    [ref] = body["00081199"]["Value"]
    assert ref["00081155"]["Value"] == [sop_uid("S1", 1, 1)]
    assert ref["00081190"]["Value"][0].endswith(f"/studies/{study_uid('S1')}/series/{series_uid('S1', 1)}/instances/{sop_uid('S1', 1, 1)}")
    got = client.get(ref["00081190"]["Value"][0].replace("http://testserver", ""), headers={"Accept": DICOM_STAR})
    assert got.status_code == 200
    assert blob in got.content


@pytest.mark.parametrize(
    "content_type,status",
    [
        ("application/json", 415),
        ('multipart/related; type="application/dicom+json"; boundary=x', 415),
        ('multipart/related; type="application/dicom"', 400),
    ],
)
def test_wrong_media_types(client: TestClient, content_type: str, status: int) -> None:
    response = client.post("/dicomweb/studies", content=b"--x--\r\n", headers={"Content-Type": content_type})
    assert response.status_code == status
    assert response.json()["error"]


def test_body_over_limit_is_413(tmp_path: Path) -> None:
    with make_client(tmp_path, max_request_bytes=10_000) as client:
        response = post(client, [make_instance(S1, 1, "CT", 1)] * 100)
        assert response.status_code == 413
        assert "10000" in response.json()["error"]
        assert blob_files(tmp_path) == []


def test_empty_multipart_is_400(client: TestClient) -> None:
    response = client.post(
        "/dicomweb/studies", content=b"--x--\r\n", headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=x'}
    )
    assert response.status_code == 400


def test_study_mismatch_is_409_with_reason(client: TestClient, tmp_path: Path) -> None:
    response = post(client, [make_instance(S1, 1, "CT", 1)], path=f"/dicomweb/studies/{study_uid('S2')}")
    assert response.status_code == 409
    assert failure_reasons(response.json()) == [0xC409]
    assert "does not match" in response.json()["00081198"]["Value"][0]["00000902"]["Value"][0]
    assert blob_files(tmp_path) == []


def test_garbage_beside_good_is_202_and_names_the_problem(client: TestClient) -> None:
    response = post(client, [b"this is not DICOM at all" * 10, make_instance(S1, 1, "CT", 2)])
    assert response.status_code == 202
    body = response.json()
    assert failure_reasons(body) == [0xC000]
    assert "SOPClassUID" in body["00081198"]["Value"][0]["00000902"]["Value"][0]
    assert len(body["00081199"]["Value"]) == 1


def test_bad_uid_in_file_is_refused(client: TestClient) -> None:
    blob = make_instance(S1, 1, "CT", 3).replace(sop_uid("S1", 1, 3).encode(), b"1.2.3.x4" + b"5" * (len(sop_uid("S1", 1, 3)) - 8))
    response = post(client, [blob])
    assert response.status_code == 400
    assert "SOPInstanceUID" in response.json()["00081198"]["Value"][0]["00000902"]["Value"][0]


def test_conflict_then_overwrite(tmp_path: Path) -> None:
    first, second = make_instance(S1, 1, "CT", 1), make_instance(S1, 1, "CT", 1).replace(b"Head CT", b"Head MR")
    with make_client(tmp_path) as client:
        assert post(client, [first]).status_code == 200
        assert post(client, [first]).status_code == 200  # identical: success, nothing duplicated
        assert len(blob_files(tmp_path)) == 1
        conflict = post(client, [second])
        assert conflict.status_code == 409
        assert failure_reasons(conflict.json()) == [0x0111]
    with make_client(tmp_path, overwrite=True) as client:
        assert post(client, [second]).status_code == 200
        url = f"/dicomweb/studies/{study_uid('S1')}/series/{series_uid('S1', 1)}/instances/{sop_uid('S1', 1, 1)}"
        assert second in client.get(url, headers={"Accept": DICOM_STAR}).content
        assert len(blob_files(tmp_path)) == 1  # the replaced file is gone


def test_unproducible_transfer_syntax_is_406(client: TestClient) -> None:
    post(client, [make_instance(S1, 1, "CT", 1)])
    url = f"/dicomweb/studies/{study_uid('S1')}/series/{series_uid('S1', 1)}/instances/{sop_uid('S1', 1, 1)}"
    j2k = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90'
    assert client.get(url, headers={"Accept": j2k}).status_code == 406
    assert client.get(url + "/frames/1", headers={"Accept": 'multipart/related; type="image/jp2"'}).status_code == 406
    assert client.get(url + "/metadata", headers={"Accept": "application/dicom+xml"}).status_code == 406


@pytest.mark.parametrize("frames", ["0", "1,a", "-1", "1,,2"])
def test_bad_frame_lists_are_400(client: TestClient, frames: str) -> None:
    post(client, [make_instance(S1, 1, "CT", 1)])
    url = f"/dicomweb/studies/{study_uid('S1')}/series/{series_uid('S1', 1)}/instances/{sop_uid('S1', 1, 1)}/frames/{frames}"
    response = client.get(url)
    assert response.status_code == 400
    assert "frame list" in response.json()["error"]


def test_missing_resources_are_404(client: TestClient) -> None:
    assert client.get(f"/dicomweb/studies/{study_uid('S9')}", headers={"Accept": DICOM_STAR}).status_code == 404
    assert client.get(f"/dicomweb/studies/{study_uid('S9')}/metadata").status_code == 404


def test_delete_instance_series_study(client: TestClient, tmp_path: Path) -> None:
    blobs = [make_instance(S1, s, m, n) for s, m in ((1, "CT"), (2, "MR")) for n in (1, 2)]
    blobs.append(make_instance(S2, 1, "CT", 1))
    assert post(client, blobs).status_code == 200
    assert len(blob_files(tmp_path)) == 5
    inst = f"/dicomweb/studies/{study_uid('S1')}/series/{series_uid('S1', 1)}/instances/{sop_uid('S1', 1, 1)}"
    assert client.delete(inst).status_code == 204
    assert client.get(inst, headers={"Accept": DICOM_STAR}).status_code == 404
    assert client.delete(inst).status_code == 404
    assert len(blob_files(tmp_path)) == 4
    series = f"/dicomweb/studies/{study_uid('S1')}/series/{series_uid('S1', 2)}"
    assert client.delete(series).status_code == 204
    studies = {s["0020000D"]["Value"][0]: s for s in client.get("/dicomweb/studies").json()}
    assert studies[study_uid("S1")]["00201208"]["Value"] == [1]
    assert studies[study_uid("S1")]["00080061"]["Value"] == ["CT"]
    assert client.delete(f"/dicomweb/studies/{study_uid('S1')}").status_code == 204
    assert [s["0020000D"]["Value"][0] for s in client.get("/dicomweb/studies").json()] == [study_uid("S2")]
    assert len(blob_files(tmp_path)) == 1


def test_index_failure_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = Archive(tmp_path, ArchiveConfig(durable=False))

    def broken(*_a: object, **_k: object) -> None:
        raise OSError("disk full while committing the index")

    monkeypatch.setattr(archive.index, "add_many", broken)
    results = archive.store([make_instance(S1, 1, "CT", 1)])
    assert [r.status for r in results] == ["failed"]
    assert results[0].failure_reason == 0x0110
    assert blob_files(tmp_path) == []


def test_index_generation_changes_with_every_store_and_delete(tmp_path: Path) -> None:
    archive = Archive(tmp_path, ArchiveConfig(durable=False))
    g0 = archive.index.generation()
    archive.store([make_instance(S1, 1, "CT", 1)])
    g1 = archive.index.generation()
    archive.store([make_instance(S1, 1, "CT", 1)])  # identical resend: nothing changed
    archive.delete(study_uid("S1"))
    g2 = archive.index.generation()
    assert g0 < g1 < g2


def test_start_up_keeps_temporary_files_of_live_writers(tmp_path: Path) -> None:
    import subprocess
    import sys

    Archive(tmp_path, ArchiveConfig(durable=False))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = tmp_path / "tmp" / f"{other.pid}.abcd.x"
        dead = tmp_path / "tmp" / "999999999.abcd.x"
        live.write_bytes(b"being written by another worker")
        dead.write_bytes(b"left by a crash")
        Archive(tmp_path, ArchiveConfig(durable=False))  # a second worker starting
        assert live.exists()
        assert not dead.exists()
    finally:
        other.kill()
        other.wait()


def test_malformed_element_refuses_only_that_instance(client: TestClient) -> None:
    from io import BytesIO

    import pydicom
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds = pydicom.dcmread(BytesIO(make_instance(S1, 1, "CT", 4)))
    # A 6-byte FD value: pydicom raises BytesLengthException (a bare Exception) when converting it.
    ds[0x00189087] = RawDataElement(Tag(0x00189087), "FD", 6, b"\x00" * 6, 0, False, True)
    bad = BytesIO()
    ds.save_as(bad, enforce_file_format=True)
    response = post(client, [bad.getvalue(), make_instance(S1, 1, "CT", 5)])
    assert response.status_code == 202
    assert failure_reasons(response.json()) == [0xC000]
    assert len(response.json()["00081199"]["Value"]) == 1


def test_absurd_frame_number_is_400(client: TestClient) -> None:
    post(client, [make_instance(S1, 1, "CT", 1)])
    url = f"/dicomweb/studies/{study_uid('S1')}/series/{series_uid('S1', 1)}/instances/{sop_uid('S1', 1, 1)}"
    assert client.get(url + "/frames/" + "9" * 5000).status_code == 400
    assert client.get(url + "/bulkdata/7FE00010", headers={"Range": "bytes=0-" + "9" * 5000}).status_code == 400


def test_resend_racing_a_delete_never_indexes_a_missing_blob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = Archive(tmp_path, ArchiveConfig(durable=False))
    blob = make_instance(S1, 1, "CT", 1)
    [first] = archive.store([blob])
    old_key = archive.index.existing_blobs([first.sop_instance_uid])[first.sop_instance_uid]
    # The resend's duplicate check saw the stored copy; a DELETE then removed row and file before the
    # resend's write transaction.
    monkeypatch.setattr(archive.index, "existing_blobs", lambda uids: {first.sop_instance_uid: old_key})
    monkeypatch.setattr(archive.storage, "same_content", lambda key, data: True)
    archive.delete(study_uid("S1"))
    [again] = archive.store([blob])
    assert again.status == "stored"
    record = archive.index.instance(study_uid("S1"), series_uid("S1", 1), sop_uid("S1", 1, 1))
    assert record.blob_key != old_key
    assert archive.read_file(record) == blob
