"""Rendered-resource parameters (PS3.18 8.3.5.1) as frozen value objects, parsed from raw query values.

Responsible for turning the raw strings of ``window``, ``viewport`` and ``quality`` into validated
objects. Must not know about HTTP (the web layer hands over plain strings) nor about any image: checks
that need the image size (a viewport region outside the frame) happen in ``render.pipeline``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from render.errors import InvalidRenderParameter

#: VOI LUT functions (PS3.3 C.11.2.1.3) by their PS3.18 query spelling.
WINDOW_FUNCTIONS: dict[str, str] = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}

MEDIA_JPEG = "image/jpeg"
MEDIA_PNG = "image/png"
MEDIA_TYPES = (MEDIA_JPEG, MEDIA_PNG)

DEFAULT_QUALITY = 90


@dataclass(frozen=True, slots=True)
class Window:
    """A VOI window (PS3.3 C.11.2.1.2): centre, width and function (LINEAR, LINEAR_EXACT or SIGMOID)."""

    center: float
    width: float
    function: str = "LINEAR"

    def __post_init__(self) -> None:
        _check_window(self.center, self.width, self.function)


@dataclass(frozen=True, slots=True)
class Viewport:
    """PS3.18 8.3.5.1.3 viewport: output box ``vw`` x ``vh`` and an optional source region.

    ``sx``/``sy`` are the top-left source pixel, ``sw``/``sh`` the region size; ``None`` means "the rest
    of the image". A negative ``sw`` (``sh``) takes the region ``sx .. sx+|sw|`` (``sy .. sy+|sh|``) and
    flips it horizontally (vertically).
    """

    vw: int
    vh: int
    sx: int = 0
    sy: int = 0
    sw: int | None = None
    sh: int | None = None


@dataclass(frozen=True, slots=True)
class RenderParams:
    """Everything the pipeline needs from the request: window (None = the file's default), viewport
    (None = native size), JPEG quality 1..100, the output media type, and whether a PNG is deflated
    (``compress``; False: stored deflate blocks, see ``parse_compression``)."""

    window: Window | None = None
    viewport: Viewport | None = None
    quality: int = DEFAULT_QUALITY
    media_type: str = MEDIA_JPEG
    compress: bool = True


def _check_window(center: float, width: float, function: str) -> None:
    if function not in WINDOW_FUNCTIONS.values():
        raise InvalidRenderParameter(
            f"window: function must be one of linear, linear-exact, sigmoid, got {function.lower()!r}"
        )
    if not (math.isfinite(center) and math.isfinite(width)):
        raise InvalidRenderParameter(f"window: center and width must be finite numbers, got {center},{width}")
    # PS3.3 C.11.2.1.2.1: LINEAR needs width >= 1; C.11.2.1.3: LINEAR_EXACT and SIGMOID need width > 0.
    if function == "LINEAR" and width < 1:
        raise InvalidRenderParameter(f"window: width must be >= 1 for linear, got {_num(width)}")
    if function != "LINEAR" and width <= 0:
        raise InvalidRenderParameter(
            f"window: width must be > 0 for {function.lower().replace('_', '-')}, got {_num(width)}"
        )


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _float(name: str, part: str, raw: str) -> float:
    try:
        value = float(part)
    except ValueError:
        raise InvalidRenderParameter(f"{name}: {part!r} in {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise InvalidRenderParameter(f"{name}: {part!r} in {raw!r} is not a finite number")
    return value


def _int(name: str, part: str, raw: str) -> int:
    try:
        return int(part.strip())
    except ValueError:
        raise InvalidRenderParameter(f"{name}: {part!r} in {raw!r} is not an integer") from None


def parse_window(raw: str | None) -> Window | None:
    """Parse ``window=center,width,function`` (PS3.18 8.3.5.1.4); all three parts are required.

    Function is linear, linear-exact or sigmoid, case-insensitive. Returns None for None/empty.
    Raises InvalidRenderParameter naming the bad part and what is allowed.
    """
    if raw is None or raw.strip() == "":
        return None
    parts = [p.strip() for p in raw.split(",")]
    if len(parts) != 3:
        raise InvalidRenderParameter(f"window: expected center,width,function (3 values), got {raw!r}")
    center = _float("window", parts[0], raw)
    width = _float("window", parts[1], raw)
    function = WINDOW_FUNCTIONS.get(parts[2].lower())
    if function is None:
        raise InvalidRenderParameter(
            f"window: function must be one of linear, linear-exact, sigmoid, got {parts[2]!r}"
        )
    return Window(center, width, function)


def parse_viewport(raw: str | None) -> Viewport | None:
    """Parse ``viewport=vw,vh`` or ``viewport=vw,vh,sx,sy,sw,sh`` (PS3.18 8.3.5.1.3).

    vw, vh must be >= 1; sx, sy >= 0; sw, sh non-zero (negative flips); sx..sh may be empty to take
    their defaults. Raises InvalidRenderParameter.
    """
    if raw is None or raw.strip() == "":
        return None
    parts = [p.strip() for p in raw.split(",")]
    if len(parts) not in (2, 6):
        raise InvalidRenderParameter(f"viewport: expected vw,vh or vw,vh,sx,sy,sw,sh, got {raw!r}")
    vw, vh = _int("viewport", parts[0], raw), _int("viewport", parts[1], raw)
    if vw < 1 or vh < 1:
        raise InvalidRenderParameter(f"viewport: vw and vh must be >= 1, got {vw},{vh}")
    if len(parts) == 2:
        return Viewport(vw, vh)
    sx = _int("viewport", parts[2], raw) if parts[2] else 0
    sy = _int("viewport", parts[3], raw) if parts[3] else 0
    sw = _int("viewport", parts[4], raw) if parts[4] else None
    sh = _int("viewport", parts[5], raw) if parts[5] else None
    if sx < 0 or sy < 0:
        raise InvalidRenderParameter(f"viewport: sx and sy must be >= 0, got {sx},{sy}")
    if sw == 0 or sh == 0:
        raise InvalidRenderParameter(f"viewport: sw and sh must be non-zero (negative flips), got {sw},{sh}")
    return Viewport(vw, vh, sx, sy, sw, sh)


def parse_quality(raw: str | None) -> int:
    """Parse ``quality`` (PS3.18 8.3.5.1.2): an integer 1..100; None/empty gives the default 90.

    Raises InvalidRenderParameter.
    """
    if raw is None or raw.strip() == "":
        return DEFAULT_QUALITY
    q = _int("quality", raw, raw)
    if not 1 <= q <= 100:
        raise InvalidRenderParameter(f"quality: must be an integer from 1 to 100, got {q}")
    return q


#: ``compression`` query values (Tessera's, not PS3.18's): whether a PNG's pixels are deflated.
COMPRESSIONS = ("default", "none")


def parse_compression(raw: str | None) -> bool:
    """``compression`` (PNG only; JPEG ignores it, as PNG ignores ``quality``): ``default`` deflates,
    ``none`` sends the pixels in stored deflate blocks with no row filter, a valid PNG of 2-5x
    the bytes that costs a tenth of the encoding and that a client can read without inflating, for
    viewers on a fast network. Returns whether to compress. Raises InvalidRenderParameter."""
    if raw is None or raw.strip() == "":
        return True
    value = raw.strip().lower()
    if value not in COMPRESSIONS:
        raise InvalidRenderParameter(
            f"compression: {raw[:40]!r} is not supported: must be one of {', '.join(COMPRESSIONS)} (PNG only)"
        )
    return value == "default"


def parse_render_params(
    window: str | None = None,
    viewport: str | None = None,
    quality: str | None = None,
    media_type: str = MEDIA_JPEG,
    compression: str | None = None,
) -> RenderParams:
    """Build RenderParams from the raw query values. Raises InvalidRenderParameter."""
    if media_type not in MEDIA_TYPES:
        raise InvalidRenderParameter(f"accept: media type must be one of {', '.join(MEDIA_TYPES)}, got {media_type!r}")
    return RenderParams(parse_window(window), parse_viewport(viewport), parse_quality(quality), media_type,
                        parse_compression(compression))
