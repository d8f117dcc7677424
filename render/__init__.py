"""Pure pixel pipeline: frame description, codecs, numba kernels and encoders. No I/O, no HTTP."""
