"""Look-up tables and per-frame values captured at ingest, kept in ``FrameInfo.extras`` as JSON data.

Two halves: ``extras_from_dataset`` runs once at ingest (it reads a pydicom Dataset and uses pydicom's
own LUT readers so segmented palettes, OW/US LUT data and descriptor quirks are handled in one well
tested place); ``prepared`` turns the JSON back into numpy arrays for the per-frame path and caches
the result per FrameInfo. The per-frame half must never touch a Dataset, and neither half does I/O.

JSON shapes (all optional; absent keys mean "not present in the file"):
    modality_lut: {"first": int, "bits": int, "data": base64 '<u2'}   PS3.3 C.11.1
    voi_luts:     [{"first", "bits", "data"}, ...]                    PS3.3 C.11.2
    palette:      {"first": int, "bits": 8|16, "data": base64 '<u2' of (n, 3)}  PS3.3 C.7.6.3.1.5
    frames:       [{"slope", "intercept", "windows": [[c, w], ...], "function"}, ...]  PS3.3 C.7.6.16.2
    ow_8bit_swapped: true   8-bit pixel data stored as OW in a big endian syntax (bytes swapped in words)
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from render.errors import InvalidPixelModule

if TYPE_CHECKING:  # the ingest half imports pydicom lazily so the per-frame half stays light
    from pydicom.dataset import Dataset

    from render.frameinfo import FrameInfo

BIG_ENDIAN = "1.2.840.10008.1.2.2"


def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr, dtype="<u2").tobytes()).decode("ascii")


def _unb64(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<u2")


def _descriptor(item: Any, pixel_representation: int) -> tuple[int, int, int]:
    desc = [int(v) for v in item.LUTDescriptor]
    entries = desc[0] or 65536  # PS3.3 C.11.1.1.1: 0 means 2^16 entries
    first = desc[1]
    # The first mapped value is US or SS depending on Pixel Representation; a US read of a
    # negative value shows up as >= 2^15.
    if pixel_representation == 1 and first >= 1 << 15:
        first -= 1 << 16
    return entries, first, desc[2]


def _lut_json(ds: Dataset, item: Any, kind: str, index: int, pixel_representation: int) -> dict[str, Any]:
    from pydicom.pixels.processing import apply_modality_lut, apply_voi

    entries, first, bits = _descriptor(item, pixel_representation)
    # Feed every input value once through pydicom's own reader: the result is the table itself.
    inputs = np.arange(first, first + entries, dtype=np.int64)
    if kind == "modality":
        table = apply_modality_lut(inputs, ds)
    else:
        table = apply_voi(inputs, ds, index=index)
    if bits not in range(1, 17):
        raise InvalidPixelModule(f"(0028,3002) 'LUTDescriptor' bits {bits} is invalid: must be 1..16")
    return {"first": first, "bits": bits, "data": _b64(np.asarray(table))}


def extras_from_dataset(
    ds: Dataset, transfer_syntax_uid: str, photometric: str, pixel_representation: int, bits_allocated: int
) -> dict[str, Any]:
    """Capture LUTs, palette and per-frame functional groups as JSON-able data (ingest only).

    Raises InvalidPixelModule when a LUT descriptor is unusable.
    """
    extras: dict[str, Any] = {}
    mseq = ds.get("ModalityLUTSequence")
    if mseq:
        extras["modality_lut"] = _lut_json(ds, mseq[0], "modality", 0, pixel_representation)
    vseq = ds.get("VOILUTSequence")
    if vseq:
        extras["voi_luts"] = [
            _lut_json(ds, item, "voi", i, pixel_representation) for i, item in enumerate(vseq)
        ]
    if photometric == "PALETTE COLOR":
        extras["palette"] = _palette_json(ds)
    if transfer_syntax_uid == BIG_ENDIAN and bits_allocated == 8:
        elem = ds.get("PixelData") and ds["PixelData"]
        if elem is not None and getattr(elem, "VR", "") == "OW":
            extras["ow_8bit_swapped"] = True
    frames = _per_frame_json(ds)
    if frames:
        extras["frames"] = frames
    return extras


def _palette_json(ds: Dataset) -> dict[str, Any]:
    from pydicom.pixels.processing import apply_color_lut

    try:
        desc = [int(v) for v in ds.RedPaletteColorLookupTableDescriptor]
    except (AttributeError, TypeError, ValueError):
        raise InvalidPixelModule(
            "(0028,1101) 'RedPaletteColorLookupTableDescriptor' is missing for PALETTE COLOR"
        ) from None
    entries, first = desc[0] or 65536, desc[1]
    inputs = np.arange(first, first + entries, dtype=np.uint16 if entries + first <= 65536 else np.int64)
    table = np.asarray(apply_color_lut(inputs, ds))  # (entries, 3), uint8 or uint16 per pydicom
    bits = 8 if table.dtype == np.uint8 else 16
    return {"first": first, "bits": bits, "data": _b64(table.reshape(-1))}


def _per_frame_json(ds: Dataset) -> list[dict[str, Any]]:
    seq = ds.get("PerFrameFunctionalGroupsSequence")
    if not seq:
        return []
    out: list[dict[str, Any]] = []
    found = False
    for item in seq:
        entry: dict[str, Any] = {}
        pvt = item.get("PixelValueTransformationSequence")
        if pvt:
            found = True
            entry["slope"] = float(pvt[0].get("RescaleSlope", 1.0) or 1.0)
            entry["intercept"] = float(pvt[0].get("RescaleIntercept", 0.0) or 0.0)
        fvoi = item.get("FrameVOILUTSequence")
        if fvoi:
            found = True
            centers = _as_list(fvoi[0].get("WindowCenter"))
            widths = _as_list(fvoi[0].get("WindowWidth"))
            entry["windows"] = [[float(c), float(w)] for c, w in zip(centers, widths)]
            fn = fvoi[0].get("VOILUTFunction")
            if fn:
                entry["function"] = str(fn).strip().upper()
        out.append(entry)
    return out if found else []


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return list(value)
    return [value]


@dataclass(frozen=True, slots=True)
class Lut:
    """A decoded LUT: output = data[clamp(x - first, 0, len - 1)], data values use ``bits`` bits."""

    first: int
    bits: int
    data: np.ndarray  # int64, contiguous: what the kernels index


@dataclass(frozen=True, slots=True)
class Prepared:
    """Numpy views of ``FrameInfo.extras`` for the per-frame path, built once per FrameInfo."""

    modality_lut: Lut | None
    voi_luts: tuple[Lut, ...]
    palette: Lut | None  # data is (entries, 3)
    frames: tuple[dict[str, Any], ...]
    swap_ow_bytes: bool


def _lut(d: dict[str, Any] | None, columns: int = 1) -> Lut | None:
    if not d:
        return None
    data = _unb64(d["data"]).astype(np.int64)
    if columns > 1:
        data = data.reshape(-1, columns)
    return Lut(int(d["first"]), int(d["bits"]), np.ascontiguousarray(data))


@functools.lru_cache(maxsize=512)
def prepared(info: FrameInfo) -> Prepared:
    """Decode the extras of ``info`` into arrays; cached because FrameInfo is immutable and hashable."""
    ex = info.extras
    return Prepared(
        modality_lut=_lut(ex.get("modality_lut")),
        voi_luts=tuple(lut for lut in (_lut(d) for d in ex.get("voi_luts", ())) if lut is not None),
        palette=_lut(ex.get("palette"), columns=3),
        frames=tuple(ex.get("frames", ())),
        swap_ow_bytes=bool(ex.get("ow_8bit_swapped", False)),
    )
