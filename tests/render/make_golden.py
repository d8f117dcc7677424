"""Regenerate golden.json (run by hand: .venv/bin/python tests/render/make_golden.py)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[2]))

import hashlib

import numpy as np
from corpus import load, renderable_files

from render import pipeline
from render.params import RenderParams


def pixel_hash(pixels: np.ndarray) -> str:  # same as test_golden.pixel_hash
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()[:16]


table = {}
for name in renderable_files():
    loaded = load(name)
    pixels = pipeline.render_pixels(loaded.frames[0], loaded.info, 0, RenderParams())
    table[name] = {"ts": loaded.info.transfer_syntax_uid, "shape": list(pixels.shape), "dtype": str(pixels.dtype),
                   "photometric": loaded.info.photometric_interpretation, "sha256_16": pixel_hash(pixels)}
(Path(__file__).parent / "golden.json").write_text(json.dumps(table, indent=1) + "\n")
print(len(table), "files")
