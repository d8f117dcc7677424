"""Key derivation: content identity in, short namespaced keys out, every part significant."""

from __future__ import annotations

import os

import pytest

from cache import keys
from cache.errors import CacheKeyError

BLOB_A = os.urandom(16).hex()
BLOB_B = os.urandom(16).hex()
PARAMS = "quality=90&rows=256&window=40,400,LINEAR"


def test_namespace_and_schema_version_lead_every_key() -> None:
    for key in (
        keys.rendered(BLOB_A, 1, PARAMS, "image/jpeg"),
        keys.decoded(BLOB_A, 1),
        keys.metadata([BLOB_A]),
        keys.query(7, "StudyDate=2024"),
        keys.lease("anything"),
    ):
        assert key.startswith(f"tessera:v{keys.SCHEMA_VERSION}:")


@pytest.mark.parametrize(
    "other",
    [
        keys.rendered(BLOB_B, 1, PARAMS, "image/jpeg"),  # replaced instance: new blob key
        keys.rendered(BLOB_A, 2, PARAMS, "image/jpeg"),
        keys.rendered(BLOB_A, 1, PARAMS + "&annotation=x", "image/jpeg"),
        keys.rendered(BLOB_A, 1, PARAMS, "image/png"),
        keys.decoded(BLOB_A, 1),
    ],
    ids=["blob", "frame", "params", "media-type", "kind"],
)
def test_each_part_changes_the_rendered_key(other: str) -> None:
    assert keys.rendered(BLOB_A, 1, PARAMS, "image/jpeg") != other


def test_rendered_key_is_deterministic_and_short() -> None:
    long_params = PARAMS + "&" + "x" * 5000
    key = keys.rendered(BLOB_A, 12, long_params, "image/jpeg")
    assert key == keys.rendered(BLOB_A, 12, long_params, "image/jpeg")
    assert len(key) < 100


def test_decoded_key_distinguishes_levels_and_frames() -> None:
    assert len({keys.decoded(BLOB_A, 1, 0), keys.decoded(BLOB_A, 1, 1), keys.decoded(BLOB_A, 2, 0)}) == 3


def test_every_instance_key_sits_under_its_blob_prefix() -> None:
    prefix = keys.blob_prefix(BLOB_A)
    assert keys.rendered(BLOB_A, 3, PARAMS, "image/jpeg").startswith(prefix)
    assert keys.decoded(BLOB_A, 3, 1).startswith(prefix)
    assert not keys.rendered(BLOB_B, 3, PARAMS, "image/jpeg").startswith(prefix)


def test_metadata_key_follows_the_set_of_instances_not_their_order() -> None:
    third = os.urandom(16).hex()
    assert keys.metadata([BLOB_A, BLOB_B]) == keys.metadata([BLOB_B, BLOB_A])
    assert keys.metadata([BLOB_A, BLOB_B]) != keys.metadata([BLOB_A])  # one deleted
    assert keys.metadata([BLOB_A, BLOB_B]) != keys.metadata([BLOB_A, third])  # one replaced
    assert keys.metadata([BLOB_A], "http://a") != keys.metadata([BLOB_A], "http://b")


def test_query_key_changes_with_generation_and_query() -> None:
    base = keys.query(1, "PatientID=1")
    assert base != keys.query(2, "PatientID=1")
    assert base != keys.query(1, "PatientID=2")


def test_parts_are_length_prefixed() -> None:
    assert keys.digest("ab", "c") != keys.digest("a", "bc")


@pytest.mark.parametrize("bad", ["", "ABCDEF" * 6, "a" * 31, "a" * 31 + "*", "../" + "a" * 29])
def test_malformed_blob_key_is_refused(bad: str) -> None:
    with pytest.raises(CacheKeyError, match="blob_key"):
        keys.rendered(bad, 1, PARAMS, "image/jpeg")


def test_frame_numbers_start_at_one() -> None:
    with pytest.raises(CacheKeyError, match="frame 0 is invalid"):
        keys.decoded(BLOB_A, 0)
