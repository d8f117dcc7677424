"""QIDO-RS matching table (PS3.4 C.2.2.2) against the index directly, and the same table over HTTP
(tests/web/test_qido_http.py): both must agree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from archive.errors import InvalidQuery
from archive.query import parse_query, row_to_json
from archive.service import Archive, ArchiveConfig
from tests.qido_cases import BAD_CASES, MATCH_CASES, ORDERED_CASES, all_instances, answer_key


def route(path: str) -> tuple[str, str | None, str | None]:
    parts = path.strip("/").split("/")
    study = parts[1] if len(parts) > 2 and parts[0] == "studies" else None
    series = parts[3] if len(parts) > 4 and parts[2] == "series" else None
    level = {"studies": "study", "series": "series", "instances": "instance"}[parts[-1]]
    return level, study, series


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    arch = Archive(Path(tmp_path_factory.mktemp("qido")), ArchiveConfig(durable=False))
    results = arch.store(all_instances())
    assert all(r.ok for r in results), [r.message for r in results if not r.ok]
    yield arch


def search(archive: Archive, path: str, params: list[tuple[str, str]]) -> list[dict]:
    level, study, series = route(path)
    query = parse_query(level, params, study=study, series=series)
    return [row_to_json(query, row, "http://x/dicomweb") for row in archive.index.search(query)]


@pytest.mark.parametrize("case", MATCH_CASES, ids=[c[0] for c in MATCH_CASES])
def test_matching(archive: Archive, case: tuple) -> None:
    _id, path, params, expected = case
    assert sorted(answer_key(a) for a in search(archive, path, params)) == sorted(expected)


@pytest.mark.parametrize("case", ORDERED_CASES, ids=[c[0] for c in ORDERED_CASES])
def test_order(archive: Archive, case: tuple) -> None:
    _id, path, params, expected = case
    assert [answer_key(a) for a in search(archive, path, params)] == expected


@pytest.mark.parametrize("case", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_parameters_raise_naming_them(case: tuple) -> None:
    _id, path, params, needle = case
    level, study, series = route(path)
    with pytest.raises(InvalidQuery) as info:
        parse_query(level, params, study=study, series=series)
    assert needle in str(info.value)


def test_study_level_returns_required_attributes(archive: Archive) -> None:
    [s1] = search(archive, "/studies", [("PatientID", "P1")])
    assert s1["00201206"]["Value"] == [2]  # NumberOfStudyRelatedSeries
    assert s1["00201208"]["Value"] == [6]  # NumberOfStudyRelatedInstances
    assert s1["00080061"]["Value"] == ["CT", "MR"]  # ModalitiesInStudy
    assert s1["00100010"]["Value"] == [{"Alphabetic": "Doe^John"}]
    assert s1["00080056"]["Value"] == ["ONLINE"]
    assert s1["00081190"]["Value"][0].startswith("http://x/dicomweb/studies/")


def test_series_and_instance_levels_return_required_attributes(archive: Archive) -> None:
    series = search(archive, "/series", [("PatientID", "P2")])
    assert series[0]["00201209"]["Value"] == [3]  # NumberOfSeriesRelatedInstances
    assert series[0]["00080060"]["Value"] == ["CT"]
    assert series[0]["0020000D"]["Value"]  # study attributes when not scoped by study
    instance = search(archive, "/instances", [("PatientID", "P2"), ("InstanceNumber", "1")])[0]
    for tag in ("00080016", "00080018", "00200013", "00280010", "00280011", "00280100", "00083002"):
        assert "Value" in instance[tag], tag


def test_includefield_all_and_list(archive: Archive) -> None:
    [s1] = search(archive, "/studies", [("PatientID", "P1"), ("includefield", "all")])
    assert s1["00080080"]["Value"] == ["Tessera Test Hospital"]  # InstitutionName
    [s2] = search(archive, "/studies", [("PatientID", "P2"), ("includefield", "InstitutionName,00081030")])
    assert s2["00080080"]["Value"] == ["Tessera Test Hospital"]
