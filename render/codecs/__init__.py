"""Codec registry plus one small module per backend (native, imagecodecs, pylibjpeg, simplejpeg).

Importing this package never fails because an optional codec is missing; ``available_backends()``
says which are live. Must not mask, rescale or colour-convert pixels (kernels do that).
"""

from render.codecs.base import ALL_SYNTAXES, LOSSLESS_SYNTAXES, Backend, DecodedFrame
from render.codecs.registry import (
    BACKENDS,
    DEFAULT_PREFERENCES,
    available_backends,
    candidates,
    decode,
    select_backend,
)

__all__ = [
    "ALL_SYNTAXES",
    "BACKENDS",
    "DEFAULT_PREFERENCES",
    "LOSSLESS_SYNTAXES",
    "Backend",
    "DecodedFrame",
    "available_backends",
    "candidates",
    "decode",
    "select_backend",
]
