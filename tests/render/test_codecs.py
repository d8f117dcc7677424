"""Codec registry and backends: availability, selection, errors, cross-backend agreement and
agreement with pydicom's pixel_array on every lossless file, reduced-resolution HTJ2K decode."""

from __future__ import annotations

from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from corpus import MEANT_TO_FAIL, all_files, load, pydicom_pixels, renderable_files

from render import codecs
from render.codecs.base import LOSSLESS_SYNTAXES
from render.errors import DecodeError, UnsupportedTransferSyntax
from render.frameinfo import FrameInfo

LOSSLESS = [f for f in renderable_files() if load(f).info.transfer_syntax_uid in LOSSLESS_SYNTAXES]
NAMES = [Path(f).name for f in LOSSLESS]


def test_all_backends_live_here() -> None:
    assert codecs.available_backends() == {
        "native": True, "imagecodecs": True, "simplejpeg": True,
        "pylibjpeg-openjpeg": True, "pylibjpeg-libjpeg": True, "pylibjpeg-rle": True,
    }


def test_unsupported_syntax_names_it() -> None:
    with pytest.raises(UnsupportedTransferSyntax, match=r"transfer syntax '1\.2\.840\.10008\.1\.2\.4\.100' is not supported"):
        codecs.select_backend("1.2.840.10008.1.2.4.100")


def test_preferences_override_and_missing_backend() -> None:
    ts = "1.2.840.10008.1.2.4.90"
    assert codecs.select_backend(ts).name == "imagecodecs"
    assert codecs.select_backend(ts, {ts: ["pylibjpeg-openjpeg"]}).name == "pylibjpeg-openjpeg"
    with pytest.raises(UnsupportedTransferSyntax, match="no live decoder"):
        codecs.select_backend(ts, {ts: ["simplejpeg"]})  # simplejpeg cannot do J2K


def test_default_order_is_fastest_first() -> None:
    assert codecs.select_backend("1.2.840.10008.1.2.4.50").name == "simplejpeg"
    assert codecs.select_backend("1.2.840.10008.1.2.5").name == "imagecodecs"
    assert codecs.select_backend("1.2.840.10008.1.2.4.80").name == "imagecodecs"


@pytest.mark.parametrize("name", LOSSLESS, ids=NAMES)
def test_lossless_backends_agree_with_each_other_and_pydicom(name: str) -> None:
    loaded = load(name)
    info = loaded.info
    backends = codecs.candidates(info.transfer_syntax_uid)
    for frame in range(min(info.number_of_frames, 3)):
        expected = pydicom_pixels(loaded, frame)
        outputs = {b.name: b.decode(loaded.frames[frame], info) for b in backends}
        # A frame split over threads (the server does it when its CPU pool is idle) decodes the same.
        outputs |= {f"{b.name} on 2 threads": b.decode(loaded.frames[frame], info, threads=2) for b in backends}
        for bname, decoded in outputs.items():
            got = decoded.array
            if decoded.photometric in ("YBR_FULL", "YBR_FULL_422") and expected.ndim == 3:
                continue  # pydicom converted colour to RGB; the kernels do it for us (tested elsewhere)
            mask = (1 << info.bits_stored) - 1
            signed = info.pixel_representation == 1
            got_values = got.astype(np.int64) & mask
            if signed:
                got_values = np.where(got_values > mask >> 1, got_values - mask - 1, got_values)
            assert got_values.shape == expected.shape, bname
            np.testing.assert_array_equal(got_values, expected.astype(np.int64), err_msg=bname)
        arrays = [d.array for d in outputs.values()]
        for other in arrays[1:]:
            np.testing.assert_array_equal(arrays[0], other)


SYNTH_LOSSLESS = ["rle", "jpeg-lossless", "jpeg-lossless-57", "jpegls", "j2k", "htj2k", "htj2k-rpcl",
                  "explicit", "implicit", "bigendian"]


@pytest.mark.parametrize("syntax", SYNTH_LOSSLESS)
def test_synthetic_ct_lossless_backends_bit_exact(syntax: str) -> None:
    from synth_frames import synth_frame

    info, frame, pixels = synth_frame(syntax, rows=64, columns=96)
    backends = codecs.candidates(info.transfer_syntax_uid)
    decoded = [b.decode(frame, info, threads=t) for b in backends for t in (1, 2)]
    for d in decoded:
        np.testing.assert_array_equal(d.array.astype(np.int64), pixels.astype(np.int64), err_msg=d.backend)


def test_meant_to_fail_files() -> None:
    truncated = load("photometric_and_oddities/MR_truncated.dcm")
    with pytest.raises(DecodeError, match="frame has 8130 bytes, 8192 expected"):
        codecs.decode(truncated.frames[0], truncated.info)
    oob = load("photometric_and_oddities/2026-05-26-oob-monochrome-65535.dcm")
    with pytest.raises(DecodeError, match="expected for 65535x65535"):
        codecs.decode(oob.frames[0], oob.info)
    # The NEMA 12-bit extended sample: pylibjpeg-libjpeg fails (error -1038), imagecodecs decodes it.
    nema = load("photometric_and_oddities/1.2.840.10008.1.2.4.51.dcm")
    with pytest.raises(DecodeError, match="-1038"):
        codecs.decode(nema.frames[0], nema.info, preferences={nema.info.transfer_syntax_uid: ["pylibjpeg-libjpeg"]})
    ok = codecs.decode(nema.frames[0], nema.info)
    assert ok.backend == "imagecodecs" and ok.array.shape == (nema.info.rows, nema.info.columns)
    assert {Path(f).name for f in all_files()} >= MEANT_TO_FAIL


def test_corrupt_codestream_raises_decode_error() -> None:
    loaded = load("ts_mr_siemens_same_image_9_syntaxes/9.dcm")
    for backend in codecs.candidates(loaded.info.transfer_syntax_uid):
        with pytest.raises(DecodeError):
            backend.decode(loaded.frames[0][:200], loaded.info)


@pytest.mark.parametrize(("name", "declared"), [("US1_J2KI.dcm", "YBR_ICT"), ("US1_J2KR.dcm", "YBR_RCT")])
def test_j2k_colour_transform_reported_as_rgb(name: str, declared: str) -> None:
    loaded = load(f"photometric_and_oddities/{name}")
    assert loaded.info.photometric_interpretation == declared
    for backend in codecs.candidates(loaded.info.transfer_syntax_uid):
        assert backend.decode(loaded.frames[0], loaded.info).photometric == "RGB"


def test_jpeg_ybr_comes_out_rgb() -> None:
    loaded = load("photometric_and_oddities/examples_ybr_color.dcm")
    for backend in codecs.candidates(loaded.info.transfer_syntax_uid):
        decoded = backend.decode(loaded.frames[0], loaded.info)
        assert decoded.photometric == "RGB"
        # Different IDCT/upsampling implementations: same picture within a few levels.
        ref = pydicom_pixels(loaded, 0).astype(np.int16)
        assert np.abs(decoded.array.astype(np.int16) - ref).mean() < 2.0, backend.name


@pytest.mark.parametrize("k", [1, 2, 3])
def test_htj2k_reduced_resolution(k: int) -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 4096, (100, 130), dtype=np.uint16)
    stream = imagecodecs.htj2k_encode(pixels, reversible=True)
    info = FrameInfo(100, 130, 1, 16, 12, 11, 0, "MONOCHROME2", 0, "1.2.840.10008.1.2.4.201", 1)
    decoded = codecs.decode(stream, info, reduce=k)
    assert decoded.reduce == k
    assert decoded.array.shape == (-(-100 // 2**k), -(-130 // 2**k))
    # A J2K syntax whose backends cannot reduce decodes at full size and says so.
    info_j2k = FrameInfo(100, 130, 1, 16, 12, 11, 0, "MONOCHROME2", 0, "1.2.840.10008.1.2.4.90", 1)
    full = codecs.decode(imagecodecs.jpeg2k_encode(pixels, level=0), info_j2k, reduce=k)
    assert full.reduce == 0 and full.array.shape == (100, 130)
