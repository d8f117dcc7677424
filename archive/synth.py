"""Synthetic CT and MR series for demos, benchmarks and tests (backs the ``tessera synth`` CLI).

Builds complete single-frame DICOM Part 10 instances (CT Image Storage or MR Image Storage) from a
seeded phantom, in any transfer syntax of :data:`SYNTAX_CHOICES`, with UIDs derived from the arguments
so the same call always gives the same bytes. Lossless frames are checked to decode back exactly
(imagecodecs) before they are yielded; lossy ones carry the Lossy Image Compression attributes.

It must not touch the archive's storage or index, read the environment, or use the clock or any
unseeded randomness: everything it writes is a function of its arguments.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import imagecodecs
import numpy as np
import openjpeg
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels.encoders import RLELosslessEncoder
from pydicom.uid import (
    PYDICOM_ROOT_UID,
    UID,
    CTImageStorage,
    MRImageStorage,
    generate_uid,
)

Modality = Literal["CT", "MR"]

#: Short name -> Transfer Syntax UID (PS3.5 Section 10 and Annex A.4).
SYNTAX_CHOICES: dict[str, str] = {
    "explicit": "1.2.840.10008.1.2.1",
    "implicit": "1.2.840.10008.1.2",
    "bigendian": "1.2.840.10008.1.2.2",
    "deflated": "1.2.840.10008.1.2.1.99",
    "rle": "1.2.840.10008.1.2.5",
    "jpeg-lossless": "1.2.840.10008.1.2.4.70",
    "jpeg-lossless-57": "1.2.840.10008.1.2.4.57",
    "jpeg-extended": "1.2.840.10008.1.2.4.51",
    "jpeg-baseline": "1.2.840.10008.1.2.4.50",
    "jpegls": "1.2.840.10008.1.2.4.80",
    "jpegls-near": "1.2.840.10008.1.2.4.81",
    "j2k": "1.2.840.10008.1.2.4.90",
    "j2k-lossy": "1.2.840.10008.1.2.4.91",
    "htj2k": "1.2.840.10008.1.2.4.201",
    "htj2k-rpcl": "1.2.840.10008.1.2.4.202",
    "htj2k-lossy": "1.2.840.10008.1.2.4.203",
}

NATIVE_SYNTAXES = frozenset({"explicit", "implicit", "bigendian", "deflated"})

# A fixed root: pydicom's own, which it offers for generated UIDs; the suffix is a hash of the
# arguments (generate_uid with entropy sources), so UIDs are reproducible but never collide with
# another seed's.
UID_ROOT = PYDICOM_ROOT_UID
IMPLEMENTATION_CLASS_UID = generate_uid(prefix=UID_ROOT, entropy_srcs=["tessera", "synth", "implementation"])
IMPLEMENTATION_VERSION = "TESSERA_SYNTH_1"

MIN_SIZE = 32  # OpenJPEG's default 6 DWT resolutions need both dimensions >= 2**5
CT_INTERCEPT = -1024.0
SLICE_MM = 1.0
FOV_MM = 350.0
CT_NOISE_HU = 15.0
MR_NOISE = 12.0
J2K_LOSSY_RATE = 7.5  # OpenJPEG counts the rate against 12-bit precision: ~10:1 against 16-bit storage
HTJ2K_LOSSY_STEP = 0.00027  # OpenJPH quantisation step giving ~10:1 on the CT phantom


Encoder = Callable[[np.ndarray], bytes | bytearray]


@dataclass(frozen=True, slots=True)
class _Codec:
    encode: Encoder
    decode: Callable[[bytes], np.ndarray] | None  # checks lossless frames; None for lossy and RLE
    lossy_method: str = ""  # (0028,2114) value; empty for lossless


def _rle(arr: np.ndarray) -> bytes:
    # DICOM RLE (PS3.5 Annex G) is not PackBits: use pydicom's encoder, with the fast pylibjpeg-rle
    # plugin when it is installed.
    plugin = "pylibjpeg" if "pylibjpeg" in RLELosslessEncoder.available_plugins else "pydicom"
    return RLELosslessEncoder.encode(
        arr,
        encoding_plugin=plugin,
        rows=arr.shape[0],
        columns=arr.shape[1],
        samples_per_pixel=1,
        number_of_frames=1,
        bits_allocated=arr.itemsize * 8,
        bits_stored=12,
        pixel_representation=0,
        photometric_interpretation="MONOCHROME2",
    )


_CODECS: dict[str, _Codec] = {
    # No self-check for RLE: imagecodecs has no DICOM RLE decoder (the tests decode it with pydicom).
    "rle": _Codec(_rle, None),
    # libjpeg-turbo 3 writes SOF3 at any precision; predictor 1 is the SV1 of .4.70, .4.57 allows 1-7.
    "jpeg-lossless": _Codec(
        lambda a: imagecodecs.jpeg8_encode(a, lossless=True, predictor=1, bitspersample=12),
        imagecodecs.jpeg8_decode,
    ),
    "jpeg-lossless-57": _Codec(
        lambda a: imagecodecs.jpeg8_encode(a, lossless=True, predictor=6, bitspersample=12),
        imagecodecs.jpeg8_decode,
    ),
    "jpeg-extended": _Codec(
        lambda a: imagecodecs.jpeg8_encode(a, level=90, bitspersample=12), None, "ISO_10918_1"
    ),
    "jpeg-baseline": _Codec(lambda a: imagecodecs.jpeg8_encode(a, level=90), None, "ISO_10918_1"),
    "jpegls": _Codec(imagecodecs.jpegls_encode, imagecodecs.jpegls_decode),
    "jpegls-near": _Codec(lambda a: imagecodecs.jpegls_encode(a, level=2), None, "ISO_14495_1"),
    "j2k": _Codec(
        lambda a: imagecodecs.jpeg2k_encode(
            a, level=0, codecformat=imagecodecs.JPEG2K.CODEC.J2K, reversible=True, bitspersample=12
        ),
        imagecodecs.jpeg2k_decode,
    ),
    # imagecodecs' lossy JPEG 2000 only targets a PSNR; OpenJPEG (pylibjpeg-openjpeg) targets a rate.
    "j2k-lossy": _Codec(
        lambda a: openjpeg.encode(a, bits_stored=12, compression_ratios=[J2K_LOSSY_RATE]), None, "ISO_15444_1"
    ),
    # OpenJPH's default progression is RPCL; .4.202 also wants TLM markers and resolution tile-parts.
    "htj2k": _Codec(lambda a: imagecodecs.htj2k_encode(a, reversible=True), imagecodecs.htj2k_decode),
    "htj2k-rpcl": _Codec(
        lambda a: imagecodecs.htj2k_encode(
            a, reversible=True, tlm=True, tilepart=imagecodecs.HTJ2K.TILEPART.RESOLUTIONS
        ),
        imagecodecs.htj2k_decode,
    ),
    "htj2k-lossy": _Codec(
        lambda a: imagecodecs.htj2k_encode(a, HTJ2K_LOSSY_STEP, reversible=False), None, "ISO_15444_15"
    ),
}


@functools.lru_cache(maxsize=8)
def _grid(rows: int, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1], computed once per series geometry."""
    y = (np.arange(rows, dtype=np.float32) + 0.5) / rows * 2 - 1
    x = (np.arange(columns, dtype=np.float32) + 0.5) / columns * 2 - 1
    return y[:, None], x[None, :]


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 < 1


