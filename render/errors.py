"""Exceptions raised by the render package; web/errors.py maps them to HTTP statuses."""


class RenderError(Exception):
    """Base class of every error the render package raises on purpose."""


class InvalidPixelModule(RenderError):
    """The Image Pixel module is missing a required attribute or has a value the standard forbids."""


class UnsupportedTransferSyntax(RenderError):
    """No available codec decodes (or encodes) this transfer syntax."""


class DecodeError(RenderError):
    """A codec failed on the stored bytes: corrupt or truncated pixel data."""


class InvalidRenderParameter(RenderError):
    """A rendered-resource query parameter (PS3.18 8.3.5.1) has a value the standard does not allow.

    The message names the parameter, the bad value and what is allowed, e.g.
    ``"window: width must be >= 1 for linear, got 0"``.
    """
