"""The real public corpus through a real server on 127.0.0.1: STOW, then QIDO and WADO with
dicomweb-client; byte-exact retrieval, frames equal to pydicom's, metadata round trip, broken files
refused with a FailureReason and nothing stored."""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.encaps import generate_frames
from pydicom.pixels import pixel_array

from tests.conftest import BROKEN, CorpusFile, Server, corpus, start_server, stop_server, wait_for_renditions
from tests.dicomweb_helpers import failure_reasons, split_multipart, stow

FILES = [f for f in corpus() if f.name not in BROKEN]


def _unique_by_sop(files: list[CorpusFile]) -> tuple[list[CorpusFile], list[CorpusFile]]:
    """First file of each SOP Instance UID, and the later files that reuse one (other syntaxes)."""
    seen: set[str] = set()
    first, dupes = [], []
    for f in files:
        uid = pydicom.dcmread(f.path, stop_before_pixels=True, force=True).SOPInstanceUID
        (dupes if uid in seen else first).append(f)
        seen.add(uid)
    return first, dupes


UNIQUE, DUPLICATES = _unique_by_sop(FILES)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("corpus") / "data")
    for start in range(0, len(UNIQUE), 10):
        batch = UNIQUE[start : start + 10]
        response = stow(srv.url, [f.path.read_bytes() for f in batch])
        assert response.status_code == 200, response.text
    # Let the background transcoder finish first: tests below count the blobs in storage.
    wait_for_renditions(srv.data)
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def client(loaded: Server) -> DICOMwebClient:
    return DICOMwebClient(loaded.url)


