"""reference.py against pydicom's own LUT functions (apply_modality_lut, apply_voi_lut/apply_voi,
apply_color_lut, YBR conversion), mapped to 8 bits: within one grey level on every renderable file.
pydicom's decoded pixels are fed to the reference so only the arithmetic is compared."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from corpus import Loaded, load, pydicom_pixels, renderable_files
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi, apply_voi_lut

from render import reference
from render.codecs import DecodedFrame
from render.params import RenderParams, Window
from render.transform import frame_values

FILES = renderable_files()
GREY = [f for f in FILES if not load(f).info.is_color]
COLOUR = [f for f in FILES if load(f).info.is_color]


def pydicom_window(m: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """pydicom's windowing of modality values, output range 0..65535 mapped to 0..255 (float)."""
    stub = Dataset()
    stub.PhotometricInterpretation = "MONOCHROME2"
    stub.PixelRepresentation = 0
    stub.BitsStored = 16
    stub.WindowCenter = center
    stub.WindowWidth = width
    stub.VOILUTFunction = function
    return apply_voi_lut(m.astype(np.float64), stub, prefer_lut=False) * (255.0 / 65535.0)


def _ours(loaded: Loaded, frame: int, params: RenderParams) -> np.ndarray:
    arr = pydicom_pixels(loaded, frame)
    decoded = DecodedFrame(np.ascontiguousarray(arr), loaded.info.photometric_interpretation)
    return reference.render_reference(decoded, loaded.info, frame, params).astype(np.int64)


def _modality(loaded: Loaded, frame: int) -> np.ndarray:
    ds = loaded.ds
    if "ModalityLUTSequence" not in ds and "RescaleSlope" not in ds:
        # Enhanced objects keep rescale in functional groups, which pydicom's apply_modality_lut does
        # not read: hand it the values FrameInfo resolved in a stub.
        slope, intercept, _, _ = frame_values(loaded.info, frame)
        ds = Dataset()
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return apply_modality_lut(pydicom_pixels(loaded, frame), ds).astype(np.float64)


def _finish(loaded: Loaded, y: np.ndarray) -> np.ndarray:
    if loaded.info.photometric_interpretation == "MONOCHROME1":
        y = 255.0 - y
    return np.floor(y + 0.5).astype(np.int64)


def assert_within_one(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    diff = np.abs(ours - theirs)
    assert diff.max() <= 1, f"max diff {diff.max()} at {np.unravel_index(diff.argmax(), diff.shape)}"


@pytest.mark.parametrize("name", GREY, ids=[Path(f).name for f in GREY])
@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_window_functions_match_pydicom(name: str, function: str) -> None:
    loaded = load(name)
    m = _modality(loaded, 0)
    center = float(np.floor(m.mean()))
    width = float(max(2.0, np.floor((m.max() - m.min()) / 2)))
    ours = _ours(loaded, 0, RenderParams(window=Window(center, width, function)))
    assert_within_one(ours, _finish(loaded, pydicom_window(m, center, width, function)))


@pytest.mark.parametrize("name", GREY, ids=[Path(f).name for f in GREY])
def test_default_voi_matches_pydicom(name: str) -> None:
    """Default: first stored window, else first VOI LUT, else min-max of the modality output."""
    loaded = load(name)
    info, ds = loaded.info, loaded.ds
    m = _modality(loaded, 0)
    # A stored width the standard forbids (these GE MR files store 0,0) is skipped.
    valid = [w for w in info.windows if (w.width >= 1 if info.voi_lut_function == "LINEAR" else w.width > 0)]
    if valid:
        w = valid[0]
        theirs = pydicom_window(m, w.center, w.width, info.voi_lut_function)
    elif "VOILUTSequence" in ds:
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = apply_voi(m, ds, index=0) * (255.0 / ((1 << bits) - 1))
    else:
        theirs = pydicom_window(m, (m.min() + m.max()) / 2, max(m.max() - m.min(), 1e-9), "LINEAR_EXACT")
    assert_within_one(_ours(loaded, 0, RenderParams()), _finish(loaded, theirs))


@pytest.mark.parametrize("name", COLOUR, ids=[Path(f).name for f in COLOUR])
def test_colour_matches_pydicom(name: str) -> None:
    loaded = load(name)
    arr = pydicom_pixels(loaded, 0)
    if loaded.info.photometric_interpretation == "PALETTE COLOR":
        rgb = apply_color_lut(arr, loaded.ds).astype(np.float64)
        theirs = np.floor(np.minimum(rgb / 256.0 if rgb.max() > 255 else rgb, 255.0) + 0.5).astype(np.int64)
        decoded = DecodedFrame(np.ascontiguousarray(arr), "PALETTE COLOR")
    else:
        theirs = arr.astype(np.int64)  # pydicom already converted YBR to RGB
        decoded = DecodedFrame(np.ascontiguousarray(arr), "RGB")
    ours = reference.render_reference(decoded, loaded.info, 0, RenderParams()).astype(np.int64)
    assert_within_one(ours, theirs)
