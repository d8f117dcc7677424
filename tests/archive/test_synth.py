"""Synthetic series: every syntax decodes to the expected pixels, UIDs are reproducible, attributes
are complete and the CT phantom compresses like clinical CT. Real files, real codecs, no mocks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames

from archive import synth

SIZE = 128  # big enough for 10:1 J2K to mean something, small enough to keep the suite fast
SLICES = 2

# name -> (imagecodecs decoder of one frame or None, RMS bound in stored units; 0 means exact)
# Lossy bounds are about 1.3x what was measured on this phantom (noise sigma 15 stored units).
GOLDEN: dict[str, tuple[Callable[[bytes], np.ndarray] | None, float]] = {
    "explicit": (None, 0),
    "implicit": (None, 0),
    "bigendian": (None, 0),
    "deflated": (None, 0),
    "rle": (None, 0),  # imagecodecs has no DICOM RLE decoder
    "jpeg-lossless": (imagecodecs.jpeg8_decode, 0),
    "jpeg-lossless-57": (imagecodecs.jpeg8_decode, 0),
    "jpeg-extended": (imagecodecs.jpeg8_decode, 5.0),  # measured 3.4-3.8
    "jpeg-baseline": (imagecodecs.jpeg8_decode, 3.0),  # 8-bit units; measured 2.0
    "jpegls": (imagecodecs.jpegls_decode, 0),
    "jpegls-near": (imagecodecs.jpegls_decode, 2.0),  # NEAR=2 also bounds every pixel by 2
    "j2k": (imagecodecs.jpeg2k_decode, 0),
    "j2k-lossy": (imagecodecs.jpeg2k_decode, 16.0),  # measured 12.5 at 10:1
    "htj2k": (imagecodecs.htj2k_decode, 0),
    "htj2k-rpcl": (imagecodecs.htj2k_decode, 0),
    "htj2k-lossy": (imagecodecs.htj2k_decode, 9.0),  # measured 6.9-7.2
}

TYPE1 = [
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "Modality",
    "SeriesNumber",
    "InstanceNumber",
    "ImageType",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PixelData",
    "WindowCenter",
    "WindowWidth",
    "PatientName",
    "PatientID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "StudyDescription",
    "SeriesDescription",
    "PatientBirthDate",
    "PatientSex",
    "SliceThickness",
    "Manufacturer",
]
TYPE2 = ["ReferringPhysicianName", "PositionReferenceIndicator", "PatientPosition"]


def rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def test_golden_table_covers_every_syntax() -> None:
    assert set(GOLDEN) == set(synth.SYNTAX_CHOICES)


@pytest.mark.parametrize("modality", ["CT", "MR"])
@pytest.mark.parametrize("syntax", list(GOLDEN), ids=list(GOLDEN))
def test_every_syntax_decodes_to_expected_pixels(
    tmp_path: Path, syntax: str, modality: synth.Modality
) -> None:
    decode, bound = GOLDEN[syntax]
    paths = synth.write_series(
        tmp_path, modality=modality, rows=SIZE, columns=SIZE, slices=SLICES, syntax=syntax, seed=7
    )
    assert [p.name for p in paths] == [f"{i:04d}.dcm" for i in range(1, SLICES + 1)]
    for index, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == synth.SYNTAX_CHOICES[syntax]
        expected = synth.pixel_array_for(7, modality, SIZE, SIZE, index, syntax=syntax)
        decoded = [ds.pixel_array]
        if decode is not None:  # the same frame through a second, independent decoder
            (frame,) = generate_frames(ds.PixelData, number_of_frames=1)
            decoded.append(decode(frame))
        for arr in decoded:
            # pydicom hands big endian data back as a '>u2' view: compare kind and size, not order.
            assert arr.shape == expected.shape and arr.dtype.str[1:] == expected.dtype.str[1:]
            if bound == 0:
                np.testing.assert_array_equal(arr, expected)
            else:
                assert 0 < rms(arr, expected) <= bound
        if bound:
            assert ds.LossyImageCompression == "01"
            assert ds.LossyImageCompressionMethod.startswith("ISO_")
            assert float(ds.LossyImageCompressionRatio) > 2
            assert ds.ImageType[0] == "DERIVED"
        else:
            assert "LossyImageCompression" not in ds
        if syntax == "jpegls-near":
            assert np.abs(decoded[0].astype(int) - expected).max() <= 2


@pytest.mark.parametrize("syntax", ["j2k-lossy", "htj2k-lossy"])
def test_lossy_j2k_is_about_ten_to_one_at_full_size(syntax: str) -> None:
    ds = next(synth.synth_series(slices=1, syntax=syntax))
    ratio = float(ds.LossyImageCompressionRatio)
    (frame,) = generate_frames(ds.PixelData, number_of_frames=1)
    assert ratio == pytest.approx(512 * 512 * 2 / len(frame), rel=0.01)
    assert 8.0 <= ratio <= 12.5  # measured 10.0 (J2K) and 10.2 (HTJ2K)


def test_lossless_j2k_ratio_matches_clinical_ct() -> None:
    ds = next(synth.synth_series(slices=1, syntax="j2k", seed=3))
    (frame,) = generate_frames(ds.PixelData, number_of_frames=1)
    ratio = 512 * 512 * 2 / len(frame)
    assert 2.2 <= ratio <= 4.0  # measured 3.05


def test_htj2k_rpcl_codestream_has_rpcl_order_and_tlm() -> None:
    ds = next(synth.synth_series(rows=64, columns=64, slices=1, syntax="htj2k-rpcl"))
    (frame,) = generate_frames(ds.PixelData, number_of_frames=1)
    cod = frame.index(b"\xff\x52")
    assert frame[cod + 5] == 2  # SGcod progression order: 2 = RPCL (ITU-T T.800 Table A.16)
    assert b"\xff\x55" in frame[: frame.index(b"\xff\x93")]  # TLM in the main header
    assert frame.count(b"\xff\x90") == 6  # one tile-part (SOT) per resolution: 5 DWT levels + 1


def test_ct_phantom_values_are_in_hounsfield_ranges() -> None:
    hu = synth.pixel_array_for(0, "CT", 512, 512, 0).astype(np.float64) - 1024
    assert hu[5, 5] == -1024  # outside the reconstruction circle: padding
    assert np.median(hu[250:262, 15:35]) == pytest.approx(-1000, abs=10)  # air around the body
    assert np.median(hu[250:262, 150:160]) == pytest.approx(-800, abs=10)  # right lung
    assert np.median(hu[120:130, 250:262]) == pytest.approx(40, abs=30)  # soft tissue
    ring = hu[253:259, 53:60]  # bone ring at the body's left edge
    assert 650 <= np.median(ring) <= 1050
    assert np.std(hu[250:262, 150:160]) == pytest.approx(15, abs=3)  # noise in a flat region


def test_slices_differ_and_positions_step_along_z(tmp_path: Path) -> None:
    paths = synth.write_series(tmp_path, rows=64, columns=64, slices=4)
    datasets = [pydicom.dcmread(p) for p in paths]
    z = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    assert np.allclose(np.diff(z), -float(datasets[0].SliceThickness))
    assert [ds.InstanceNumber for ds in datasets] == [1, 2, 3, 4]
    assert len({ds.SOPInstanceUID for ds in datasets}) == 4
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert not np.array_equal(datasets[0].pixel_array, datasets[3].pixel_array)


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_required_attributes_are_present(modality: synth.Modality) -> None:
    ds = next(synth.synth_series(modality=modality, rows=64, columns=64, slices=1))
    missing = [k for k in TYPE1 if k not in ds or ds[k].value in (None, "")]
    assert missing == []
    assert all(k in ds for k in TYPE2)
    meta = ds.file_meta
    assert meta.MediaStorageSOPClassUID == ds.SOPClassUID
    assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert meta.ImplementationClassUID == synth.IMPLEMENTATION_CLASS_UID
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    if modality == "CT":
        assert ds.SOPClassUID == pydicom.uid.CTImageStorage
        assert (ds.RescaleSlope, ds.RescaleIntercept) == (1, -1024)
        assert list(ds.WindowCenter) == [40, 600] and list(ds.WindowWidth) == [400, 1600]
        assert len(ds.WindowCenterWidthExplanation) == 2
    else:
        assert ds.SOPClassUID == pydicom.uid.MRImageStorage
        assert "RescaleIntercept" not in ds


def test_baseline_jpeg_is_an_8_bit_variant_that_keeps_hounsfield_units() -> None:
    ds = next(synth.synth_series(rows=64, columns=64, slices=1, syntax="jpeg-baseline"))
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (8, 8, 7)
    assert (ds.RescaleSlope, ds.RescaleIntercept) == (16, -1024)


def test_same_arguments_give_same_bytes(tmp_path: Path) -> None:
    a = synth.write_series(tmp_path / "a", rows=64, columns=64, slices=2, syntax="j2k", seed=5)
    b = synth.write_series(tmp_path / "b", rows=64, columns=64, slices=2, syntax="j2k", seed=5)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_different_seed_gives_different_study() -> None:
    one = next(synth.synth_series(rows=64, columns=64, slices=1, seed=1))
    two = next(synth.synth_series(rows=64, columns=64, slices=1, seed=2))
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        assert one[keyword].value != two[keyword].value, keyword
    assert one.PixelData != two.PixelData


def test_lossless_syntaxes_share_instances_lossy_ones_do_not() -> None:
    def uids(syntax: str) -> tuple[str, str, str]:
        ds = next(synth.synth_series(rows=64, columns=64, slices=1, syntax=syntax))
        return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID

    assert uids("explicit") == uids("j2k") == uids("rle")
    lossy = uids("j2k-lossy")
    assert lossy[0] == uids("explicit")[0]  # same study
    assert lossy[1:] != uids("explicit")[1:]  # new series and instances (PS3.3 C.7.6.1.1.5)


def test_explicit_uids_and_patient_are_used() -> None:
    ds = next(
        synth.synth_series(
            rows=64,
            columns=64,
            slices=1,
            patient_name="DOE^JANE",
            patient_id="P1",
            study_uid="1.2.3.4",
            series_uid="1.2.3.4.5",
        )
    )
    assert (ds.PatientName, ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID) == (
        "DOE^JANE",
        "P1",
        "1.2.3.4",
        "1.2.3.4.5",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"syntax": "jpeg2000"}, "syntax: 'jpeg2000' is invalid"),
        ({"modality": "US"}, "modality: 'US' is invalid"),
        ({"rows": 16}, "rows: 16 is invalid"),
        ({"slices": 0}, "slices: 0 is invalid"),
    ],
    ids=["syntax", "modality", "rows", "slices"],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        next(synth.synth_series(**kwargs))  # type: ignore[arg-type]