def _ids(f: CorpusFile) -> tuple[str, str, str]:
    ds = pydicom.dcmread(f.path, stop_before_pixels=True, force=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def test_qido_lists_every_study_series_and_instance(client: DICOMwebClient) -> None:
    ids = [_ids(f) for f in UNIQUE]
    studies = client.search_for_studies(search_filters={}, get_remaining=True)
    assert {s["0020000D"]["Value"][0] for s in studies} == {i[0] for i in ids}
    series = client.search_for_series(get_remaining=True)
    assert {s["0020000E"]["Value"][0] for s in series} == {i[1] for i in ids}
    instances = client.search_for_instances(get_remaining=True)
    assert sorted(i["00080018"]["Value"][0] for i in instances) == sorted(i[2] for i in ids)
    for study in studies:
        uid = study["0020000D"]["Value"][0]
        expected = sum(1 for i in ids if i[0] == uid)
        assert study["00201208"]["Value"] == [expected]


@pytest.mark.parametrize("f", UNIQUE, ids=lambda f: f.name)
def test_instance_retrieved_byte_for_byte(loaded: Server, f: CorpusFile) -> None:
    study, series, sop = _ids(f)
    response = httpx.get(
        f"{loaded.url}/studies/{study}/series/{series}/instances/{sop}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    )
    assert response.status_code == 200
    parts = split_multipart(response)
    assert len(parts) == 1
    assert parts[0][1] == f.path.read_bytes()
    assert parts[0][0]["content-type"].startswith("application/dicom; transfer-syntax=")


@pytest.mark.parametrize("f", UNIQUE, ids=lambda f: f.name)
def test_metadata_round_trips(client: DICOMwebClient, f: CorpusFile) -> None:
    study, series, sop = _ids(f)
    original = pydicom.dcmread(f.path, force=True)
    meta = client.retrieve_instance_metadata(study, series, sop)
    restored = pydicom.Dataset.from_json(meta)
    for elem in original:
        if elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN") or elem.VR == "SQ":
            assert elem.tag in restored
            continue
        if elem.tag.is_private:
            continue
        assert restored[elem.tag].value == elem.value, elem.keyword


def _stored_frames(f: CorpusFile) -> list[bytes]:
    ds = pydicom.dcmread(f.path, force=True)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    ts = ds.file_meta.get("TransferSyntaxUID")
    if ts is not None and ts.is_compressed:
        return list(generate_frames(ds.PixelData, number_of_frames=n))
    size = len(ds.PixelData) // n
    return [ds.PixelData[i * size : (i + 1) * size] for i in range(n)]


PIXEL_FILES = [f for f in UNIQUE if f.row["rows"] and f.row["transfer_syntax"] != "1.2.840.10008.1.2.1.99"]


@pytest.mark.parametrize("f", PIXEL_FILES, ids=lambda f: f.name)
def test_frames_as_stored_equal_the_file(client: DICOMwebClient, f: CorpusFile) -> None:
    study, series, sop = _ids(f)
    expected = _stored_frames(f)
    numbers = list(range(1, len(expected) + 1))
    got = client.retrieve_instance_frames(study, series, sop, numbers, media_types=("*/*",))
    assert len(got) == len(expected)
    for n, (a, b) in enumerate(zip(got, expected), start=1):
        assert a.rstrip(b"\x00") == b.rstrip(b"\x00"), f"frame {n}"


NATIVE_FILES = [
    f
    for f in PIXEL_FILES
    if f.row["transfer_syntax"] in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "(missing)", "1.2.840.10008.1.2.2")
]


@pytest.mark.parametrize("f", NATIVE_FILES, ids=lambda f: f.name)
def test_native_frames_decode_to_pydicom_pixels(client: DICOMwebClient, f: CorpusFile) -> None:
    study, series, sop = _ids(f)
    ds = pydicom.dcmread(f.path, force=True)
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    pixels = ds.pixel_array
    n = int(ds.get("NumberOfFrames", 1) or 1)
    frames = client.retrieve_instance_frames(
        study, series, sop, list(range(1, n + 1)), media_types=(("application/octet-stream", "1.2.840.10008.1.2.1"),)
    )
    for i, frame in enumerate(frames):
        expected = pixels[i] if n > 1 else pixels
        dtype = expected.dtype.newbyteorder("<")
        if ds.PhotometricInterpretation == "YBR_FULL_422":
            continue  # pydicom upsamples 4:2:2 on decode; the wire format stays subsampled
        got = np.frombuffer(frame, dtype=dtype)[: expected.size]
        if ds.get("PlanarConfiguration", 0) == 1 and ds.SamplesPerPixel == 3:
            # The wire keeps the stored planar layout (RRR...GGG...BBB); pydicom interleaves it.
            got = got.reshape(3, *expected.shape[:2]).transpose(1, 2, 0)
        got = got.reshape(expected.shape)
        if ds.BitsStored < ds.BitsAllocated:
            # The wire carries the stored bits as they are; pydicom masks (and sign-extends) them.
            mask = (1 << ds.BitsStored) - 1
            got, expected = got.astype(np.int64) & mask, expected.astype(np.int64) & mask
        np.testing.assert_array_equal(got, expected)


def test_frame_past_the_last_is_404(loaded: Server) -> None:
    study, series, sop = _ids(UNIQUE[0])
    response = httpx.get(f"{loaded.url}/studies/{study}/series/{series}/instances/{sop}/frames/1,2")
    assert response.status_code == 404
    assert "frame 2" in response.json()["error"]


@pytest.mark.parametrize("name,reason", sorted(BROKEN.items()))
def test_broken_file_refused_with_reason_and_nothing_stored(loaded: Server, name: str, reason: int) -> None:
    before = httpx.get(f"{loaded.url}/instances", params={"limit": 10000}).json()
    blobs_before = sorted(p.name for p in (loaded.data / "objects").rglob("*") if p.is_file())
    good = UNIQUE[0].path.read_bytes()  # already stored: beside a bad part it must still succeed
    response = stow(loaded.url, [(UNIQUE[0].path.parent.parent / name).read_bytes(), good])
    assert response.status_code == 202
    body = response.json()
    assert failure_reasons(body) == [reason]
    assert len(body["00081199"]["Value"]) == 1
    after = httpx.get(f"{loaded.url}/instances", params={"limit": 10000}).json()
    assert len(after) == len(before)
    assert sorted(p.name for p in (loaded.data / "objects").rglob("*") if p.is_file()) == blobs_before
    assert not any((loaded.data / "tmp").iterdir())
    assert httpx.get(loaded.root + "/healthz").status_code == 200


def test_only_broken_files_is_400(loaded: Server) -> None:
    blobs = [(UNIQUE[0].path.parent.parent / name).read_bytes() for name in BROKEN]
    response = stow(loaded.url, blobs)
    assert response.status_code in (400, 409)
    assert sorted(failure_reasons(response.json())) == sorted(BROKEN.values())


@pytest.mark.parametrize("f", DUPLICATES, ids=lambda f: f.name)
def test_same_sop_uid_with_other_bytes_conflicts(loaded: Server, f: CorpusFile) -> None:
    study, series, sop = _ids(f)
    response = stow(loaded.url, [f.path.read_bytes()])
    assert response.status_code == 409
    assert failure_reasons(response.json()) == [0x0111]
    kept = httpx.get(
        f"{loaded.url}/studies/{study}/series/{series}/instances/{sop}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    )
    assert split_multipart(kept)[0][1] != f.path.read_bytes()


def test_identical_resend_is_success_without_duplicate(loaded: Server) -> None:
    before = len(httpx.get(f"{loaded.url}/instances", params={"limit": 10000}).json())
    response = stow(loaded.url, [UNIQUE[1].path.read_bytes()])
    assert response.status_code == 200
    assert len(httpx.get(f"{loaded.url}/instances", params={"limit": 10000}).json()) == before


def test_dicomweb_client_store_and_default_retrieve(tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = start_server(tmp_path_factory.mktemp("client") / "data")
    try:
        client = DICOMwebClient(srv.url)
        files = [f for f in UNIQUE if f.name.startswith("ts_mr_siemens")][:1] + [
            f for f in UNIQUE if f.row["transfer_syntax"] == "1.2.840.10008.1.2.4.90"
        ][:1]
        datasets = [pydicom.dcmread(f.path) for f in files]
        result = client.store_instances(datasets)
        assert len(result.ReferencedSOPSequence) == len(datasets)
        for ds in datasets:
            # Default representation: Explicit VR Little Endian, decompressed when stored compressed.
            got = client.retrieve_instance(
                ds.StudyInstanceUID,
                ds.SeriesInstanceUID,
                ds.SOPInstanceUID,
                media_types=(("application/dicom", "1.2.840.10008.1.2.1"),),
            )
            assert got.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
            assert got.SOPInstanceUID == ds.SOPInstanceUID
            np.testing.assert_array_equal(got.pixel_array, ds.pixel_array)
    finally:
        stop_server(srv)


def test_bulkdata_with_range(loaded: Server, client: DICOMwebClient) -> None:
    f = next(f for f in UNIQUE if f.name.endswith("CT_small.dcm"))
    study, series, sop = _ids(f)
    meta = client.retrieve_instance_metadata(study, series, sop)
    uri = meta["7FE00010"]["BulkDataURI"]
    assert uri.startswith(loaded.url)
    ds = pydicom.dcmread(f.path)
    whole = client.retrieve_bulkdata(uri)
    assert whole[0] == ds.PixelData
    ranged = httpx.get(uri, headers={"Range": "bytes=10-19", "Accept": "application/octet-stream"})
    assert ranged.status_code == 206
    assert ranged.content == ds.PixelData[10:20]
    assert ranged.headers["content-range"] == f"bytes 10-19/{len(ds.PixelData)}"


def test_series_retrieve_streams_every_instance(loaded: Server) -> None:
    series_files = [f for f in UNIQUE if f.name.startswith("mr_ge_brain")]
    study, series, _sop = _ids(series_files[0])
    response = httpx.get(
        f"{loaded.url}/studies/{study}/series/{series}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    )
    parts = split_multipart(response)
    assert sorted(p[1] for p in parts) == sorted(f.path.read_bytes() for f in series_files)
    read = [pydicom.dcmread(BytesIO(p[1])).SOPInstanceUID for p in parts]
    assert len(set(read)) == len(series_files)


LOSSLESS_COMPRESSED = [
    f
    for f in PIXEL_FILES
    if f.row["transfer_syntax"]
    in ("1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.90")
]


@pytest.mark.parametrize("f", LOSSLESS_COMPRESSED, ids=lambda f: f.name)
def test_compressed_frames_decode_to_pydicom_pixels(client: DICOMwebClient, f: CorpusFile) -> None:
    study, series, sop = _ids(f)
    ds = pydicom.dcmread(f.path)
    # raw: YBR stays YBR as in the codestream (RLE); J2K with a colour transform comes back RGB from
    # every decoder, pydicom's included.
    pixels = pixel_array(ds, raw=True)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    frames = client.retrieve_instance_frames(
        study, series, sop, list(range(1, n + 1)), media_types=(("application/octet-stream", "1.2.840.10008.1.2.1"),)
    )
    mask = (1 << ds.BitsStored) - 1
    for i, frame in enumerate(frames):
        expected = (pixels[i] if n > 1 else pixels).astype(np.int64) & mask
        dtype = np.dtype(f"<{'i' if ds.PixelRepresentation else 'u'}{ds.BitsAllocated // 8}")
        got = np.frombuffer(frame, dtype=dtype)[: expected.size].reshape(expected.shape).astype(np.int64) & mask
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "f",
    [f for f in LOSSLESS_COMPRESSED if f.row["transfer_syntax"] != "1.2.840.10008.1.2.4.90"][:3]
    + [f for f in UNIQUE if f.name.endswith("MR_small_bigendian.dcm")],
    ids=lambda f: f.name,
)
def test_default_retrieve_is_explicit_le_with_same_pixels(client: DICOMwebClient, f: CorpusFile) -> None:
    study, series, sop = _ids(f)
    original = pydicom.dcmread(f.path)
    got = client.retrieve_instance(
        study, series, sop, media_types=(("application/dicom", "1.2.840.10008.1.2.1"),)
    )
    assert got.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert got.SOPInstanceUID == original.SOPInstanceUID
    np.testing.assert_array_equal(got.pixel_array, original.pixel_array)
