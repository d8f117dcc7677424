"""The QIDO-RS matching table over HTTP through a tiny app: the same answers as the direct index
calls, 400s that name the parameter, and includefield of non-indexed attributes from metadata."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from archive.service import Archive, ArchiveConfig
from tests.qido_cases import BAD_CASES, MATCH_CASES, ORDERED_CASES, all_instances, answer_key, study_uid
from web.app import create_app
from web.settings import Settings


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = Path(tmp_path_factory.mktemp("qido-http"))
    archive = Archive(root, ArchiveConfig(durable=False))
    assert all(r.ok for r in archive.store(all_instances()))
    with TestClient(create_app(Settings(data=root, anonymous_role="admin"), archive), client=("127.0.0.1", 50000)) as c:
        yield c


def get(client: TestClient, path: str, params: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    return client.get("/dicomweb" + path, params=params, headers={"Accept": "application/dicom+json"})


@pytest.mark.parametrize("case", MATCH_CASES, ids=[c[0] for c in MATCH_CASES])
def test_matching(client: TestClient, case: tuple) -> None:
    _id, path, params, expected = case
    response = get(client, path, params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom+json"
    assert sorted(answer_key(a) for a in response.json()) == sorted(expected)


@pytest.mark.parametrize("case", ORDERED_CASES, ids=[c[0] for c in ORDERED_CASES])
def test_order(client: TestClient, case: tuple) -> None:
    _id, path, params, expected = case
    assert [answer_key(a) for a in get(client, path, params).json()] == expected


@pytest.mark.parametrize("case", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_parameters_are_400_naming_them(client: TestClient, case: tuple) -> None:
    _id, path, params, needle = case
    response = get(client, path, params)
    assert response.status_code == 400
    assert needle in response.json()["error"]


def test_bad_uid_in_path_is_400(client: TestClient) -> None:
    response = get(client, "/studies/1.2.x/series", [])
    assert response.status_code == 400
    assert "StudyInstanceUID" in response.json()["error"]


def test_xml_only_is_406(client: TestClient) -> None:
    response = client.get("/dicomweb/studies", headers={"Accept": "application/dicom+xml"})
    assert response.status_code == 406


def test_includefield_from_metadata(client: TestClient) -> None:
    response = get(client, "/studies", [("PatientID", "P1"), ("includefield", "ProtocolName")])
    assert response.json()[0]["00181030"] == {"vr": "LO", "Value": ["protocol S1"]}


def test_unknown_study_scope_is_empty(client: TestClient) -> None:
    response = get(client, f"/studies/{study_uid('S9')}/series", [])
    assert response.status_code == 200
    assert response.json() == []
