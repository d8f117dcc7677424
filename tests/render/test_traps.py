"""One test per known rendering trap (see the brief and FACTS.md), each on a real file where the
corpus has one, else on a small dataset built here."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from corpus import load, pydicom_pixels
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_voi
from pydicom.sequence import Sequence

from render import pipeline, reference
from render.codecs import DecodedFrame
from render.frameinfo import FrameInfo
from render.params import RenderParams, Viewport, Window

EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _render(name: str, params: RenderParams | None = None, frame: int = 0) -> np.ndarray:
    loaded = load(name)
    params = params or RenderParams()
    return pipeline.render_pixels(loaded.frames[frame], loaded.info, frame, params)


def _info(**kw: object) -> FrameInfo:
    base: dict[str, object] = {
        "rows": 4, "columns": 4, "samples_per_pixel": 1, "bits_allocated": 16, "bits_stored": 16, "high_bit": 15,
        "pixel_representation": 0, "photometric_interpretation": "MONOCHROME2", "planar_configuration": 0,
        "transfer_syntax_uid": EXPLICIT_LE, "number_of_frames": 1,
    }
    base.update(kw)
    return FrameInfo(**base)  # type: ignore[arg-type]


def test_monochrome1_is_inverted_after_voi() -> None:
    name = "photometric_and_oddities/gdcm-CR-MONO1-10-chest.dcm"
    loaded = load(name)
    assert loaded.info.photometric_interpretation == "MONOCHROME1"
    arr = pydicom_pixels(loaded, 0)
    window = Window(float(np.median(arr)), 200.0, "LINEAR")
    out = _render(name, RenderParams(window=window))
    assert (out[arr <= window.center - 150] == 255).all()  # low values white
    assert (out[arr >= window.center + 150] == 0).all()  # high values black
    as_mono2 = pipeline.pixels_from_decoded(
        DecodedFrame(arr.astype(np.uint16), "MONOCHROME2"),
        FrameInfo(**{**_fields(loaded.info), "photometric_interpretation": "MONOCHROME2"}), 0,
        RenderParams(window=window))
    assert np.abs(out.astype(int) + as_mono2.astype(int) - 255).max() <= 1


def _fields(info: FrameInfo) -> dict[str, object]:
    return {k: getattr(info, k) for k in FrameInfo.__slots__}


def test_voi_lut_sequence_is_the_default() -> None:
    name = "photometric_and_oddities/vlut_04.dcm"
    loaded = load(name)
    assert not loaded.info.windows and "voi_luts" in loaded.info.extras
    arr = pydicom_pixels(loaded, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lut_out = apply_voi(arr, loaded.ds, index=0).astype(np.float64)
    bits = int(loaded.ds.VOILUTSequence[0].LUTDescriptor[2])
    np.testing.assert_array_equal(_render(name), np.floor(lut_out * 255.0 / ((1 << bits) - 1) + 0.5))
    # An explicit window overrides the VOI LUT.
    assert not np.array_equal(_render(name, RenderParams(window=Window(100, 50, "LINEAR"))), _render(name))


def test_modality_lut_sequence() -> None:
    name = "photometric_and_oddities/mlut_18.dcm"
    loaded = load(name)
    assert "modality_lut" in loaded.info.extras and loaded.info.pixel_representation == 1
    lut = loaded.info.extras["modality_lut"]
    assert lut["first"] == -2048
    # The default window is the min-max of the LUT output, so its extremes reach 0 and 255.
    out = _render(name)
    assert out.min() == 0 and out.max() == 255


def test_signed_and_bits_stored_below_allocated_with_junk_high_bits() -> None:
    # 12-bit signed values in 16-bit words, with garbage in the 4 unused high bits (PS3.5 8.1.1).
    values = np.array([[-2048, -5, 0, 2047]], np.int64)
    stored = (values & 0xFFF) | 0xA000
    info = _info(rows=1, columns=4, bits_stored=12, high_bit=11, pixel_representation=1)
    frame = stored.astype("<u2").tobytes()
    out = pipeline.render_pixels(frame, info, 0, RenderParams(window=Window(0.0, 4096.0, "LINEAR_EXACT")))
    np.testing.assert_array_equal(out, np.floor((values + 2048) / 4096 * 255 + 0.5).astype(np.uint8))
    # Unsigned 12-bit: junk masked away, min-max default stretches 0..4095.
    info_u = _info(rows=1, columns=4, bits_stored=12, high_bit=11)
    ustored = np.array([[0, 1000, 3000, 4095]]) | 0xF000
    out_u = pipeline.render_pixels(ustored.astype("<u2").tobytes(), info_u, 0, RenderParams())
    assert out_u[0, 0] == 0 and out_u[0, 3] == 255


def test_signed_ct_file_matches_hounsfield_window() -> None:
    name = "photometric_and_oddities/CT_small.dcm"
    loaded = load(name)
    hu = pydicom_pixels(loaded, 0).astype(np.float64) * loaded.info.rescale_slope + loaded.info.rescale_intercept
    out = _render(name, RenderParams(window=Window(40.0, 400.0, "LINEAR_EXACT")))
    expected = np.floor(np.clip((hu - 40.0) / 400.0 + 0.5, 0, 1) * 255 + 0.5)
    assert np.abs(out - expected).max() <= 1


def test_stored_window_width_below_one_is_skipped() -> None:
    # LINEAR needs width >= 1 (PS3.3 C.11.2.1.2.1): a stored 0 falls back to min-max.
    loaded = load("mr_ge_brain_pd_axial_20/brain_001.dcm")
    assert loaded.info.windows[0].width == 0
    out = _render("mr_ge_brain_pd_axial_20/brain_001.dcm")
    assert out.min() == 0 and out.max() == 255
    # LINEAR_EXACT allows a width below 1 (> 0): a hard threshold at the centre.
    info = _info(rows=1, columns=4)
    frame = np.array([[9, 10, 11, 12]], "<u2").tobytes()
    out = pipeline.render_pixels(frame, info, 0, RenderParams(window=Window(10.5, 0.5, "LINEAR_EXACT")))
    np.testing.assert_array_equal(out, [[0, 0, 255, 255]])
    # LINEAR with width exactly 1 is the PS3.3 threshold: x <= c - 0.5 -> 0, else 255.
    out = pipeline.render_pixels(frame, info, 0, RenderParams(window=Window(10.5, 1.0, "LINEAR")))
    np.testing.assert_array_equal(out, [[0, 0, 255, 255]])


def _enhanced_mr() -> tuple[Dataset, np.ndarray]:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 4096, (3, 8, 8), dtype=np.uint16)
    ds = Dataset()
    ds.Rows, ds.Columns, ds.NumberOfFrames = 8, 8, 3
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    shared = Dataset()
    pvt = Dataset()
    pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = 1.0, 0.0, "US"
    shared.PixelValueTransformationSequence = Sequence([pvt])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for i in range(3):
        item = Dataset()
        p = Dataset()
        p.RescaleSlope, p.RescaleIntercept, p.RescaleType = 1.0 + i, -100.0 * i, "US"
        item.PixelValueTransformationSequence = Sequence([p])
        v = Dataset()
        v.WindowCenter, v.WindowWidth = 1000.0 * (i + 1), 500.0 + 100 * i
        item.FrameVOILUTSequence = Sequence([v])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    return ds, pixels


def test_per_frame_functional_groups() -> None:
    ds, pixels = _enhanced_mr()
    info = FrameInfo.from_dataset(ds, EXPLICIT_LE)
    assert len(info.extras["frames"]) == 3
    info = FrameInfo.from_json(info.to_json())  # what the archive stores and hands back
    for i in range(3):
        frame = pixels[i].astype("<u2").tobytes()
        out = pipeline.render_pixels(frame, info, i, RenderParams())
        x = pixels[i] * (1.0 + i) - 100.0 * i
        c, w = 1000.0 * (i + 1), 500.0 + 100 * i
        y = np.where(x <= c - 0.5 - (w - 1) / 2, 0.0,
                     np.where(x > c - 0.5 + (w - 1) / 2, 255.0, ((x - (c - 0.5)) / (w - 1) + 0.5) * 255))
        assert np.abs(out - np.floor(y + 0.5)).max() <= 1, i


@pytest.mark.parametrize("name", ["photometric_and_oddities/ybr422-raw.dcm",
                                  "photometric_and_oddities/examples_ybr_color.dcm",
                                  "photometric_and_oddities/ybrFull-RLE.dcm"])
def test_ybr_to_rgb(name: str) -> None:
    loaded = load(name)
    out = _render(name).astype(int)
    expected = pydicom_pixels(loaded, 0).astype(int)
    tolerance = 1 if loaded.info.transfer_syntax_uid != "1.2.840.10008.1.2.4.50" else 16  # lossy: IDCT differs
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() <= tolerance


@pytest.mark.parametrize("name", ["photometric_and_oddities/OT-PAL-8-face.dcm",
                                  "photometric_and_oddities/US-PAL-8-10x-echo.dcm"])
def test_palette_colour(name: str) -> None:
    loaded = load(name)
    out = _render(name)
    assert out.shape == (loaded.info.rows, loaded.info.columns, 3)
    idx = pydicom_pixels(loaded, 0)
    pal = reference.colour_display(DecodedFrame(idx, "PALETTE COLOR"), loaded.info)
    np.testing.assert_array_equal(out, np.floor(pal + 0.5).astype(np.uint8))
    assert len(np.unique(out.reshape(-1, 3), axis=0)) > 16  # really coloured, not grey


def test_ot_pal_without_transfer_syntax_is_implicit_le() -> None:
    assert load("photometric_and_oddities/OT-PAL-8-face.dcm").info.transfer_syntax_uid == "1.2.840.10008.1.2"


def test_planar_configuration_1() -> None:
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    info0 = _info(rows=5, columns=7, samples_per_pixel=3, bits_allocated=8, bits_stored=8, high_bit=7,
                  photometric_interpretation="RGB")
    info1 = FrameInfo(**{**_fields(info0), "planar_configuration": 1})
    out0 = pipeline.render_pixels(rgb.tobytes(), info0, 0, RenderParams())
    out1 = pipeline.render_pixels(rgb.transpose(2, 0, 1).tobytes(), info1, 0, RenderParams())
    np.testing.assert_array_equal(out0, rgb)
    np.testing.assert_array_equal(out1, rgb)


@pytest.mark.parametrize("name", ["photometric_and_oddities/MR_small_bigendian.dcm",
                                  "photometric_and_oddities/ExplVR_BigEnd.dcm"])
def test_big_endian(name: str) -> None:
    loaded = load(name)
    assert loaded.info.transfer_syntax_uid == "1.2.840.10008.1.2.2"
    decoded = pipeline.decode_frame(loaded.frames[0], loaded.info)
    expected = pydicom_pixels(loaded, 0)
    np.testing.assert_array_equal(decoded.array.astype(np.int64) & ((1 << loaded.info.bits_stored) - 1),
                                  expected.astype(np.int64) & ((1 << loaded.info.bits_stored) - 1))


def test_big_endian_matches_little_endian_twin() -> None:
    le = _render("ts_mr_siemens_same_image_9_syntaxes/1.dcm")
    be = _render("ts_mr_siemens_same_image_9_syntaxes/3.dcm")
    np.testing.assert_array_equal(le, be)


def test_bits_allocated_1() -> None:
    bits = np.array([[1, 0, 1, 1, 0, 0, 0, 1], [0, 1, 0, 0, 1, 1, 1, 0]], np.uint8)
    info = _info(rows=2, columns=8, bits_allocated=1, bits_stored=1, high_bit=0)
    frame = np.packbits(bits.reshape(-1), bitorder="little").tobytes()
    out = pipeline.render_pixels(frame, info, 0, RenderParams())
    np.testing.assert_array_equal(out, bits * 255)


def test_flip_and_crop() -> None:
    name = "photometric_and_oddities/CT_small.dcm"
    full = _render(name)
    flipped = _render(name, RenderParams(viewport=Viewport(128, 128, 0, 0, -128, -128)))
    np.testing.assert_array_equal(flipped, full[::-1, ::-1])
    crop = _render(name, RenderParams(viewport=Viewport(30, 20, 10, 40, 30, 20)))
    np.testing.assert_array_equal(crop, full[40:60, 10:40])
    half = _render(name, RenderParams(viewport=Viewport(64, 64)))
    assert half.shape == (64, 64)
    # A 2x2 box average of the full rendering is within one level of the half-size rendering.
    boxed = full.reshape(64, 2, 64, 2).astype(float).mean(axis=(1, 3))
    assert np.abs(half - boxed).max() <= 1.0
