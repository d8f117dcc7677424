"""Exceptions of the cache package (one base class, so ``web/errors.py`` can map them by hierarchy).

Backend failures (Redis down, slow, flushed) are never raised: they are misses and dropped writes.
What is raised here is a caller's mistake (a malformed key part, an impossible setting), i.e. a bug.
"""

from __future__ import annotations


class CacheError(Exception):
    """Base of every exception the cache package raises."""


class CacheKeyError(CacheError):
    """A key part is malformed (e.g. not an archive storage key)."""


class CacheConfigError(CacheError):
    """A constructor argument cannot be used (negative byte bound, bad Redis URL, ...)."""