def _ct_slice(y: np.ndarray, x: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
    """Stored CT values: air, body with a bone ring, lungs and spine; shapes drift with t."""
    hu = np.full(np.broadcast_shapes(y.shape, x.shape), -1000.0, np.float32)
    body_a, body_b = 0.80 + 0.03 * math.sin(t), 0.60
    r = (x / body_a) ** 2 + (y / body_b) ** 2
    ring = r < 1
    hu[ring] = (850 + 150 * np.sin(4 * np.arctan2(y, x) + t))[ring]  # bone 700-1000 HU
    inside = r < 0.85
    # Smooth soft-tissue structure (organs, fat) so the image is not piecewise flat.
    hu[inside] = (40 + 25 * np.sin(3 * x + t) * np.cos(2 * y - 0.5 * t))[inside]
    lung = 0.8 + 0.2 * math.sin(0.7 * t)
    for cx in (-0.35, 0.35):
        hu[_ellipse(x, y, cx, -0.05, 0.22 * lung, 0.33 * lung)] = -800
    hu[_ellipse(x, y, 0.0, 0.42, 0.08, 0.08)] = 700  # vertebra
    hu += rng.standard_normal(hu.shape, dtype=np.float32) * CT_NOISE_HU
    # Outside the reconstruction circle scanners write padding (-1024 HU, stored 0); it is also what
    # brings lossless J2K to the ~3:1 of clinical CT.
    hu[x * x + y * y > 0.98**2] = CT_INTERCEPT
    return np.clip(np.rint(hu - CT_INTERCEPT), 0, 4095).astype(np.uint16)


def _mr_slice(y: np.ndarray, x: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
    """Stored T1-like MR values: scalp, skull, CSF, grey and white matter, ventricles; Rician noise."""
    s = np.zeros(np.broadcast_shapes(y.shape, x.shape), np.float32)
    k = 1.0 - 0.1 * math.sin(0.5 * t)  # the head narrows from slice to slice
    s[_ellipse(x, y, 0, 0, 0.75 * k, 0.90 * k)] = 900  # scalp fat
    s[_ellipse(x, y, 0, 0, 0.70 * k, 0.85 * k)] = 60  # skull
    s[_ellipse(x, y, 0, 0, 0.66 * k, 0.81 * k)] = 180  # CSF
    grey = _ellipse(x, y, 0, 0, 0.63 * k, 0.78 * k)
    s[grey] = (550 + 40 * np.sin(5 * x + t) * np.cos(4 * y))[grey]
    s[_ellipse(x, y, 0, 0, 0.45 * k, 0.58 * k)] = 780
    v = 0.6 + 0.4 * abs(math.sin(0.8 * t))
    for cx in (-0.1, 0.1):
        s[_ellipse(x, y, cx, -0.05, 0.06 * v, 0.2 * v)] = 180
    n1 = rng.standard_normal(s.shape, dtype=np.float32) * MR_NOISE
    n2 = rng.standard_normal(s.shape, dtype=np.float32) * MR_NOISE
    mag = np.sqrt((s + n1) ** 2 + n2**2)  # magnitude of complex noise: Rician, Rayleigh in air
    return np.clip(np.rint(mag), 0, 4095).astype(np.uint16)


def _to_8bit(stored: np.ndarray) -> np.ndarray:
    # The 8-bit variant (baseline JPEG only): drop the 4 low bits; CT keeps HU via slope 16.
    return (stored >> 4).astype(np.uint8)


def pixel_array_for(
    seed: int, modality: Modality, rows: int, columns: int, index: int, *, syntax: str = "explicit"
) -> np.ndarray:
    """The stored pixels of slice ``index`` (0-based) before any encoding, as ``synth_series`` makes them.

    ``uint16`` with 12 significant bits, or ``uint8`` for ``syntax="jpeg-baseline"``. Each slice has
    its own noise generator seeded by (seed, index), so any slice can be rebuilt alone.

    Raises:
        ValueError: a bad modality, size or syntax.
    """
    _validate(modality, rows, columns, 1, syntax)
    y, x = _grid(rows, columns)
    rng = np.random.default_rng([seed, index])
    t = index * 0.05
    stored = _ct_slice(y, x, t, rng) if modality == "CT" else _mr_slice(y, x, t, rng)
    return _to_8bit(stored) if syntax == "jpeg-baseline" else stored


def _validate(modality: str, rows: int, columns: int, slices: int, syntax: str) -> None:
    if modality not in ("CT", "MR"):
        raise ValueError(f"modality: {modality!r} is invalid: must be 'CT' or 'MR'")
    for name, value in (("rows", rows), ("columns", columns)):
        if not MIN_SIZE <= value <= 4096:
            raise ValueError(f"{name}: {value} is invalid: must be {MIN_SIZE} to 4096")
    if slices < 1:
        raise ValueError(f"slices: {slices} is invalid: must be >= 1")
    if syntax not in SYNTAX_CHOICES:
        raise ValueError(f"syntax: {syntax!r} is invalid: must be one of {', '.join(SYNTAX_CHOICES)}")


def _uid(*parts: object) -> UID:
    return generate_uid(prefix=UID_ROOT, entropy_srcs=["tessera-synth", *map(str, parts)])


def synth_series(
    *,
    modality: Modality = "CT",
    rows: int = 512,
    columns: int = 512,
    slices: int = 300,
    syntax: str = "explicit",
    seed: int = 0,
    patient_name: str = "TESSERA^SYNTH",
    patient_id: str | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> Iterator[pydicom.Dataset]:
    """Yield one axial series, slice by slice, as Part 10 datasets ready for ``dcmwrite``.

    Attributes follow the CT Image (PS3.3 A.3) and MR Image (A.4) IODs; windows per C.11.2.

    Raises:
        ValueError: a bad modality, size, slice count or syntax.
        RuntimeError: a lossless frame did not decode back to the pixels encoded (a codec bug).
    """
    _validate(modality, rows, columns, slices, syntax)
    codec = _CODECS.get(syntax)
    lossy = bool(codec and codec.lossy_method)
    eight_bit = syntax == "jpeg-baseline"
    # Lossy compression makes new instances (PS3.3 C.7.6.1.1.5), so lossy syntaxes get their own
    # series and SOP Instance UIDs; lossless ones share them (same pixels, same instance).
    variant = syntax if lossy else "original"
    study = UID(study_uid) if study_uid else _uid(seed, "study")
    series = UID(series_uid) if series_uid else _uid(seed, "series", modality, rows, columns, variant)
    frame_of_reference = _uid(seed, "frame-of-reference", modality)
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    spacing = FOV_MM / max(rows, columns)
    study_date = f"{2024 + seed % 5}{1 + seed % 12:02d}{1 + seed % 28:02d}"

    for index in range(slices):
        stored = pixel_array_for(seed, modality, rows, columns, index, syntax=syntax)
        ds = pydicom.Dataset()
        sop_instance = _uid(series, index, variant)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPInstanceUID = sop_instance
        ds.file_meta.TransferSyntaxUID = UID(SYNTAX_CHOICES[syntax])
        ds.file_meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
        ds.file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION

        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["DERIVED" if lossy else "ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_instance
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
        ds.StudyTime = ds.SeriesTime = "083000"
        ds.ContentTime = "083000"
        ds.AccessionNumber = f"SYN{seed:07d}"
        ds.Modality = modality
        ds.Manufacturer = "Tessera"
        ds.ManufacturerModelName = "synth"
        ds.StationName = "SYNTH"
        ds.InstitutionName = "Tessera synthetic data"
        ds.ReferringPhysicianName = "SYNTH^REFERRER"
        ds.StudyDescription = f"Synthetic {'chest CT' if modality == 'CT' else 'head MR'}"
        ds.SeriesDescription = f"{'Axial 1mm' if modality == 'CT' else 'T1 axial'} {syntax}"
        ds.PatientName = patient_name
        ds.PatientID = patient_id if patient_id is not None else f"SYNTH{seed:06d}"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.PatientAge = f"{54 + seed % 30:03d}Y"
        ds.BodyPartExamined = "CHEST" if modality == "CT" else "HEAD"
        ds.SliceThickness = SLICE_MM
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.StudyID = f"{seed % 10**8}"
        ds.SeriesNumber = 2 if modality == "CT" else 3
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = index + 1
        # Head first supine, slices stepping towards the feet: z decreases with the instance number.
        z = -SLICE_MM * index
        ds.ImagePositionPatient = [-FOV_MM / 2 + spacing / 2, -FOV_MM / 2 + spacing / 2, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.FrameOfReferenceUID = frame_of_reference
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = z
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, columns
        ds.PixelSpacing = [spacing, spacing]
        ds.BitsAllocated = 8 if eight_bit else 16
        ds.BitsStored = 8 if eight_bit else 12
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 0
        scale = 16 if eight_bit else 1
        if modality == "CT":
            ds.KVP = 120
            ds.ConvolutionKernel = "STANDARD"
            ds.RescaleIntercept = CT_INTERCEPT
            ds.RescaleSlope = scale  # 16 in the 8-bit variant, so values stay in HU
            ds.RescaleType = "HU"
            # Windows are in rescaled units (HU), so the 8-bit variant keeps them (PS3.3 C.11.2.1.2).
            ds.WindowCenter = [40, 600]
            ds.WindowWidth = [400, 1600]
            ds.WindowCenterWidthExplanation = ["SOFT_TISSUE", "BONE"]
        else:
            ds.ScanningSequence = "SE"
            ds.SequenceVariant = "NONE"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "2D"
            ds.RepetitionTime = 500
            ds.EchoTime = 15
            ds.EchoTrainLength = 1
            ds.MagneticFieldStrength = 1.5
            # MR has no Modality LUT: windows are in stored values, hence the 8-bit scale.
            ds.WindowCenter = [500 / scale, 400 / scale]
            ds.WindowWidth = [1000 / scale, 800 / scale]
            ds.WindowCenterWidthExplanation = ["BRAIN", "CONTRAST"]

        if codec is None:
            # Big endian OW holds big-endian words; pydicom writes the bytes as given.
            order = ">u2" if syntax == "bigendian" else "<u2"
            ds.PixelData = stored.astype(order, copy=False).tobytes()
            ds["PixelData"].VR = "OW"
        else:
            frame = bytes(codec.encode(stored))
            # Check the first slice of each series only: a full decode per slice would double the
            # J2K write time, and the tests decode every syntax anyway.
            if index == 0 and codec.decode is not None and not np.array_equal(codec.decode(frame), stored):
                raise RuntimeError(f"syntax {syntax!r}: lossless frame does not decode to the input")
            if lossy:
                ds.LossyImageCompression = "01"
                ds.LossyImageCompressionRatio = f"{stored.nbytes / len(frame):.2f}"[:16]
                ds.LossyImageCompressionMethod = codec.lossy_method
            ds.PixelData = encapsulate([frame], has_bot=True)
            ds["PixelData"].VR = "OB"
            ds["PixelData"].is_undefined_length = True
        yield ds


def write_series(
    out_dir: Path,
    *,
    modality: Modality = "CT",
    rows: int = 512,
    columns: int = 512,
    slices: int = 300,
    syntax: str = "explicit",
    seed: int = 0,
    patient_name: str = "TESSERA^SYNTH",
    patient_id: str | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> list[Path]:
    """Write ``synth_series(...)`` as Part 10 files ``{instance_number:04d}.dcm`` in ``out_dir``.

    Creates ``out_dir`` (and parents); overwrites files of the same name. Returns the paths in
    instance order. Raises what ``synth_series`` raises, and ``OSError`` from the file system.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for ds in synth_series(
        modality=modality,
        rows=rows,
        columns=columns,
        slices=slices,
        syntax=syntax,
        seed=seed,
        patient_name=patient_name,
        patient_id=patient_id,
        study_uid=study_uid,
        series_uid=series_uid,
    ):
        path = out_dir / f"{ds.InstanceNumber:04d}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths
