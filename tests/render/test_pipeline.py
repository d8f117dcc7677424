"""render_frame end to end: media types, JPEG within a stated RMS bound of the lossless PNG, errors,
reduced-resolution HTJ2K decode through the viewport, codec preferences."""

from __future__ import annotations

import imagecodecs
import numpy as np
import pytest
import simplejpeg
from corpus import load

from render import pipeline
from render.errors import DecodeError, InvalidRenderParameter, UnsupportedTransferSyntax
from render.frameinfo import FrameInfo
from render.params import MEDIA_JPEG, MEDIA_PNG, RenderParams, Viewport, Window

#: JPEG q90 against the lossless PNG of the same pixels: RMS below 4 grey levels (measured 0.9-2.9,
#: the highest on noisy MR and ultrasound).
JPEG_RMS_BOUND = 4.0

SAMPLES = [
    "ct_ge_head_gantry_tilt_28/01.dcm",
    "photometric_and_oddities/gdcm-CR-MONO1-10-chest.dcm",
    "photometric_and_oddities/US-PAL-8-10x-echo.dcm",
    "photometric_and_oddities/US1_J2KR.dcm",
    "wsi_cmu1_small_region_pyramid/level-5-frames-0-1.dcm",
    "ts_mr_siemens_same_image_9_syntaxes/9.dcm",
]


@pytest.mark.parametrize("name", SAMPLES, ids=[s.split("/")[-1] for s in SAMPLES])
def test_jpeg_within_rms_of_png(name: str) -> None:
    loaded = load(name)
    png, png_type = pipeline.render_frame(loaded.frames[0], loaded.info, 0, RenderParams(media_type=MEDIA_PNG))
    jpg, jpg_type = pipeline.render_frame(loaded.frames[0], loaded.info, 0, RenderParams(quality=90))
    assert (png_type, jpg_type) == (MEDIA_PNG, MEDIA_JPEG)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and jpg[:2] == b"\xff\xd8"
    lossless = imagecodecs.png_decode(png)
    np.testing.assert_array_equal(lossless, pipeline.render_pixels(loaded.frames[0], loaded.info, 0, RenderParams()))
    colour = lossless.ndim == 3
    lossy = simplejpeg.decode_jpeg(jpg, colorspace="RGB" if colour else "GRAY")
    lossy = lossy if colour else lossy[:, :, 0]
    rms = float(np.sqrt(np.mean((lossy.astype(float) - lossless.astype(float)) ** 2)))
    assert rms < JPEG_RMS_BOUND


def test_frame_index_out_of_range() -> None:
    loaded = load("photometric_and_oddities/CT_small.dcm")
    with pytest.raises(InvalidRenderParameter, match=r"frame: index 1 is out of range, the instance has 1 frame\(s\)"):
        pipeline.render_frame(loaded.frames[0], loaded.info, 1, RenderParams())


def test_viewport_outside_frame() -> None:
    loaded = load("photometric_and_oddities/CT_small.dcm")
    with pytest.raises(InvalidRenderParameter, match="viewport: sx,sy 200,0 is outside the 128x128 frame"):
        pipeline.render_pixels(loaded.frames[0], loaded.info, 0, RenderParams(viewport=Viewport(10, 10, 200, 0, 5, 5)))


def test_unsupported_syntax_and_decode_error() -> None:
    info = FrameInfo(8, 8, 1, 16, 16, 15, 0, "MONOCHROME2", 0, "1.2.840.10008.1.2.4.100", 1)
    with pytest.raises(UnsupportedTransferSyntax):
        pipeline.render_frame(b"\x00" * 128, info, 0, RenderParams())
    bad = FrameInfo(8, 8, 1, 16, 16, 15, 0, "MONOCHROME2", 0, "1.2.840.10008.1.2.4.201", 1)
    with pytest.raises(DecodeError):
        pipeline.render_frame(b"\xff\x4f\xff\x51garbage", bad, 0, RenderParams())


def test_htj2k_thumbnail_uses_reduced_decode() -> None:
    y, x = np.mgrid[:256, :256]
    # 12-bit CT-like values in 16-bit words, with zeros at the edge (OpenJPH undershoots there).
    pixels = ((np.sin(x / 40.0) + np.cos(y / 30.0) + 2) * 1000).astype(np.uint16)
    pixels[:20] = 0
    stream = imagecodecs.htj2k_encode(pixels, reversible=True)
    info = FrameInfo(256, 256, 1, 16, 12, 11, 0, "MONOCHROME2", 0, "1.2.840.10008.1.2.4.201", 1)
    window = Window(2000.0, 4000.0, "LINEAR")  # explicit: min-max differs between resolutions
    params = RenderParams(window=window, viewport=Viewport(64, 64))
    region_k = pipeline.reduce_levels(pipeline.resolve_region(256, 256, params.viewport))
    assert region_k == 2
    thumb = pipeline.render_pixels(stream, info, 0, params)
    full = pipeline.render_pixels(stream, info, 0, RenderParams(window=window))
    boxed = full.reshape(64, 4, 64, 4).astype(float).mean(axis=(1, 3))
    assert thumb.shape == (64, 64)
    # Wavelet low-pass vs box average: the same picture (measured mean 2.9 levels; the sharp edge at
    # row 20 differs most). Without the wrap repair the mean difference is about 100.
    assert np.abs(thumb - boxed).mean() < 4.0
    assert np.abs(thumb - boxed)[8:].max() < 16
    # Full-range unsigned 16-bit cannot be repaired, so it is decoded at full size (and says so).
    info16 = FrameInfo(256, 256, 1, 16, 16, 15, 0, "MONOCHROME2", 0, "1.2.840.10008.1.2.4.201", 1)
    assert pipeline.decode_frame(stream, info16, reduce=2).reduce == 0


def test_codec_preferences_are_honoured() -> None:
    loaded = load("ts_mr_siemens_same_image_9_syntaxes/9.dcm")
    ts = loaded.info.transfer_syntax_uid
    a = pipeline.decode_frame(loaded.frames[0], loaded.info)
    b = pipeline.decode_frame(loaded.frames[0], loaded.info, codec_preferences={ts: ["pylibjpeg-openjpeg"]})
    assert (a.backend, b.backend) == ("imagecodecs", "pylibjpeg-openjpeg")
    np.testing.assert_array_equal(a.array, b.array)


def test_frameinfo_json_round_trip_keeps_luts() -> None:
    for name in ["photometric_and_oddities/vlut_04.dcm", "photometric_and_oddities/mlut_18.dcm",
                 "photometric_and_oddities/OT-PAL-8-face.dcm"]:
        loaded = load(name)
        again = FrameInfo.from_json(loaded.info.to_json())
        assert again == loaded.info
        a = pipeline.render_pixels(loaded.frames[0], loaded.info, 0, RenderParams())
        b = pipeline.render_pixels(loaded.frames[0], again, 0, RenderParams())
        np.testing.assert_array_equal(a, b)
