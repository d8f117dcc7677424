"""Every cache key Tessera uses, built here and nowhere else.

Layout: ``tessera:<schema>:<blob_key>:<kind>:...`` for per-instance entries, ``tessera:<schema>:<kind>:...``
for answers that span instances. Keys are derived from *content identity*, never from names:

- ``blob_key`` is the random 128-bit storage key minted for each stored version of an instance, so a
  replaced instance (new bytes under the same SOP Instance UID) gets new keys and the old entries are
  simply never read again (they age out by TTL or LRU). Nothing has to be invalidated for correctness.
  It is kept in clear (32 hex characters) right after the schema so ``blob_prefix`` can still free one
  instance's entries on DELETE, which is an optimisation, not a correctness requirement.
- Series/study metadata answers hash the *sorted blob keys* of the instances they cover: any store,
  replace or delete changes that set, hence the key. No counter has to be shared between workers.
- QIDO-RS searches can match anything in the index, so their key carries an index *generation* that the
  index bumps in the same transaction as every store and delete (shared through SQLite, so all workers
  see it), plus the canonical query string.

Long or free-form parts are hashed with blake2b-128 to keep keys short. Bump ``SCHEMA_VERSION`` when the
byte layout of any cached value changes (or when rendering output changes for the same parameters): every
old entry becomes unreachable at once. Must not do I/O or know which backend stores the keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from hashlib import blake2b

from cache.errors import CacheKeyError

NAMESPACE = "tessera"
SCHEMA_VERSION = 1
ROOT = f"{NAMESPACE}:v{SCHEMA_VERSION}:"

_BLOB_KEY_RE = re.compile(r"^[0-9a-f]{32}$")


def digest(*parts: str | bytes) -> str:
    """blake2b-128 of the parts, hex; parts are length-prefixed so ("ab", "c") != ("a", "bc")."""
    h = blake2b(digest_size=16)
    for part in parts:
        raw = part.encode() if isinstance(part, str) else part
        h.update(len(raw).to_bytes(8, "little"))
        h.update(raw)
    return h.hexdigest()


def _blob(blob_key: str) -> str:
    # Checked because the blob key is spliced into the key in clear and used as a SCAN prefix:
    # anything but 32 lowercase hex digits could collide with another kind or act as a glob.
    if not _BLOB_KEY_RE.match(blob_key):
        raise CacheKeyError(f"blob_key {blob_key!r} is invalid: must be 32 lowercase hex digits")
    return blob_key


def _frame(frame: int) -> int:
    if frame < 1:
        raise CacheKeyError(f"frame {frame} is invalid: frame numbers start at 1")
    return frame


def blob_prefix(blob_key: str) -> str:
    """Prefix of every entry derived from one stored instance version (for ``delete_prefix`` on DELETE)."""
    return f"{ROOT}{_blob(blob_key)}:"


def rendered(blob_key: str, frame: int, params: str, media_type: str) -> str:
    """A rendered frame (PS3.18 8.3.5): ``params`` must be the canonical render-parameter string.

    The caller canonicalises (e.g. the frozen parameter object's ``canonical()``, with defaults filled
    in) so that equivalent requests share one entry. Raises CacheKeyError.
    """
    return f"{blob_prefix(blob_key)}r:{_frame(frame)}:{digest(params, media_type)}"


def decoded(blob_key: str, frame: int, level: int = 0) -> str:
    """A decoded frame's native pixels at resolution ``level`` (0 = full, 1 = half, ...)."""
    if level < 0:
        raise CacheKeyError(f"level {level} is invalid: must be >= 0")
    return f"{blob_prefix(blob_key)}d:{_frame(frame)}:{level}"


def metadata(blob_keys: Iterable[str], variant: str = "") -> str:
    """Series/study metadata (or any answer that is a function of exactly these instances).

    ``variant`` carries whatever else changes the bytes (e.g. the public base URL in BulkDataURIs, the
    media type). Order-independent: the keys are sorted before hashing. Raises CacheKeyError.
    """
    blobs = sorted(_blob(k) for k in blob_keys)
    return f"{ROOT}m:{digest(variant, *blobs)}"


def query(generation: int, canonical_query: str, variant: str = "") -> str:
    """A QIDO-RS answer, valid for one index generation (bumped by every store and delete)."""
    return f"{ROOT}q:{generation}:{digest(canonical_query, variant)}"


def lease(key: str) -> str:
    """The cross-process single-flight lease guarding the computation of ``key``."""
    return f"{ROOT}lease:{digest(key)}"
