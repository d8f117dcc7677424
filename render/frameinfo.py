"""The pixel description of one stored instance: everything the per-frame path needs.

Built once at ingest from the Dataset (``FrameInfo.from_dataset``), stored in the index as JSON, and
rebuilt from there (``FrameInfo.from_json``), so rendering a frame never touches a pydicom Dataset.
Must not do I/O, decode pixels or know about HTTP.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pydicom.dataset import Dataset

from render.errors import InvalidPixelModule
from render.lutinfo import extras_from_dataset


@dataclass(frozen=True, slots=True)
class Window:
    """One VOI window (PS3.3 C.11.2.1.2): centre, width and an optional explanation."""

    center: float
    width: float
    explanation: str = ""


@dataclass(frozen=True, slots=True)
class FrameInfo:
    """Image Pixel module (PS3.3 C.7.6.3) plus modality and VOI attributes of one instance."""

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    high_bit: int
    pixel_representation: int
    photometric_interpretation: str
    planar_configuration: int
    transfer_syntax_uid: str
    number_of_frames: int
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    windows: tuple[Window, ...] = ()
    voi_lut_function: str = "LINEAR"
    # Larger, rarer parts of the pixel pipeline (palette, modality/VOI LUT sequences, per-frame
    # functional groups) are kept as plain JSON-able data so this record stays small and frozen.
    extras: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)

    @property
    def frame_length(self) -> int:
        """Bytes of one native (uncompressed) frame; for BitsAllocated 1 rounded up to whole bytes."""
        if self.photometric_interpretation == "YBR_FULL_422" and self.samples_per_pixel == 3:
            # Native YBR_FULL_422 stores two chroma samples per pixel pair (PS3.3 C.7.6.3.1.2).
            return self.rows * ((self.columns + 1) // 2) * 4 * (self.bits_allocated // 8)
        bits = self.rows * self.columns * self.samples_per_pixel * self.bits_allocated
        return (bits + 7) // 8

    @property
    def is_color(self) -> bool:
        return self.samples_per_pixel > 1 or self.photometric_interpretation == "PALETTE COLOR"

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> FrameInfo:
        d = json.loads(text)
        d["windows"] = tuple(Window(**w) for w in d.get("windows", ()))
        return cls(**d)

    @classmethod
    def from_dataset(cls, ds: Dataset, transfer_syntax_uid: str) -> FrameInfo:
        """Build from a Dataset that has pixel data.

        Raises InvalidPixelModule naming the tag when a required Image Pixel attribute is missing or
        has a value the standard does not allow (PS3.3 C.7.6.3.1).
        """
        rows = _required_int(ds, 0x00280010, "Rows", minimum=1)
        columns = _required_int(ds, 0x00280011, "Columns", minimum=1)
        samples = _required_int(ds, 0x00280002, "SamplesPerPixel", minimum=1, default=1)
        if samples not in (1, 3, 4):
            raise InvalidPixelModule(f"(0028,0002) 'SamplesPerPixel' value {samples} is invalid: must be 1 or 3")
        bits_allocated = _required_int(ds, 0x00280100, "BitsAllocated", minimum=1)
        if bits_allocated != 1 and bits_allocated % 8:
            raise InvalidPixelModule(
                f"(0028,0100) 'BitsAllocated' value {bits_allocated} is invalid: must be 1 or a multiple of 8"
            )
        if bits_allocated > 64:
            raise InvalidPixelModule(f"(0028,0100) 'BitsAllocated' value {bits_allocated} is invalid: must be <= 64")
        bits_stored = _required_int(ds, 0x00280101, "BitsStored", minimum=1, default=bits_allocated)
        if bits_stored > bits_allocated:
            raise InvalidPixelModule(
                f"(0028,0101) 'BitsStored' value {bits_stored} is invalid: must be <= BitsAllocated {bits_allocated}"
            )
        high_bit = _required_int(ds, 0x00280102, "HighBit", minimum=0, default=bits_stored - 1)
        pixel_representation = _required_int(ds, 0x00280103, "PixelRepresentation", minimum=0, default=0)
        if pixel_representation not in (0, 1):
            raise InvalidPixelModule(
                f"(0028,0103) 'PixelRepresentation' value {pixel_representation} is invalid: must be 0 or 1"
            )
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2" if samples == 1 else "RGB")).strip()
        planar = int(ds.get("PlanarConfiguration", 0) or 0) if samples > 1 else 0
        frames = _required_int(ds, 0x00280008, "NumberOfFrames", minimum=1, default=1)
        slope = _float(ds.get("RescaleSlope", 1.0), 1.0)
        intercept = _float(ds.get("RescaleIntercept", 0.0), 0.0)
        windows = _windows(ds)
        voi_function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
        # Enhanced multi-frame objects keep rescale and window in the Shared Functional Groups
        # (PS3.3 C.7.6.16); fold them into the top-level fields when the top level has none.
        shared = _first_item(ds, "SharedFunctionalGroupsSequence")
        if shared is not None:
            pvt = _first_item(shared, "PixelValueTransformationSequence")
            if pvt is not None and "RescaleSlope" not in ds:
                slope = _float(pvt.get("RescaleSlope", 1.0), 1.0)
                intercept = _float(pvt.get("RescaleIntercept", 0.0), 0.0)
            fvoi = _first_item(shared, "FrameVOILUTSequence")
            if fvoi is not None and not windows:
                windows = _windows(fvoi)
                voi_function = str(fvoi.get("VOILUTFunction", voi_function) or voi_function).strip().upper()
        return cls(
            rows=rows,
            columns=columns,
            samples_per_pixel=samples,
            bits_allocated=bits_allocated,
            bits_stored=bits_stored,
            high_bit=high_bit,
            pixel_representation=pixel_representation,
            photometric_interpretation=photometric,
            planar_configuration=planar,
            transfer_syntax_uid=transfer_syntax_uid,
            number_of_frames=frames,
            rescale_slope=slope or 1.0,
            rescale_intercept=intercept,
            windows=windows,
            voi_lut_function=voi_function,
            extras=extras_from_dataset(ds, transfer_syntax_uid, photometric, pixel_representation, bits_allocated),
        )


def _first_item(ds: Dataset, keyword: str) -> Dataset | None:
    seq = ds.get(keyword)
    if seq is None or not getattr(seq, "value", seq):
        return None
    try:
        return seq[0]
    except (IndexError, TypeError):
        return None


def _required_int(ds: Dataset, tag: int, keyword: str, minimum: int, default: int | None = None) -> int:
    elem = ds.get(tag)
    value = None if elem is None else elem.value
    if value is None or value == "":
        if default is None:
            raise InvalidPixelModule(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) '{keyword}' is missing")
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidPixelModule(
            f"({tag >> 16:04X},{tag & 0xFFFF:04X}) '{keyword}' value {value!r} is invalid: not an integer"
        ) from None
    if number < minimum:
        raise InvalidPixelModule(
            f"({tag >> 16:04X},{tag & 0xFFFF:04X}) '{keyword}' value {number} is invalid: must be >= {minimum}"
        )
    return number


def _float(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _multi(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return list(value)
    return [value]


def _windows(ds: Dataset) -> tuple[Window, ...]:
    centers = _multi(ds.get("WindowCenter"))
    widths = _multi(ds.get("WindowWidth"))
    explanations = _multi(ds.get("WindowCenterWidthExplanation"))
    out = []
    for i, (c, w) in enumerate(zip(centers, widths)):
        try:
            cf, wf = float(c), float(w)
        except (TypeError, ValueError):
            continue
        expl = str(explanations[i]) if i < len(explanations) else ""
        out.append(Window(cf, wf, expl))
    return tuple(out)
