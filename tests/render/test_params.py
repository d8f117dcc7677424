"""PS3.18 8.3.5.1 query parameter parsing: good values, and bad values with the exact message shape."""

import pytest

from render.errors import InvalidRenderParameter, RenderError
from render.params import (
    MEDIA_PNG,
    RenderParams,
    Viewport,
    Window,
    parse_quality,
    parse_render_params,
    parse_viewport,
    parse_window,
)

GOOD_WINDOWS = [
    ("40,400,linear", Window(40.0, 400.0, "LINEAR")),
    ("-600,1500,LINEAR", Window(-600.0, 1500.0, "LINEAR")),
    ("40.5,0.5,linear-exact", Window(40.5, 0.5, "LINEAR_EXACT")),
    ("40,1,Sigmoid", Window(40.0, 1.0, "SIGMOID")),
    (" 40 , 400 , linear ", Window(40.0, 400.0, "LINEAR")),
]


@pytest.mark.parametrize(("raw", "expected"), GOOD_WINDOWS, ids=[r for r, _ in GOOD_WINDOWS])
def test_parse_window_good(raw: str, expected: Window) -> None:
    assert parse_window(raw) == expected


BAD_WINDOWS = [
    ("40,0,linear", "window: width must be >= 1 for linear, got 0"),
    ("40,0.5,linear", "window: width must be >= 1 for linear, got 0.5"),
    ("40,0,linear-exact", "window: width must be > 0 for linear-exact, got 0"),
    ("40,-3,sigmoid", "window: width must be > 0 for sigmoid, got -3"),
    ("40,400,cubic", "window: function must be one of linear, linear-exact, sigmoid, got 'cubic'"),
    ("40,400", "window: expected center,width,function (3 values), got '40,400'"),
    ("abc,400,linear", "window: 'abc' in 'abc,400,linear' is not a number"),
    ("nan,400,linear", "window: 'nan' in 'nan,400,linear' is not a finite number"),
]


@pytest.mark.parametrize(("raw", "message"), BAD_WINDOWS, ids=[r for r, _ in BAD_WINDOWS])
def test_parse_window_bad(raw: str, message: str) -> None:
    with pytest.raises(InvalidRenderParameter) as exc:
        parse_window(raw)
    assert str(exc.value) == message
    assert isinstance(exc.value, RenderError)


def test_window_object_validates_too() -> None:
    with pytest.raises(InvalidRenderParameter, match="width must be >= 1 for linear, got 0"):
        Window(0.0, 0.0, "LINEAR")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("256,256", Viewport(256, 256)),
        ("256,128,10,20,100,50", Viewport(256, 128, 10, 20, 100, 50)),
        ("256,256,0,0,-512,512", Viewport(256, 256, 0, 0, -512, 512)),
        ("256,256,,,,", Viewport(256, 256, 0, 0, None, None)),
    ],
    ids=["size", "region", "flip", "empty-region"],
)
def test_parse_viewport_good(raw: str, expected: Viewport) -> None:
    assert parse_viewport(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("256", "viewport: expected vw,vh or vw,vh,sx,sy,sw,sh, got '256'"),
        ("0,256", "viewport: vw and vh must be >= 1, got 0,256"),
        ("256,x", "viewport: 'x' in '256,x' is not an integer"),
        ("256,256,-1,0,10,10", "viewport: sx and sy must be >= 0, got -1,0"),
        ("256,256,0,0,0,10", "viewport: sw and sh must be non-zero (negative flips), got 0,10"),
    ],
    ids=["one-value", "zero-size", "not-int", "negative-origin", "zero-region"],
)
def test_parse_viewport_bad(raw: str, message: str) -> None:
    with pytest.raises(InvalidRenderParameter) as exc:
        parse_viewport(raw)
    assert str(exc.value) == message


@pytest.mark.parametrize(("raw", "q"), [(None, 90), ("", 90), ("1", 1), ("100", 100), ("75", 75)])
def test_parse_quality_good(raw: str | None, q: int) -> None:
    assert parse_quality(raw) == q


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("0", "quality: must be an integer from 1 to 100, got 0"),
        ("101", "quality: must be an integer from 1 to 100, got 101"),
        ("high", "quality: 'high' in 'high' is not an integer"),
    ],
)
def test_parse_quality_bad(raw: str, message: str) -> None:
    with pytest.raises(InvalidRenderParameter) as exc:
        parse_quality(raw)
    assert str(exc.value) == message


def test_parse_render_params() -> None:
    p = parse_render_params("40,400,linear", "128,128", "80", MEDIA_PNG)
    assert p == RenderParams(Window(40.0, 400.0, "LINEAR"), Viewport(128, 128), 80, MEDIA_PNG)
    assert parse_render_params() == RenderParams()
    with pytest.raises(InvalidRenderParameter, match="accept: media type must be one of image/jpeg, image/png"):
        parse_render_params(media_type="image/gif")
