"""Golden table over every renderable corpus file: kernel output == reference exactly (default
rendering, every window function, shrink/enlarge/crop/flip viewports), and the uint8 pixels of the
default rendering match the recorded hash in golden.json (regenerate with make_golden.py after an
intentional change, and say why in the commit)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from corpus import load, renderable_files

from render import pipeline, reference
from render.params import RenderParams, Viewport, Window

GOLDEN = json.loads((Path(__file__).parent / "golden.json").read_text())
FILES = renderable_files()
IDS = [f.replace("/", "-") for f in FILES]


def variants(rows: int, cols: int) -> list[RenderParams]:
    return [
        RenderParams(),
        RenderParams(window=Window(100.0, 500.0, "LINEAR")),
        RenderParams(window=Window(100.5, 0.5, "LINEAR_EXACT")),
        RenderParams(window=Window(50.0, 300.0, "SIGMOID")),
        RenderParams(viewport=Viewport(max(1, cols // 3), max(1, rows // 3))),
        RenderParams(viewport=Viewport(cols * 2 + 1, rows * 2 + 1)),
        RenderParams(viewport=Viewport(77, 53, cols // 4, rows // 5, -max(1, cols // 2), max(1, rows // 2))),
        RenderParams(viewport=Viewport(40, 40, 0, 0, cols, -rows)),
    ]


def pixel_hash(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()[:16]


@pytest.mark.parametrize("name", FILES, ids=IDS)
def test_kernel_equals_reference(name: str) -> None:
    loaded = load(name)
    info = loaded.info
    for frame in sorted({0, info.number_of_frames - 1}):
        decoded = pipeline.decode_frame(loaded.frames[frame], info)
        for params in variants(info.rows, info.columns):
            got = pipeline.pixels_from_decoded(decoded, info, frame, params)
            want = reference.render_reference(decoded, info, frame, params)
            assert got.dtype == np.uint8
            np.testing.assert_array_equal(got, want, err_msg=f"frame {frame} {params}")


@pytest.mark.parametrize("name", FILES, ids=IDS)
def test_golden_table(name: str) -> None:
    loaded = load(name)
    info = loaded.info
    row = GOLDEN[name]
    assert info.transfer_syntax_uid == row["ts"]
    pixels = pipeline.render_pixels(loaded.frames[0], info, 0, RenderParams())
    assert list(pixels.shape) == row["shape"]
    assert pixel_hash(pixels) == row["sha256_16"]
